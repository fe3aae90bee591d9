"""Labelled point sets in the layouts people hold ModelNet in, read into xpt's frame.

Three layouts (``--format``), detected from the folder by :func:`detect_format`:

* ``h5``: the ``modelnet40_ply_hdf5_2048`` release (:func:`xpt.benchmarks.datasets.load_h5_folder`);
* ``normal-resampled``: PointNet++'s ``modelnet40_normal_resampled``:
  ``<class>/<class>_NNNN.txt`` (comma-separated ``x,y,z,nx,ny,nz``, 10,000 points),
  ``<set>_shape_names.txt`` (label = line) and ``<set>_train.txt`` / ``<set>_test.txt``
  (one object name per line), for ``<set>`` = ``modelnet40`` and ``modelnet10``;
* ``tree``: ``<class>/{train,test}/<object>.<ext>``, one point file per object (any of
  :data:`~xpt.benchmarks.pointfiles.POINT_SUFFIXES`), classes labelled in sorted order.

Every cloud is turned from its ``up_axis`` to +Y (the frame pretraining data uses; raw
ModelNet files are +Z up, the h5 release is +Y up), centred on its mean and scaled to max
radius 1 over every point of its file, as the h5 clouds are over their 2048, then brought to
the protocol's point count when its file holds another (``first`` points, ``fps`` or
``random``; fewer points than asked are padded with seeded repeats). The notes of the
dataset say what was done.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from xpt.benchmarks.datasets import (
    SPLITS,
    DatasetError,
    EvalDataset,
    _check_parts,
    _dataset,
    _error,
    _Part,
    _require_file,
    _require_folder,
    load_h5_folder,
)
from xpt.benchmarks.pointfiles import POINT_SUFFIXES, PointFileError, read_point_file
from xpt.benchmarks.protocols import RESAMPLE_METHODS
from xpt.toolkit.evalset import SHAPE_NAMES, normalize_unit_sphere, split_files
from xpt.toolkit.meshes.geometry import UP_AXIS, check_up_axis, up_rotation
from xpt.toolkit.meshes.sampling import subsample_points
from xpt.toolkit.seeding import derive_seed

FORMATS = ("h5", "normal-resampled", "tree")


@dataclass(frozen=True)
class PointSetOptions:
    """How a point set is read: ``format`` (None: detected), the files' ``up_axis``
    (turned to +Y), and for files the ``points`` per cloud (None: as stored, which must then
    be one count) reached by ``resample`` (seeded by ``seed`` and the file name)."""

    format: str | None = None
    up_axis: str = UP_AXIS
    points: int | None = 1024
    resample: str = "first"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.format is not None and self.format not in FORMATS:
            raise DatasetError(f"unknown format {self.format!r}; valid: {', '.join(FORMATS)}")
        try:
            check_up_axis(self.up_axis, allow_auto=False)
        except ValueError as error:
            raise DatasetError(str(error)) from None
        if self.resample not in RESAMPLE_METHODS:
            raise DatasetError(f"resample must be one of {', '.join(RESAMPLE_METHODS)}")


def detect_format(folder: Path) -> str:
    """The layout of ``folder`` (one of :data:`FORMATS`), or a DatasetError saying what
    each layout would need."""
    if any(split_files(folder, split) for split in SPLITS):
        return "h5"
    if any(folder.glob("*_shape_names.txt")):
        return "normal-resampled"
    if any((child / split).is_dir() for child in folder.iterdir() for split in SPLITS):
        return "tree"
    raise _error(
        folder,
        "no point set layout found: expected ply_data_*.h5 files (h5), "
        "<set>_shape_names.txt with <set>_train.txt and <set>_test.txt lists "
        "(normal-resampled), or <class>/train/ and <class>/test/ folders of point files (tree)",
    )


def modelnet_name(path: str | os.PathLike, data_format: str | None = None) -> str:
    """Which ModelNet a folder holds, for a caller that was not told: ``modelnet40`` when
    PointNet++'s ModelNet40 lists are there or the classes are not 10, else ``modelnet10``
    (the set is still checked against the one named when it is read)."""
    folder = _require_folder(Path(path), "a point set folder")
    layout = data_format or detect_format(folder)
    if layout == "normal-resampled":
        return "modelnet40" if (folder / "modelnet40_shape_names.txt").exists() else "modelnet10"
    if layout == "h5":
        names = folder / SHAPE_NAMES
        classes = len(_read_lines(names)) if names.exists() else 0
    else:
        classes = len(_tree_classes(folder))
    return "modelnet10" if classes == 10 else "modelnet40"


def load_point_set(path: str | os.PathLike, name: str, options: PointSetOptions) -> EvalDataset:
    """The labelled set in ``path`` as ``name`` (e.g. modelnet10), in the layout the
    options name or the folder shows, turned +Y up."""
    folder = _require_folder(Path(path), "a point set folder")
    layout = options.format or detect_format(folder)
    if layout == "h5":
        return _turned_up(load_h5_folder(folder, name=name), options.up_axis)
    if layout == "normal-resampled":
        class_names, files = _normal_resampled_files(folder, name)
    else:
        class_names, files = _tree_files(folder)
    parts: dict[str, list[_Part]] = {}
    names: dict[str, tuple[str, ...] | None] = {}
    stored = []
    for split in SPLITS:
        points, counts = _read_clouds([file for file, _ in files[split]], folder, options)
        labels = np.array([label for _, label in files[split]], dtype=np.int64)
        parts[split] = [(folder, points, labels)]
        names[split] = tuple(file.stem for file, _ in files[split])
        stored.append(counts)
    _check_parts(folder, parts, len(class_names), "the class list")
    turned = "as stored" if options.up_axis == UP_AXIS else "turned to +Y"
    notes = [f"read from {layout} files, up axis {options.up_axis} {turned}"]
    notes += _resampling_notes(np.concatenate(stored), options)
    notes.append(
        "each cloud centred on its mean and scaled to max radius 1 over all its file's points "
        "(as ModelNet h5 clouds over their 2048)"
    )
    return _dataset(name, None, folder, parts, class_names, names, notes)


# ---------------------------------------------------------------- layouts

_Files = dict[str, list[tuple[Path, int]]]  # split -> [(file, label)]


def _read_lines(path: Path) -> list[str]:
    _require_file(path, "a text file")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise _error(path, f"unreadable: {error}") from None
    return [line.strip() for line in text.splitlines() if line.strip()]


def _normal_resampled_files(folder: Path, name: str) -> tuple[tuple[str, ...], _Files]:
    """Class names and (file, label) per split from PointNet++'s ``<name>_*.txt`` lists."""
    shape_names = folder / f"{name}_shape_names.txt"
    if not shape_names.exists():
        found = sorted(path.name for path in folder.glob("*_shape_names.txt"))
        raise _error(
            folder,
            f"no {shape_names.name} (the lists of --dataset {name}); the folder holds "
            f"{', '.join(found)}",
        )
    class_names = tuple(_read_lines(shape_names))
    repeated = sorted({c for c in class_names if class_names.count(c) > 1})
    if repeated:
        raise _error(shape_names, f"lists {', '.join(repeated)} more than once")
    label_of = {class_name: label for label, class_name in enumerate(class_names)}
    files: _Files = {}
    for split in SPLITS:
        listing = folder / f"{name}_{split}.txt"
        files[split] = []
        for number, object_name in enumerate(_read_lines(listing), start=1):
            class_name = object_name.rsplit("_", 1)[0]
            if class_name not in label_of:
                raise _error(
                    listing,
                    f"line {number}: {object_name!r} is of class {class_name!r}, "
                    f"which {shape_names.name} does not list",
                )
            path = folder / class_name / f"{object_name}.txt"
            files[split].append((path, label_of[class_name]))
    return class_names, files


def _tree_classes(folder: Path) -> list[str]:
    """The sorted names of the sub-folders holding a train/ or test/ folder."""
    return sorted(
        child.name
        for child in folder.iterdir()
        if child.is_dir() and any((child / split).is_dir() for split in SPLITS)
    )


def _tree_files(folder: Path) -> tuple[tuple[str, ...], _Files]:
    """Class names (sorted folder names) and (file, label) per split of a
    ``<class>/{train,test}/`` tree; files that are not point files are refused by name."""
    classes = _tree_classes(folder)
    files: _Files = {split: [] for split in SPLITS}
    for label, class_name in enumerate(classes):
        for split in SPLITS:
            where = folder / class_name / split
            entries = sorted(where.iterdir()) if where.is_dir() else []
            for path in entries:
                if path.name.startswith("."):
                    continue
                if path.suffix.lower() not in POINT_SUFFIXES:
                    raise _error(
                        path,
                        f"not a point file (expected {', '.join(POINT_SUFFIXES)}; meshes go "
                        "through `xpt render` and `xpt shard`)",
                    )
                files[split].append((path, label))
    return tuple(classes), files


# ---------------------------------------------------------------- clouds


def _read_clouds(
    files: list[Path], folder: Path, options: PointSetOptions
) -> tuple[np.ndarray, np.ndarray]:
    """(n, P, 3) float32 clouds (every file read, turned +Y up, normalised, resampled) and
    the (n,) point counts the files stored."""
    from xpt.toolkit.console import RunProgress

    rotation = up_rotation(options.up_axis)[:3, :3].T
    clouds, stored = [], []
    with RunProgress(f"reading {folder.name}", total=len(files), unit="obj") as bar:
        for path in files:
            try:
                points = read_point_file(path)
            except PointFileError as error:
                raise DatasetError(str(error)) from None
            stored.append(len(points))
            try:
                framed = normalize_unit_sphere(points @ rotation)
            except ValueError as error:
                raise _error(path, str(error)) from None
            name = path.relative_to(folder).as_posix()
            clouds.append(resample_cloud(framed, options, derive_seed(options.seed, name)))
            bar.advance()
    if len({len(cloud) for cloud in clouds}) > 1:
        raise _error(
            folder,
            f"files hold {min(stored)} to {max(stored)} points: give a point count to "
            "bring every cloud to (--num-points)",
        )
    if not clouds:
        return np.zeros((0, options.points or 1, 3), dtype=np.float32), np.zeros(0, np.int64)
    return np.stack(clouds), np.array(stored)


def resample_cloud(points: np.ndarray, options: PointSetOptions, seed: int) -> np.ndarray:
    """(m, 3) -> (options.points, 3): unchanged when m is that count (or the count is None),
    the first points or a seeded ``fps`` / ``random`` subset when m is larger, every point
    plus seeded repeats when m is smaller."""
    count, m = options.points, len(points)
    if count is None or m == count:
        return points
    if options.resample == "first" and m > count:
        return points[:count]
    sampler = "fps" if options.resample == "fps" and m > count else "uniform"
    return subsample_points(points, count, seed, sampler)


def _resampling_notes(stored: np.ndarray, options: PointSetOptions) -> list[str]:
    """What :func:`resample_cloud` did to clouds of the ``stored`` point counts."""
    count = options.points
    if count is None or (stored == count).all():
        low, high = stored.min(), stored.max()
        return [f"clouds of {low if low == high else f'{low} to {high}'} points, as stored"]
    larger, smaller = int((stored > count).sum()), int((stored < count).sum())
    notes = []
    if larger:
        notes.append(
            f"{larger} clouds of more than {count} points (up to {stored.max()}) brought to "
            f"{count} ({options.resample})"
        )
    if smaller:
        notes.append(
            f"{smaller} clouds of fewer than {count} points (down to {stored.min()}) padded "
            "with seeded repeats of their points"
        )
    return notes


def _turned_up(dataset: EvalDataset, up_axis: str) -> EvalDataset:
    """``dataset`` with its clouds turned from ``up_axis`` to +Y (unchanged for +Y)."""
    if up_axis == UP_AXIS:
        return dataset
    rotation = up_rotation(up_axis)[:3, :3].T.astype(np.float32)
    train, test = (
        replace(split, points=split.points @ rotation) for split in (dataset.train, dataset.test)
    )
    notes = (*dataset.notes, f"up axis {up_axis} turned to +Y")
    return replace(dataset, train=train, test=test, notes=notes)
