"""Mesh sources on small trees in the real layouts: detection, filters, labels, keys, failures."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
import trimesh

from xpt.toolkit.failures import Failure, FailureLog, read_failures
from xpt.toolkit.meshes.load import MeshError, load_object
from xpt.toolkit.meshes.sources import (
    SourceError,
    Unread,
    detect_layout,
    open_source,
    scan_source,
)

CHAIR, TABLE, ODD = "03001627", "04379243", "02828884"
TRIANGLE_OBJ = "v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n"


def write_mesh(path: Path) -> Path:
    """A unit cube in the format given by ``path``'s suffix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = trimesh.creation.box().export(file_type=path.suffix[1:])
    path.write_bytes(data if isinstance(data, bytes) else data.encode())
    return path


def shapenet_tree(root: Path, version: int, taxonomy: bool) -> Path:
    """Three synsets; the table synset has one model folder whose mesh is missing."""
    models = {CHAIR: ["c2", "c1"], TABLE: ["t1", "t0"], ODD: ["b1"]}
    for synset, ids in models.items():
        for model_id in ids:
            folder = root / synset / model_id
            if version == 2:
                write_mesh(folder / "models" / "model_normalized.obj")
            else:
                write_mesh(folder / "model.obj")
    (root / TABLE / "t9").mkdir()  # a model folder without its mesh file
    (root / "notes").mkdir()  # not a synset: no model inside
    if taxonomy:
        entries = [
            {"synsetId": CHAIR, "name": "chair", "children": [], "numInstances": 2},
            {"synsetId": TABLE, "name": "table,tabular array", "children": []},
        ]
        (root / "taxonomy.json").write_text(json.dumps(entries))
    return root


def modelnet_tree(root: Path) -> Path:
    for cls, train, test in (
        ("chair", ["chair_0001", "chair_0002"], ["chair_0003"]),
        ("airplane", ["airplane_0001"], ["airplane_0002"]),
    ):
        for name in train:
            write_mesh(root / cls / "train" / f"{name}.off")
        for name in test:
            write_mesh(root / cls / "test" / f"{name}.off")
    (root / "chair" / "train" / ".DS_Store").write_bytes(b"\0")
    (root / "README.txt").write_text("ModelNet")
    return root


def test_shapenet_v2_with_taxonomy(tmp_path: Path) -> None:
    root = shapenet_tree(tmp_path / "ShapeNetCore.v2", version=2, taxonomy=True)
    assert detect_layout(root) == "shapenet-v2"
    objects = open_source(root)
    summary = [(o.category_id, o.category_name, o.model_id, o.label) for o in objects]
    assert summary == [
        (ODD, ODD, "b1", 0),  # not in taxonomy.json: the synset id is the name
        (CHAIR, "chair", "c1", 1),
        (CHAIR, "chair", "c2", 1),
        (TABLE, "table", "t0", 2),
        (TABLE, "table", "t1", 2),
        (TABLE, "table", "t9", 2),
    ]
    assert {o.source for o in objects} == {"shapenet-v2"}
    assert {o.split for o in objects} == {None}
    assert objects[1].path == root / CHAIR / "c1" / "models" / "model_normalized.obj"
    assert objects[1].key == f"shapenet-v2_{CHAIR}_c1"
    # the model folder without a mesh is listed, and loading it reports why
    with pytest.raises(MeshError, match="file not found"):
        load_object(objects[-1])
    assert len(load_object(objects[1]).scene.geometry) == 1


def test_shapenet_v1_without_taxonomy(tmp_path: Path) -> None:
    root = shapenet_tree(tmp_path / "v1", version=1, taxonomy=False)
    assert detect_layout(root) == "shapenet-v1"
    objects = open_source(root, categories=[CHAIR])
    assert [(o.source, o.category_name, o.model_id, o.label) for o in objects] == [
        ("shapenet-v1", CHAIR, "c1", 1),
        ("shapenet-v1", CHAIR, "c2", 1),
    ]
    assert objects[0].path == root / CHAIR / "c1" / "model.obj"


def test_category_filter_by_name_and_id_and_limit(tmp_path: Path) -> None:
    root = shapenet_tree(tmp_path / "sn", version=2, taxonomy=True)
    by_name = open_source(root, categories=["table", "Chair"])
    by_id = open_source(root, categories=f"{TABLE},{CHAIR}")
    assert [o.key for o in by_name] == [o.key for o in by_id]
    assert [o.model_id for o in by_name] == ["c1", "c2", "t0", "t1", "t9"]
    # labels do not depend on the filter
    assert {o.category_id: o.label for o in by_name} == {CHAIR: 1, TABLE: 2}
    limited = open_source(root, categories=["table", "chair"], limit=3)
    assert [o.model_id for o in limited] == ["c1", "c2", "t0"]
    with pytest.raises(SourceError, match=r"unknown categories sofa \(available: 02828884"):
        open_source(root, categories=["sofa"])
    with pytest.raises(SourceError, match="has no splits"):
        open_source(root, split="train")
    with pytest.raises(SourceError, match="limit must be at least 1"):
        open_source(root, limit=0)


def test_a_single_synset_folder_keeps_the_dataset_labels(tmp_path: Path) -> None:
    root = shapenet_tree(tmp_path / "sn", version=2, taxonomy=True)
    assert detect_layout(root / TABLE) == "shapenet-v2"
    objects = open_source(root / TABLE)
    assert [(o.category_name, o.model_id, o.label) for o in objects] == [
        ("table", "t0", 2),
        ("table", "t1", 2),
        ("table", "t9", 2),
    ]


def test_modelnet_with_splits(tmp_path: Path) -> None:
    root = modelnet_tree(tmp_path / "ModelNet10")
    assert detect_layout(root) == "modelnet"
    objects = open_source(root)
    assert [(o.category_id, o.model_id, o.split, o.label) for o in objects] == [
        ("airplane", "airplane_0001", "train", 0),
        ("airplane", "airplane_0002", "test", 0),
        ("chair", "chair_0001", "train", 1),
        ("chair", "chair_0002", "train", 1),
        ("chair", "chair_0003", "test", 1),
    ]
    assert objects[2].path == root / "chair" / "train" / "chair_0001.off"
    test = open_source(root, split="test")
    assert [o.model_id for o in test] == ["airplane_0002", "chair_0003"]
    assert [o.model_id for o in open_source(root, split="train", categories=["chair"])] == [
        "chair_0001",
        "chair_0002",
    ]
    with pytest.raises(SourceError, match=r"no split 'val' \(available: test, train\)"):
        open_source(root, split="val")
    assert [o.model_id for o in open_source(root / "chair", split="test")] == ["chair_0003"]


def test_folder_of_meshes(tmp_path: Path) -> None:
    root = tmp_path / "mine"
    for rel in (
        "mug/a.obj",
        "mug/b.off",
        "mug/c.ply",
        "vase/d.stl",
        "vase/e.glb",
        "vase/old/e.glb",
        "lamp/e.glb",
        ".hidden/x.obj",
    ):
        write_mesh(root / rel)
    (root / "vase" / "notes.txt").write_text("not a mesh")
    assert detect_layout(root) == "folder"
    objects = open_source(root)
    assert [(o.category_id, o.model_id, o.label) for o in objects] == [
        ("lamp", "e", 0),
        ("mug", "a", 1),
        ("mug", "b", 1),
        ("mug", "c", 1),
        ("old", "e", 2),
        ("vase", "d", 3),
        ("vase", "e", 3),
    ]
    assert {o.source for o in objects} == {"folder"}
    for obj in objects:
        assert len(load_object(obj).scene.geometry) >= 1
    # a single mesh file is a one-object folder source
    single = open_source(root / "mug" / "b.off")
    assert [(o.category_id, o.model_id, o.label) for o in single] == [("mug", "b", 0)]


def test_folder_duplicate_stems_get_path_ids(tmp_path: Path) -> None:
    root = tmp_path / "dup"
    for rel in ("x/chair/a.obj", "y/chair/a.obj", "y/chair/a.ply"):
        write_mesh(root / rel)
    objects = open_source(root)
    assert [o.model_id for o in objects] == ["x-chair-a-obj", "y-chair-a-obj", "y-chair-a-ply"]
    assert len({o.key for o in objects}) == 3


def test_keys_are_stable_unique_and_dot_free(tmp_path: Path) -> None:
    root = modelnet_tree(tmp_path / "mn")
    first = [o.key for o in open_source(root)]
    assert first == [o.key for o in open_source(str(root))]
    assert len(set(first)) == len(first)
    assert all("." not in k and "/" not in k for k in first)


@pytest.mark.parametrize(
    "name, message",
    [
        ("absent", "no such file or folder"),
        (".", "no mesh files found"),
        ("sub/readme.md", "not a mesh file"),
    ],
)
def test_bad_source_paths(tmp_path: Path, name: str, message: str) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "readme.md").write_text("no meshes here")
    path = tmp_path / name
    with pytest.raises(SourceError, match=f"{path}: {message}"):
        detect_layout(path)
    with pytest.raises(SourceError, match=message):
        open_source(path)


def test_bad_taxonomy_is_a_clear_error(tmp_path: Path) -> None:
    root = shapenet_tree(tmp_path / "sn", version=2, taxonomy=False)
    (root / "taxonomy.json").write_text("{not json")
    with pytest.raises(SourceError, match="taxonomy.json: cannot read taxonomy"):
        open_source(root)


def test_bad_files_are_reported_and_good_ones_load(tmp_path: Path) -> None:
    """The "none crash the run" contract: iterate, load, record failures, keep going."""
    root = tmp_path / "mixed"
    good = [write_mesh(root / "box" / n) for n in ("a.obj", "b.off", "c.ply", "d.stl", "e.glb")]
    textured = root / "box" / "f.obj"
    textured.write_text("mtllib f.mtl\n" + TRIANGLE_OBJ)
    (root / "box" / "f.mtl").write_text("newmtl m\nKd 1 0 0\nmap_Kd gone.png\n")
    bad = {
        "empty.obj": b"",
        "corrupt.obj": b"\x89garbage\x00\xff" * 20,
        "nan.obj": b"v 0 0 0\nv 1 0 0\nv 0 nan 0\nf 1 2 3\n",
        "absurd.ply": b"ply\nformat binary_little_endian 1.0\nelement vertex 99999999999\n"
        b"property float x\nproperty float y\nproperty float z\nend_header\n",
        "truncated.stl": trimesh.creation.box().export(file_type="stl")[:200],
    }
    for name, data in bad.items():
        (root / "bad" / name).parent.mkdir(parents=True, exist_ok=True)
        (root / "bad" / name).write_bytes(data)

    log = FailureLog(tmp_path / "failures.jsonl")
    loaded, warned = [], {}
    for obj in open_source(root):
        try:
            mesh = load_object(obj)
        except MeshError as error:
            log.record(Failure(obj.key, obj.where, "load", error.reason))
            continue
        loaded.append(obj.path)
        if mesh.warnings:
            warned[obj.path] = mesh.warnings

    assert sorted(loaded) == sorted(good + [textured])
    assert warned == {
        textured: [
            "texture 'gone.png' (map_Kd in f.mtl) not found "
            "(tried gone.png from the mesh's folder, any letter case)"
        ]
    }
    failures = read_failures(log.path)
    assert sorted(Path(f.path).name for f in failures) == sorted(bad)
    assert log.count == len(bad)
    assert all(f.stage == "load" and f.reason and "\n" not in f.reason for f in failures)


def test_procedural_source() -> None:
    from xpt.toolkit import procedural

    names = list(procedural.CATEGORIES[:2])
    objects = open_source("procedural", categories=names, per_category=2, seed=3)
    assert len(objects) == 4
    assert {o.source for o in objects} == {"procedural"}
    assert {o.category_name for o in objects} == set(names)
    assert [o.key for o in objects] == [
        o.key for o in open_source("procedural", categories=names, per_category=2, seed=3)
    ]
    by_id = open_source(
        "procedural", categories=[procedural.category_id(names[0])], per_category=2, seed=3
    )
    assert [o.key for o in by_id] == [o.key for o in objects if o.category_name == names[0]]
    assert len(open_source("procedural", per_category=1, limit=3)) == 3
    evaluation = open_source("procedural-eval", per_category=1)
    assert {o.source for o in evaluation} == {"procedural-eval"}
    assert set(procedural.EVAL_ONLY_CATEGORIES) <= {o.category_name for o in evaluation}
    with pytest.raises(SourceError, match="unknown categories no-such-thing"):
        open_source("procedural", categories=["no-such-thing"])


@pytest.mark.parametrize(
    "stray, layout",
    [
        ("a/b/model.obj", "shapenet-v1"),
        ("a/b/models/model_normalized.obj", "shapenet-v2"),
        ("a/train/x.off", "modelnet"),
    ],
)
def test_one_dataset_like_file_does_not_hide_the_other_meshes(
    tmp_path: Path, stray: str, layout: str
) -> None:
    root = tmp_path / "mine"
    others = ["chair/c1.obj", "chair/c2.off", "lamp/l1.ply", "lamp/deep/l2.stl", "top.glb"]
    for rel in [*others, stray]:
        write_mesh(root / rel)
    found = scan_source(root)
    assert found.layout == detect_layout(root) == "folder"
    assert sorted(o.path.relative_to(root).as_posix() for o in found.objects) == sorted(
        [*others, stray]
    )
    assert found.unread == []
    assert f"1 of 6 mesh files are in the {layout} layout" in found.note
    assert f"--layout {layout}" in found.note
    # forcing the layout reads its one file and names every other as not read
    forced = scan_source(root, layout=layout)
    assert forced.layout == layout
    assert [o.path.relative_to(root).as_posix() for o in forced.objects] == [stray]
    assert [u.id for u in forced.unread] == sorted(others)
    assert all(f"not in the {layout} layout" in u.reason for u in forced.unread)
    assert [f.stage for f in map(Unread.failure, forced.unread)] == ["source"] * 5
    # a real dataset is still detected as such, and forcing 'folder' reads every file
    shapenet = shapenet_tree(tmp_path / "sn", version=1, taxonomy=False)
    assert detect_layout(shapenet) == "shapenet-v1"
    assert len(open_source(shapenet, layout="folder")) == 5
    with pytest.raises(SourceError, match="no modelnet files found"):
        open_source(shapenet, layout="modelnet")


def test_broken_links_and_folders_named_like_meshes_are_unread(tmp_path: Path) -> None:
    root = modelnet_tree(tmp_path / "mn")
    (root / "chair" / "train" / "gone.off").symlink_to(tmp_path / "nowhere.off")
    (root / "chair" / "test" / "odd.off").mkdir()
    (tmp_path / "elsewhere").mkdir()
    (root / "airplane" / "test" / "link.off").symlink_to(tmp_path / "elsewhere")
    (root / "airplane" / "loop").symlink_to(root)  # followed once, never round and round
    found = scan_source(root)
    assert found.layout == "modelnet" and len(found.objects) == 5
    assert [(u.id, u.reason) for u in found.unread] == [
        ("airplane/test/link.off", "a folder named like a mesh file, not a mesh file"),
        ("chair/test/odd.off", "a folder named like a mesh file, not a mesh file"),
        ("chair/train/gone.off", "broken symbolic link (its target does not exist)"),
    ]
    # nothing to read but broken entries: one clear error that says so
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "a.obj").symlink_to(tmp_path / "missing.obj")
    with pytest.raises(SourceError, match="no mesh files found.*1 entries named like meshes"):
        open_source(empty)


def test_keys_of_any_file_name_are_unique_safe_and_stable(tmp_path: Path) -> None:
    root = tmp_path / "names"
    names = [
        "椅子.obj",
        "桌子.obj",
        "chair ü.obj",
        "chair ä.obj",
        "a b.obj",
        "a_b.obj",
        "plain.obj",
    ]
    for name in names:
        (root / "stuff").mkdir(parents=True, exist_ok=True)
        (root / "stuff" / name).write_text(TRIANGLE_OBJ)
    # a name that is not valid UTF-8, as another tool may leave it
    raw = os.fsencode(root / "stuff") + b"/caf\xe9.obj"
    with open(raw, "wb") as handle:
        handle.write(TRIANGLE_OBJ.encode())
    objects = open_source(root)
    keys = {o.path.name: o.key for o in objects}
    assert len(keys) == len(set(keys.values())) == 8
    assert all(re.fullmatch(r"[A-Za-z0-9_-]+", key) for key in keys.values())
    assert keys["plain.obj"] == "folder_stuff_plain"  # ASCII-safe names keep today's keys
    assert re.fullmatch(r"folder_stuff_chair_u-[0-9a-f]{8}", keys["chair ü.obj"])
    assert re.fullmatch(r"folder_stuff_chair_a-[0-9a-f]{8}", keys["chair ä.obj"])
    assert re.fullmatch(r"folder_stuff__-[0-9a-f]{8}", keys["椅子.obj"])
    assert keys["a b.obj"] != keys["a_b.obj"]  # the colliding pair, and only it, gets hashes
    assert re.fullmatch(r"folder_stuff_stuff-a_b-obj-[0-9a-f]{8}", keys["a b.obj"])
    assert keys == {o.path.name: o.key for o in open_source(str(root))}
    odd = next(o for o in objects if o.path.name == os.fsdecode(b"caf\xe9.obj"))
    assert odd.model_id == "caf\\xe9" and odd.where.endswith("stuff/caf\\xe9.obj")
    assert len(load_object(odd).scene.geometry) == 1
    # its failure record is valid UTF-8 JSON without lone surrogates
    log = FailureLog(tmp_path / "failures.jsonl")
    log.record(Failure(odd.key, str(odd.path), "load", f"cannot read {odd.path}"))
    line = (tmp_path / "failures.jsonl").read_bytes().decode("utf-8", errors="strict")
    record = json.loads(line)
    assert record["path"].endswith("caf\\xe9.obj") and "\\ud" not in line
    assert record["reason"].encode("utf-8")


def test_a_linked_folder_is_read_once_and_split_folders_are_not_categories(
    tmp_path: Path,
) -> None:
    root = tmp_path / "mine"
    for rel in ("chairs/a.off", "chairs/train/ball.off", "chairs/test/cup.obj", "tables/t.obj"):
        write_mesh(root / rel)
    os.symlink(root / "tables", root / "a-link")  # sorts before "tables": kept is still tables/
    os.symlink("a.off", root / "chairs" / "same.off")  # a linked file, too
    found = scan_source(root)
    assert [(o.category_id, o.model_id, o.split) for o in found.objects] == [
        ("chairs", "a", None),
        ("chairs", "ball", "train"),
        ("chairs", "cup", "test"),
        ("tables", "t", None),
    ]
    assert [o.path.relative_to(root).as_posix() for o in found.objects][-1] == "tables/t.obj"
    assert [(u.id, u.reason) for u in found.unread] == [
        (
            "a-link/t.obj",
            "duplicate of tables/t.obj (the same file, reached through a symbolic link)",
        ),
        (
            "chairs/same.off",
            "duplicate of chairs/a.off (the same file, reached through a symbolic link)",
        ),
    ]
    record = found.unread[0].failure()
    assert (record.id, record.stage) == ("a-link/t.obj", "source")
    assert record.path.endswith("mine/a-link/t.obj")
    assert found.note.splitlines()[-1] == (
        "2 mesh files are in a folder named like a split (e.g. chairs/test/cup.obj): "
        "category = the folder above (chairs), split = the folder's name (test)"
    )
    assert [o.model_id for o in open_source(root, split="train")] == ["ball"]
    # a dataset layout reads each file once too: a linked class folder of ModelNet
    modelnet = modelnet_tree(tmp_path / "mn")
    os.symlink(modelnet / "chair", modelnet / "armchair")
    linked = scan_source(modelnet)
    assert linked.layout == "modelnet" and {o.category_id for o in linked.objects} == {
        "airplane",
        "chair",
    }
    assert len(linked.objects) == 5 and len(linked.unread) == 3
    assert {(o.category_id, o.label) for o in linked.objects} == {("airplane", 0), ("chair", 1)}
    assert {u.id.split("/")[0] for u in linked.unread} == {"armchair"}
