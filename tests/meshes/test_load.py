"""Robust mesh loading: materials and textures kept, every broken file a one-line MeshError."""

from __future__ import annotations

import pickle
import struct
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import trimesh
from PIL import Image

from xpt.toolkit.meshes.geometry import as_mesh
from xpt.toolkit.meshes.load import LoadedMesh, MeshError, load_mesh, load_object
from xpt.toolkit.meshes.objects import MeshObject

TEXTURE = (np.arange(48, dtype=np.uint8).reshape(4, 4, 3) * 5).astype(np.uint8)

# two quads: one with a plain red material, one textured
OBJ_TWO_MATERIALS = """mtllib model_normalized.mtl
v 0 0 0
v 1 0 0
v 0 1 0
v 1 1 0
v 0 0 1
v 1 0 1
vt 0 0
vt 1 0
vt 0 1
vt 1 1
usemtl red
f 1/1 2/2 3/3
f 2/2 4/4 3/3
usemtl wood
f 1/1 2/2 5/3
f 2/2 6/4 5/3
"""
MTL = """newmtl red
Kd 1 0 0
newmtl wood
Kd 0.5 0.5 0.5
map_Kd ../images/texture0.png
"""


def shapenet_v2_model(folder: Path, texture: bool = True) -> Path:
    """A ShapeNetCore v2 model folder: models/model_normalized.{obj,mtl}, images/texture0.png."""
    (folder / "models").mkdir(parents=True)
    (folder / "models" / "model_normalized.obj").write_text(OBJ_TWO_MATERIALS)
    (folder / "models" / "model_normalized.mtl").write_text(MTL)
    if texture:
        (folder / "images").mkdir()
        Image.fromarray(TEXTURE).save(folder / "images" / "texture0.png")
    return folder / "models" / "model_normalized.obj"


def cube_file(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = trimesh.creation.box().export(file_type=path.suffix[1:])
    path.write_bytes(data if isinstance(data, bytes) else data.encode())
    return path


def total_faces(loaded: LoadedMesh) -> int:
    return sum(len(g.faces) for g in loaded.scene.geometry.values())


def test_shapenet_obj_keeps_materials_and_texture(tmp_path: Path) -> None:
    path = shapenet_v2_model(tmp_path / "1a2b")
    loaded = load_mesh(path)
    assert loaded.warnings == []
    assert isinstance(loaded.scene, trimesh.Scene)
    assert len(loaded.scene.geometry) == 2
    by_image = {g.visual.material.image is not None: g for g in loaded.scene.geometry.values()}
    textured, plain = by_image[True], by_image[False]
    assert np.array_equal(np.asarray(textured.visual.material.image.convert("RGB")), TEXTURE)
    assert textured.visual.uv.shape == (len(textured.vertices), 2)
    assert list(plain.visual.material.diffuse) == [255, 0, 0, 255]
    assert total_faces(loaded) == 4


def test_missing_texture_loads_with_warning(tmp_path: Path) -> None:
    path = shapenet_v2_model(tmp_path / "1a2b", texture=False)
    loaded = load_mesh(path)
    assert loaded.warnings == [
        "texture '../images/texture0.png' (map_Kd in model_normalized.mtl) not found (tried "
        "../images/texture0.png, images/texture0.png, texture0.png from the mesh's folder, "
        "any letter case)"
    ]
    assert total_faces(loaded) == 4
    colours = sorted(tuple(g.visual.material.diffuse) for g in loaded.scene.geometry.values())
    assert colours == [(128, 128, 128, 255), (255, 0, 0, 255)]
    assert all(g.visual.material.image is None for g in loaded.scene.geometry.values())


def test_missing_material_library_loads_with_warning(tmp_path: Path) -> None:
    path = shapenet_v2_model(tmp_path / "m")
    (path.parent / "model_normalized.mtl").unlink()
    loaded = load_mesh(path)
    assert loaded.warnings == [
        "material library 'model_normalized.mtl' not found "
        "(tried model_normalized.mtl from the mesh's folder, any letter case)"
    ]
    assert total_faces(loaded) == 4


def test_texture_outside_asset_root_is_not_read(tmp_path: Path) -> None:
    path = shapenet_v2_model(tmp_path / "a" / "m")
    loaded = load_mesh(path, asset_root=path.parent)
    assert loaded.warnings == [
        "texture '../images/texture0.png' (map_Kd in model_normalized.mtl) not found (tried "
        f"../images/texture0.png (outside {path.parent.resolve()}), images/texture0.png, "
        "texture0.png from the mesh's folder, any letter case)"
    ]
    assert all(g.visual.material.image is None for g in loaded.scene.geometry.values())


CUBE_WRITERS = {
    "c.off": lambda box: box.export(file_type="off").encode(),
    "c.ply": lambda box: box.export(file_type="ply"),
    "ascii.ply": lambda box: trimesh.exchange.ply.export_ply(box, encoding="ascii"),
    "c.stl": lambda box: box.export(file_type="stl"),
    "ascii.stl": lambda box: trimesh.exchange.stl.export_stl_ascii(box).encode(),
    "c.glb": lambda box: box.export(file_type="glb"),
    "c.obj": lambda box: box.export(file_type="obj").encode(),
}


@pytest.mark.parametrize("name", sorted(CUBE_WRITERS))
def test_each_format_loads_a_cube(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(CUBE_WRITERS[name](trimesh.creation.box()))
    loaded = load_mesh(path)
    assert total_faces(loaded) == 12
    bounds = loaded.scene.bounds
    assert np.allclose(bounds, [[-0.5] * 3, [0.5] * 3])


def test_gltf_with_external_buffers(tmp_path: Path) -> None:
    files = trimesh.creation.box().export(file_type="gltf")
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    assert total_faces(load_mesh(tmp_path / "model.gltf")) == 12
    for name in files:
        if name.endswith(".bin"):
            (tmp_path / name).unlink()
    with pytest.raises(MeshError, match="cannot parse glTF: FileNotFoundError"):
        load_mesh(tmp_path / "model.gltf")


def test_modelnet_off_without_line_break_after_magic(tmp_path: Path) -> None:
    # some ModelNet files put the counts right after the magic: "OFF8 12 0"
    off = tmp_path / "m.off"
    off.write_text(trimesh.exchange.off.export_off(trimesh.creation.box()).replace("OFF\n", "OFF"))
    assert off.read_text().startswith("OFF8 12 0\n")
    assert total_faces(load_mesh(off)) == 12


def test_latin1_obj_loads_with_warning(tmp_path: Path) -> None:
    path = tmp_path / "l.obj"
    path.write_bytes(b"# caf\xe9\nv 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n")
    loaded = load_mesh(path)
    assert loaded.warnings == ["not UTF-8 text; read as Latin-1"]
    assert total_faces(loaded) == 1


def _ply_header(fmt: str, vertices: int, faces: int) -> bytes:
    return (
        f"ply\nformat {fmt} 1.0\nelement vertex {vertices}\nproperty float x\n"
        f"property float y\nproperty float z\nelement face {faces}\n"
        "property list uchar int vertex_indices\nend_header\n"
    ).encode()


def _truncated_binary_ply() -> bytes:
    vertices = np.zeros((3, 3), "<f4").tobytes()
    faces = struct.pack("<Biii", 3, 0, 1, 2)
    return _ply_header("binary_little_endian", 3, 1) + vertices + faces[:-2]


def _truncated_binary_stl() -> bytes:
    data = trimesh.creation.box().export(file_type="stl")
    return data[:-30]


def _truncated_glb() -> bytes:
    return trimesh.creation.box().export(file_type="glb")[:-16]


BAD = {
    "empty.obj": (b"", "empty file (0 bytes)"),
    "garbage.obj": (bytes(range(256)) * 4, "binary data in a text OBJ file"),
    "words.obj": (b"this is not a mesh\nat all\n", "no faces"),
    "points.obj": (b"v 0 0 0\nv 1 0 0\nv 0 1 0\n", "no faces"),
    "nan.obj": (b"v 0 0 0\nv 1 0 0\nv nan 1 0\nf 1 2 3\n", "non-finite vertex coordinates"),
    "inf.off": (b"OFF\n3 1 0\n0 0 0\n1 0 0\n0 inf 0\n3 0 1 2\n", "non-finite vertex"),
    "index.obj": (
        b"v 0 0 0\nv 1 0 0\nf 1 2 9\n",
        "cannot parse OBJ: a face references a vertex that does not exist",
    ),
    "absurd.ply": (
        _ply_header("binary_little_endian", 10**12, 1),
        "declares vertex: 1,000,000,000,000, face: 1",
    ),
    "absurd_ascii.ply": (
        _ply_header("ascii", 3, 10**12) + b"0 0 0\n",
        "face: 1,000,000,000,000 elements",
    ),
    "truncated.ply": (_truncated_binary_ply(), "truncated or corrupt"),
    "noheader.ply": (b"ply\nformat ascii 1.0\nelement vertex 3\n", "no end_header"),
    "absurd.off": (b"OFF\n1000000000000 1 0\n0 0 0\n", "declares 1,000,000,000,000 vertices"),
    "notoff.off": (b"PLY\n3 1 0\n", "not an OFF file"),
    "truncated.stl": (_truncated_binary_stl(), "binary STL header declares 12 triangles"),
    "short.stl": (b"\x01\x02\x03", "shorter than its 84-byte header"),
    "truncated.glb": (_truncated_glb(), "truncated"),
    "mesh.xyz": (b"0 0 0\n", "unsupported mesh type '.xyz'"),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_file_is_a_one_line_error_naming_the_file(tmp_path: Path, name: str) -> None:
    data, reason = BAD[name]
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(MeshError) as info:
        load_mesh(path)
    error = info.value
    assert error.path == path
    assert reason in error.reason
    assert str(error) == f"{path}: {error.reason}"
    assert "\n" not in str(error)


def test_missing_file_and_size_limit(tmp_path: Path) -> None:
    with pytest.raises(MeshError, match="file not found"):
        load_mesh(tmp_path / "nothing.obj")
    path = cube_file(tmp_path / "c.ply")
    size = path.stat().st_size
    with pytest.raises(MeshError, match=f"file is {size:,} bytes, over the 100-byte limit"):
        load_mesh(path, max_bytes=100)


def test_absurd_header_does_not_allocate(tmp_path: Path) -> None:
    path = tmp_path / "huge.ply"
    path.write_bytes(_ply_header("binary_little_endian", 10**12, 10**12) + b"\0" * 1000)
    tracemalloc.start()
    try:
        with pytest.raises(MeshError, match="at least 25,000,000,000,000 bytes"):
            load_mesh(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000


def test_mesh_error_pickles_for_worker_processes() -> None:
    error = pickle.loads(pickle.dumps(MeshError("/a/b.obj", "no faces")))
    assert (error.path, error.reason, str(error)) == ("/a/b.obj", "no faces", "/a/b.obj: no faces")


def test_load_object_from_path_and_without_path(tmp_path: Path) -> None:
    path = cube_file(tmp_path / "chair" / "c.off")
    obj = MeshObject("folder", "chair", "chair", "c", label=0, path=path)
    assert total_faces(load_object(obj)) == 12
    with pytest.raises(MeshError, match="has no mesh path") as info:
        load_object(MeshObject("folder", "chair", "chair", "x"))
    assert info.value.path == "folder_chair_x"


def test_load_object_procedural_is_deterministic() -> None:
    from xpt.toolkit import procedural

    category = procedural.CATEGORIES[0]
    obj = MeshObject("procedural", procedural.category_id(category), category, "m", seed=7)
    first, second = load_object(obj), load_object(obj)
    assert first.warnings == []
    assert total_faces(first) > 0
    a = as_mesh(first.scene).vertices
    assert np.array_equal(a, as_mesh(second.scene).vertices)
    other = load_object(MeshObject("procedural", obj.category_id, category, "n", seed=8))
    assert not np.array_equal(a, as_mesh(other.scene).vertices)
    with pytest.raises(MeshError, match="without a seed"):
        load_object(MeshObject("procedural", obj.category_id, category, "m"))
