"""Files whose extension lies, truncated files and files without faces: one precise line each."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
import trimesh

from xpt.toolkit.meshes.load import MeshError, detect_format, load_mesh


def _box(extents: tuple[float, float, float] = (1.0, 2.0, 3.0)) -> trimesh.Trimesh:
    return trimesh.creation.box(extents=extents)


def _faces(path: Path) -> int:
    return sum(len(g.faces) for g in load_mesh(path).scene.geometry.values())


# (file name as found in the wild, content writer, format the content is in)
MISNAMED = {
    "model.obj": (lambda m: m.export(file_type="ply"), "PLY"),  # binary PLY named .obj
    "model.gltf": (lambda m: m.export(file_type="glb"), "GLB"),  # GLB named .gltf
    "scan.obj": (lambda m: m.export(file_type="off").encode(), "OFF"),
    "part.ply": (lambda m: m.export(file_type="stl"), "STL"),  # binary STL
    "part.stl": (lambda m: m.export(file_type="obj").encode(), "OBJ"),
    "ascii.obj": (lambda m: trimesh.exchange.stl.export_stl_ascii(m).encode(), "STL"),
    "scene.glb": (lambda m: m.export(file_type="gltf", embed_buffers=True)["model.gltf"], "glTF"),
}


@pytest.mark.parametrize("name", sorted(MISNAMED))
def test_content_decides_the_format_and_a_warning_says_so(tmp_path: Path, name: str) -> None:
    write, found = MISNAMED[name]
    path = tmp_path / name
    path.write_bytes(write(_box()))
    loaded = load_mesh(path)
    told = {".obj": "OBJ", ".gltf": "glTF", ".ply": "PLY", ".stl": "STL", ".glb": "GLB"}
    assert loaded.warnings == [f"content is {found}, not {told[path.suffix]}; read as {found}"]
    assert sum(len(g.faces) for g in loaded.scene.geometry.values()) == 12
    assert np.allclose(loaded.scene.extents, (1.0, 2.0, 3.0))


def test_detect_format_keeps_the_extension_without_a_signature() -> None:
    assert detect_format(b"this is not a mesh\n", "obj") == "obj"
    assert detect_format(b"PLY\n3 1 0\n", "off") == "off"  # no known magic: the OFF check says
    assert detect_format(b"OFF490 518 0\n", "obj") == "off"  # ModelNet's glued count line
    assert detect_format(b"ply\r\nformat ascii 1.0\r\n", "stl") == "ply"
    # a binary STL whose 80-byte header starts with "solid" (SolidWorks does this)
    header = b"solid part".ljust(80, b"\0")
    assert detect_format(header + struct.pack("<I", 0), "obj") == "stl"


def _ascii_ply(mesh: trimesh.Trimesh) -> bytes:
    return trimesh.exchange.ply.export_ply(mesh, encoding="ascii")


def _without_last_lines(data: bytes, count: int) -> bytes:
    return b"".join(data.splitlines(keepends=True)[:-count])


TRUNCATED = {
    # an ASCII PLY cut inside its face lines: enough bytes for the old size estimate
    "cut.ply": (
        lambda: _without_last_lines(_ascii_ply(trimesh.creation.icosphere(2)), 7),
        "truncated: the PLY header declares vertex: 162, face: 320 elements (482 lines) "
        "but 475 lines follow it",
    ),
    "cut.off": (
        lambda: _without_last_lines(
            trimesh.exchange.off.export_off(trimesh.creation.icosphere(2)).encode(), 10
        ),
        "truncated: the OFF header declares 162 vertices and 320 faces (482 lines) "
        "but 472 lines follow it",
    ),
    "lastline.off": (
        lambda: b"OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1",
        "truncated: the last face line lists 2 of its 3 vertex indices",
    ),
    "cut.stl": (
        lambda: trimesh.exchange.stl.export_stl_ascii(_box()).encode()[:-100],
        "truncated: the ASCII STL begins 12 facets but ends 11 ('endfacet')",
    ),
    "quads.ply": (  # binary PLY of quads: the 3-index size estimate cannot see the cut
        lambda: (
            b"ply\nformat binary_little_endian 1.0\nelement vertex 4\nproperty float x\n"
            b"property float y\nproperty float z\nelement face 2\n"
            b"property list uchar int vertex_indices\nend_header\n"
            + np.eye(4, 3, dtype="<f4").tobytes()
            + struct.pack("<Biiii", 4, 0, 1, 2, 3) * 2
        )[:-8],
        "truncated or corrupt: the binary PLY body is not the size its header declares",
    ),
    "cut.gltf": (
        lambda: _box().export(file_type="gltf", embed_buffers=True)["model.gltf"][:-40],
        "truncated or corrupt",
    ),
}


@pytest.mark.parametrize("name", sorted(TRUNCATED))
def test_truncated_files_say_truncated_and_what_was_expected(tmp_path: Path, name: str) -> None:
    data, reason = TRUNCATED[name]
    path = tmp_path / name
    path.write_bytes(data())
    with pytest.raises(MeshError) as info:
        load_mesh(path)
    assert reason in info.value.reason
    assert str(info.value) == f"{path}: {info.value.reason}" and "\n" not in str(info.value)


def test_complete_text_files_still_load(tmp_path: Path) -> None:
    sphere = trimesh.creation.icosphere(2)
    (tmp_path / "a.ply").write_bytes(_ascii_ply(sphere))
    (tmp_path / "a.off").write_text(trimesh.exchange.off.export_off(sphere))
    (tmp_path / "a.stl").write_text(trimesh.exchange.stl.export_stl_ascii(sphere))
    for name in ("a.ply", "a.off", "a.stl"):
        assert _faces(tmp_path / name) == 320, name


def test_no_faces_says_what_the_file_holds(tmp_path: Path) -> None:
    cloud = tmp_path / "scan.ply"
    cloud.write_bytes(
        trimesh.PointCloud(np.random.default_rng(0).random((50, 3))).export(file_type="ply")
    )
    with pytest.raises(MeshError) as info:
        load_mesh(cloud)
    assert info.value.reason == "no faces: a point cloud of 50 points, not a mesh"
    bare = tmp_path / "bare.obj"
    bare.write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\n")
    with pytest.raises(MeshError) as info:
        load_mesh(bare)
    assert info.value.reason in (
        "no faces (3 vertices, no triangles)",
        "no faces: a point cloud of 3 points, not a mesh",
    )
