"""Renders look like their source: colours, textures, light albedos, backgrounds, reproducibility.

Meshes are written the way other tools write them (a GLB's JSON and binary chunks, an OBJ
with ``vt`` lines and an MTL, a PLY with vertex colours, a Z-up OFF) and read with
:func:`load_mesh`, so the loader's stand-ins (trimesh's placeholder material) are covered.
"""

from __future__ import annotations

import io
import json
import struct
from pathlib import Path

import numpy as np
import pytest
import trimesh
from PIL import Image

from xpt.render.config import RenderConfig
from xpt.render.renderer import ObjectRenderer, RenderResult
from xpt.render.scene import AMBIENT, LIGHTS, TONE_WHITE
from xpt.toolkit.contact_sheet import contact_sheet
from xpt.toolkit.meshes.load import load_mesh

# Four views at elevation 0 looking at the origin from +X, +Z, -X, -Z: each face of an
# axis-aligned cube is seen head-on in one of them.
HEAD_ON = RenderConfig(rig="ring", views=4, elevation=0.0, size=96, background="transparent")
YELLOW, ORANGE, BLUE = (240, 200, 30), (230, 110, 20), (60, 140, 220)


def _png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def _stripes(side: int = 48) -> np.ndarray:
    """(side, side, 3) uint8: three vertical stripes of equal width (yellow, orange, blue)."""
    image = np.zeros((side, side, 3), dtype=np.uint8)
    for i, colour in enumerate((YELLOW, ORANGE, BLUE)):
        image[:, i * side // 3 : (i + 1) * side // 3] = colour
    return image


def _cube() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A unit cube with six separate faces, each mapped to the whole texture.

    Returns vertices (24, 3) float, faces (12, 3) int (outward winding) and uv (24, 2)
    with v up (OBJ convention).
    """
    vertices, faces, uv = [], [], []
    for axis in range(3):
        for sign in (1.0, -1.0):
            normal = np.zeros(3)
            normal[axis] = sign
            u_dir = np.roll(normal, 1) if sign > 0 else -np.roll(normal, 1)
            v_dir = np.cross(normal, u_dir)
            base = len(vertices)
            for du, dv in ((-1, -1), (1, -1), (1, 1), (-1, 1)):
                vertices.append(0.5 * (normal + du * u_dir + dv * v_dir))
                uv.append(((du + 1) / 2, (dv + 1) / 2))
            faces += [(base, base + 1, base + 2), (base, base + 2, base + 3)]
    return np.array(vertices), np.array(faces), np.array(uv, dtype=float)


def _write_glb(path: Path, primitives: list[dict]) -> Path:
    """A GLB as exporters write it: one mesh and node per primitive, data in the BIN chunk.

    Each primitive: ``positions`` (n, 3), ``faces`` (m, 3), optional ``uv`` (n, 2) with v
    up, ``material`` (a glTF material dict) and optional ``png`` (base-colour texture).
    """
    doc: dict = {"asset": {"version": "2.0"}, "scene": 0, "scenes": [{"nodes": []}]}
    for name in ("nodes", "meshes", "materials", "accessors", "bufferViews"):
        doc[name] = []
    blob = bytearray()

    def view(data: bytes) -> int:
        blob.extend(b"\0" * (-len(blob) % 4))
        doc["bufferViews"].append({"buffer": 0, "byteOffset": len(blob), "byteLength": len(data)})
        blob.extend(data)
        return len(doc["bufferViews"]) - 1

    def accessor(array: np.ndarray, kind: str) -> int:
        entry = {"bufferView": view(array.tobytes()), "count": len(array), "type": kind}
        entry["componentType"] = 5125 if array.dtype == np.uint32 else 5126
        if kind == "VEC3":
            entry.update(min=array.min(axis=0).tolist(), max=array.max(axis=0).tolist())
        doc["accessors"].append(entry)
        return len(doc["accessors"]) - 1

    for i, primitive in enumerate(primitives):
        attributes = {"POSITION": accessor(primitive["positions"].astype("<f4"), "VEC3")}
        if primitive.get("uv") is not None:
            uv = primitive["uv"] * (1.0, -1.0) + (0.0, 1.0)  # glTF: v grows downwards
            attributes["TEXCOORD_0"] = accessor(uv.astype("<f4"), "VEC2")
        material = json.loads(json.dumps(primitive["material"]))
        if primitive.get("png") is not None:
            doc.setdefault("images", []).append(
                {"bufferView": view(primitive["png"]), "mimeType": "image/png"}
            )
            doc.setdefault("textures", []).append({"source": len(doc["images"]) - 1})
            pbr = material.setdefault("pbrMetallicRoughness", {})
            pbr["baseColorTexture"] = {"index": len(doc["textures"]) - 1}
        doc["materials"].append(material)
        indices = accessor(primitive["faces"].astype("<u4").ravel(), "SCALAR")
        doc["meshes"].append(
            {"primitives": [{"attributes": attributes, "indices": indices, "material": i}]}
        )
        doc["nodes"].append({"mesh": i})
        doc["scenes"][0]["nodes"].append(i)
    blob.extend(b"\0" * (-len(blob) % 4))
    doc["buffers"] = [{"byteLength": len(blob)}]
    text = json.dumps(doc).encode()
    text += b" " * (-len(text) % 4)
    body = struct.pack("<II", len(text), 0x4E4F534A) + text
    body += struct.pack("<II", len(blob), 0x004E4942) + bytes(blob)
    path.write_bytes(b"glTF" + struct.pack("<II", 2, 12 + len(body)) + body)
    return path


def _write_obj(
    path: Path, vertices: np.ndarray, faces: np.ndarray, uv: np.ndarray | None, mtl: str | None
) -> Path:
    """An OBJ (1-based ``f v/vt`` lines when ``uv`` is given) and, with ``mtl``, its MTL."""
    lines = []
    if mtl is not None:
        path.with_suffix(".mtl").write_text(mtl)
        lines += [f"mtllib {path.with_suffix('.mtl').name}", "usemtl material"]
    lines += [f"v {x:.6f} {y:.6f} {z:.6f}" for x, y, z in vertices]
    if uv is not None:
        lines += [f"vt {u:.6f} {v:.6f}" for u, v in uv]
        lines += [f"f {a}/{a} {b}/{b} {c}/{c}" for a, b, c in faces + 1]
    else:
        lines += [f"f {a} {b} {c}" for a, b, c in faces + 1]
    path.write_text("\n".join(lines) + "\n")
    return path


def _write_ply(path: Path, mesh: trimesh.Trimesh, rgb: tuple[int, int, int]) -> Path:
    """An ASCII PLY with one colour on every vertex (uchar red, green, blue)."""
    header = [
        "ply",
        "format ascii 1.0",
        f"element vertex {len(mesh.vertices)}",
        *(f"property float {axis}" for axis in "xyz"),
        *(f"property uchar {channel}" for channel in ("red", "green", "blue")),
        f"element face {len(mesh.faces)}",
        "property list uchar int vertex_indices",
        "end_header",
    ]
    body = [f"{x:.6f} {y:.6f} {z:.6f} {rgb[0]} {rgb[1]} {rgb[2]}" for x, y, z in mesh.vertices]
    body += [f"3 {a} {b} {c}" for a, b, c in mesh.faces]
    path.write_text("\n".join(header + body) + "\n")
    return path


def _write_off(path: Path, mesh: trimesh.Trimesh) -> Path:
    lines = ["OFF", f"{len(mesh.vertices)} {len(mesh.faces)} 0"]
    lines += [f"{x:.6f} {y:.6f} {z:.6f}" for x, y, z in mesh.vertices]
    lines += [f"3 {a} {b} {c}" for a, b, c in mesh.faces]
    path.write_text("\n".join(lines) + "\n")
    return path


def _object_pixels(image: np.ndarray) -> np.ndarray:
    """(n, 3) int colours of fully covered pixels of a transparent-background view."""
    return image[image[..., 3] == 255][:, :3].astype(int)


def _render(path: Path, config: RenderConfig = HEAD_ON, **load: str) -> RenderResult:
    """Every view of the mesh file ``path`` (the views do not depend on its name)."""
    with ObjectRenderer(config) as renderer:
        return renderer.render(load_mesh(path, **load).scene, "object")


def _textured_glb(folder: Path) -> Path:
    vertices, faces, uv = _cube()
    primitive = {"positions": vertices, "faces": faces, "uv": uv, "png": _png(_stripes())}
    # No baseColorFactor: the glTF default is 1, so the texture shows as it is.
    primitive["material"] = {"pbrMetallicRoughness": {"metallicFactor": 0.0}}
    return _write_glb(folder / "duck.glb", [primitive])


def _translucent_gltf(folder: Path) -> Path:
    """Three translucent boxes with one centre (the parts of a glass object, say)."""
    primitives = []
    for extents, colour in (
        ((1.0, 0.6, 0.6), [0.9, 0.1, 0.1, 0.5]),
        ((0.6, 1.0, 0.6), [0.1, 0.9, 0.1, 0.5]),
        ((0.6, 0.6, 1.0), [0.1, 0.1, 0.9, 0.5]),
    ):
        box = trimesh.creation.box(extents=extents)
        material = {"alphaMode": "BLEND", "pbrMetallicRoughness": {"baseColorFactor": colour}}
        primitives.append({"positions": box.vertices, "faces": box.faces, "material": material})
    return _write_glb(folder / "glass.glb", primitives)


def test_gltf_texture_without_base_colour_factor_keeps_its_colours(tmp_path: Path) -> None:
    result = _render(_textured_glb(tmp_path))
    expected = _stripes().reshape(-1, 3).mean(axis=0)
    for image in result.color:
        pixels = _object_pixels(image)
        assert len(pixels) > 500
        # Each face is seen head-on: its mean colour is the texture's, within a few levels
        # (was the texture times the fallback grey: olive for a yellow one).
        assert np.abs(pixels.mean(axis=0) - expected).max() <= 6.0, pixels.mean(axis=0)
        # Each stripe keeps its colour: near a third of the pixels are within a few levels
        # of each of yellow, orange and blue.
        for colour in (YELLOW, ORANGE, BLUE):
            assert (np.abs(pixels - colour).max(axis=1) <= 8).mean() > 0.2, colour


def test_obj_texture_without_kd_shows_the_texture_as_it_is(tmp_path: Path) -> None:
    vertices, faces, uv = _cube()
    (tmp_path / "stripes.png").write_bytes(_png(_stripes()))
    path = _write_obj(
        tmp_path / "box.obj", vertices, faces, uv, "newmtl material\nmap_Kd stripes.png\n"
    )
    expected = _stripes().reshape(-1, 3).mean(axis=0)
    for image in _render(path, asset_root=str(tmp_path)).color:
        assert np.abs(_object_pixels(image).mean(axis=0) - expected).max() <= 6.0


@pytest.mark.parametrize("mtl", [None, "newmtl material\nKd 0.8 0.3 0.2\n"])
def test_uv_coordinates_without_a_texture_render_as_without_them(
    tmp_path: Path, mtl: str | None
) -> None:
    vertices, faces, uv = _cube()
    with_uv = _write_obj(tmp_path / "with_uv.obj", vertices, faces, uv, mtl)
    without = _write_obj(tmp_path / "without.obj", vertices, faces, None, mtl)
    config = RenderConfig(views=3, size=64, background="transparent")
    a = _render(with_uv, config, asset_root=str(tmp_path)).color
    b = _render(without, config, asset_root=str(tmp_path)).color
    for x, y in zip(a, b, strict=True):
        assert np.abs(x.astype(int) - y.astype(int)).max() <= 1
        # Not near-black (trimesh's placeholder grey times its placeholder image: about 40).
        assert _object_pixels(x).mean() > 90


def _rig_total(normals: np.ndarray) -> np.ndarray:
    """ambient + sum(I / pi * max(0, n . l)) for (n, 3) unit normals in the camera frame:
    the shading factor of a Lambertian surface (before the tone curve)."""
    total = np.full(len(normals), AMBIENT)
    for direction, intensity in LIGHTS:
        towards = -np.asarray(direction) / np.linalg.norm(direction)
        total += intensity / np.pi * np.clip(normals @ towards, 0.0, None)
    return total


def test_light_rig_lights_a_surface_facing_the_camera_at_its_albedo() -> None:
    count = 40000  # a Fibonacci sphere of normals
    i = np.arange(count) + 0.5
    polar, azimuth = np.arccos(1 - 2 * i / count), np.pi * (1 + 5**0.5) * i
    normals = np.stack(
        [np.cos(azimuth) * np.sin(polar), np.sin(azimuth) * np.sin(polar), np.cos(polar)], axis=1
    )
    assert _rig_total(np.array([[0.0, 0.0, 1.0]]))[0] == pytest.approx(1.0, abs=2e-3)
    assert 1.1 < _rig_total(normals).max() < 1.2  # faces towards the key: the tone curve's job
    assert _rig_total(normals).min() == pytest.approx(AMBIENT)


def test_light_albedos_do_not_wash_out_to_the_white_background(tmp_path: Path) -> None:
    sphere = trimesh.creation.icosphere(subdivisions=3)
    ply = _write_ply(tmp_path / "white.ply", sphere, (255, 255, 255))
    vertices, faces, uv = _cube()
    mtl = "newmtl material\nKd 1 1 1\nmap_Kd missing.png\n"
    obj = _write_obj(tmp_path / "white.obj", vertices, faces, uv, mtl)
    config = RenderConfig(views=6, size=96, background="transparent")
    ceiling = 255 * TONE_WHITE ** (1 / 2.2)
    for path in (ply, obj):
        for image in _render(path, config, asset_root=str(tmp_path)).color:
            inside = _object_pixels(image)
            assert len(inside) > 400
            # Was 70 % pure white on a white sphere; now every object pixel stays below
            # the tone curve's ceiling (about 246), apart from the 255 background.
            assert inside.max() <= ceiling + 1, path.name
            assert (inside.min(axis=1) >= 250).mean() == 0.0
            # Light, and shaded: not a flat silhouette.
            assert 180 < inside.mean() and inside.mean(axis=1).std() > 4.0


def test_mid_grey_sphere_has_no_clipped_pixels() -> None:
    sphere = trimesh.creation.icosphere(subdivisions=3)
    sphere.visual.face_colors = (128, 128, 128, 255)
    config = RenderConfig(views=6, size=96, background="transparent")
    with ObjectRenderer(config) as renderer:
        result = renderer.render(sphere, "sphere")
    for image in result.color:
        pixels = _object_pixels(image)
        assert (pixels.max(axis=1) <= 10).sum() == 0  # near-black
        assert (pixels.min(axis=1) >= 250).sum() == 0  # (near) pure white
        # A surface facing the camera shows about its own albedo (sRGB 128).
        assert 100 < pixels.mean() < 140


def test_grey_background_keeps_a_white_object_apart() -> None:
    sphere = trimesh.creation.icosphere(subdivisions=3, radius=0.5)
    sphere.visual.face_colors = (255, 255, 255, 255)
    config = RenderConfig(rig="ring", views=2, size=64, background="grey", mask=True)
    with ObjectRenderer(config) as renderer:
        result = renderer.render(sphere, "sphere")
    image, mask = result.color[0], result.mask[0]
    assert image.shape == (64, 64, 3)
    assert (image[0, 0] == 128).all() and (image[~mask].min() >= 128 - 1)
    assert image[mask].mean() > 200


def test_translucent_parts_blend_far_to_near() -> None:
    # Two translucent quads facing +X (the first ring view's camera): red in front, blue behind.
    quads = []
    for x, colour in ((0.3, (230, 30, 30, 128)), (-0.3, (30, 30, 230, 128))):
        quad = trimesh.Trimesh(
            [[x, -0.5, 0.5], [x, -0.5, -0.5], [x, 0.5, -0.5], [x, 0.5, 0.5]], [[0, 1, 2], [0, 2, 3]]
        )
        quad.visual.face_colors = colour
        quads.append(quad)
    config = RenderConfig(rig="ring", views=1, elevation=0.0, size=64)
    for order in (quads, quads[::-1]):
        with ObjectRenderer(config) as renderer:
            red, _, blue = renderer.render(trimesh.Scene(order), "quads").color[0][32, 32]
        assert int(red) > int(blue) + 40


def test_translucent_gltf_renders_byte_identical_every_run(tmp_path: Path) -> None:
    path = _translucent_gltf(tmp_path)
    config = RenderConfig(views=6, size=64)
    runs = [_render(path, config).color for _ in range(4)]
    for run in runs[1:]:
        assert all(np.array_equal(a, b) for a, b in zip(runs[0], run, strict=True))
    # Where the boxes overlap, the colour is a blend of more than one of them.
    centre = runs[0][0][28:36, 28:36].reshape(-1, 3).astype(int)
    assert (np.sort(centre, axis=1)[:, 1] > 60).any()


def _mesh_kinds(folder: Path) -> dict[str, tuple[Path, dict]]:
    """One file of each kind the renderer meets, with the load_mesh arguments it needs."""
    vertices, faces, uv = _cube()
    (folder / "stripes.png").write_bytes(_png(_stripes()))
    root = {"asset_root": str(folder)}
    tall = trimesh.creation.box(extents=(0.3, 0.4, 1.5))  # its height along the file's Z
    return {
        "textured OBJ": (
            _write_obj(
                folder / "tex.obj", vertices, faces, uv, "newmtl material\nmap_Kd stripes.png\n"
            ),
            root,
        ),
        "UV, no texture": (_write_obj(folder / "uv.obj", vertices, faces, uv, None), root),
        "white vertex PLY": (
            _write_ply(
                folder / "white.ply", trimesh.creation.icosphere(subdivisions=3), (255, 255, 255)
            ),
            root,
        ),
        "textured GLB": (_textured_glb(folder), root),
        "Z-up OFF": (_write_off(folder / "tall.off", tall), {**root, "up_axis": "+Z"}),
        "translucent glTF": (_translucent_gltf(folder), root),
    }


def _sheet(folder: Path) -> tuple[bytes, dict[str, list[np.ndarray]]]:
    views = {}
    with ObjectRenderer(HEAD_ON) as renderer:
        for label, (path, load) in _mesh_kinds(folder).items():
            views[label] = renderer.render(load_mesh(path, **load).scene, path.stem).color
    rows = [[Image.fromarray(image) for image in images] for images in views.values()]
    buffer = io.BytesIO()
    contact_sheet(rows, list(views), cell=96).save(buffer, format="PNG")
    return buffer.getvalue(), views


def test_contact_sheet_of_every_mesh_kind_looks_like_its_sources(tmp_path: Path) -> None:
    """The visual regression check: one mesh of each kind, four head-on views each.

    The sheet is written to ``tmp_path / "appearance.png"`` for a person to look at.
    """
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    sheet, views = _sheet(tmp_path / "a")
    (tmp_path / "appearance.png").write_bytes(sheet)
    assert _sheet(tmp_path / "b")[0] == sheet  # byte-identical across runs

    stripes = _stripes().reshape(-1, 3).mean(axis=0)
    for label in ("textured OBJ", "textured GLB"):
        for image in views[label]:
            assert np.abs(_object_pixels(image).mean(axis=0) - stripes).max() <= 6.0, label
    for label in ("textured OBJ", "UV, no texture", "textured GLB", "Z-up OFF"):
        for image in views[label]:
            pixels = _object_pixels(image)
            assert (pixels.min(axis=1) >= 255).mean() <= 0.05, label
            assert (pixels.max(axis=1) <= 10).mean() <= 0.05, label
    for image in views["UV, no texture"]:  # the fallback grey, not near-black
        assert 120 < _object_pixels(image).mean() < 170
    for image in views["white vertex PLY"]:
        assert _object_pixels(image).max() < 250
    for image in views["Z-up OFF"]:
        # Upright: the file's Z (height 1.5) is the image's vertical, over twice the width.
        rows, columns = np.nonzero(image[..., 3] > 0)
        height, width = np.ptp(rows) + 1, np.ptp(columns) + 1
        assert height > 2.0 * width, (height, width)
    for image in views["translucent glTF"]:
        alpha = image[..., 3]
        assert alpha.max() < 255 and (alpha > 0).mean() > 0.05  # seen through, not opaque
