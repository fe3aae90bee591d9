"""Files as other tools write them that load_mesh used to misread (issue 21): Latin-1 MTL
files, Draco-compressed glTF, UTF-16 OBJ, wireframe OBJ, PLY textures that are missing,
truncated OBJ face lists, glTF extensions that are drawn approximately."""

from __future__ import annotations

import base64
import json
import struct
import sys
from pathlib import Path

import DracoPy
import numpy as np
import pytest
import trimesh
from PIL import Image
from trimesh.visual.material import empty_material

from xpt.toolkit.meshes.load import MeshError, load_mesh

# --- an OBJ and MTL as 3ds Max's exporter writes them (assimp's regr01.obj) ------------

MAX_OBJ = """# 3ds Max Wavefront OBJ Exporter v0.97b - (c)2007 guruware
# File Created: 04.01.2011 13:37:42

mtllib regr01.mtl

#
# object Terrain
#

v  0.0000 0.0000 0.0000
v  1.0000 0.0000 0.0000
v  1.0000 1.0000 0.0000
v  0.0000 1.0000 0.0000
v  0.0000 0.0000 1.0000
v  1.0000 0.0000 1.0000
# 6 vertices

g Terrain
usemtl Terraindæk
f 1 2 3
f 1 3 4
usemtl Grøn_flade
f 1 2 6
f 1 6 5
# 4 faces

"""
MAX_MTL = """# 3ds Max Wavefront OBJ Exporter v0.97b - (c)2007 guruware
# File Created: 04.01.2011 13:37:42

newmtl Terraindæk
\tNs 10.0000
\tNi 1.5000
\td 1.0000
\tTr 0.0000
\tillum 2
\tKa 0.5882 0.5882 0.5882
\tKd 0.2000 0.4000 0.6000
\tKs 0.0000 0.0000 0.0000

newmtl Grøn_flade
\tNs 10.0000
\td 1.0000
\tillum 2
\tKa 0.5882 0.5882 0.5882
\tKd 1.0000 0.0000 0.0000
\tKs 0.0000 0.0000 0.0000
"""


@pytest.mark.parametrize("obj_encoding", ["latin-1", "utf-8"])
def test_latin1_mtl_keeps_its_materials(tmp_path: Path, obj_encoding: str) -> None:
    crlf = {"newline": "\r\n"}  # a Windows tool: CRLF line ends
    (tmp_path / "regr01.obj").write_text(MAX_OBJ, encoding=obj_encoding, **crlf)
    (tmp_path / "regr01.mtl").write_text(MAX_MTL, encoding="latin-1", **crlf)
    loaded = load_mesh(tmp_path / "regr01.obj")
    mtl_warning = "material library 'regr01.mtl' is not UTF-8 text; read as Latin-1"
    if obj_encoding == "latin-1":
        assert loaded.warnings == ["not UTF-8 text; read as Latin-1", mtl_warning]
    else:
        assert loaded.warnings == [mtl_warning]
    colours = {
        g.visual.material.name: (g.visual.material.diffuse.tolist(), len(g.faces))
        for g in loaded.scene.geometry.values()
    }
    assert colours == {
        "Terraindæk": ([51, 102, 153, 255], 2),
        "Grøn_flade": ([255, 0, 0, 255], 2),
    }


# --- Draco-compressed glTF as gltf-pipeline / Blender write it -------------------------

BOX = trimesh.creation.box(extents=(2.0, 4.0, 6.0))
DRACO_NAMES = {0: "POSITION", 1: "NORMAL", 3: "TEXCOORD_0"}  # by DracoPy.AttributeType


def draco_gltf(blob: bytes, buffer: dict) -> dict:
    """The glTF document of one Draco-compressed red box primitive at node (10, 0, 0):
    accessors with count/min/max and no bufferView, the extension naming the Draco
    attribute ids, and the extension listed as used and required."""
    ids = {
        DRACO_NAMES[a["attribute_type"]]: a["unique_id"] for a in DracoPy.decode(blob).attributes
    }
    vec = {"componentType": 5126, "count": 8}
    return {
        "asset": {"version": "2.0", "generator": "glTF-Pipeline"},
        "extensionsUsed": ["KHR_draco_mesh_compression"],
        "extensionsRequired": ["KHR_draco_mesh_compression"],
        "scene": 0,
        "scenes": [{"nodes": [0]}],
        "nodes": [{"mesh": 0, "translation": [10.0, 0.0, 0.0]}],
        "meshes": [
            {
                "primitives": [
                    {
                        "attributes": {"POSITION": 0, "NORMAL": 1, "TEXCOORD_0": 2},
                        "indices": 3,
                        "material": 0,
                        "mode": 4,
                        "extensions": {
                            "KHR_draco_mesh_compression": {"bufferView": 0, "attributes": ids}
                        },
                    }
                ]
            }
        ],
        "materials": [{"pbrMetallicRoughness": {"baseColorFactor": [1.0, 0.0, 0.0, 1.0]}}],
        "accessors": [
            {**vec, "type": "VEC3", "min": [-1.0, -2.0, -3.0], "max": [1.0, 2.0, 3.0]},
            {**vec, "type": "VEC3", "min": [-1.0, -1.0, -1.0], "max": [1.0, 1.0, 1.0]},
            {**vec, "type": "VEC2", "min": [-1.0, -2.0], "max": [1.0, 2.0]},
            {"componentType": 5123, "count": 36, "type": "SCALAR", "min": [0], "max": [7]},
        ],
        "bufferViews": [{"buffer": 0, "byteOffset": 0, "byteLength": len(blob)}],
        "buffers": [buffer],
    }


def box_blob() -> bytes:
    return DracoPy.encode(
        np.asarray(BOX.vertices),
        np.asarray(BOX.faces),
        normals=np.asarray(BOX.vertex_normals),
        tex_coord=np.asarray(BOX.vertices)[:, :2],
    )


def write_glb(path: Path, tree: dict, binary: bytes) -> Path:
    """A GLB container: header, JSON chunk padded with spaces, BIN chunk padded with zeros."""
    text = json.dumps(tree).encode()
    text += b" " * (-len(text) % 4)
    binary += b"\0" * (-len(binary) % 4)
    chunks = struct.pack("<I4s", len(text), b"JSON") + text
    chunks += struct.pack("<I4s", len(binary), b"BIN\0") + binary
    path.write_bytes(struct.pack("<4sII", b"glTF", 2, 12 + len(chunks)) + chunks)
    return path


def draco_file(folder: Path, kind: str, blob: bytes) -> Path:
    """``folder/box.glb``, or ``folder/box.gltf`` with its buffer in ``box.bin``."""
    if kind == "glb":
        return write_glb(folder / "box.glb", draco_gltf(blob, {"byteLength": len(blob)}), blob)
    (folder / "box.bin").write_bytes(blob)
    tree = draco_gltf(blob, {"uri": "box.bin", "byteLength": len(blob)})
    (folder / "box.gltf").write_text(json.dumps(tree))
    return folder / "box.gltf"


@pytest.mark.parametrize("kind", ["glb", "gltf"])
def test_draco_compressed_gltf_is_decoded(tmp_path: Path, kind: str) -> None:
    loaded = load_mesh(draco_file(tmp_path, kind, box_blob()))
    assert loaded.warnings == []
    (mesh,) = loaded.scene.geometry.values()
    assert mesh.vertices.shape == (8, 3)
    assert mesh.faces.shape == (12, 3)
    assert np.allclose(mesh.bounds, [[-1, -2, -3], [1, 2, 3]], atol=1e-3)
    assert np.allclose(loaded.scene.bounds, [[9, -2, -3], [11, 2, 3]], atol=1e-3)
    assert np.isclose(abs(mesh.volume), 48.0, rtol=1e-3)  # faces index the right vertices
    assert mesh.visual.material.baseColorFactor.tolist() == [255, 0, 0, 255]
    # each vertex keeps its own UV (x, y); trimesh flips glTF's v to OpenGL's 1 - v
    x, y = mesh.vertices[:, 0], mesh.vertices[:, 1]
    assert np.allclose(mesh.visual.uv, np.column_stack([x, 1 - y]), atol=1e-3)


def test_corrupt_draco_buffer_is_one_line_naming_the_file(tmp_path: Path) -> None:
    blob = box_blob()
    tree = draco_gltf(blob, {"byteLength": len(blob)})
    path = write_glb(tmp_path / "box.glb", tree, b"\xff" * 8 + blob[8:])  # no Draco magic
    with pytest.raises(MeshError) as info:
        load_mesh(path)
    assert str(info.value) == (
        f"{path}: mesh 0 primitive 0: its KHR_draco_mesh_compression data does not decode "
        "(FileTypeException: Input mesh is not draco encoded): corrupt or truncated"
    )


def test_draco_without_dracopy_says_what_to_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = draco_file(tmp_path, "glb", box_blob())
    monkeypatch.setitem(sys.modules, "DracoPy", None)  # as if not installed
    with pytest.raises(MeshError) as info:
        load_mesh(path)
    assert info.value.reason == (
        "uses KHR_draco_mesh_compression, which needs DracoPy (pip install DracoPy), "
        "or decompress it first: gltf-transform copy in.glb out.glb"
    )


# --- wording: UTF-16, wireframes, missing PLY textures, truncated OBJ ------------------

TRIANGLE = "v 0 0 0\r\nv 1 0 0\r\nv 0 1 0\r\nf 1 2 3\r\n"


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be"])
def test_utf16_obj_is_decoded(tmp_path: Path, encoding: str) -> None:
    # Notepad's "Unicode" (with a byte-order mark) and BOM-less UTF-16 from other tools
    path = tmp_path / "tri.obj"
    path.write_bytes(("# exported\r\n" + TRIANGLE).encode(encoding))
    loaded = load_mesh(path)
    assert loaded.warnings == ["UTF-16 text, not UTF-8; read as UTF-16"]
    (mesh,) = loaded.scene.geometry.values()
    assert mesh.vertices.tolist() == [[0, 0, 0], [1, 0, 0], [0, 1, 0]]
    assert mesh.faces.tolist() == [[0, 1, 2]]


def test_obj_of_polylines_says_it_has_lines_but_no_faces(tmp_path: Path) -> None:
    # Blender's OBJ export of a curve / an edges-only mesh
    path = tmp_path / "wire.obj"
    square = "".join(f"v {x} {y} 0\n" for x, y in [(0, 0), (1, 0), (1, 1), (0, 1)])
    path.write_text(f"# Blender 4.1\no Wire\n{square}l 1 2\nl 2 3\nl 3 4\nl 4 1\n")
    with pytest.raises(MeshError) as info:
        load_mesh(path)
    assert str(info.value) == (
        f"{path}: no faces: 4 polylines ('l' lines) over 4 vertices but no 'f' lines: "
        "a wireframe, not a surface"
    )


MESHLAB_PLY = """ply
format ascii 1.0
comment VCGLIB generated
comment TextureFile chair_tex.png
element vertex 4
property float x
property float y
property float z
element face 2
property list uchar int vertex_indices
property list uchar float texcoord
end_header
0 0 0
1 0 0
1 1 0
0 1 0
3 0 1 2 6 0 0 1 0 1 1
3 0 2 3 6 0 0 1 1 0 1
"""


def test_ply_with_missing_texture_names_it_and_loads_untextured(tmp_path: Path) -> None:
    path = tmp_path / "chair.ply"
    path.write_text(MESHLAB_PLY)
    loaded = load_mesh(path)
    assert loaded.warnings == [
        "texture 'chair_tex.png' (TextureFile in the PLY header) not found "
        "(tried chair_tex.png from the mesh's folder, any letter case)"
    ]
    (mesh,) = loaded.scene.geometry.values()
    assert len(mesh.faces) == 2
    # trimesh's stand-in for "no material" (its 2x2 grey), which renders untextured
    placeholder = np.asarray(empty_material().image)
    assert np.array_equal(np.asarray(mesh.visual.material.image), placeholder)


def test_ply_with_its_texture_loads_it(tmp_path: Path) -> None:
    path = tmp_path / "chair.ply"
    path.write_text(MESHLAB_PLY)
    Image.new("RGB", (2, 2), (10, 200, 30)).save(tmp_path / "chair_tex.png")
    loaded = load_mesh(path)
    assert loaded.warnings == []
    (mesh,) = loaded.scene.geometry.values()
    assert np.asarray(mesh.visual.material.image.convert("RGB"))[0, 0].tolist() == [10, 200, 30]


QUAD = "v 0 0 0\nv 1 0 0\nv 1 1 0\nv 0 1 0\nf 1 2 3\n"
TRUNCATED = {
    "cut in a face, no line end": (
        QUAD + "f 1 3",
        1,
        "looks truncated: its last line (line 6, 'f 1 3') is a face with 2 vertex indices",
    ),
    "short last face with line end": (
        QUAD + "f 1 3\n\n",
        1,
        "looks truncated: its last line (line 6, 'f 1 3') is a face with 2 vertex indices",
    ),
    "ends mid-line in the faces": (
        QUAD + "f 1 3 4",
        2,
        "looks truncated: it ends mid-line in its face list (line 6, 'f 1 3 4')",
    ),
}


@pytest.mark.parametrize("case", sorted(TRUNCATED))
def test_truncated_obj_warns_with_the_line(tmp_path: Path, case: str) -> None:
    text, faces, warning = TRUNCATED[case]
    path = tmp_path / "cut.obj"
    path.write_text(text)
    loaded = load_mesh(path)
    assert loaded.warnings == [warning]
    assert sum(len(g.faces) for g in loaded.scene.geometry.values()) == faces


def test_complete_obj_has_no_truncation_warning(tmp_path: Path) -> None:
    path = tmp_path / "whole.obj"
    path.write_text(QUAD + "f 1 3 4\n")
    assert load_mesh(path).warnings == []


def test_truncated_obj_with_a_cut_index_says_so(tmp_path: Path) -> None:
    path = tmp_path / "cut.obj"
    path.write_text(QUAD + "f 1 3 7")  # cut inside "f 1 3 7 8": 7 is past the 4 vertices
    with pytest.raises(MeshError) as info:
        load_mesh(path)
    assert info.value.reason.startswith(
        "cannot parse OBJ: a face references a vertex that does not exist (IndexError: "
    )
    assert info.value.reason.endswith(" (the file ends mid-line: truncated?)")


# --- glTF extensions drawn approximately --------------------------------------------------


def gltf_triangle(path: Path, material: dict, used: list[str], **extra: list) -> Path:
    """A one-triangle .gltf with UVs and one material (and ``extra`` top-level entries), its
    buffer a data URI."""
    data = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0]], "<f4").tobytes()
    data += np.array([[0, 0], [1, 0], [0, 1]], "<f4").tobytes()
    tree = {
        "asset": {"version": "2.0", "generator": "Khronos glTF Blender I/O"},
        "extensionsUsed": used,
        "scene": 0,
        "scenes": [{"nodes": [0]}],
        "nodes": [{"mesh": 0}],
        "meshes": [
            {"primitives": [{"attributes": {"POSITION": 0, "TEXCOORD_0": 1}, "material": 0}]}
        ],
        "materials": [material],
        "accessors": [
            {
                "bufferView": 0,
                "componentType": 5126,
                "count": 3,
                "type": "VEC3",
                "min": [0, 0, 0],
                "max": [1, 1, 0],
            },
            {"bufferView": 1, "componentType": 5126, "count": 3, "type": "VEC2"},
        ],
        "bufferViews": [
            {"buffer": 0, "byteOffset": 0, "byteLength": 36},
            {"buffer": 0, "byteOffset": 36, "byteLength": 24},
        ],
        "buffers": [
            {
                "byteLength": len(data),
                "uri": "data:application/octet-stream;base64," + base64.b64encode(data).decode(),
            }
        ],
        **extra,
    }
    path.write_text(json.dumps(tree))
    return path


def test_specular_glossiness_warns_and_draws_its_diffuse_colour(tmp_path: Path) -> None:
    gloss = {"diffuseFactor": [0.0, 0.0, 1.0, 1.0], "specularFactor": [0.04] * 3}
    material = {"extensions": {"KHR_materials_pbrSpecularGlossiness": gloss}}
    used = ["KHR_materials_pbrSpecularGlossiness"]
    loaded = load_mesh(gltf_triangle(tmp_path / "gloss.gltf", material, used))
    assert loaded.warnings == [
        "uses KHR_materials_pbrSpecularGlossiness: specular-glossiness materials are drawn "
        "with a base colour converted from their diffuse and specular values (approximate)"
    ]
    (mesh,) = loaded.scene.geometry.values()
    assert mesh.visual.material.baseColorFactor.tolist() == [0, 0, 255, 255]


def test_texture_transform_warns(tmp_path: Path) -> None:
    transform = {"KHR_texture_transform": {"offset": [0.5, 0], "scale": [2, 2]}}
    pbr = {"baseColorTexture": {"index": 0, "extensions": transform}}
    material = {"pbrMetallicRoughness": {**pbr, "baseColorFactor": [1, 1, 1, 1]}}
    png = tmp_path / "wood.png"
    Image.new("RGB", (2, 2), (120, 80, 40)).save(png)
    images = [{"uri": "data:image/png;base64," + base64.b64encode(png.read_bytes()).decode()}]
    path = gltf_triangle(
        tmp_path / "t.gltf",
        material,
        ["KHR_texture_transform"],
        textures=[{"source": 0}],
        images=images,
    )
    loaded = load_mesh(path)
    assert loaded.warnings == [
        "uses KHR_texture_transform: texture offsets, scales and rotations are not applied; "
        "textures are drawn untransformed"
    ]
    (mesh,) = loaded.scene.geometry.values()
    texture = np.asarray(mesh.visual.material.baseColorTexture.convert("RGB"))
    assert texture[0, 0].tolist() == [120, 80, 40]  # drawn, only without the transform
