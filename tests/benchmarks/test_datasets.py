"""Evaluation datasets, read from files written the way other tools write them.

ModelNet40 and ScanObjectNN files are made here with h5py directly, in their published
layouts (small: 64 or 32 points a cloud); shard sets with xpt's own shard writer.
"""

from __future__ import annotations

import functools
import json
import shutil
import sys
import tarfile
import types
import zlib
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pytest

from xpt.benchmarks import datasets
from xpt.benchmarks.datasets import (
    DATASETS,
    SCANOBJECTNN_CLASSES,
    DatasetError,
    default_cache_dir,
    load_dataset,
    load_h5_folder,
    load_modelnet40,
    load_procedural,
    load_procedural_scan,
    load_scanobjectnn,
    load_shards,
)
from xpt.toolkit.evalset import normalize_unit_sphere, read_h5_split, write_eval_set
from xpt.toolkit.shards.manifest import make_manifest, write_manifest
from xpt.toolkit.shards.schema import Sample, encode_sample
from xpt.toolkit.shards.writer import ShardWriter

# ---------------------------------------------------------------- ModelNet40 layout

MODELNET = "modelnet40_ply_hdf5_2048"
CLASSES = ("airplane", "bathtub", "bed")
# file -> labels; each file's clouds come from _clouds(file)
MODELNET_FILES = {
    "ply_data_train0.h5": [0, 1, 2, 0],
    "ply_data_train1.h5": [1, 2],
    "ply_data_test0.h5": [2, 0, 1],
}


def _clouds(tag: str, n: int, points: int = 64) -> np.ndarray:
    """(n, points, 3) float32 clouds, a fixed function of ``tag``."""
    rng = np.random.default_rng(zlib.crc32(tag.encode()))
    return rng.normal(size=(n, points, 3)).astype(np.float32)


def _h5(path: Path, **arrays: np.ndarray) -> None:
    with h5py.File(path, "w") as handle:
        for name, values in arrays.items():
            handle.create_dataset(name, data=values)


def _id2file(file: str, labels: list[int]) -> list[str]:
    return [
        f"{CLASSES[label]}/{CLASSES[label]}_{file[:-3]}_{i:04d}.ply"
        for i, label in enumerate(labels)
    ]


def write_modelnet(root: Path) -> Path:
    """A small folder laid out as the published ``modelnet40_ply_hdf5_2048``: data float32
    (n, P, 3), label uint8 (n, 1), normal, faceId, shape_names.txt, *_files.txt with the
    paths the archive was packed with, and id2file json lists."""
    folder = root / MODELNET
    folder.mkdir(parents=True)
    for file, labels in MODELNET_FILES.items():
        n = len(labels)
        _h5(
            folder / file,
            data=_clouds(file, n),
            faceId=np.zeros((n, 64), np.int32),
            label=np.array(labels, np.uint8).reshape(n, 1),
            normal=np.ones((n, 64, 3), np.float32),
        )
        split, index = file[len("ply_data_") : -len("0.h5")], file[-4]
        id2file = folder / f"ply_data_{split}_{index}_id2file.json"
        id2file.write_text(json.dumps(_id2file(file, labels)))
    (folder / "shape_names.txt").write_text("".join(f"{name}\n" for name in CLASSES))
    for split in ("train", "test"):
        lines = [
            f"data/{MODELNET}/{f}\n" for f in MODELNET_FILES if f.startswith(f"ply_data_{split}")
        ]
        (folder / f"{split}_files.txt").write_text("".join(lines))
    return folder


@pytest.fixture
def modelnet(tmp_path: Path) -> Path:
    return write_modelnet(tmp_path)


def test_modelnet40_concatenates_files_in_order_with_labels_names_and_classes(
    modelnet: Path,
) -> None:
    dataset = load_modelnet40(modelnet)
    title = "modelnet40 (non-standard)"  # 3 classes, not the 40 of ModelNet40
    assert (dataset.name, dataset.variant, dataset.title) == ("modelnet40", None, title)
    assert dataset.class_names == CLASSES
    train = np.concatenate([_clouds("ply_data_train0.h5", 4), _clouds("ply_data_train1.h5", 2)])
    assert dataset.train.points.dtype == np.float32 and dataset.train.labels.dtype == np.int64
    np.testing.assert_array_equal(dataset.train.points, train)
    np.testing.assert_array_equal(dataset.train.labels, [0, 1, 2, 0, 1, 2])
    np.testing.assert_array_equal(dataset.test.points, _clouds("ply_data_test0.h5", 3))
    np.testing.assert_array_equal(dataset.test.labels, [2, 0, 1])
    names = _id2file("ply_data_train0.h5", [0, 1, 2, 0]) + _id2file("ply_data_train1.h5", [1, 2])
    assert dataset.train.names == tuple(names)
    assert dataset.test.names == tuple(_id2file("ply_data_test0.h5", [2, 0, 1]))
    assert dataset.files == {
        "train": [str(modelnet / "ply_data_train0.h5"), str(modelnet / "ply_data_train1.h5")],
        "test": [str(modelnet / "ply_data_test0.h5")],
    }
    assert dataset.notes == ()
    described = json.loads(json.dumps(dataset.describe()))
    assert described == {
        "name": "modelnet40",
        "variant": None,
        "title": title,
        "classes": 3,
        "class_names": list(CLASSES),
        "train": 6,
        "test": 3,
        "points_per_cloud": 64,
        "standard": False,
        "files": dataset.files,
        "notes": [],
        "fingerprint": dataset.fingerprint,
    }
    with pytest.raises(ValueError, match="read-only"):
        dataset.train.points[0, 0, 0] = 1.0


def test_fingerprint_is_stable_across_loads_and_changes_with_one_point(modelnet: Path) -> None:
    first = load_modelnet40(modelnet).fingerprint
    assert len(first) == 16 and int(first, 16) >= 0
    assert load_modelnet40(modelnet).fingerprint == first
    assert load_h5_folder(modelnet, name="modelnet40", variant="x").fingerprint == first
    with h5py.File(modelnet / "ply_data_test0.h5", "r+") as handle:
        handle["data"][2, 63, 1] += 1e-3
    assert load_modelnet40(modelnet).fingerprint != first


def test_without_shape_names_classes_are_named_by_label(modelnet: Path) -> None:
    (modelnet / "shape_names.txt").unlink()
    dataset = load_modelnet40(modelnet)
    assert dataset.class_names == ("0", "1", "2")
    assert dataset.notes == ("no shape_names.txt: classes named by their label 0..2",)


def test_without_file_lists_the_numbered_files_are_read(modelnet: Path) -> None:
    for split in ("train", "test"):
        (modelnet / f"{split}_files.txt").unlink()
    dataset = load_modelnet40(modelnet)
    np.testing.assert_array_equal(dataset.train.labels, [0, 1, 2, 0, 1, 2])


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("[not json", "unreadable"),
        (json.dumps(["a/a_0.ply"]), "1 names for 3 shapes"),
        (json.dumps({"0": "a"}), "not a list of names"),
    ],
    ids=["unreadable", "wrong-length", "not-a-list"],
)
def test_unusable_id2file_json_is_ignored_with_a_note(
    modelnet: Path, content: str, problem: str
) -> None:
    (modelnet / "ply_data_test_0_id2file.json").write_text(content)
    dataset = load_modelnet40(modelnet)
    assert dataset.test.names is None and dataset.train.names is not None
    (note,) = dataset.notes
    assert note.startswith("object names ignored:") and "ply_data_test_0_id2file.json" in note
    assert problem in note


def _rewrite(file: str, **arrays: np.ndarray) -> Callable[[Path], None]:
    def mutate(folder: Path) -> None:
        _h5(folder / file, **arrays)

    return mutate


def _truncate(folder: Path) -> None:
    path = folder / "ply_data_train1.h5"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _with_nan(folder: Path) -> None:
    data = _clouds("ply_data_train1.h5", 2)
    data[0, 5, 0], data[1, 0, 2] = np.nan, np.inf
    _h5(folder / "ply_data_train1.h5", data=data, label=np.array([[1], [2]], np.uint8))


def _no_test_files(folder: Path) -> None:
    (folder / "ply_data_test0.h5").unlink()
    (folder / "test_files.txt").unlink()


def _as_file(folder: Path) -> None:
    shutil.rmtree(folder)
    folder.write_text("not a folder")


TWO = _clouds("ply_data_train1.h5", 2)
LABELS = np.array([[1], [2]], np.uint8)
MALFORMED = {
    "missing-folder": (lambda f: shutil.rmtree(f), MODELNET, "no such folder"),
    "file-not-folder": (_as_file, MODELNET, "is a file, expected a folder"),
    "not-hdf5": (
        lambda f: (f / "ply_data_train1.h5").write_text("solid ascii\n"),
        "ply_data_train1.h5",
        "not a readable HDF5 file",
    ),
    "truncated": (_truncate, "ply_data_train1.h5", "not a readable HDF5 file"),
    "listed-file-missing": (
        lambda f: (f / "ply_data_train1.h5").unlink(),
        "ply_data_train1.h5",
        "no such file (listed in train_files.txt)",
    ),
    "no-data": (_rewrite("ply_data_train1.h5", label=LABELS), "ply_data_train1.h5", "no 'data'"),
    "no-label": (_rewrite("ply_data_train1.h5", data=TWO), "ply_data_train1.h5", "no 'label'"),
    "data-not-n-p-3": (
        _rewrite("ply_data_train1.h5", data=TWO[..., :2], label=LABELS),
        "ply_data_train1.h5",
        "'data' has shape (2, 64, 2), expected (n, P, 3)",
    ),
    "label-count": (
        _rewrite("ply_data_train1.h5", data=TWO, label=np.zeros((3, 1), np.uint8)),
        "ply_data_train1.h5",
        "'label' holds 3 labels but 'data' holds 2 clouds",
    ),
    "label-shape": (
        _rewrite("ply_data_train1.h5", data=TWO, label=np.zeros((2, 2), np.uint8)),
        "ply_data_train1.h5",
        "'label' has shape (2, 2), expected (n,) or (n, 1)",
    ),
    "label-not-integer": (
        _rewrite("ply_data_train1.h5", data=TWO, label=np.ones((2, 1), np.float32)),
        "ply_data_train1.h5",
        "'label' has dtype float32, expected integers",
    ),
    "nan-points": (_with_nan, "ply_data_train1.h5", "2 of 2 clouds hold NaN or inf points"),
    "negative-label": (
        _rewrite("ply_data_train1.h5", data=TWO, label=np.array([-1, 2], np.int16)),
        "ply_data_train1.h5",
        "1 labels outside [0, 3) (min -1, max 2; 3 classes from shape_names.txt)",
    ),
    "label-too-large": (
        _rewrite("ply_data_train1.h5", data=TWO, label=np.array([[3], [2]], np.uint8)),
        "ply_data_train1.h5",
        "1 labels outside [0, 3)",
    ),
    "no-test-files": (_no_test_files, MODELNET, "no test files"),
    "zero-shapes": (
        _rewrite(
            "ply_data_test0.h5",
            data=np.zeros((0, 64, 3), np.float32),
            label=np.zeros((0, 1), np.uint8),
        ),
        "ply_data_test0.h5",
        "the test split holds 0 shapes",
    ),
    "point-counts-differ": (
        _rewrite("ply_data_test0.h5", data=_clouds("t", 3, 32), label=np.array([0, 1, 2])),
        "ply_data_test0.h5",
        "clouds of 32 points, but ply_data_train0.h5 has clouds of 64",
    ),
    "class-sets-differ": (
        _rewrite("ply_data_test0.h5", data=_clouds("t", 3), label=np.array([0, 0, 1])),
        MODELNET,
        "train and test hold different classes: only in train: bed; only in test: none",
    ),
    "shape-names-repeated": (
        lambda f: (f / "shape_names.txt").write_text("a\nb\na\n"),
        "shape_names.txt",
        "lists a more than once",
    ),
}


@pytest.mark.parametrize(("mutate", "named", "problem"), MALFORMED.values(), ids=MALFORMED)
def test_malformed_h5_folders_are_refused_in_one_line(
    modelnet: Path, mutate: Callable[[Path], None], named: str, problem: str
) -> None:
    mutate(modelnet)
    with pytest.raises(DatasetError) as caught:
        load_modelnet40(modelnet)
    message = str(caught.value)
    assert "\n" not in message
    assert named in message and problem in message, message


# ---------------------------------------------------------------- ScanObjectNN

SCAN_POINTS = 32


def _scan_arrays(name: str) -> tuple[np.ndarray, np.ndarray]:
    """(15, 32, 3) float32 clouds and int64 labels 0..14 (in a fixed shuffled order)."""
    labels = np.random.default_rng(zlib.crc32(name.encode())).permutation(15)
    return _clouds(name, 15, SCAN_POINTS), labels.astype(np.int64)


def _scan_file(path: Path, key: str, label_dtype: str = "int64", label_shape=(15,)) -> None:
    """A ScanObjectNN h5 file: data (15, 32, 3) float32, label, mask (15, 32)."""
    data, labels = _scan_arrays(key)
    mask = np.ones((15, SCAN_POINTS), np.int64)
    _h5(path, data=data, label=labels.astype(label_dtype).reshape(label_shape), mask=mask)


@pytest.fixture
def h5_files(tmp_path: Path) -> Path:
    """ScanObjectNN's ``h5_files``: main_split (plain and PB_T50_RS files) and main_split_nobg."""
    root = tmp_path / "h5_files"
    for folder, suffixes in (
        ("main_split", ("", "_augmentedrot_scale75")),
        ("main_split_nobg", ("",)),
    ):
        (root / folder).mkdir(parents=True)
        for prefix in ("training", "test"):
            for suffix in suffixes:
                name = f"{prefix}_objectdataset{suffix}.h5"
                _scan_file(root / folder / name, f"{folder}/{name}")
    return root


@pytest.mark.parametrize(
    ("folder", "variant", "suffix"),
    [
        ("main_split", "OBJ_BG", ""),
        ("main_split", "PB_T50_RS", "_augmentedrot_scale75"),
        ("main_split_nobg", None, ""),
        ("main_split_nobg", "OBJ_ONLY", ""),
    ],
)
def test_scanobjectnn_folders_give_their_variant(
    h5_files: Path, folder: str, variant: str | None, suffix: str
) -> None:
    dataset = load_scanobjectnn(h5_files / folder, variant=variant)
    expected = variant or "OBJ_ONLY"
    assert (dataset.name, dataset.variant) == ("scanobjectnn", expected)
    assert dataset.title == f"scanobjectnn ({expected}, non-standard)"  # a few objects only
    assert dataset.class_names == SCANOBJECTNN_CLASSES and len(dataset.class_names) == 15
    for split, prefix in (("train", "training"), ("test", "test")):
        name = f"{prefix}_objectdataset{suffix}.h5"
        points, labels = _scan_arrays(f"{folder}/{name}")
        part = getattr(dataset, split)
        np.testing.assert_array_equal(part.points, points)
        np.testing.assert_array_equal(part.labels, labels)
        assert part.labels.dtype == np.int64 and part.names is None
        assert dataset.files[split] == [str(h5_files / folder / name)]


def test_scanobjectnn_explicit_files(h5_files: Path, tmp_path: Path) -> None:
    nobg = h5_files / "main_split_nobg"
    dataset = load_scanobjectnn(
        train=nobg / "training_objectdataset.h5", test=nobg / "test_objectdataset.h5"
    )
    assert dataset.variant == "OBJ_ONLY"
    # files elsewhere, label (n, 1) int32: the variant has to be given
    elsewhere = tmp_path / "downloads"
    elsewhere.mkdir()
    for name in ("train.h5", "test.h5"):
        _scan_file(elsewhere / name, name, "int32", (15, 1))
    dataset = load_dataset(
        "scanobjectnn", train=elsewhere / "train.h5", test=elsewhere / "test.h5", variant="OBJ_BG"
    )
    assert dataset.variant == "OBJ_BG"
    np.testing.assert_array_equal(dataset.test.labels, _scan_arrays("test.h5")[1])


def _out_of_range(root: Path) -> dict:
    path = root / "main_split_nobg" / "test_objectdataset.h5"
    data, labels = _scan_arrays("x")
    labels[3] = 15
    _h5(path, data=data, label=labels)
    return {"path": root / "main_split_nobg"}


def _unknown_folder(root: Path) -> dict:
    (root / "mine").mkdir()
    shutil.copy(root / "main_split" / "training_objectdataset.h5", root / "mine" / "train.h5")
    shutil.copy(root / "main_split" / "test_objectdataset.h5", root / "mine" / "test.h5")
    return {"train": root / "mine" / "train.h5", "test": root / "mine" / "test.h5"}


def _missing_test_file(root: Path) -> dict:
    (root / "main_split" / "test_objectdataset.h5").unlink()
    return {"path": root / "main_split", "variant": "OBJ_BG"}


def _empty_folder(root: Path) -> dict:
    (root / "empty").mkdir()
    return {"path": root / "empty"}


SCAN_ERRORS = {
    "both-variants-in-main-split": (
        lambda r: {"path": r / "main_split"},
        "main_split",
        "holds several ScanObjectNN variants: OBJ_BG (training_objectdataset.h5), "
        "PB_T50_RS (training_objectdataset_augmentedrot_scale75.h5); pass the variant",
    ),
    "variant-not-inferable": (
        _unknown_folder,
        "train.h5",
        "cannot tell the ScanObjectNN variant from the folder and file names; pass the variant",
    ),
    "variant-contradicts-folder": (
        lambda r: {"path": r / "main_split_nobg", "variant": "OBJ_BG"},
        "main_split_nobg",
        "OBJ_BG files are in main_split, not main_split_nobg",
    ),
    "variant-contradicts-files": (
        lambda r: {
            "train": r / "main_split_nobg" / "training_objectdataset.h5",
            "test": r / "main_split_nobg" / "test_objectdataset.h5",
            "variant": "PB_T50_RS",
        },
        "training_objectdataset.h5",
        "its folder and name say OBJ_ONLY, not PB_T50_RS",
    ),
    "unknown-variant": (
        lambda r: {"path": r / "main_split", "variant": "PB_T25"},
        "PB_T25",
        "valid: OBJ_BG, OBJ_ONLY, PB_T50_RS",
    ),
    "folder-where-file-expected": (
        lambda r: {"train": r / "main_split", "test": r / "main_split" / "test_objectdataset.h5"},
        "main_split",
        "is a folder, expected an HDF5 file",
    ),
    "missing-test-file": (_missing_test_file, "test_objectdataset.h5", "no such file"),
    "label-out-of-range": (
        _out_of_range,
        "test_objectdataset.h5",
        "1 labels outside [0, 15)",
    ),
    "no-scanobjectnn-files": (_empty_folder, "empty", "no training_objectdataset*.h5"),
}


@pytest.mark.parametrize(("arguments", "named", "problem"), SCAN_ERRORS.values(), ids=SCAN_ERRORS)
def test_scanobjectnn_refusals(
    h5_files: Path, arguments: Callable[[Path], dict], named: str, problem: str
) -> None:
    kwargs = arguments(h5_files)
    with pytest.raises(DatasetError) as caught:
        load_scanobjectnn(kwargs.pop("path", None), **kwargs)
    message = str(caught.value)
    assert "\n" not in message
    assert named in message and problem in message, message


# ---------------------------------------------------------------- shard sets

VIEW = np.zeros((4, 4, 3), np.uint8)
# (category, library label) of each sample; labels 0 and 12 as a chair+cup procedural set has
SHARD_SAMPLES = {
    "train": [("chair", 0), ("cup", 12), ("chair", 0), ("cup", 12), ("cup", 12), ("chair", 0)],
    "val": [("cup", 12), ("chair", 0)],
}


def _shard_points(key: str, count: int = 64) -> np.ndarray:
    """A cloud off-centre and smaller than the unit sphere, so re-normalising shows."""
    return 0.2 * _clouds(key, 1, count)[0] + 0.1


def write_shards(out: Path, change: Callable[[str, dict], None] | None = None) -> Path:
    """A shard set by xpt's own writer: train in shards of 3 samples (the second one's
    points float16), val in one. ``change(key, fields)`` may edit a sample first."""
    infos = {}
    for split, samples in SHARD_SAMPLES.items():
        with ShardWriter(out, split, max_samples=3) as writer:
            for position, (category, label) in enumerate(samples):
                key = f"procedural_{category}_{split}{position}"
                fields = {"points": _shard_points(key), "label": label, "category": category}
                if change is not None:
                    change(key, fields)
                meta = {
                    "source": "procedural",
                    "category_id": category,
                    "category_name": fields["category"],
                    "model_id": f"{split}{position}",
                    "label": fields["label"],
                    "split": split,
                    "cameras": [{}],
                    "normalization": {"centre": [0.0, 0.0, 0.0], "scale": 1.0},
                    "seed": 0,
                    "xpt_version": "test",
                }
                dtype = "float16" if split == "train" and position >= 3 else "float32"
                entries = encode_sample(
                    Sample(key, fields["points"], [VIEW], meta), points_dtype=dtype
                )
                writer.write(entries, position=position, category=category, views=1)
        infos[split] = writer.shards
    categories = {"chair": ("chair", 0), "cup": ("cup", 12)}
    manifest = make_manifest(infos, categories, {}, complete=True, failures=0)
    write_manifest(out, manifest)
    return out


def test_shards_give_train_and_val_normalised_and_renumbered(tmp_path: Path) -> None:
    folder = write_shards(tmp_path / "shards")
    dataset = load_shards(folder)
    assert (dataset.name, dataset.variant, dataset.class_names) == (
        "shards",
        None,
        ("chair", "cup"),
    )
    assert dataset.files == {
        "train": [str(folder / "train-000000.tar"), str(folder / "train-000001.tar")],
        "test": [str(folder / "val-000000.tar")],
    }
    for split, shard_split in (("train", "train"), ("test", "val")):
        part = getattr(dataset, split)
        samples = SHARD_SAMPLES[shard_split]
        keys = [f"procedural_{c}_{shard_split}{i}" for i, (c, _) in enumerate(samples)]
        assert part.names == tuple(keys)
        np.testing.assert_array_equal(part.labels, [int(c == "cup") for c, _ in samples])
        for i, key in enumerate(keys):
            stored = _shard_points(key)
            if shard_split == "train" and i >= 3:
                stored = stored.astype(np.float16)
            expected = normalize_unit_sphere(stored.astype(np.float64))
            np.testing.assert_allclose(part.points[i], expected, atol=1e-6)
    radii = np.linalg.norm(dataset.train.points, axis=2).max(axis=1)
    np.testing.assert_allclose(radii, 1.0, atol=1e-5)
    assert dataset.notes == (
        "test = the shard set's val split",
        "points re-normalised per cloud: centred on the mean, max radius 1 (as ModelNet h5)",
        "shard labels 0..12 renumbered 0..1",
    )


def _set_field(key: str, field: str, value: object) -> Callable[[str, dict], None]:
    def change(sample_key: str, fields: dict) -> None:
        if sample_key == key:
            fields[field] = value

    return change


def _corrupt(folder: Path) -> None:
    path = folder / "train-000001.tar"
    path.write_bytes(b"\x00garbage" * 300)


def _truncate_shard(folder: Path, at_sample: bool) -> None:
    """Cut train-000001.tar inside a member, or where its second sample starts (a tar
    reader sees a valid shorter archive there)."""
    path = folder / "train-000001.tar"
    with tarfile.open(path) as tar:
        members = tar.getmembers()
    cut = members[3].offset if at_sample else members[1].offset_data + 10
    path.write_bytes(path.read_bytes()[:cut])


SHARD_ERRORS = {
    "label-none": (
        _set_field("procedural_chair_val1", "label", None),
        None,
        "val-000000.tar",
        "sample procedural_chair_val1: no label",
    ),
    "point-counts-differ": (
        _set_field("procedural_chair_train5", "points", _shard_points("p", 32)),
        None,
        "train-000001.tar",
        "sample procedural_chair_train5 has 32 points, but sample procedural_chair_train0 "
        "in train-000000.tar has 64",
    ),
    "label-named-twice": (
        _set_field("procedural_cup_val0", "category", "mug"),
        None,
        "val-000000.tar",
        "label 12 is 'mug', but 'cup' for sample procedural_cup_train1",
    ),
    "corrupt-tar": (None, _corrupt, "train-000001.tar", "corrupt shard"),
    "truncated-in-a-member": (
        None,
        functools.partial(_truncate_shard, at_sample=False),
        "train-000001.tar",
        "corrupt shard: unexpected end of data",
    ),
    "truncated-between-samples": (
        None,
        functools.partial(_truncate_shard, at_sample=True),
        "train-000001.tar",
        "holds 1 samples, the manifest says 3",
    ),
    "no-manifest": (
        None,
        lambda f: (f / "manifest.json").unlink(),
        "manifest.json",
        "no manifest",
    ),
}


@pytest.mark.parametrize(
    ("change", "damage", "named", "problem"), SHARD_ERRORS.values(), ids=SHARD_ERRORS
)
def test_malformed_shard_sets_are_refused_in_one_line(
    tmp_path: Path,
    change: Callable[[str, dict], None] | None,
    damage: Callable[[Path], None] | None,
    named: str,
    problem: str,
) -> None:
    folder = write_shards(tmp_path / "shards", change)
    if damage is not None:
        damage(folder)
    with pytest.raises(DatasetError) as caught:
        load_shards(folder)
    message = str(caught.value)
    assert "\n" not in message
    assert named in message and problem in message, message


# ---------------------------------------------------------------- procedural sets


def test_procedural_is_generated_once_then_read_from_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[int, int]] = []

    def spy(out: Path, per_category: int, seed: int):
        calls.append((per_category, seed))
        return write_eval_set(out, per_category, seed)

    monkeypatch.setattr(datasets, "write_eval_set", spy)
    dataset = load_procedural(per_category=4, seed=3, cache_dir=tmp_path)
    folder = tmp_path / "procedural-pc4-s3"
    assert calls == [(4, 3)] and (folder / "eval_set.json").is_file()
    assert dataset.name == "procedural" and dataset.variant is None
    assert dataset.class_names == tuple((folder / "shape_names.txt").read_text().split())
    for split in ("train", "test"):
        points, labels = read_h5_split(folder, split)
        np.testing.assert_array_equal(getattr(dataset, split).points, points)
        np.testing.assert_array_equal(getattr(dataset, split).labels, labels[:, 0])
    names = dataset.train.names
    assert names and all(
        dataset.class_names[lab] == name.split("/")[0]
        for lab, name in zip(dataset.train.labels, names, strict=True)
    )
    assert dataset.notes == ("generated by xpt (per_category=4, seed=3)",)

    again = load_procedural(per_category=4, seed=3, cache_dir=tmp_path)
    assert calls == [(4, 3)] and again.fingerprint == dataset.fingerprint
    record = json.loads((folder / "eval_set.json").read_text())
    (folder / "eval_set.json").write_text(json.dumps({**record, "seed": 99}))
    load_procedural(per_category=4, seed=3, cache_dir=tmp_path)
    assert calls == [(4, 3), (4, 3)]
    # the same folder given as data is read as it is
    assert load_procedural(folder).fingerprint == dataset.fingerprint


def _fake_scanset(calls: list) -> types.ModuleType:
    """Stands in for xpt.benchmarks.scanset: two small h5 sets, told apart by category."""

    def write_scan_set(out: Path, per_category: int, seed: int) -> None:
        calls.append((out, per_category, seed))
        for variant, categories in (("rotated", ["chair", "cup"]), ("upright", ["table", "lamp"])):
            write_eval_set(out / variant, per_category, seed, categories=categories, num_points=64)

    module = types.ModuleType("xpt.benchmarks.scanset")
    module.write_scan_set = write_scan_set  # type: ignore[attr-defined]
    return module


def test_procedural_scan_generates_both_variants_once_and_reads_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list = []
    monkeypatch.setitem(sys.modules, "xpt.benchmarks.scanset", _fake_scanset(calls))
    rotated = load_procedural_scan(per_category=4, seed=1, cache_dir=tmp_path)
    root = tmp_path / "procedural-scan-pc4-s1"
    assert calls == [(root, 4, 1)]
    assert (rotated.title, rotated.class_names) == ("procedural-scan (rotated)", ("chair", "cup"))
    assert rotated.files["test"] == [str(root / "rotated" / "ply_data_test0.h5")]
    upright = load_dataset(
        "procedural-scan", variant="upright", per_category=4, seed=1, cache_dir=tmp_path
    )
    assert len(calls) == 1
    assert (upright.variant, upright.class_names) == ("upright", ("table", "lamp"))
    assert upright.notes == ("generated by xpt (per_category=4, seed=1)",)
    # given data: the folder of `xpt synth --eval --scan`
    given = load_dataset("procedural-scan", root, variant="upright")
    assert given.fingerprint == upright.fingerprint and given.notes == ()
    with pytest.raises(DatasetError, match="no rotated/ sub-folder"):
        load_procedural_scan(root / "upright")
    with pytest.raises(DatasetError, match="valid: rotated, upright"):
        load_procedural_scan(root, variant="sideways")


# ---------------------------------------------------------------- dispatch


def test_load_dataset_dispatches(modelnet: Path, h5_files: Path) -> None:
    assert load_dataset("modelnet40", modelnet).fingerprint == load_modelnet40(modelnet).fingerprint
    scan = load_dataset("scanobjectnn", h5_files / "main_split", variant="PB_T50_RS")
    assert scan.title == "scanobjectnn (PB_T50_RS, non-standard)"
    assert load_dataset("procedural", modelnet).name == "procedural"


@pytest.mark.parametrize(
    ("name", "options", "problem"),
    [
        ("pointnet", {}, "unknown dataset 'pointnet'; valid: " + ", ".join(DATASETS)),
        ("modelnet40", {}, "modelnet40: --data is needed"),
        ("shards", {}, "shards: --data is needed"),
        ("scanobjectnn", {"train": Path("a.h5")}, "--train and --test is needed"),
        ("modelnet40", {"data": Path("x"), "variant": "OBJ_BG"}, "modelnet40 has no variants"),
        ("shards", {"data": Path("x"), "test": Path("t.h5")}, "apply to scanobjectnn only"),
        ("procedural", {"data": Path("x"), "per_category": 3}, "per_category applies only"),
        ("procedural", {"per_category": 0}, "per_category must be >= 1"),
    ],
)
def test_load_dataset_refuses_what_does_not_apply(name: str, options: dict, problem: str) -> None:
    with pytest.raises(DatasetError) as caught:
        load_dataset(name, **options)
    assert problem in str(caught.value)


def test_default_cache_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XPT_CACHE", str(tmp_path / "mine"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "mine"
    monkeypatch.delenv("XPT_CACHE")
    assert default_cache_dir() == tmp_path / "xdg" / "xpt"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert default_cache_dir() == tmp_path / ".cache" / "xpt"
