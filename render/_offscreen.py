"""pyrender's offscreen renderer with the changes xpt needs, all in this one module.

Import this only through :func:`xpt.render.gl.open_offscreen`, which chooses the GL platform
first. The changes (compatibility shims with pyrender 0.1.45 / PyOpenGL 3.1.0):

1. Read back only what is asked for. pyrender always resolves and reads colour *and* depth
   (and converts depth to linear units); we read RGBA always (alpha gives the coverage for
   masks, transparent and white backgrounds) and depth only when depth maps are wanted.
   Anti-aliasing is 2x2 supersampling rather than 4x MSAA (see ``_ReadbackRenderer``).
2. A lighter fragment shader. With pyrender's ``mesh.frag`` (metallic-roughness PBR with
   loops over point, spot and directional lights) a view costs about 2.5x the CPU time it
   costs with the shader here on Mesa's software rasteriser. xpt replaces it with
   :data:`MESH_FRAG`: Lambert diffuse plus a faint Blinn-Phong highlight from directional
   lights, ambient light, base colour x vertex colour x sRGB texture, a tone shoulder that keeps
   light colours below white (``xpt.render.scene.TONE_KNEE``), gamma 2.2, under the
   same uniform and input names, so pyrender's renderer drives it unchanged. It also
   lights back faces with their flipped normal (two-sided lighting), so meshes with
   inconsistent winding (common in ShapeNet) shade correctly with culling off.
3. ``mesh.vert`` computes the normal matrix as ``transpose(inverse(M))`` per vertex; our
   meshes are baked into the normalised frame and drawn with identity model matrices, so
   ``M`` itself is the normal matrix (it would also be for any rotation + uniform scale).
4. Reproducible draw and light order: translucent meshes far to near by their bounding-box
   centre, ties broken by node name (pyrender leaves ties in a set's order, different every
   run), and lights bound to the shader's light slots in node-name order (pyrender takes
   them from a set too, so the shader summed the lights in an order that changed from run
   to run, and now and then a pixel by 1).
5. Blending keeps alpha a coverage value: pyrender's ``glBlendFunc(SRC_ALPHA,
   ONE_MINUS_SRC_ALPHA)`` also blends alpha with itself (a^2 + ...); ``glBlendFuncSeparate``
   gives the "over" operator for alpha, so colour stays premultiplied by coverage.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pyrender
from OpenGL import GL
from pyrender import renderer as _pyrender_renderer
from pyrender.constants import RenderFlags
from pyrender.shader_program import ShaderProgramCache

from xpt.render.scene import TONE_KNEE, TONE_WHITE

_PATCHES = {
    "mesh.vert": ("mat4 N = transpose(inverse(M * inst_m));", "mat4 N = M * inst_m;"),
}

MESH_FRAG = """#version 330 core
// xpt: Lambert + Blinn-Phong shading for directional lights (see xpt.render._offscreen).
struct DirectionalLight {
    vec3 color;
    float intensity;
    vec3 direction;
};
struct Material {
    vec4 base_color_factor;
#ifdef HAS_BASE_COLOR_TEX
    sampler2D base_color_texture;
#endif
};
uniform Material material;
uniform DirectionalLight directional_lights[MAX_DIRECTIONAL_LIGHTS];
uniform int n_directional_lights;
uniform vec3 cam_pos;
uniform vec3 ambient_light;
in vec3 frag_position;
in vec3 frag_normal;
#ifdef TEXCOORD_0_LOC
in vec2 uv_0;
#endif
#ifdef COLOR_0_LOC
in vec4 color_multiplier;
#endif
out vec4 frag_color;

const float PI = 3.141592653589793;
const float SPECULAR = 0.06;
const float SHININESS = 64.0;
"""
MESH_FRAG += f"""const float TONE_KNEE = {TONE_KNEE:.6f};
const float TONE_WHITE = {TONE_WHITE:.6f};
"""
MESH_FRAG += """
void main()
{
    vec4 base = material.base_color_factor;
#ifdef HAS_BASE_COLOR_TEX
    vec4 texel = texture(material.base_color_texture, uv_0);
    base *= vec4(pow(texel.rgb, vec3(2.2)), texel.a);
#endif
#ifdef COLOR_0_LOC
    base *= color_multiplier;
#endif
    vec3 n = normalize(frag_normal);
    if (!gl_FrontFacing) n = -n;
    vec3 v = normalize(cam_pos - frag_position);
    vec3 color = base.rgb * ambient_light;
    for (int i = 0; i < n_directional_lights; i++) {
        vec3 l = -directional_lights[i].direction;
        float nl = max(dot(n, l), 0.0);
        float nh = max(dot(n, normalize(l + v)), 0.0);
        vec3 radiance = directional_lights[i].intensity * directional_lights[i].color;
        color += radiance * nl * (base.rgb / PI + SPECULAR * pow(nh, SHININESS));
    }
    // Identity below TONE_KNEE, then a shoulder with slope 1 at the knee towards TONE_WHITE.
    vec3 over = max(color - TONE_KNEE, 0.0);
    float room = TONE_WHITE - TONE_KNEE;
    color = min(color, TONE_KNEE) + room * (1.0 - exp(-over / room));
    frag_color = vec4(pow(clamp(color, 0.0, 1.0), vec3(1.0 / 2.2)), base.a);
}
"""


def _blend_func_over(source: int, destination: int) -> None:
    GL.glBlendFuncSeparate(source, destination, GL.GL_ONE, GL.GL_ONE_MINUS_SRC_ALPHA)


_pyrender_renderer.glBlendFunc = _blend_func_over


@functools.lru_cache(maxsize=1)
def patched_shader_dir() -> str:
    """pyrender's shaders with xpt's ``mesh.frag`` and patches, in a shared temp folder.

    The folder name carries a hash of its content, so every process (and every worker
    restarted after a kill) reuses one copy; it is created under a temporary name and
    renamed, so concurrent workers never see a half-written one.
    """
    source = Path(pyrender.__file__).parent / "shaders"
    files = {p.name: p.read_text() for p in sorted(source.iterdir()) if p.is_file()}
    for name, (old, new) in _PATCHES.items():
        if old not in files[name]:
            raise RuntimeError(
                f"pyrender's {name} does not contain {old!r}; xpt's shader patch needs updating"
            )
        files[name] = files[name].replace(old, new)
    files["mesh.frag"] = MESH_FRAG
    digest = hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()[:16]
    target = Path(tempfile.gettempdir()) / f"xpt-shaders-{digest}"
    if not target.is_dir():
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
        for name, text in files.items():
            (staging / name).write_text(text)
        try:
            os.replace(staging, target)
        except OSError:  # another process renamed its copy first
            shutil.rmtree(staging, ignore_errors=True)
    return str(target)


def linear_depth(raw: np.ndarray, znear: float, zfar: float | None) -> np.ndarray:
    """Depth-buffer values in [0, 1] -> camera-frame z distance (0 where nothing was drawn).

    ``zfar`` None is pyrender's infinite far plane.
    """
    ndc = 2.0 * raw.astype(np.float64) - 1.0
    with np.errstate(divide="ignore", invalid="ignore"):
        if zfar is None:
            depth = 2.0 * znear / (1.0 - ndc)
        else:
            depth = (2.0 * znear * zfar) / (zfar + znear - ndc * (zfar - znear))
    depth[raw >= 1.0] = 0.0
    return depth.astype(np.float32)


def _renderbuffers(width: int, height: int) -> tuple[int, int]:
    """A colour (RGBA8) and a depth (24-bit) renderbuffer."""
    colour, depth = GL.glGenRenderbuffers(2)
    for buffer, fmt in ((colour, GL.GL_RGBA), (depth, GL.GL_DEPTH_COMPONENT24)):
        GL.glBindRenderbuffer(GL.GL_RENDERBUFFER, buffer)
        GL.glRenderbufferStorage(GL.GL_RENDERBUFFER, fmt, width, height)
    return colour, depth


def _framebuffer(colour: int, depth: int) -> int:
    framebuffer = GL.glGenFramebuffers(1)
    GL.glBindFramebuffer(GL.GL_DRAW_FRAMEBUFFER, framebuffer)
    for attachment, buffer in ((GL.GL_COLOR_ATTACHMENT0, colour), (GL.GL_DEPTH_ATTACHMENT, depth)):
        GL.glFramebufferRenderbuffer(GL.GL_DRAW_FRAMEBUFFER, attachment, GL.GL_RENDERBUFFER, buffer)
    return framebuffer


class _LightsByName:
    """``scene`` with its ``light_nodes`` in name order, for pyrender's light binding."""

    def __init__(self, scene: pyrender.Scene):
        self._scene = scene

    def __getattr__(self, name: str):
        return getattr(self._scene, name)

    @property
    def light_nodes(self) -> list[pyrender.Node]:
        return sorted(self._scene.light_nodes, key=lambda node: node.name or "")


class _ReadbackRenderer(pyrender.Renderer):
    """pyrender's renderer, reading RGBA always and depth only when ``read_depth`` is set.

    Anti-aliasing is 2x2 supersampling instead of pyrender's 4x MSAA: the scene is drawn
    into a ``supersample`` times larger framebuffer (the renderer's viewport) and scaled
    down by a linear blit, which at exactly 2:1 averages each 2x2 block. On Mesa's software
    rasteriser this costs a little less than 4x MSAA, and it also smooths texture and
    shading aliasing, not only edges.
    """

    def __init__(self, width: int, height: int, supersample: int):
        super().__init__(width * supersample, height * supersample)
        self._program_cache = ShaderProgramCache(shader_dir=patched_shader_dir())
        self.output_size = (width, height)
        self.read_depth = False

    def _sorted_mesh_nodes(self, scene: pyrender.Scene) -> list[pyrender.Node]:
        """Opaque nodes, then translucent ones far to near, in a reproducible order.

        pyrender sorts by the distance of each node's origin and leaves ties in the order
        of a set of nodes (which changes from run to run), so translucent parts that share
        an origin blended differently on every run. Here the distance is that of each
        mesh's bounding-box centre, and ties are broken by node name.
        """
        eye = scene.get_pose(scene.main_camera_node)[:3, 3]

        def key(node: pyrender.Node) -> tuple[float, str]:
            # Primitive bounds are cached (pyrender's Mesh.bounds fails under NumPy 2).
            bounds = np.array([primitive.bounds for primitive in node.mesh.primitives])
            centre = (bounds[:, 0].min(axis=0) + bounds[:, 1].max(axis=0)) / 2.0
            pose = scene.get_pose(node)
            centre = pose[:3, :3] @ centre + pose[:3, 3]
            return -float(np.linalg.norm(centre - eye)), node.name or ""

        nodes = sorted(scene.mesh_nodes, key=key)
        return [n for n in nodes if not n.mesh.is_transparent] + [
            n for n in nodes if n.mesh.is_transparent
        ]

    def _bind_lighting(self, scene: pyrender.Scene, program, node, flags) -> None:
        super()._bind_lighting(_LightsByName(scene), program, node, flags)

    def _configure_main_framebuffer(self) -> None:
        # pyrender draws into ``_main_fb_ms`` and reads from ``_main_fb``; here the first is
        # the supersampled drawing buffer, the second has the output size.
        size = (self.viewport_width, self.viewport_height)
        if self._main_fb is not None and self._main_fb_dims == size:
            return
        self._delete_main_framebuffer()
        self._main_cb, self._main_db = _renderbuffers(*self.output_size)
        self._main_fb = _framebuffer(self._main_cb, self._main_db)
        self._main_cb_ms, self._main_db_ms = _renderbuffers(*size)
        self._main_fb_ms = _framebuffer(self._main_cb_ms, self._main_db_ms)
        self._main_fb_dims = size

    def _read_main_framebuffer(self, scene: pyrender.Scene, flags: int):
        (width, height), source = self.output_size, self._main_fb_dims
        GL.glBindFramebuffer(GL.GL_READ_FRAMEBUFFER, self._main_fb_ms)
        GL.glBindFramebuffer(GL.GL_DRAW_FRAMEBUFFER, self._main_fb)
        box = (0, 0, *source, 0, 0, width, height)
        scaled = GL.GL_LINEAR if source != self.output_size else GL.GL_NEAREST
        GL.glBlitFramebuffer(*box, GL.GL_COLOR_BUFFER_BIT, scaled)
        if self.read_depth:
            GL.glBlitFramebuffer(*box, GL.GL_DEPTH_BUFFER_BIT, GL.GL_NEAREST)
        GL.glBindFramebuffer(GL.GL_READ_FRAMEBUFFER, self._main_fb)
        return self.read_current(scene, width, height)

    def read_current(self, scene: pyrender.Scene, width: int, height: int):
        """(RGBA (h, w, 4) uint8 top row first, linear depth (h, w) float32 or None)."""
        data = GL.glReadPixels(0, 0, width, height, GL.GL_RGBA, GL.GL_UNSIGNED_BYTE)
        rgba = np.frombuffer(data, dtype=np.uint8).reshape(height, width, 4)[::-1]
        depth = None
        if self.read_depth:
            data = GL.glReadPixels(0, 0, width, height, GL.GL_DEPTH_COMPONENT, GL.GL_FLOAT)
            raw = np.frombuffer(data, dtype=np.float32).reshape(height, width)[::-1]
            camera = scene.main_camera_node.camera
            depth = linear_depth(raw, camera.znear, camera.zfar)
        return rgba, depth


class Offscreen(pyrender.OffscreenRenderer):
    """One GL context and framebuffer, made current once and reused for every object.

    ``supersample`` (1 or 2) is the drawing resolution factor; :attr:`scale` is the one in
    effect (1 on platforms without framebuffer objects): camera intrinsics passed to
    pyrender must be multiplied by it.
    """

    def __init__(self, size: int, supersample: int = 2):
        self.supersample = supersample
        super().__init__(size, size)
        self._platform.make_current()
        self.gl_renderer = GL.glGetString(GL.GL_RENDERER).decode("utf-8", "replace")

    def _create(self) -> None:
        super()._create()
        self.scale = self.supersample if self._platform.supports_framebuffers() else 1
        self._renderer = _ReadbackRenderer(self.viewport_width, self.viewport_height, self.scale)

    def draw(self, scene: pyrender.Scene, read_depth: bool) -> tuple[np.ndarray, np.ndarray | None]:
        """Render ``scene`` from its main camera: (RGBA uint8, depth float32 or None).

        The RGBA image has a transparent black background and colour premultiplied by
        coverage (anti-aliased edges); depth is the camera-frame z distance, 0 = background.
        """
        self._platform.make_current()
        self._renderer.read_depth = read_depth
        if self._platform.supports_framebuffers():
            return self._renderer.render(scene, RenderFlags.OFFSCREEN)
        # Without framebuffer objects (pyrender's OSMesa platform) the context's own buffer
        # is drawn into and read directly, at the output size.
        self._renderer.render(scene, RenderFlags.NONE)
        return self._renderer.read_current(scene, self.viewport_width, self.viewport_height)

    def release(self) -> None:
        """Free the GL buffers and textures of the last scene drawn."""
        self._platform.make_current()
        self._renderer._update_context(pyrender.Scene(), RenderFlags.NONE)
