"""Trimesh scene -> pyrender scene: normalisation, normals, colours, textures, lights.

Every mesh instance is moved into the shared normalised frame on the CPU (node transform,
then :func:`xpt.toolkit.meshes.geometry.normalization`) and unrolled to one vertex per triangle
corner, so flat and smooth regions can coexist (crease-angle normals) and face colours
need no special case. All untextured, opaque instances are merged into one primitive with
per-corner colours (one draw call per view however many parts an object has); each
textured or translucent instance keeps a primitive of its own.

Faces are drawn double-sided (open sheets show both sides), except faces stored twice back to
back (:func:`twin_faces`): those are drawn with back faces culled, so the copy facing the
camera shows instead of both copies fighting at one depth.

Colours from files and procedural parts are sRGB (glTF's ``baseColorFactor`` excepted, which
is linear by its spec); the fragment shader works in linear light and gamma-encodes its
output, so colours are linearised here (textures are linearised by the shader itself). Only
geometry without a texture or a declared colour takes :data:`DEFAULT_COLOR`.

pyrender is imported inside the functions that need it (after the GL backend is chosen).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np
import trimesh

from xpt.toolkit.meshes.geometry import Normalization, normalization

if TYPE_CHECKING:
    import pyrender

# Neighbouring faces closer than this angle are shaded smoothly; sharper edges stay crisp.
CREASE_ANGLE_DEG = 35.0
MAX_TEXTURE_SIDE = 2048
DEFAULT_COLOR = (0.62, 0.62, 0.64, 1.0)
GAMMA = 2.2
# Lighting fixed in the camera frame: (direction the light travels, intensity). A key
# light from the upper left, a fill of 0.3 times its strength from the right (a 3:1 lighting
# ratio) and a rim light from behind-above, plus ambient, so shape reads from any viewpoint
# and faces at different angles differ. A directional light adds intensity / pi * max(0, n.l)
# times the albedo. Exposure: the total on a surface facing the camera is exactly 1, so such
# a surface shows its own albedo (a texture seen head-on keeps its colours); faces turned
# towards the key get up to 1.16, which the tone curve below keeps from clipping.
AMBIENT = 0.20
LIGHTS = (
    ((0.45, -0.55, -0.70), 2.850),
    ((-0.80, 0.00, -0.60), 0.855),
    ((0.00, -0.60, 0.80), 0.570),
)
# Tone curve on the shaded linear colour (per channel): identity up to TONE_KNEE, then a
# smooth exponential shoulder that approaches TONE_WHITE and never reaches it. Only light
# albedos on brightly lit faces and specular highlights are compressed, so no albedo
# saturates and a white object stays below sRGB 246, apart from a white background;
# mid-tones are untouched.
TONE_KNEE = 0.80
TONE_WHITE = 0.92
# Odd 64-bit multipliers of the position hashes of :func:`twin_faces` (arithmetic mod 2**64).
_HASH = np.array(
    [
        0x9E3779B97F4A7C15,
        0xC2B2AE3D27D4EB4F,
        0x165667B19E3779F9,
        0xD6E8FEB86659FD93,
        0xFF51AFD7ED558CCD,
    ],
    dtype=np.uint64,
)


class GeometryError(ValueError):
    """A scene with nothing to render: no faces or surface, non-finite vertices or zero size."""


@dataclass
class Part:
    """One primitive to draw: corner-unrolled arrays in the normalised frame.

    positions, normals : (3F, 3) float32; colors : (3F, 4) float32 linear RGBA or None;
    texcoords : (3F, 2) float32 or None; texture : (h, w, 4) uint8 sRGB or None;
    factor : (4,) float32 linear RGBA base colour. ``single_sided`` parts are drawn with back
    faces culled (the faces of a surface stored twice, :func:`twin_faces`).
    """

    positions: np.ndarray
    normals: np.ndarray
    factor: np.ndarray
    colors: np.ndarray | None = None
    texcoords: np.ndarray | None = None
    texture: np.ndarray | None = None
    translucent: bool = False
    single_sided: bool = False
    warnings: list[str] = field(default_factory=list)


def srgb_to_linear(values: np.ndarray) -> np.ndarray:
    """sRGB in [0, 1] -> linear (the shader's 2.2 power); alpha (last of 4 channels) kept."""
    values = np.clip(np.asarray(values, dtype=np.float32), 0.0, 1.0)
    out = values.copy()
    out[..., :3] = values[..., :3] ** GAMMA
    return out


def corner_normals(
    vertices: np.ndarray, faces: np.ndarray, crease_angle: float = CREASE_ANGLE_DEG
) -> np.ndarray:
    """Per-corner unit normals (F, 3, 3) float32: smooth across flat edges, split at creases.

    vertices : (n, 3) float, faces : (F, 3) int. Two faces that share an edge whose dihedral
    angle is below ``crease_angle`` degrees are smoothed together at that edge's corners
    (Blender's auto-smooth); each connected group of corners around a vertex gets the
    area-weighted mean normal of its faces. Vertices are matched by *position*, so seams
    where a loader duplicated vertices (UV seams) are smoothed too. O(F) (sort + graph
    components), so it stays cheap on meshes with hundreds of thousands of triangles.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    vertices = np.ascontiguousarray(vertices, dtype=np.float64)
    faces = np.asarray(faces, dtype=np.int64)
    count = len(faces)
    tri = vertices[faces]
    cross = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    length = np.linalg.norm(cross, axis=1)
    unit = np.divide(cross, length[:, None], out=np.zeros_like(cross), where=length[:, None] > 0)
    if count == 0:
        return np.zeros((0, 3, 3), dtype=np.float32)
    rows = vertices.view(np.dtype((np.void, vertices.dtype.itemsize * 3))).ravel()
    _, position = np.unique(rows, return_inverse=True)
    position = position.reshape(-1)[faces]  # (F, 3) position ids
    # Each face's three edges (corner k -> corner k+1), keyed by their unordered position pair.
    corner = np.arange(3 * count).reshape(count, 3)
    start, end = position.ravel(), position[:, [1, 2, 0]].ravel()
    start_corner, end_corner = corner.ravel(), corner[:, [1, 2, 0]].ravel()
    key = np.minimum(start, end) * (int(position.max()) + 1) + np.maximum(start, end)
    order = np.argsort(key, kind="stable")
    shared = key[order[1:]] == key[order[:-1]]
    a, b = order[:-1][shared], order[1:][shared]  # two faces meeting along an edge
    smooth = np.einsum("ij,ij->i", unit[a // 3], unit[b // 3]) >= np.cos(np.radians(crease_angle))
    a, b = a[smooth], b[smooth]
    same_way = start[a] == start[b]
    # Join the corners at each end of a smooth edge (matching them by position).
    left = np.concatenate([start_corner[a], end_corner[a]])
    right = np.concatenate(
        [
            np.where(same_way, start_corner[b], end_corner[b]),
            np.where(same_way, end_corner[b], start_corner[b]),
        ]
    )
    graph = coo_matrix((np.ones(len(left)), (left, right)), shape=(3 * count, 3 * count))
    _, group = connected_components(graph, directed=False)
    face_of_corner = np.repeat(np.arange(count), 3)
    summed = np.stack(
        [np.bincount(group, weights=cross[face_of_corner, k]) for k in range(3)], axis=1
    )[group]
    norm = np.linalg.norm(summed, axis=1)
    flat = unit[face_of_corner]
    normals = np.where((norm > 0)[:, None], summed / np.maximum(norm, 1e-300)[:, None], flat)
    return normals.reshape(count, 3, 3).astype(np.float32)


def _to_float_rgba(color: np.ndarray | None) -> np.ndarray | None:
    if color is None:
        return None
    color = np.asarray(color)
    if np.issubdtype(color.dtype, np.integer):
        color = color.astype(np.float32) / 255.0
    color = np.asarray(color, dtype=np.float32).reshape(-1)
    if color.size == 3:
        color = np.r_[color, 1.0]
    return color[:4]


def _texture_array(image: object) -> np.ndarray | None:
    """A PIL image (any mode) -> (h, w, 4) uint8, downscaled to MAX_TEXTURE_SIDE."""
    from PIL import Image

    if not isinstance(image, Image.Image):
        return None
    image = image.convert("RGBA")
    if max(image.size) > MAX_TEXTURE_SIDE:
        image = image.copy()
        image.thumbnail((MAX_TEXTURE_SIDE, MAX_TEXTURE_SIDE))
    return np.array(image, dtype=np.uint8)


def _is_placeholder(material: object) -> bool:
    """Whether ``material`` is trimesh's stand-in for "no material" (OBJ with UVs, no MTL).

    trimesh gives such meshes a default grey diffuse *and* a 2x2 image of another grey;
    multiplied together they render near-black, so neither is a colour from the file.
    """
    from trimesh.visual.material import SimpleMaterial, color_image

    image = getattr(material, "image", None)
    return (
        isinstance(material, SimpleMaterial)
        and "kd" not in material.kwargs
        and np.array_equal(material.diffuse, SimpleMaterial().diffuse)
        and getattr(image, "size", None) == (2, 2)
        and np.array_equal(np.asarray(image), np.asarray(color_image()))
    )


def _material_colour(material: object) -> tuple[np.ndarray | None, object, bool]:
    """(colour, image, opaque) of a trimesh material: its declared base colour as linear
    RGBA float or None, its texture image or None, and whether its alpha is to be ignored.

    MTL ``Kd`` is sRGB and linearised here; glTF's ``baseColorFactor`` is linear already.
    The colour is None where the file declares none: a glTF material without
    ``baseColorFactor`` (whose default is 1), an MTL without ``Kd`` (trimesh fills in its
    own grey). ``opaque`` is True for a glTF material whose ``alphaMode`` is OPAQUE (the
    default): the glTF spec says to ignore its alpha.
    """
    from trimesh.visual.material import MultiMaterial, PBRMaterial, SimpleMaterial

    if isinstance(material, MultiMaterial) and len(material.materials):
        material = material.materials[0]
    if _is_placeholder(material):
        return None, None, False
    if isinstance(material, SimpleMaterial):
        declared = "kd" in material.kwargs or not np.array_equal(
            material.diffuse, SimpleMaterial().diffuse
        )
        factor = srgb_to_linear(_to_float_rgba(material.diffuse)) if declared else None
        return factor, material.image, False
    if isinstance(material, PBRMaterial):
        opaque = material.alphaMode in (None, "OPAQUE")
        return _to_float_rgba(material.baseColorFactor), material.baseColorTexture, opaque
    return None, None, False


def mesh_part(mesh: trimesh.Trimesh, transform: np.ndarray) -> Part:
    """One mesh instance -> a :class:`Part` (transform: 4x4 to the normalised frame)."""
    vertices = trimesh.transform_points(np.asarray(mesh.vertices, dtype=np.float64), transform)
    faces = np.asarray(mesh.faces, dtype=np.int64)
    if np.linalg.det(transform[:3, :3]) < 0:
        faces = faces[:, ::-1]
    positions = vertices[faces].reshape(-1, 3).astype(np.float32)
    normals = corner_normals(vertices, faces).reshape(-1, 3)
    part = Part(positions, normals, srgb_to_linear(DEFAULT_COLOR))
    visual = mesh.visual
    kind = getattr(visual, "kind", None)
    if kind == "vertex":
        colors = np.asarray(visual.vertex_colors, dtype=np.float32)[faces].reshape(-1, 4) / 255.0
        part.colors, part.factor = srgb_to_linear(colors), np.ones(4, dtype=np.float32)
    elif kind == "face":
        colors = np.repeat(np.asarray(visual.face_colors, dtype=np.float32) / 255.0, 3, axis=0)
        part.colors, part.factor = srgb_to_linear(colors), np.ones(4, dtype=np.float32)
    elif kind == "texture" or isinstance(visual, trimesh.visual.TextureVisuals):
        factor, image, opaque = _material_colour(getattr(visual, "material", None))
        texture = _texture_array(image)
        uv = getattr(visual, "uv", None)
        if texture is not None and uv is not None and len(uv) == len(mesh.vertices):
            part.texture = texture
            part.texcoords = np.asarray(uv, dtype=np.float32)[faces].reshape(-1, 2)
            if opaque:
                part.texture[..., 3] = 255
        elif texture is not None:
            part.warnings.append("texture without matching UV coordinates ignored")
        # Only untextured geometry without a declared colour keeps the fallback grey.
        if factor is None and part.texture is not None:
            factor = np.ones(4, dtype=np.float32)
        if factor is not None:
            part.factor = np.r_[factor[:3], 1.0 if opaque else factor[3]].astype(np.float32)
    part.translucent = bool(
        part.factor[3] < 1.0
        or (part.colors is not None and (part.colors[:, 3] < 1.0).any())
        or (part.texture is not None and (part.texture[..., 3] < 255).any())
    )
    return part


def scene_parts(scene: trimesh.Scene | trimesh.Trimesh) -> tuple[list[Part], Normalization]:
    """All drawable parts of ``scene`` in the normalised frame, plain parts merged into one.

    Raises :class:`GeometryError` for no faces, non-finite vertices, a zero-size box or
    faces that all have zero area.
    """
    if isinstance(scene, trimesh.Trimesh):
        scene = trimesh.Scene([scene])
    try:
        norm = normalization(scene)
    except ValueError as exc:
        raise GeometryError(str(exc)) from None
    to_frame = norm.matrix()
    parts = []
    for node in scene.graph.nodes_geometry:
        transform, name = scene.graph[node]
        mesh = scene.geometry.get(name)
        if isinstance(mesh, trimesh.Trimesh) and len(mesh.faces):
            parts.append(mesh_part(mesh, to_frame @ np.asarray(transform, dtype=np.float64)))
    if not parts:
        raise GeometryError("no faces")
    if not any(_has_area(part.positions) for part in parts):
        raise GeometryError("no surface (all faces have zero area)")
    return merge_plain_parts(split_twin_faces(parts)), norm


def _has_area(positions: np.ndarray) -> bool:
    """Whether any triangle of corner-unrolled ``positions`` (3F, 3) has a non-zero area."""
    tri = positions.reshape(-1, 3, 3).astype(np.float64)
    cross = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    return bool((np.linalg.norm(cross, axis=1) > 0).any())


def twin_faces(positions: np.ndarray) -> np.ndarray:
    """(F,) bool: faces whose corners are at the positions of another face's corners, wound
    the other way (a surface stored once per side, back to back).

    positions : (3F, 3) float32, corner-unrolled, every part of an object together (the twin
    is often under another material). Positions compare exactly (bit for bit, -0 = +0), so
    near-equal corners are no twins; nor are same-winding duplicates or degenerate faces.
    Each corner's bits are hashed; a face's key combines its corner hashes in sorted order,
    so a face and its twin share a key and differ in the parity of their winding relative
    to that order. One sort of the keys groups them, O(F log F); faces under one key are
    compared corner by corner, so a hash collision never makes a twin.
    """
    corners = np.asarray(positions, dtype=np.float32).reshape(-1, 3, 3) + np.float32(0.0)
    bits = corners.view(np.uint32)
    hashes = bits[..., 0] * _HASH[0] + bits[..., 1] * _HASH[1] + bits[..., 2] * _HASH[2]
    h0, h1, h2 = hashes.T
    low = np.minimum(np.minimum(h0, h1), h2)
    high = np.maximum(np.maximum(h0, h1), h2)
    middle = h0 + h1 + h2 - low - high  # exact: uint64 arithmetic wraps consistently
    flipped = (h0 > h1) ^ (h0 > h2) ^ (h1 > h2)  # an odd permutation of the sorted order
    key = low * _HASH[3] + middle * _HASH[4] + high
    order = np.argsort(key)
    pair = np.flatnonzero(key[order[1:]] == key[order[:-1]])
    a, b = order[pair], order[pair + 1]
    same = (_sorted_corners(corners[a], hashes[a]) == _sorted_corners(corners[b], hashes[b])).all(
        axis=(1, 2)
    )
    start = np.ones(len(corners), dtype=bool)
    start[pair[same] + 1] = False  # runs of faces (in key order) on one set of positions
    group = np.cumsum(start) - 1
    flips, sizes = np.bincount(group, weights=flipped[order]), np.bincount(group)
    twins = np.empty(len(corners), dtype=bool)
    twins[order] = ((flips > 0) & (flips < sizes))[group]
    return twins & (low != middle) & (middle != high)


def _sorted_corners(corners: np.ndarray, hashes: np.ndarray) -> np.ndarray:
    """(n, 3, 3) corners of each face in the order of their (n, 3) uint64 hashes."""
    return np.take_along_axis(corners, np.argsort(hashes, axis=1)[..., None], axis=1)


def split_twin_faces(parts: list[Part]) -> list[Part]:
    """Parts with faces that have a back-to-back twin (:func:`twin_faces`, searched across
    all parts) -> the other faces, drawn double-sided as before, and a ``single_sided`` part
    of the twinned ones, so only the copy facing the camera is drawn. Parts without twins
    (and the list, where no part has any) are returned as they are.
    """
    twins = twin_faces(np.concatenate([part.positions for part in parts]))
    if not twins.any():
        return parts
    split, start = [], 0
    for part in parts:
        faces = twins[start : start + len(part.positions) // 3]
        start += len(faces)
        if not faces.any():
            split.append(part)
            continue
        halves = [_select(part, ~faces), replace(_select(part, faces), single_sided=True)]
        halves = [half for half in halves if len(half.positions)]
        halves[0].warnings = part.warnings
        split += halves
    return split


def _select(part: Part, faces: np.ndarray) -> Part:
    """The faces of ``part`` where ``faces`` (F,) bool is True, as a part without warnings."""
    corners = np.repeat(faces, 3)
    return replace(
        part,
        positions=part.positions[corners],
        normals=part.normals[corners],
        colors=None if part.colors is None else part.colors[corners],
        texcoords=None if part.texcoords is None else part.texcoords[corners],
        warnings=[],
    )


def merge_plain_parts(parts: list[Part]) -> list[Part]:
    """Merge untextured, opaque parts into one part with per-corner colours (one for the
    double-sided parts, one for the single-sided ones)."""
    plain = [p for p in parts if p.texture is None and not p.translucent]
    other = [p for p in parts if p.texture is not None or p.translucent]
    merged = []
    for single_sided in (False, True):
        group = [p for p in plain if p.single_sided == single_sided]
        merged += [_merge(group)] if len(group) > 1 else group
    return merged + other


def _merge(plain: list[Part]) -> Part:
    """One part with per-corner colours from untextured, opaque parts drawn alike."""
    colors = [
        p.colors * p.factor if p.colors is not None else np.tile(p.factor, (len(p.positions), 1))
        for p in plain
    ]
    return Part(
        positions=np.concatenate([p.positions for p in plain]),
        normals=np.concatenate([p.normals for p in plain]),
        factor=np.ones(4, dtype=np.float32),
        colors=np.concatenate(colors).astype(np.float32),
        single_sided=plain[0].single_sided,
        warnings=[w for p in plain for w in p.warnings],
    )


def pyrender_mesh(part: Part) -> pyrender.Mesh:
    """A pyrender mesh for one part: double-sided (the shader flips back-face normals) unless
    the part is ``single_sided`` (pyrender then culls its back faces)."""
    import pyrender

    texture = None
    if part.texture is not None:
        texture = pyrender.Texture(source=part.texture, source_channels="RGBA")
    material = pyrender.MetallicRoughnessMaterial(
        baseColorFactor=part.factor,
        baseColorTexture=texture,
        alphaMode="BLEND" if part.translucent else "OPAQUE",
        doubleSided=not part.single_sided,
    )
    primitive = pyrender.Primitive(
        positions=part.positions,
        normals=part.normals,
        texcoord_0=part.texcoords,
        color_0=part.colors,
        material=material,
        mode=pyrender.GLTF.TRIANGLES,
    )
    return pyrender.Mesh([primitive])


def light_rig(scene: pyrender.Scene, camera_node: pyrender.Node) -> None:
    """Add the directional lights as children of the camera node (they move with it)."""
    import pyrender

    from xpt.render.cameras import look_at

    for index, (direction, intensity) in enumerate(LIGHTS):
        d = np.asarray(direction, dtype=np.float64)
        # A directional light shines along its node's -Z axis: place it "behind" its direction.
        pose = look_at(-d / np.linalg.norm(d))
        light = pyrender.DirectionalLight(color=np.ones(3), intensity=intensity)
        # named in order: the renderer binds lights to the shader in name order
        scene.add(light, name=f"light{index:02d}", pose=pose, parent_node=camera_node)
