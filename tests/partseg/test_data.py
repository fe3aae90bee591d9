"""Part-segmentation data, read from files written the way the published tools write them.

The h5 files are made with h5py as PointNet's ``hdf5_data`` folder holds them (data float32
(N, P, 3), label uint8 (N, 1), pid uint8 (N, P), gzip level 4, the ``*_hdf5_file_list.txt``
lists and ``all_object_categories.txt``); the partanno tree as the
``shapenetcore_partanno_segmentation_benchmark_v0_normal`` release lays it out ("%f" rows
"x y z nx ny nz part", json split lists). Clouds are small (64 points).
"""

from __future__ import annotations

import json
import zlib
from pathlib import Path

import h5py
import numpy as np
import pytest

from xpt.partseg.data import (
    SHAPENETPART_CATEGORIES,
    SHAPENETPART_PART_RANGES,
    SHAPENETPART_PARTS_PER_CATEGORY,
    SHAPENETPART_SPLIT_SIZES,
    SHAPENETPART_SYNSETS,
    PartSet,
    PartSetError,
    PartSplit,
    is_standard,
    label_fraction,
    load_part_set,
    read_dgcnn_h5,
    read_partanno,
    standard_note,
)

POINTS = 64
# file -> category labels of its shapes (airplane 0, bag 1, car 3, chair 4, motorbike 10, table 15)
H5_FILES = {
    "ply_data_train0.h5": [0, 4, 15, 10],
    "ply_data_train1.h5": [3, 0],
    "ply_data_val0.h5": [4, 1],
    "ply_data_test0.h5": [15, 10],
    "ply_data_test1.h5": [1],
}
# PointNet's all_object_categories.txt: "Airplane\t02691156", one category a line
CATEGORY_TEXT = "".join(
    f"{name.capitalize()}\t{synset}\n"
    for name, synset in zip(SHAPENETPART_CATEGORIES, SHAPENETPART_SYNSETS, strict=True)
)


def _generator(tag: str) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32(tag.encode()))


def _h5_arrays(
    file: str, points: int = POINTS, labels: list[int] | None = None
) -> dict[str, np.ndarray]:
    """data, label, pid of one file (its :data:`H5_FILES` labels unless given) with the
    release's dtypes, a fixed function of ``file``."""
    labels = H5_FILES[file] if labels is None else labels
    generator = _generator(file)
    pid = np.stack(
        [generator.integers(*SHAPENETPART_PART_RANGES[label], size=points) for label in labels]
    )
    return {
        "data": generator.normal(size=(len(labels), points, 3)).astype(np.float32),
        "label": np.asarray(labels, dtype=np.uint8).reshape(-1, 1),
        "pid": pid.astype(np.uint8),
    }


def _write_h5(path: Path, **arrays: np.ndarray) -> None:
    """As PointNet's data_prep_util.save_h5 writes: gzip level 4, dtypes as given."""
    with h5py.File(path, "w") as handle:
        for name, values in arrays.items():
            handle.create_dataset(name, data=values, compression="gzip", compression_opts=4)


def write_hdf5_data(folder: Path, lists: bool = True) -> Path:
    """PointNet's ``hdf5_data`` folder (the part-seg release) with :data:`H5_FILES`."""
    folder.mkdir(parents=True, exist_ok=True)
    for file in H5_FILES:
        _write_h5(folder / file, **_h5_arrays(file))
    if lists:
        for split in ("train", "val", "test"):
            names = [file for file in H5_FILES if f"_{split}" in file]
            (folder / f"{split}_hdf5_file_list.txt").write_text("\n".join(names) + "\n")
    (folder / "all_object_categories.txt").write_text(CATEGORY_TEXT)
    return folder


def _expected(files: list[str], labels: dict[str, list[int]] = H5_FILES) -> dict[str, np.ndarray]:
    arrays = [_h5_arrays(file, labels=labels[file]) for file in files]
    return {key: np.concatenate([item[key] for item in arrays]) for key in arrays[0]}


def _message(error: pytest.ExceptionInfo[PartSetError]) -> str:
    message = str(error.value)
    assert "\n" not in message
    return message


# ---------------------------------------------------------------- DGCNN's h5 release


def test_h5_values_categories_and_part_ranges(tmp_path: Path) -> None:
    folder = write_hdf5_data(tmp_path / "hdf5_data")
    part_set = read_dgcnn_h5(folder)
    assert part_set.name == "shapenetpart"
    assert part_set.source == str(folder)
    assert part_set.categories == SHAPENETPART_CATEGORIES
    assert part_set.categories[10] == "motorbike"
    assert part_set.num_parts == 50
    assert part_set.part_ranges[0] == (0, 4) and part_set.part_ranges[15] == (47, 50)
    assert part_set.parts_of(10) == range(30, 36)
    assert part_set.part_names is None
    # the release's index_start, from the parts per category
    starts = [start for start, _ in part_set.part_ranges]
    assert starts == [0, 4, 6, 8, 12, 16, 19, 22, 24, 28, 30, 36, 38, 41, 44, 47]
    assert list(part_set.splits) == ["train", "val", "test"]
    for split, files in {
        "train": ["ply_data_train0.h5", "ply_data_train1.h5"],
        "val": ["ply_data_val0.h5"],
        "test": ["ply_data_test0.h5", "ply_data_test1.h5"],
    }.items():
        values, expected = part_set.splits[split], _expected(files)
        assert values.points.dtype == np.float32
        assert values.category.dtype == np.int64 and values.parts.dtype == np.int64
        np.testing.assert_array_equal(values.points, expected["data"])
        np.testing.assert_array_equal(values.category, expected["label"][:, 0])
        np.testing.assert_array_equal(values.parts, expected["pid"])
        assert values.shape_ids is None
    train = part_set.splits["train"]
    assert len(train) == 6 and train.category.tolist() == [0, 4, 15, 10, 3, 0]
    assert set(train.parts[1].tolist()) <= set(part_set.parts_of(4))  # a chair: 12..15


@pytest.mark.parametrize(
    ("files_at", "root_at"),
    [
        ("hdf5_data", "hdf5_data"),  # the folder of the files
        ("shapenet_part_seg_hdf5_data/hdf5_data", "shapenet_part_seg_hdf5_data"),  # DGCNN's
        ("shapenet_part_seg_hdf5_data/hdf5_data", "."),  # a folder above
        ("shapenet_part_seg_hdf5_data", "."),  # CrossPoint's download moves the files up
        ("hdf5_data", "."),
    ],
)
def test_h5_root_may_be_any_of_the_folders(tmp_path: Path, files_at: str, root_at: str) -> None:
    folder = write_hdf5_data(tmp_path / files_at)
    part_set = read_dgcnn_h5(tmp_path / root_at)
    assert part_set.source == str(folder)
    assert [len(split) for split in part_set.splits.values()] == [6, 2, 3]


def test_h5_without_lists_reads_the_glob_in_sorted_order(tmp_path: Path) -> None:
    folder = write_hdf5_data(tmp_path / "hdf5_data", lists=False)
    # two more files, train10 made first: the order is the natural sort of names
    labels = {**H5_FILES, "ply_data_train10.h5": [9], "ply_data_train2.h5": [7, 7]}
    for file in ("ply_data_train10.h5", "ply_data_train2.h5"):
        _write_h5(folder / file, **_h5_arrays(file, labels=labels[file]))
    train = read_dgcnn_h5(folder).splits["train"]
    order = ["ply_data_train0.h5", "ply_data_train1.h5", "ply_data_train2.h5"]
    expected = _expected([*order, "ply_data_train10.h5"], labels)
    np.testing.assert_array_equal(train.points, expected["data"])
    assert train.category.tolist() == [0, 4, 15, 10, 3, 0, 7, 7, 9]


def test_h5_lists_decide_the_files(tmp_path: Path) -> None:
    folder = write_hdf5_data(tmp_path / "hdf5_data")
    (folder / "train_hdf5_file_list.txt").write_text("ply_data_train1.h5\n")
    train = read_dgcnn_h5(folder).splits["train"]
    np.testing.assert_array_equal(train.points, _expected(["ply_data_train1.h5"])["data"])


def test_h5_val_may_be_absent(tmp_path: Path) -> None:
    folder = write_hdf5_data(tmp_path / "hdf5_data")
    (folder / "ply_data_val0.h5").unlink()
    (folder / "val_hdf5_file_list.txt").unlink()
    assert list(read_dgcnn_h5(folder).splits) == ["train", "test"]


def _rewrite(file: str, **changes: np.ndarray | None):
    def change(folder: Path) -> None:
        arrays = {**_h5_arrays(file), **changes}
        _write_h5(folder / file, **{k: v for k, v in arrays.items() if v is not None})

    return change


def _bad_pid(folder: Path) -> None:
    arrays = _h5_arrays("ply_data_train0.h5")
    arrays["pid"][1, [5, 9]] = 3  # shape 1 is a chair (parts 12..15)
    arrays["pid"][3, 0] = 0  # shape 3 a motorbike (30..35)
    _write_h5(folder / "ply_data_train0.h5", **arrays)


def _truncated(folder: Path) -> None:
    path = folder / "ply_data_test0.h5"
    path.write_bytes(path.read_bytes()[:1500])


def _unlink_test(folder: Path) -> None:
    for path in [*folder.glob("*test*.h5"), folder / "test_hdf5_file_list.txt"]:
        path.unlink()


def _write(name: str, text: str):
    return lambda folder: (folder / name).write_text(text)


# case -> (change to the folder, the file the message names, what it says)
REFUSALS = {
    "no pid": (
        _rewrite("ply_data_train0.h5", pid=None),
        "ply_data_train0.h5", "no 'pid' dataset (the file holds: data, label)",
    ),
    "pid rows": (
        _rewrite("ply_data_train1.h5", pid=np.zeros((1, 64), np.uint8)),
        "ply_data_train1.h5", "'pid' is uint8 (1, 64), expected integers (2, 64)",
    ),
    "pid points": (
        _rewrite("ply_data_val0.h5", pid=np.full((2, 63), 12, np.uint8)),
        "ply_data_val0.h5", "'pid' is uint8 (2, 63), expected integers (2, 64)",
    ),
    "label rows": (
        _rewrite("ply_data_test0.h5", label=np.zeros((3, 1), np.uint8)),
        "ply_data_test0.h5", "'label' is uint8 (3, 1), expected integers (2, 1)",
    ),
    "label 16": (
        _rewrite("ply_data_test1.h5", label=np.full((1, 1), 16, np.uint8)),
        "ply_data_test1.h5", "1 labels outside 0..15 (first: shape 0, label 16)",
    ),
    "pid range": (
        _bad_pid,
        "ply_data_train0.h5",
        "3 part ids outside their category's range (first: shape 1, a chair, part 3 not in 12..15)",
    ),
    "text": (
        _write("ply_data_test1.h5", "not an h5 file\n"),
        "ply_data_test1.h5", "not a readable HDF5 file",
    ),
    "truncated": (_truncated, "ply_data_test0.h5", "not a readable HDF5 file"),
    "no test": (_unlink_test, "", "no h5 files for the test split"),
    "list": (
        _write("val_hdf5_file_list.txt", "ply_data_val9.h5\n"),
        "val_hdf5_file_list.txt", "lists ply_data_val9.h5, which is not in",
    ),
    "categories": (
        _write("all_object_categories.txt", "".join(reversed(CATEGORY_TEXT.splitlines(True)))),
        "all_object_categories.txt", "lists 16 synsets that are not the 16 ShapeNetPart",
    ),
    "point count": (
        _rewrite("ply_data_test1.h5", **_h5_arrays("ply_data_test1.h5", points=32)),
        "ply_data_test1.h5", "clouds of 32 points, but ply_data_train0.h5 has clouds of 64",
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", list(REFUSALS))
def test_h5_refusals_name_the_file(tmp_path: Path, case: str) -> None:
    folder = write_hdf5_data(tmp_path / "hdf5_data")
    change, file, expected = REFUSALS[case]
    change(folder)
    with pytest.raises(PartSetError) as error:
        read_dgcnn_h5(tmp_path)
    assert f"{folder / file}: {expected}" in _message(error)


# ---------------------------------------------------------------- the partanno release

# split -> (synset, shape id, rows in its file)
PARTANNO_SHAPES = {
    "train": [("02691156", "1a04e3eab45ca15dd86060f189eb133", 80), ("03001627", "c0ffee", 50)],
    "val": [("03790512", "9d3b07384d113edec49eaa6238ad5ff0", 64)],
    "test": [("04379243", "f00d", 70), ("02691156", "beef", 100)],
}


def _partanno_rows(synset: str, shape: str, count: int) -> np.ndarray:
    """(count, 7) rows x y z nx ny nz part; part a global id of the synset's category."""
    generator = _generator(shape)
    category = SHAPENETPART_SYNSETS.index(synset)
    xyz = generator.uniform(-0.5, 0.5, size=(count, 3))
    normals = generator.normal(size=(count, 3))
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    parts = generator.integers(*SHAPENETPART_PART_RANGES[category], size=(count, 1))
    return np.hstack([xyz, normals, parts])


def _write_rows(path: Path, rows: np.ndarray) -> None:
    """One "%f %f %f %f %f %f %f" line a point, as the release's files hold them."""
    np.savetxt(path, rows, fmt="%f", delimiter=" ")


def write_partanno(root: Path) -> Path:
    folder = root / "shapenetcore_partanno_segmentation_benchmark_v0_normal"
    (folder / "train_test_split").mkdir(parents=True)
    (folder / "synsetoffset2category.txt").write_text(CATEGORY_TEXT)
    for split, shapes in PARTANNO_SHAPES.items():
        for synset, shape, count in shapes:
            (folder / synset).mkdir(exist_ok=True)
            _write_rows(folder / synset / f"{shape}.txt", _partanno_rows(synset, shape, count))
        listed = [f"shape_data/{synset}/{shape}" for synset, shape, _ in shapes]
        (folder / "train_test_split" / f"shuffled_{split}_file_list.json").write_text(
            json.dumps(listed)
        )
    return folder


def test_partanno_points_are_rows_of_each_file(tmp_path: Path) -> None:
    folder = write_partanno(tmp_path)
    part_set = read_partanno(folder, points=POINTS, seed=3)
    assert part_set.categories == SHAPENETPART_CATEGORIES and part_set.num_parts == 50
    assert list(part_set.splits) == ["train", "val", "test"]
    for split, shapes in PARTANNO_SHAPES.items():
        values = part_set.splits[split]
        assert values.points.shape == (len(shapes), POINTS, 3)  # normals dropped
        assert values.points.dtype == np.float32 and values.parts.dtype == np.int64
        assert values.shape_ids == tuple(f"{synset}/{shape}" for synset, shape, _ in shapes)
        expected = [SHAPENETPART_SYNSETS.index(synset) for synset, _, _ in shapes]
        assert values.category.tolist() == expected
        for i, (synset, shape, count) in enumerate(shapes):
            reference = np.loadtxt(folder / synset / f"{shape}.txt", dtype=np.float32)
            file_rows = {tuple(row) for row in reference[:, [0, 1, 2, 6]].tolist()}
            drawn = np.hstack([values.points[i], values.parts[i][:, None]]).tolist()
            assert {tuple(row) for row in drawn} <= file_rows
            # without repeats when the file holds enough rows; every row when it does not
            assert len({tuple(row) for row in drawn}) == min(count, POINTS)


def test_partanno_sampling_is_seeded_per_shape(tmp_path: Path) -> None:
    folder = write_partanno(tmp_path)
    first = read_partanno(folder, points=POINTS, seed=3).splits["test"]
    again = read_partanno(tmp_path, points=POINTS, seed=3).splits["test"]
    other = read_partanno(folder, points=POINTS, seed=4).splits["test"]
    np.testing.assert_array_equal(first.points, again.points)
    np.testing.assert_array_equal(first.parts, again.parts)
    assert not np.array_equal(first.points, other.points)
    # a shape's draw depends on its id, not on where the lists put it
    listing = folder / "train_test_split" / "shuffled_test_file_list.json"
    listing.write_text(json.dumps(json.loads(listing.read_text())[::-1]))
    moved = read_partanno(folder, points=POINTS, seed=3).splits["test"]
    np.testing.assert_array_equal(moved.points[::-1], first.points)


def _replace_rows(synset: str, shape: str, change):
    def apply(folder: Path) -> None:
        path = folder / synset / f"{shape}.txt"
        lines = path.read_text().splitlines(keepends=True)
        lines[4] = change(lines[4])
        path.write_text("".join(lines))

    return apply


PARTANNO_REFUSALS = {
    "missing": (
        lambda folder: (folder / "03001627" / "c0ffee.txt").unlink(),
        "03001627/c0ffee.txt: no such file",
    ),
    "6 columns": (
        _replace_rows("02691156", "beef", lambda line: line.rsplit(" ", 1)[0] + "\n"),
        "02691156/beef.txt: line 5 has 6 columns, expected 7",
    ),
    "8 columns": (
        _replace_rows("04379243", "f00d", lambda line: line.strip() + " 1.000000\n"),
        "04379243/f00d.txt: line 5 has 8 columns, expected 7",
    ),
    "6 columns everywhere": (
        lambda folder: np.savetxt(folder / "04379243" / "f00d.txt", np.ones((9, 6)), fmt="%f"),
        "04379243/f00d.txt: line 1 has 6 columns, expected 7",
    ),
    "not a number": (
        _replace_rows("04379243", "f00d", lambda line: "nan? " + line.split(" ", 1)[1]),
        "04379243/f00d.txt: line 5: 'nan?' is not a number",
    ),
    "empty": (
        lambda folder: (folder / "02691156" / "beef.txt").write_text(""),
        "02691156/beef.txt: holds no points",
    ),
    "part range": (
        _replace_rows("02691156", "beef", lambda line: line.rsplit(" ", 1)[0] + " 12.000000\n"),
        "02691156/beef.txt: 1 rows whose part (7th column) is not a part id of airplane "
        "(0..3; first: row 5, part 12)",
    ),
    "synset": (
        lambda folder: (folder / "synsetoffset2category.txt").write_text("Airplane\t02691156\n"),
        "shuffled_train_file_list.json: lists a shape of synset 03001627",
    ),
    "no train list": (
        lambda folder: (folder / "train_test_split" / "shuffled_train_file_list.json").unlink(),
        "shuffled_train_file_list.json: no such file",
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", list(PARTANNO_REFUSALS))
def test_partanno_refusals_name_the_file(tmp_path: Path, case: str) -> None:
    folder = write_partanno(tmp_path)
    change, expected = PARTANNO_REFUSALS[case]
    change(folder)
    with pytest.raises(PartSetError) as error:
        read_partanno(folder, points=POINTS)
    assert expected in _message(error)


# ---------------------------------------------------------------- by name


def test_load_part_set_recognises_each_layout(tmp_path: Path) -> None:
    write_hdf5_data(tmp_path / "h5" / "shapenet_part_seg_hdf5_data" / "hdf5_data")
    write_partanno(tmp_path / "txt")
    h5 = load_part_set("shapenetpart", tmp_path / "h5", points=32)
    expected = _expected(["ply_data_test0.h5", "ply_data_test1.h5"])
    np.testing.assert_array_equal(h5.splits["test"].points, expected["data"][:, :32])
    np.testing.assert_array_equal(h5.splits["test"].parts, expected["pid"][:, :32])
    txt = load_part_set("shapenetpart", tmp_path / "txt", points=16, seed=1)
    direct = read_partanno(tmp_path / "txt", points=16, seed=1)
    np.testing.assert_array_equal(txt.splits["train"].points, direct.splits["train"].points)
    assert txt.splits["train"].shape_ids == direct.splits["train"].shape_ids


def test_load_part_set_refusals(tmp_path: Path) -> None:
    write_hdf5_data(tmp_path / "hdf5_data")
    with pytest.raises(PartSetError, match="clouds of 64 points, fewer than the 2048"):
        load_part_set("shapenetpart", tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(PartSetError) as error:
        load_part_set("shapenetpart", tmp_path / "empty")
    message = _message(error)
    assert "empty: not a ShapeNetPart folder" in message
    assert "ply_data_*.h5" in message and "synsetoffset2category.txt" in message
    with pytest.raises(PartSetError, match="needs a data folder"):
        load_part_set("shapenetpart", None)
    with pytest.raises(PartSetError, match="missing: no such folder"):
        load_part_set("shapenetpart", tmp_path / "missing")
    with pytest.raises(PartSetError, match="unknown part-segmentation dataset 'modelnet40'"):
        load_part_set("modelnet40", tmp_path)


# ---------------------------------------------------------------- the model, standard sets


def _split(categories: list[int], points: int = 1) -> PartSplit:
    category = np.asarray(categories, dtype=np.int64)
    starts = np.asarray([start for start, _ in SHAPENETPART_PART_RANGES])[category]
    return PartSplit(
        np.zeros((len(category), points, 3), np.float32),
        category,
        np.repeat(starts[:, None], points, axis=1),
        tuple(f"shape{i}" for i in range(len(category))),
    )


def test_split_subset_and_checks() -> None:
    split = _split([0, 4, 15, 10])
    part = split.subset(np.array([3, 1]))
    assert part.category.tolist() == [10, 4] and part.shape_ids == ("shape3", "shape1")
    assert part.parts[:, 0].tolist() == [30, 12]
    with pytest.raises(ValueError, match="integer indices"):
        split.subset(np.array([True, False, True, False]))
    with pytest.raises(ValueError, match="parts have shape"):
        PartSplit(split.points, split.category, split.parts[:, :0])
    with pytest.raises(ValueError, match="3 shape ids for 4 shapes"):
        PartSplit(split.points, split.category, split.parts, ("a", "b", "c"))


def _shapenetpart(sizes: dict[str, int]) -> PartSet:
    splits = {name: _split([0] * size) for name, size in sizes.items()}
    return PartSet("shapenetpart", SHAPENETPART_CATEGORIES, SHAPENETPART_PART_RANGES, splits)


def test_standard_sets_are_recognised() -> None:
    assert sum(SHAPENETPART_SPLIT_SIZES.values()) == 16881
    assert sum(SHAPENETPART_PARTS_PER_CATEGORY) == 50
    published = _shapenetpart(SHAPENETPART_SPLIT_SIZES)
    assert is_standard(published) is True and standard_note(published) is None
    small = _shapenetpart({"train": 6, "val": 2, "test": 3})
    assert is_standard(small) is False
    assert standard_note(small) == (
        "not the standard ShapeNetPart (12137 train / 1870 val / 2874 test shapes; this set: "
        "6 train / 2 val / 3 test): no paper figure is shown beside it"
    )
    procedural = PartSet("procedural-parts", ("box",), ((0, 2),), small.splits)
    assert is_standard(procedural) is None and standard_note(procedural) is None


# ---------------------------------------------------------------- label fractions


def _shuffled_categories() -> list[int]:
    categories = [0] * 40 + [3] * 10 + [7] * 1 + [15] * 5
    return _generator("order").permutation(categories).tolist()


def test_label_fraction_is_stratified_by_category() -> None:
    split = _split(_shuffled_categories())
    chosen = label_fraction(split, 0.25, seed=0)
    assert chosen.dtype == np.int64
    assert chosen.tolist() == sorted(set(chosen.tolist()))
    counts = dict(zip(*np.unique(split.category[chosen], return_counts=True), strict=True))
    # 40 * 0.25 = 10; 2.5 rounds up to 3; 0.25 and 1.25 -> at least one, one
    assert counts == {0: 10, 3: 3, 7: 1, 15: 1}
    tenth = label_fraction(split, 0.1, seed=0)
    counts = dict(zip(*np.unique(split.category[tenth], return_counts=True), strict=True))
    assert counts == {0: 4, 3: 1, 7: 1, 15: 1}
    assert set(tenth.tolist()) <= set(chosen.tolist())  # nested under one seed


def test_label_fraction_is_seeded() -> None:
    split = _split(_shuffled_categories())
    first = label_fraction(split, 0.25, seed=5)
    np.testing.assert_array_equal(first, label_fraction(split, 0.25, seed=5))
    assert not np.array_equal(first, label_fraction(split, 0.25, seed=6))
    np.testing.assert_array_equal(label_fraction(split, 1.0, seed=5), np.arange(len(split)))
    for fraction in (0.0, -0.1, 1.5):
        with pytest.raises(ValueError, match="fraction must be in"):
            label_fraction(split, fraction, seed=0)


def test_fixture_layouts_are_the_real_ones(tmp_path: Path) -> None:
    """The files above are stored as the releases store them (dtypes, gzip, text)."""
    folder = write_hdf5_data(tmp_path / "hdf5_data")
    with h5py.File(folder / "ply_data_train0.h5", "r") as handle:
        assert {key: handle[key].dtype.str for key in handle} == {
            "data": "<f4",
            "label": "|u1",
            "pid": "|u1",
        }
        assert handle["label"].shape == (4, 1) and handle["pid"].compression == "gzip"
    assert (folder / "all_object_categories.txt").read_text().startswith("Airplane\t02691156\n")
    partanno = write_partanno(tmp_path / "txt")
    first = (partanno / "02691156" / "beef.txt").read_text().splitlines()[0].split(" ")
    assert len(first) == 7 and first[6].endswith(".000000")
