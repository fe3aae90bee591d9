"""Up axis: sources that are not +Y up are rotated upright when loaded, and say so."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import trimesh

from xpt.toolkit.meshes.geometry import UP_AXES, as_mesh, check_up_axis, up_rotation
from xpt.toolkit.meshes.load import MeshError, check_source_up_axis, load_mesh, load_object
from xpt.toolkit.meshes.objects import MeshObject
from xpt.toolkit.meshes.sources import scan_source

DIRECTIONS = {
    "+X": (1, 0, 0),
    "-X": (-1, 0, 0),
    "+Y": (0, 1, 0),
    "-Y": (0, -1, 0),
    "+Z": (0, 0, 1),
    "-Z": (0, 0, -1),
}


def mushroom_z_up() -> trimesh.Trimesh:
    """A thin stem along +Z with a wide cap at its top (z = 1): Z-up, top distinguishable."""
    stem = trimesh.creation.box(extents=(0.2, 0.2, 2.0))
    cap = trimesh.creation.box(extents=(1.0, 1.0, 0.2))
    cap.apply_translation((0.0, 0.0, 1.0))
    return trimesh.util.concatenate([stem, cap])


@pytest.mark.parametrize("axis", UP_AXES)
def test_up_rotation_is_a_proper_rotation_taking_the_axis_to_plus_y(axis: str) -> None:
    rotation = up_rotation(axis)
    assert np.allclose(rotation[:3, :3] @ DIRECTIONS[axis], (0, 1, 0))
    assert np.allclose(rotation[:3, :3] @ rotation[:3, :3].T, np.eye(3))
    assert np.isclose(np.linalg.det(rotation[:3, :3]), 1.0)
    assert np.allclose(rotation[3], (0, 0, 0, 1)) and np.allclose(rotation[:3, 3], 0)


def test_z_up_front_becomes_gltf_front() -> None:
    # Blender/CAD: Z up, the front faces -Y; glTF/xpt: Y up, the front faces +Z
    assert np.allclose(up_rotation("+Z")[:3, :3] @ (0, -1, 0), (0, 0, 1))


def test_bad_up_axis_names_the_choices() -> None:
    with pytest.raises(ValueError, match=r"up axis must be one of auto, \+Y, .*got 'z'"):
        check_up_axis("z")
    with pytest.raises(ValueError, match="procedural library is generated"):
        check_source_up_axis("procedural", "+Z")
    check_source_up_axis("procedural", "+Y")
    check_source_up_axis("/data/ModelNet40", "-X")


def test_z_up_off_loads_upright_with_its_top_at_plus_y(tmp_path: Path) -> None:
    path = tmp_path / "m.off"
    path.write_text(trimesh.exchange.off.export_off(mushroom_z_up()))
    loaded = load_mesh(path, up_axis="+Z")
    assert loaded.source_up_axis == "+Z"
    vertices = as_mesh(loaded.scene).vertices
    assert np.allclose(vertices.max(axis=0) - vertices.min(axis=0), (1.0, 2.1, 1.0))
    top = vertices[vertices[:, 1] > 0.95]
    assert np.allclose(np.abs(top[:, [0, 2]]).max(axis=0), 0.5)  # the cap is at +Y
    assert load_mesh(path).source_up_axis == "+Y"
    assert np.allclose(load_mesh(path).scene.extents, (1.0, 1.0, 2.1))


def _object(source: str, path: Path, split: str | None = None) -> MeshObject:
    return MeshObject(source, "pole", "pole", path.stem, label=0, path=path, split=split)


def test_each_source_has_its_default_and_an_explicit_axis_wins(tmp_path: Path) -> None:
    off = tmp_path / "pole" / "train" / "pole_0001.off"
    off.parent.mkdir(parents=True)
    off.write_text(trimesh.exchange.off.export_off(mushroom_z_up()))
    modelnet = load_object(_object("modelnet", off, "train"))
    assert modelnet.source_up_axis == "+Z"
    assert np.allclose(modelnet.scene.extents, (1.0, 2.1, 1.0))
    obj = tmp_path / "pole" / "pole.obj"
    obj.write_text(trimesh.exchange.obj.export_obj(mushroom_z_up()))
    folder = load_object(_object("folder", obj))  # OBJ has no convention: the folder's +Y
    assert folder.source_up_axis == "+Y"
    assert np.allclose(folder.scene.extents, (1.0, 1.0, 2.1))
    told = load_object(_object("folder", obj), up_axis="+Z")
    assert told.source_up_axis == "+Z"
    assert np.allclose(told.scene.extents, (1.0, 2.1, 1.0))
    assert np.allclose(load_object(_object("modelnet", off), up_axis="+Y").scene.extents[1], 1.0)


def test_gltf_is_y_up_by_its_spec_and_never_rotated(tmp_path: Path) -> None:
    path = tmp_path / "pole.glb"
    path.write_bytes(mushroom_z_up().export(file_type="glb"))
    loaded = load_object(_object("folder", path), up_axis="+Z")
    assert loaded.source_up_axis == "+Y"
    assert np.allclose(loaded.scene.extents, (1.0, 1.0, 2.1))


def test_procedural_objects_refuse_another_up_axis() -> None:
    obj = MeshObject("procedural", "p", "chair", "m", seed=1)
    assert load_object(obj, up_axis="+Y").source_up_axis == "+Y"
    with pytest.raises(MeshError, match="generated \\+Y up"):
        load_object(obj, up_axis="+Z")


def tall_box_triangles() -> np.ndarray:
    """(12, 3, 3) float: a 0.4 x 0.6 x 2 box standing on z = 0, outward-facing, Z up."""
    box = trimesh.creation.box(extents=(0.4, 0.6, 2.0))
    box.apply_translation((0.0, 0.0, 1.0))
    return box.triangles


def test_stl_and_off_in_a_plain_folder_are_read_z_up_by_their_convention(
    tmp_path: Path, write_cad_stl
) -> None:
    root = tmp_path / "parts"
    write_cad_stl(root / "brackets" / "tall.stl", tall_box_triangles())
    (root / "scans" / "pole.off").parent.mkdir(parents=True)
    (root / "scans" / "pole.off").write_text(trimesh.exchange.off.export_off(mushroom_z_up()))
    found = scan_source(root)
    assert found.layout == "folder" and [o.path.suffix for o in found.objects] == [".stl", ".off"]
    stl, off = (load_object(obj) for obj in found.objects)
    assert (stl.source_up_axis, off.source_up_axis) == ("+Z", "+Z")
    assert np.allclose(stl.scene.extents, (0.4, 2.0, 0.6))  # the tall axis is +Y
    assert np.allclose(stl.scene.bounds[:, 1], (0.0, 2.0))  # standing on its base, not upside down
    assert np.allclose(off.scene.extents, (1.0, 2.1, 1.0))
    # --up-axis +Y keeps them as stored
    kept = [load_object(obj, up_axis="+Y") for obj in found.objects]
    assert [k.source_up_axis for k in kept] == ["+Y", "+Y"]
    assert np.allclose(kept[0].scene.extents, (0.4, 0.6, 2.0))
    assert np.allclose(kept[1].scene.extents, (1.0, 1.0, 2.1))
