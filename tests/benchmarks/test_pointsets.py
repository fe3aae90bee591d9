"""ModelNet point sets in the layouts people hold them in, read into xpt's frame.

Files are written as the tools that make them write them: PointNet++'s
``modelnet40_normal_resampled`` (``%.6f`` comma rows of x,y,z,nx,ny,nz and its list files),
numpy's ``np.save``, trimesh's PLY point-cloud export, Open3D's PCD (fixtures written by
Open3D itself, tests/data/pointfiles). The real ModelNet10 files are read when present.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import trimesh

from xpt.benchmarks.datasets import (
    MODELNET10_CLASSES,
    MODELNET40_CLASSES,
    DatasetError,
    EvalDataset,
    Split,
    load_dataset,
    standard_note,
)
from xpt.benchmarks.pointsets import (
    PointSetOptions,
    detect_format,
    load_point_set,
    resample_cloud,
)
from xpt.benchmarks.run import paper_figures
from xpt.toolkit.evalset import normalize_unit_sphere

FIXTURES = Path(__file__).parents[1] / "data" / "pointfiles"
Z_UP_TO_Y_UP = np.array([[1, 0, 0], [0, 0, 1], [0, -1, 0]], dtype=np.float64)  # (x,y,z)->(x,z,-y)


def _cloud(seed: int, count: int) -> np.ndarray:
    """(count, 3) float64 points in raw units: off-centre, large, tallest along z."""
    rng = np.random.default_rng(seed)
    return rng.normal(size=(count, 3)) * [1.0, 2.0, 5.0] * 40 + [300.0, -20.0, 7.0]


def _framed(points: np.ndarray, count: int | None = None, rotation=np.eye(3)) -> np.ndarray:
    """What the reader should make of a file's points (float32 in the file): turned,
    centred and scaled over all of them, then the first ``count``."""
    stored = points.astype(np.float32).astype(np.float64)
    return normalize_unit_sphere(stored @ rotation.T)[:count]


# ---------------------------------------------------------------- PointNet++ layout

RESAMPLED = {  # class -> (train objects, test objects)
    "airplane": (2, 1),
    "bathtub": (2, 1),
    "night_stand": (1, 2),
}


def write_normal_resampled(root: Path, points: int = 60) -> Path:
    """A folder laid out as PointNet++'s ``modelnet40_normal_resampled``: comma-separated
    ``%.6f`` rows of x,y,z,nx,ny,nz per object, shape names and split lists for ModelNet40
    and ModelNet10 (here: the bathtub and night_stand objects)."""
    folder = root / "modelnet40_normal_resampled"
    names = {"train": [], "test": []}
    for seed, (class_name, counts) in enumerate(RESAMPLED.items()):
        (folder / class_name).mkdir(parents=True)
        for split, count in zip(("train", "test"), counts, strict=True):
            for _ in range(count):
                object_name = f"{class_name}_{len(names['train']) + len(names['test']) + 1:04d}"
                xyz = _cloud(seed * 100 + len(names[split]), points) / 400
                normals = xyz / np.linalg.norm(xyz, axis=1, keepdims=True)
                rows = np.hstack([xyz, normals])
                np.savetxt(folder / class_name / f"{object_name}.txt", rows, "%.6f", ",")
                names[split].append(object_name)
    for prefix, classes in (
        ("modelnet40", list(RESAMPLED)),
        ("modelnet10", ["bathtub", "night_stand"]),
    ):
        (folder / f"{prefix}_shape_names.txt").write_text("".join(f"{c}\n" for c in classes))
        for split, listed in names.items():
            chosen = [n for n in listed if n.rsplit("_", 1)[0] in classes]
            (folder / f"{prefix}_{split}.txt").write_text("".join(f"{n}\n" for n in chosen))
    return folder


def test_normal_resampled_lists_give_labels_names_and_framed_clouds(tmp_path: Path) -> None:
    folder = write_normal_resampled(tmp_path)
    assert detect_format(folder) == "normal-resampled"
    dataset = load_point_set(folder, "modelnet40", PointSetOptions(points=32))
    assert dataset.class_names == ("airplane", "bathtub", "night_stand")
    assert dataset.train.names == ("airplane_0001", "airplane_0002", "bathtub_0004",
                                   "bathtub_0005", "night_stand_0007")  # fmt: skip
    np.testing.assert_array_equal(dataset.train.labels, [0, 0, 1, 1, 2])
    np.testing.assert_array_equal(dataset.test.labels, [0, 1, 2, 2])
    rows = np.loadtxt(folder / "bathtub" / "bathtub_0004.txt", delimiter=",")
    assert rows.shape == (60, 6)
    expected = _framed(rows[:, :3], 32)  # the first 32 points, centred, max radius 1
    np.testing.assert_allclose(dataset.train.points[2], expected, atol=1e-6)
    assert (np.linalg.norm(dataset.train.points, axis=2) <= 1 + 1e-6).all()
    assert "read from normal-resampled files, up axis +Y as stored" in dataset.notes
    assert "9 clouds of more than 32 points (up to 60) brought to 32 (first)" in dataset.notes


def test_modelnet10_lists_of_the_same_folder(tmp_path: Path) -> None:
    folder = write_normal_resampled(tmp_path)
    dataset = load_point_set(folder, "modelnet10", PointSetOptions(points=60))
    assert dataset.class_names == ("bathtub", "night_stand")
    assert dataset.train.names == ("bathtub_0004", "bathtub_0005", "night_stand_0007")
    assert dataset.test.names == ("bathtub_0006", "night_stand_0008", "night_stand_0009")
    assert "clouds of 60 points, as stored" in dataset.notes


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda f: (f / "modelnet10_shape_names.txt").unlink(), "no modelnet10_shape_names.txt"),
        (lambda f: (f / "modelnet10_test.txt").unlink(), "modelnet10_test.txt: no such file"),
        (
            lambda f: (f / "modelnet10_train.txt").write_text("bathtub_0004\nchair_0001\n"),
            "modelnet10_train.txt: line 2: 'chair_0001' is of class 'chair', which "
            "modelnet10_shape_names.txt does not list",
        ),
        (lambda f: (f / "bathtub" / "bathtub_0005.txt").unlink(), "bathtub_0005.txt: no such file"),
        (
            lambda f: (f / "night_stand" / "night_stand_0008.txt").write_text("1,2,3\n4,5\n"),
            "night_stand_0008.txt: line 2: 2 values, expected 3",
        ),
        (
            lambda f: (f / "bathtub" / "bathtub_0004.txt").write_text("1,1,1\n1,1,1\n"),
            "bathtub_0004.txt: all points coincide",
        ),
    ],
)
def test_malformed_resampled_sets_are_one_line(tmp_path: Path, change, problem: str) -> None:
    folder = write_normal_resampled(tmp_path)
    change(folder)
    with pytest.raises(DatasetError, match=problem) as caught:
        load_point_set(folder, "modelnet10", PointSetOptions(points=32))
    assert "\n" not in str(caught.value)


# ---------------------------------------------------------------- <class>/{train,test}/ trees


def _write_tree(root: Path) -> tuple[Path, dict[str, np.ndarray]]:
    """A Z-up tree of point files as other tools write them; returns the folder and the
    float64 points written per file (relative path)."""
    folder = root / "ModelNet10-points"
    written = {}

    def put(relative: str, points: np.ndarray, write) -> None:
        path = folder / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        write(path, points)
        written[relative] = points

    put("chair/train/chair_0001.npy", _cloud(1, 50), lambda p, x: np.save(p, x.astype(np.float32)))
    put("chair/train/chair_0002.ply", _cloud(2, 50),
        lambda p, x: trimesh.PointCloud(x.astype(np.float32)).export(p))  # fmt: skip
    put("chair/test/chair_0003.xyz", _cloud(3, 70), lambda p, x: np.savetxt(p, x, "%.6f"))
    put("desk/train/desk_0001.txt", _cloud(4, 50), lambda p, x: np.savetxt(p, x, "%.6f", ","))
    put("desk/train/desk_0002.npy", _cloud(5, 40), lambda p, x: np.save(p, x))
    put("desk/test/desk_0003.pcd", _open3d_points(), lambda p, x: shutil.copy(
        FIXTURES / "open3d_xyzn_rgb_compressed.pcd", p))  # fmt: skip
    (folder / "desk" / "train" / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")  # hidden: skipped
    return folder, written


def _open3d_points() -> np.ndarray:
    """The 40 points of the Open3D fixtures (tests/data/pointfiles/README.md)."""
    i = np.arange(40)
    return (np.stack([i * 7 % 40, i * 13 % 40, i * 29 % 40], axis=1) - 20) / 8.0


def test_tree_of_point_files_turned_up_and_resampled(tmp_path: Path) -> None:
    folder, written = _write_tree(tmp_path)
    assert detect_format(folder) == "tree"
    options = PointSetOptions(up_axis="+Z", points=48, resample="first")
    dataset = load_point_set(folder, "modelnet10", options)
    assert dataset.class_names == ("chair", "desk")
    assert dataset.train.names == ("chair_0001", "chair_0002", "desk_0001", "desk_0002")
    np.testing.assert_array_equal(dataset.test.labels, [0, 1])
    assert dataset.train.points.shape == (4, 48, 3) and dataset.test.points.shape == (2, 48, 3)
    for split, index, relative in (
        ("train", 0, "chair/train/chair_0001.npy"),
        ("train", 1, "chair/train/chair_0002.ply"),
        ("train", 2, "desk/train/desk_0001.txt"),
        ("test", 0, "chair/test/chair_0003.xyz"),
    ):
        got = getattr(dataset, split).points[index]
        np.testing.assert_allclose(got, _framed(written[relative], 48, Z_UP_TO_Y_UP), atol=2e-6)
    # the clouds were tallest along z: now along y
    extents = np.ptp(dataset.train.points, axis=1).mean(axis=0)
    assert extents[1] > 2 * extents[2] and extents[1] > 2 * extents[0]
    # desk_0002 (40 points) and desk_0003 (Open3D's 40) padded to 48 with their own points
    padded = dataset.train.points[3]
    unique = np.unique(padded.round(6), axis=0)
    assert len(unique) == 40
    np.testing.assert_allclose(
        np.sort(unique, axis=0),
        np.sort(
            np.unique(
                _framed(written["desk/train/desk_0002.npy"], None, Z_UP_TO_Y_UP).round(6), axis=0
            ),
            axis=0,
        ),  # fmt: skip
        atol=2e-6,
    )
    notes = " ".join(dataset.notes)
    assert "read from tree files, up axis +Z turned to +Y" in notes
    assert "4 clouds of more than 48 points (up to 70) brought to 48 (first)" in notes
    assert "2 clouds of fewer than 48 points (down to 40) padded" in notes


def test_fps_and_random_resampling_take_seeded_subsets(tmp_path: Path) -> None:
    points = _cloud(7, 70).astype(np.float32)
    for method in ("fps", "random"):
        options = PointSetOptions(points=32, resample=method)
        chosen = resample_cloud(points, options, seed=5)
        rows = [np.flatnonzero((points == point).all(axis=1)) for point in chosen]
        assert all(len(r) == 1 for r in rows) and len({int(r[0]) for r in rows}) == 32
        np.testing.assert_array_equal(chosen, resample_cloud(points, options, seed=5))
        assert not np.array_equal(chosen, resample_cloud(points, options, seed=6))
    np.testing.assert_array_equal(
        resample_cloud(points, PointSetOptions(points=32), 5), points[:32]
    )
    assert resample_cloud(points, PointSetOptions(points=70), 5) is points
    padded = resample_cloud(points[:20], PointSetOptions(points=32), 5)
    assert padded.shape == (32, 3)
    np.testing.assert_array_equal(np.unique(padded, axis=0), np.unique(points[:20], axis=0))
    folder, _ = _write_tree(tmp_path)
    options = PointSetOptions(points=32, resample="fps")
    np.testing.assert_array_equal(
        load_point_set(folder, "modelnet10", options).train.points,
        load_point_set(folder, "modelnet10", options).train.points,
    )


def test_uneven_files_need_a_point_count(tmp_path: Path) -> None:
    folder, _ = _write_tree(tmp_path)
    with pytest.raises(DatasetError, match=r"files hold 40 to 50 points: give a point count"):
        load_point_set(folder, "modelnet10", PointSetOptions(points=None))


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (
            lambda f: (f / "desk" / "test" / "desk_0004.off").write_text("OFF\n0 0 0\n"),
            r"desk_0004.off: not a point file \(expected .npy, .txt, .xyz, .pcd, .ply; meshes",
        ),
        (
            lambda f: (f / "desk" / "test" / "desk_0003.pcd").write_bytes(b"VERSION 0.7\n"),
            "desk_0003.pcd: the header has no DATA line",
        ),
        (
            lambda f: shutil.rmtree(f / "desk" / "test"),
            "train and test hold different classes: only in train: desk; only in test: none",
        ),
        (
            lambda f: np.save(f / "chair" / "train" / "chair_0001.npy", np.zeros((5, 2))),
            r"chair_0001.npy: array has shape \(5, 2\)",
        ),
    ],
)
def test_malformed_trees_are_one_line(tmp_path: Path, change, problem: str) -> None:
    folder, _ = _write_tree(tmp_path)
    change(folder)
    with pytest.raises(DatasetError, match=problem) as caught:
        load_point_set(folder, "modelnet10", PointSetOptions(points=32))
    assert "\n" not in str(caught.value)


def test_layouts_are_detected_or_refused(tmp_path: Path, write_modelnet_h5) -> None:
    h5 = write_modelnet_h5(tmp_path / "h5", ["box", "rod"], {"train": 2, "test": 1}, points=16)
    assert detect_format(h5) == "h5"
    (tmp_path / "empty" / "chair").mkdir(parents=True)
    with pytest.raises(DatasetError, match="no point set layout found: expected ply_data_"):
        load_point_set(tmp_path / "empty", "modelnet40", PointSetOptions())
    with pytest.raises(DatasetError, match="no modelnet40_shape_names.txt"):
        load_point_set(h5, "modelnet40", PointSetOptions(format="normal-resampled"))
    with pytest.raises(DatasetError, match="unknown format 'off'"):
        PointSetOptions(format="off")
    with pytest.raises(DatasetError, match="up axis must be one of"):
        PointSetOptions(up_axis="up")


def test_h5_sets_are_turned_up_too(tmp_path: Path, write_modelnet_h5) -> None:
    h5 = write_modelnet_h5(tmp_path / "h5", ["box", "rod"], {"train": 2, "test": 1}, points=16)
    plain = load_point_set(h5, "modelnet40", PointSetOptions())
    turned = load_point_set(h5, "modelnet40", PointSetOptions(up_axis="+Z"))
    expected = (plain.train.points.astype(np.float64) @ Z_UP_TO_Y_UP.T).astype(np.float32)
    np.testing.assert_allclose(turned.train.points, expected, atol=1e-7)
    assert turned.notes[-1] == "up axis +Z turned to +Y" and plain.notes == ()


# ---------------------------------------------------------------- which set it is


def _labelled(name: str, classes: tuple[str, ...], train: int, test: int) -> EvalDataset:
    def split(n: int) -> Split:
        return Split(np.zeros((n, 1, 3), np.float32), np.arange(n) % len(classes))

    return EvalDataset(name, None, classes, split(train), split(test), {})


def test_only_the_published_set_stands_beside_the_paper_figure() -> None:
    real = _labelled("modelnet40", MODELNET40_CLASSES, 9843, 2468)
    assert real.is_standard() and real.title == "modelnet40" and standard_note(real) is None
    assert paper_figures(real, "pointnet")["linear_accuracy_percent"] == 89.1
    h5_release = _labelled("modelnet40", MODELNET40_CLASSES, 9840, 2468)  # 3 shapes short
    assert paper_figures(h5_release, "dgcnn")["linear_accuracy_percent"] == 91.2
    ten = _labelled("modelnet40", MODELNET10_CLASSES, 3991, 908)
    assert not ten.is_standard() and ten.title == "modelnet40 (non-standard)"
    assert paper_figures(ten, "pointnet")["linear_accuracy_percent"] is None
    assert standard_note(ten) == (
        "not the standard ModelNet40 (ModelNet40 has 40 classes, 9843 or 9840 / 2468; this set: 10 "
        "classes, 3991 / 908, without airplane, bench, bookshelf and 27 more); it is "
        "ModelNet10 (--dataset modelnet10): no paper figure is shown beside it"
    )
    subset = _labelled("modelnet40", MODELNET40_CLASSES, 420, 2468)
    assert paper_figures(subset, "dgcnn")["linear_accuracy_percent"] is None
    assert "this set: 40 classes, 420 / 2468)" in standard_note(subset)
    shuffled = _labelled("modelnet10", MODELNET10_CLASSES[::-1], 3991, 908)
    assert "its classes in another label order" in standard_note(shuffled)
    mn10 = _labelled("modelnet10", MODELNET10_CLASSES, 3991, 908)
    assert mn10.is_standard() and mn10.describe()["standard"] is True
    assert paper_figures(mn10, "dgcnn")["linear_accuracy_percent"] is None  # none published
    assert _labelled("procedural", ("a", "b"), 4, 2).describe()["standard"] is None


def test_load_dataset_notes_a_set_that_is_not_the_named_one(tmp_path: Path) -> None:
    folder = write_normal_resampled(tmp_path)
    dataset = load_dataset("modelnet10", folder, point_set=PointSetOptions(points=16))
    assert dataset.title == "modelnet10 (non-standard)"
    assert dataset.notes[-1].startswith("not the standard ModelNet10 (ModelNet10 has 10 ")
    with pytest.raises(DatasetError, match="--format and --up-axis apply to modelnet40 and"):
        load_dataset("procedural", point_set=PointSetOptions(up_axis="+Z"))


def test_real_modelnet10_is_the_standard_set(shared_modelnet10: Path) -> None:
    dataset = load_dataset(
        "modelnet10", shared_modelnet10, point_set=PointSetOptions(up_axis="+Z", points=1024)
    )
    assert dataset.is_standard() and dataset.title == "modelnet10"
    assert (len(dataset.train.labels), len(dataset.test.labels)) == (3991, 908)
    assert np.bincount(dataset.test.labels).tolist() == [
        50,
        100,
        100,
        86,
        86,
        100,
        86,
        100,
        100,
        100,
    ]
    # upright: chairs are taller (y) than they are deep on average
    chairs = dataset.train.points[dataset.train.labels == MODELNET10_CLASSES.index("chair")]
    extent = np.ptp(chairs, axis=1).mean(axis=0)
    assert extent[1] > extent[2]
