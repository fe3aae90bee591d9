"""The evaluation datasets of ``xpt benchmark``: labelled point clouds, checked once.

Every source becomes an :class:`EvalDataset` of two :class:`Split` s (train, test) with
points (n, P, 3) float32 and labels (n,) int64:

* ``modelnet40`` / ``modelnet10``: a ``modelnet40_ply_hdf5_2048`` folder (the real one or
  ours, the layout defined in :mod:`xpt.toolkit.evalset`), PointNet++'s
  ``modelnet40_normal_resampled`` txt lists or a ``<class>/{train,test}/`` tree of point
  files (:mod:`xpt.benchmarks.pointsets`).
* ``scanobjectnn``: ScanObjectNN's ``training_objectdataset*.h5`` /
  ``test_objectdataset*.h5`` (``data``, ``label``; the ``mask`` is ignored), the variant
  recognised from the folder and file names (:data:`SCANOBJECTNN_VARIANTS`).
* ``shards``: an ``xpt shard`` set; test is its val split. Only ``points.npy`` and
  ``json`` of each sample are read.
* ``procedural`` / ``procedural-scan``: xpt's embedded sets in the h5 layout, generated
  into a cache folder on first use.

Malformed data raises :class:`DatasetError` with one line naming the file and the
problem, so a benchmark stops before any feature is computed. A set read under the name of
a published one (:data:`STANDARD_SETS`) is checked against it (class names, split sizes):
one that differs says so in its notes and title, and no paper figure stands beside it.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import tarfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from xpt.toolkit.evalset import (
    DATA,
    LABEL,
    RECORD,
    SHAPE_NAMES,
    file_list_name,
    id2file_name,
    normalize_unit_sphere,
    split_files,
    write_eval_set,
)

if TYPE_CHECKING:
    from xpt.benchmarks.pointsets import PointSetOptions

DATASETS = ("procedural", "procedural-scan", "modelnet40", "modelnet10", "scanobjectnn", "shards")
MODELNET = ("modelnet40", "modelnet10")  # read by xpt.benchmarks.pointsets, in any layout
MODELNET40_CLASSES = (
    "airplane", "bathtub", "bed", "bench", "bookshelf", "bottle", "bowl", "car", "chair",
    "cone", "cup", "curtain", "desk", "door", "dresser", "flower_pot", "glass_box", "guitar",
    "keyboard", "lamp", "laptop", "mantel", "monitor", "night_stand", "person", "piano",
    "plant", "radio", "range_hood", "sink", "sofa", "stairs", "stool", "table", "tent",
    "toilet", "tv_stand", "vase", "wardrobe", "xbox",
)  # fmt: skip
MODELNET10_CLASSES = (
    "bathtub", "bed", "chair", "desk", "dresser", "monitor", "night_stand", "sofa", "table",
    "toilet",
)  # fmt: skip
SCANOBJECTNN_CLASSES = (
    "bag",
    "bin",
    "box",
    "cabinet",
    "chair",
    "desk",
    "display",
    "door",
    "shelf",
    "table",
    "bed",
    "pillow",
    "sink",
    "sofa",
    "toilet",
)
# variant -> (folder under ScanObjectNN's h5_files, file-name suffix): the variant's files
# are <folder>/training_objectdataset<suffix>.h5 and <folder>/test_objectdataset<suffix>.h5.
SCANOBJECTNN_VARIANTS = {
    "OBJ_BG": ("main_split", ""),
    "OBJ_ONLY": ("main_split_nobg", ""),
    "PB_T50_RS": ("main_split", "_augmentedrot_scale75"),
}


@dataclass(frozen=True)
class StandardSet:
    """A published evaluation set: its class names in label order and split sizes (the
    sizes of every release of it: the ModelNet40 h5 release lacks 3 training shapes)."""

    title: str
    class_names: tuple[str, ...]
    train: tuple[int, ...]
    test: tuple[int, ...]

    def matches(self, class_names: tuple[str, ...], train: int, test: int) -> bool:
        return class_names == self.class_names and train in self.train and test in self.test

    def describe(self) -> str:
        def sizes(counts: tuple[int, ...]) -> str:
            return " or ".join(str(count) for count in counts)

        classes = len(self.class_names)
        return f"{self.title} has {classes} classes, {sizes(self.train)} / {sizes(self.test)}"


# (dataset name, variant) -> the published set; figures of the paper stand only beside these.
STANDARD_SETS = {
    ("modelnet40", None): StandardSet("ModelNet40", MODELNET40_CLASSES, (9843, 9840), (2468,)),
    ("modelnet10", None): StandardSet("ModelNet10", MODELNET10_CLASSES, (3991,), (908,)),
    ("scanobjectnn", "OBJ_BG"): StandardSet(
        "ScanObjectNN OBJ_BG", SCANOBJECTNN_CLASSES, (2309,), (581,)
    ),
    ("scanobjectnn", "OBJ_ONLY"): StandardSet(
        "ScanObjectNN OBJ_ONLY", SCANOBJECTNN_CLASSES, (2309,), (581,)
    ),
    ("scanobjectnn", "PB_T50_RS"): StandardSet(
        "ScanObjectNN PB_T50_RS", SCANOBJECTNN_CLASSES, (11416,), (2882,)
    ),
}
SCAN_VARIANTS = ("rotated", "upright")  # the two procedural-scan sets
SPLITS = ("train", "test")
_SCAN_FILE = re.compile(r"^(training|test)_objectdataset(.*)\.h5$")
_H5_FILE = re.compile(r"^ply_data_([a-z]+)(\d+)\.h5$")


class DatasetError(ValueError):
    """Malformed or unusable evaluation data; the message is one line naming the file and
    the problem."""


@dataclass(frozen=True, eq=False)
class Split:
    """One split: points (n, P, 3) float32, all finite; labels (n,) int64 in [0, K);
    names (n,) object names when the source records them. Arrays are made read-only so a
    dataset's fingerprint stays true to its content."""

    points: np.ndarray
    labels: np.ndarray
    names: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        self.points.flags.writeable = False
        self.labels.flags.writeable = False


@dataclass(frozen=True, eq=False)
class EvalDataset:
    """A checked evaluation dataset; ``files`` maps split -> the files read, ``notes`` are
    remarks that belong in every report made from it."""

    name: str
    variant: str | None
    class_names: tuple[str, ...]
    train: Split
    test: Split
    files: dict[str, list[str]]
    notes: tuple[str, ...] = ()

    @property
    def title(self) -> str:
        marks = [self.variant] if self.variant else []
        if self.differs_from_standard():
            marks.append("non-standard")
        return f"{self.name} ({', '.join(marks)})" if marks else self.name

    def standard(self) -> StandardSet | None:
        """The published set this one is named as, None when its name names none."""
        return STANDARD_SETS.get((self.name, self.variant))

    def is_standard(self) -> bool:
        """Whether this is the published set it is named as: the same class names in the
        same label order and the same split sizes."""
        standard = self.standard()
        sizes = (len(self.train.labels), len(self.test.labels))
        return standard is not None and standard.matches(self.class_names, *sizes)

    def differs_from_standard(self) -> bool:
        return self.standard() is not None and not self.is_standard()

    @functools.cached_property
    def fingerprint(self) -> str:
        """First 16 hex digits of a sha256 over class names, labels and points of both
        splits: a content key for feature caches (names, files and notes do not count)."""
        digest = hashlib.sha256(json.dumps(list(self.class_names)).encode())
        for split in (self.train, self.test):
            digest.update(str(split.points.shape).encode())
            digest.update(np.ascontiguousarray(split.labels, dtype="<i8"))
            digest.update(np.ascontiguousarray(split.points, dtype="<f4"))
        return digest.hexdigest()[:16]

    def describe(self) -> dict:
        """JSON-ready summary for reports."""
        return {
            "name": self.name,
            "variant": self.variant,
            "title": self.title,
            "classes": len(self.class_names),
            "class_names": list(self.class_names),
            "train": len(self.train.labels),
            "test": len(self.test.labels),
            "points_per_cloud": int(self.train.points.shape[1]),
            "standard": self.is_standard() if self.standard() is not None else None,
            "files": {split: list(files) for split, files in self.files.items()},
            "notes": list(self.notes),
            "fingerprint": self.fingerprint,
        }


# ---------------------------------------------------------------- identity


def _some(names: list[str], shown: int = 3) -> str:
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


def standard_note(dataset: EvalDataset) -> str | None:
    """One line saying how ``dataset`` differs from the published set it is named as
    (and which published set it is, if another), None when it is that set or names none."""
    standard = dataset.standard()
    if standard is None or dataset.is_standard():
        return None
    sizes = (len(dataset.train.labels), len(dataset.test.labels))
    found = f"{len(dataset.class_names)} classes, {sizes[0]} / {sizes[1]}"
    missing = [name for name in standard.class_names if name not in dataset.class_names]
    extra = [name for name in dataset.class_names if name not in standard.class_names]
    if missing:
        found += f", without {_some(missing)}"
    if extra:
        found += f", with {_some(extra)}"
    if not missing and not extra and dataset.class_names != standard.class_names:
        found += ", its classes in another label order"
    other = next(
        (
            (name, known.title)
            for (name, _), known in STANDARD_SETS.items()
            if name != dataset.name and known.matches(dataset.class_names, *sizes)
        ),
        None,
    )
    hint = f"; it is {other[1]} (--dataset {other[0]})" if other else ""
    return (
        f"not the standard {standard.title} ({standard.describe()}; this set: {found}){hint}: "
        "no paper figure is shown beside it"
    )


def _with_standard_note(dataset: EvalDataset) -> EvalDataset:
    note = standard_note(dataset)
    return dataset if note is None else replace(dataset, notes=(*dataset.notes, note))


# ---------------------------------------------------------------- checks


def _error(where: object, problem: str) -> DatasetError:
    return DatasetError(" ".join(f"{where}: {problem}".split()))


def _require_folder(path: Path, what: str) -> Path:
    if not path.exists():
        raise _error(path, f"no such folder (expected {what})")
    if not path.is_dir():
        raise _error(path, f"is a file, expected {what}")
    return path


def _require_file(path: Path, what: str = "an HDF5 file") -> Path:
    if not path.exists():
        raise _error(path, "no such file")
    if not path.is_file():
        raise _error(path, f"is a folder, expected {what}")
    return path


def _read_h5(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """``data`` as (n, P, 3) float32 and ``label`` as (n,) int64 from one h5 file, checked."""
    from xpt.toolkit.h5files import H5Error, read_datasets

    _require_file(path)
    try:
        arrays = read_datasets(path, (DATA, LABEL))
    except H5Error as error:
        raise _error(path, str(error)) from None
    data, label = arrays[DATA], arrays[LABEL]
    if data.ndim != 3 or data.shape[2] != 3 or data.shape[1] < 1:
        raise _error(path, f"'data' has shape {data.shape}, expected (n, P, 3) with P >= 1")
    if data.dtype.kind != "f":
        raise _error(path, f"'data' has dtype {data.dtype}, expected floating point")
    n = len(data)
    if label.ndim not in (1, 2) or (label.ndim == 2 and label.shape[1] != 1):
        raise _error(path, f"'label' has shape {label.shape}, expected (n,) or (n, 1)")
    if len(label) != n:
        raise _error(path, f"'label' holds {len(label)} labels but 'data' holds {n} clouds")
    if label.dtype.kind not in "iu":
        raise _error(path, f"'label' has dtype {label.dtype}, expected integers")
    bad = int((~np.isfinite(data).all(axis=(1, 2))).sum())
    if bad:
        raise _error(path, f"{bad} of {n} clouds hold NaN or inf points")
    return data.astype(np.float32, copy=False), label.reshape(n).astype(np.int64)


_Part = tuple[Path, np.ndarray, np.ndarray]  # (file, points (n, P, 3), labels (n,))


def _check_parts(where: object, parts: dict[str, list[_Part]], classes: int, source: str) -> None:
    """Every split holds shapes, every file the same P, every label in [0, classes)."""
    for split, split_parts in parts.items():
        if sum(len(labels) for _, _, labels in split_parts) == 0:
            listed = ", ".join(str(path) for path, _, _ in split_parts)
            raise _error(listed or where, f"the {split} split holds 0 shapes")
    first, first_points, _ = next(part for split_parts in parts.values() for part in split_parts)
    for path, points, labels in (part for split_parts in parts.values() for part in split_parts):
        if points.shape[1] != first_points.shape[1]:
            raise _error(
                path,
                f"clouds of {points.shape[1]} points, but {first.name} has clouds of "
                f"{first_points.shape[1]}: a set needs one point count",
            )
        outside = (labels < 0) | (labels >= classes)
        if outside.any():
            raise _error(
                path,
                f"{int(outside.sum())} labels outside [0, {classes}) "
                f"(min {labels.min()}, max {labels.max()}; {classes} classes from {source})",
            )


def _check_class_sets(
    where: object, train: np.ndarray, test: np.ndarray, class_names: tuple[str, ...]
) -> None:
    only_train = sorted(set(train.tolist()) - set(test.tolist()))
    only_test = sorted(set(test.tolist()) - set(train.tolist()))
    if only_train or only_test:

        def listed(labels: list[int]) -> str:
            return ", ".join(class_names[label] for label in labels) or "none"

        raise _error(
            where,
            "train and test hold different classes: "
            f"only in train: {listed(only_train)}; only in test: {listed(only_test)}",
        )


def _dataset(
    name: str,
    variant: str | None,
    where: object,
    parts: dict[str, list[_Part]],
    class_names: tuple[str, ...],
    names: dict[str, tuple[str, ...] | None],
    notes: list[str],
) -> EvalDataset:
    """Concatenate each split's parts in order into a dataset (parts already checked)."""
    splits = {
        split: Split(
            np.concatenate([points for _, points, _ in parts[split]]),
            np.concatenate([labels for _, _, labels in parts[split]]),
            names[split],
        )
        for split in SPLITS
    }
    _check_class_sets(where, splits["train"].labels, splits["test"].labels, class_names)
    return EvalDataset(
        name=name,
        variant=variant,
        class_names=class_names,
        train=splits["train"],
        test=splits["test"],
        files={split: [str(path) for path, _, _ in parts[split]] for split in SPLITS},
        notes=tuple(notes),
    )


# ---------------------------------------------------------------- h5 folders


def _shape_names(folder: Path) -> tuple[str, ...] | None:
    """The class names of ``shape_names.txt`` (label = line), None when there is none."""
    path = folder / SHAPE_NAMES
    if not path.exists():
        return None
    try:
        names = tuple(line.strip() for line in path.read_text().splitlines() if line.strip())
    except (OSError, UnicodeDecodeError) as error:
        raise _error(path, f"unreadable: {error}") from None
    if not names:
        raise _error(path, "lists no class names")
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise _error(path, f"lists {', '.join(repeated)} more than once")
    return names


def _id2file(h5: Path, count: int) -> list[str] | str | None:
    """The names in the id2file json beside ``h5``: a list, a problem (str) when the json
    is unusable, None when there is none."""
    match = _H5_FILE.match(h5.name)
    path = h5.with_name(id2file_name(match[1], int(match[2]))) if match else None
    if path is None or not path.exists():
        return None
    try:
        listed = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        return f"{path}: unreadable ({error})"
    if not isinstance(listed, list) or not all(isinstance(item, str) for item in listed):
        return f"{path}: not a list of names"
    if len(listed) != count:
        return f"{path}: {len(listed)} names for {count} shapes"
    return listed


def _object_names(parts: list[_Part], notes: list[str]) -> tuple[str, ...] | None:
    """Object names of a split from ``ply_data_<split>_<i>_id2file.json`` beside each h5
    file: None when no file has one; None and a note when any is missing or unusable."""
    found = [_id2file(path, len(labels)) for path, _, labels in parts]
    if all(names is None for names in found):
        return None
    for (path, _, _), names in zip(parts, found, strict=True):
        if not isinstance(names, list):
            problem = names or f"{path.name} has no id2file json"
            notes.append(" ".join(f"object names ignored: {problem}".split()))
            return None
    return tuple(name for names in found for name in names)


def load_h5_folder(
    path: str | os.PathLike, *, name: str, variant: str | None = None
) -> EvalDataset:
    """A folder in the ``modelnet40_ply_hdf5_2048`` layout (ours or the real one).

    Files of a split come from :func:`xpt.toolkit.evalset.split_files`; class names from
    ``shape_names.txt`` (without it: "0".."K-1", K = max label + 1, and a note);
    object names from the id2file json files when all are present and usable.
    """
    folder = _require_folder(Path(path), "a folder in the modelnet40_ply_hdf5_2048 layout")
    notes: list[str] = []
    parts: dict[str, list[_Part]] = {}
    for split in SPLITS:
        files = split_files(folder, split)
        if not files:
            neither = f"neither {file_list_name(split)} nor ply_data_{split}*.h5"
            raise _error(folder, f"no {split} files ({neither})")
        listing = folder / file_list_name(split)
        for file in files:
            if not file.exists() and listing.exists():
                raise _error(file, f"no such file (listed in {listing.name})")
        parts[split] = [(file, *_read_h5(file)) for file in files]
    class_names = _shape_names(folder)
    source = SHAPE_NAMES
    if class_names is None:
        top = max((int(p[2].max()) for s in parts.values() for p in s if p[2].size), default=-1)
        class_names = tuple(str(label) for label in range(max(top + 1, 1)))
        source = "the largest label"
        notes.append(f"no {SHAPE_NAMES}: classes named by their label 0..{len(class_names) - 1}")
    _check_parts(folder, parts, len(class_names), source)
    names = {split: _object_names(parts[split], notes) for split in SPLITS}
    return _dataset(name, variant, folder, parts, class_names, names, notes)


def load_modelnet40(path: str | os.PathLike) -> EvalDataset:
    """ModelNet40 from a ``modelnet40_ply_hdf5_2048`` folder."""
    return load_h5_folder(path, name="modelnet40")


# ---------------------------------------------------------------- ScanObjectNN


def _scan_variant_of(file: Path) -> str | None:
    """The ScanObjectNN variant a file's folder and name say it is, None if they don't."""
    match = _SCAN_FILE.match(file.name)
    for variant, (folder, suffix) in SCANOBJECTNN_VARIANTS.items():
        if match and file.parent.name == folder and match[2] == suffix:
            return variant
    return None


def _check_variant(variant: str) -> None:
    if variant not in SCANOBJECTNN_VARIANTS:
        valid = ", ".join(SCANOBJECTNN_VARIANTS)
        raise DatasetError(f"unknown ScanObjectNN variant {variant!r}; valid: {valid}")


def _scan_folder_files(folder: Path, variant: str | None) -> tuple[str, Path, Path]:
    """(variant, train file, test file) of a ScanObjectNN folder such as main_split."""
    _require_folder(folder, "a folder holding training_objectdataset*.h5")
    valid = ", ".join(SCANOBJECTNN_VARIANTS)
    if variant is None:
        found = {
            v: folder / f"training_objectdataset{suffix}.h5"
            for v, (sub, suffix) in SCANOBJECTNN_VARIANTS.items()
            if folder.name == sub and (folder / f"training_objectdataset{suffix}.h5").exists()
        }
        if len(found) > 1:
            both = ", ".join(f"{v} ({file.name})" for v, file in found.items())
            raise _error(folder, f"holds several ScanObjectNN variants: {both}; pass the variant")
        if not found:
            if not any(folder.glob("training_objectdataset*.h5")):
                raise _error(folder, "no training_objectdataset*.h5 (not a ScanObjectNN folder)")
            raise _error(
                folder,
                f"cannot tell the ScanObjectNN variant from the folder name {folder.name!r}; "
                f"pass the variant ({valid})",
            )
        variant = next(iter(found))
    _check_variant(variant)
    sub, suffix = SCANOBJECTNN_VARIANTS[variant]
    known = {folder_name for folder_name, _ in SCANOBJECTNN_VARIANTS.values()}
    if folder.name in known and folder.name != sub:
        raise _error(folder, f"{variant} files are in {sub}, not {folder.name}")
    train = folder / f"training_objectdataset{suffix}.h5"
    test = folder / f"test_objectdataset{suffix}.h5"
    return variant, train, test


def _scan_explicit_variant(train: Path, test: Path, variant: str | None) -> str:
    """The variant of explicit train/test files: as given (if the names do not contradict
    it) or as their folder and names say."""
    said = {file: _scan_variant_of(file) for file in (train, test)}
    if variant is not None:
        _check_variant(variant)
        for file, other in said.items():
            if other is not None and other != variant:
                raise _error(file, f"its folder and name say {other}, not {variant}")
        return variant
    inferred = {v for v in said.values() if v is not None}
    if len(inferred) == 1 and None not in said.values():
        return inferred.pop()
    valid = ", ".join(SCANOBJECTNN_VARIANTS)
    raise _error(
        f"{train} and {test}",
        f"cannot tell the ScanObjectNN variant from the folder and file names; "
        f"pass the variant ({valid})",
    )


def load_scanobjectnn(
    path: str | os.PathLike | None = None,
    *,
    train: str | os.PathLike | None = None,
    test: str | os.PathLike | None = None,
    variant: str | None = None,
) -> EvalDataset:
    """ScanObjectNN from a folder (``h5_files/main_split`` ...) or explicit train and test
    h5 files; 15 classes (:data:`SCANOBJECTNN_CLASSES`), variant per
    :data:`SCANOBJECTNN_VARIANTS` (given, or inferred from folder and file names)."""
    if path is not None and (train is not None or test is not None):
        raise DatasetError("ScanObjectNN: give a folder or train and test files, not both")
    if path is not None:
        variant, train_file, test_file = _scan_folder_files(Path(path), variant)
        where: object = Path(path)
    elif train is not None and test is not None:
        train_file, test_file = Path(train), Path(test)
        for file in (train_file, test_file):
            _require_file(file)
        variant = _scan_explicit_variant(train_file, test_file, variant)
        where = f"{train_file} and {test_file}"
    else:
        raise DatasetError("ScanObjectNN needs a folder, or both a train and a test file")
    parts = {"train": [(train_file, *_read_h5(train_file))]}
    parts["test"] = [(test_file, *_read_h5(test_file))]
    classes = len(SCANOBJECTNN_CLASSES)
    _check_parts(where, parts, classes, "ScanObjectNN's class list")
    names = dict.fromkeys(SPLITS)
    return _dataset("scanobjectnn", variant, where, parts, SCANOBJECTNN_CLASSES, names, [])


# ---------------------------------------------------------------- shard sets


@dataclass
class _ShardCloud:
    key: str
    points: np.ndarray  # (P, 3) float32, normalised
    label: int
    category: str


def _shard_cloud(shard: Path, raw: dict) -> _ShardCloud | str:
    """One sample's cloud, label and category name; its key alone when the points are
    not finite (counted by the caller)."""
    from xpt.toolkit.shards.schema import META, POINTS, decode_entry

    key = raw["__key__"]
    missing = [entry for entry in (POINTS, META) if entry not in raw]
    if missing:
        raise _error(shard, f"sample {key}: missing entries {missing}")
    try:
        points = np.asarray(decode_entry(POINTS, raw[POINTS]))
        meta = decode_entry(META, raw[META])
    except ValueError as error:  # SchemaError, a bad .npy header, bad JSON
        raise _error(shard, f"sample {key}: undecodable entry ({error})") from None
    if points.ndim != 2 or points.shape[1] != 3 or not len(points) or points.dtype.kind != "f":
        raise _error(
            shard, f"sample {key}: points {points.shape} {points.dtype}, expected (N, 3) floats"
        )
    label = meta.get("label") if isinstance(meta, dict) else None
    if label is None:
        raise _error(shard, f"sample {key}: no label (json label is null): an unlabelled set")
    if not isinstance(label, int) or isinstance(label, bool) or label < 0:
        raise _error(shard, f"sample {key}: label {label!r} is not an integer >= 0")
    category = meta.get("category_name")
    if not isinstance(category, str):
        raise _error(shard, f"sample {key}: no category_name")
    if not np.isfinite(points).all():
        return key
    try:
        normalised = normalize_unit_sphere(points.astype(np.float64))
    except ValueError as error:
        raise _error(shard, f"sample {key}: {error}") from None
    return _ShardCloud(key, normalised, label, category)


def _read_shard(shard: Path, expected: int) -> list[_ShardCloud]:
    """Every sample of one shard (views never decoded); ``expected``: the manifest count."""
    from xpt.toolkit.shards.schema import SchemaError, iter_tar_samples

    _require_file(shard, "a shard tar")
    clouds: list[_ShardCloud] = []
    bad: list[str] = []
    try:
        for raw in iter_tar_samples(shard):
            cloud = _shard_cloud(shard, raw)
            if isinstance(cloud, str):
                bad.append(cloud)
            else:
                clouds.append(cloud)
    except (tarfile.TarError, EOFError, OSError, SchemaError) as error:
        raise _error(shard, f"corrupt shard: {error}") from None
    if bad:
        raise _error(shard, f"{len(bad)} clouds hold NaN or inf points (first: sample {bad[0]})")
    if len(clouds) != expected:
        raise _error(shard, f"holds {len(clouds)} samples, the manifest says {expected}")
    return clouds


def load_shards(path: str | os.PathLike) -> EvalDataset:
    """A labelled ``xpt shard`` set: train = its train split, test = its test split when
    it has one (a source's own, e.g. ModelNet's), else its val split.

    Each cloud is re-normalised as ModelNet h5 clouds are (centred on the mean, max radius
    1). Labels are renumbered 0..K-1 in label order when the set's labels have gaps (a set
    built from some procedural categories keeps their library labels); class names are the
    samples' ``category_name``; object names are the sample keys.
    """
    from xpt.toolkit.shards.manifest import MANIFEST, ManifestError, manifest_shards, read_manifest

    folder = _require_folder(Path(path), "an `xpt shard` output folder")
    try:
        manifest = read_manifest(folder)
    except ManifestError as error:
        raise DatasetError(" ".join(str(error).split())) from None
    infos = manifest_shards(manifest)
    held_out = "test" if infos["test"] else "val"
    if not infos[held_out]:
        raise _error(
            folder / MANIFEST,
            "lists no test or val shards, so nothing is held out to evaluate on (xpt shard "
            "puts every object in train by default: shard with --val-fraction 0.2, or from a "
            "source with a test split)",
        )
    notes = [
        f"test = the shard set's {held_out} split",
        "points re-normalised per cloud: centred on the mean, max radius 1 (as ModelNet h5)",
    ]
    if manifest.get("complete") is False:
        notes.append("the shard set is incomplete (an interrupted `xpt shard` run)")
    per_split: dict[str, list[tuple[Path, list[_ShardCloud]]]] = {}
    first: tuple[Path, _ShardCloud] | None = None
    named: dict[int, tuple[str, Path, str]] = {}  # label -> (name, shard, key) where first seen
    for split, shard_split in zip(SPLITS, ("train", held_out), strict=True):
        if not infos[shard_split]:
            raise _error(folder / MANIFEST, f"lists no {shard_split} shards")
        per_split[split] = []
        for info in infos[shard_split]:
            shard = folder / info.name
            clouds = _read_shard(shard, info.samples)
            for cloud in clouds:
                first = first or (shard, cloud)
                if len(cloud.points) != len(first[1].points):
                    raise _error(
                        shard,
                        f"sample {cloud.key} has {len(cloud.points)} points, but sample "
                        f"{first[1].key} in {first[0].name} has {len(first[1].points)}",
                    )
                seen = named.setdefault(cloud.label, (cloud.category, shard, cloud.key))
                if seen[0] != cloud.category:
                    raise _error(
                        shard,
                        f"sample {cloud.key}: label {cloud.label} is {cloud.category!r}, "
                        f"but {seen[0]!r} for sample {seen[2]} in {seen[1].name}",
                    )
            per_split[split].append((shard, clouds))
    labels = sorted(named)
    if labels != list(range(len(labels))):
        notes.append(f"shard labels {labels[0]}..{labels[-1]} renumbered 0..{len(labels) - 1}")
    index = {label: i for i, label in enumerate(labels)}
    parts: dict[str, list[_Part]] = {}
    keys: dict[str, tuple[str, ...] | None] = {}
    for split, shards in per_split.items():
        parts[split] = [
            (
                shard,
                np.stack([c.points for c in clouds]).astype(np.float32, copy=False),
                np.array([index[c.label] for c in clouds], dtype=np.int64),
            )
            for shard, clouds in shards
            if clouds
        ]
        keys[split] = tuple(c.key for _, clouds in shards for c in clouds)
    class_names = tuple(named[label][0] for label in labels)
    _check_parts(folder, parts, len(class_names), "the shards' labels")
    return _dataset("shards", None, folder, parts, class_names, keys, notes)


# ---------------------------------------------------------------- procedural sets


def default_cache_dir() -> Path:
    """Where generated sets are kept: $XPT_CACHE, else $XDG_CACHE_HOME/xpt, else ~/.cache/xpt."""
    if os.environ.get("XPT_CACHE"):
        return Path(os.environ["XPT_CACHE"])
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]) / "xpt"
    return Path.home() / ".cache" / "xpt"


def _record(folder: Path) -> dict | None:
    """``eval_set.json`` of a generated folder (written last: its presence marks a whole set)."""
    try:
        record = json.loads((folder / RECORD).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return record if isinstance(record, dict) else None


def _check_per_category(per_category: int) -> None:
    if per_category < 1:
        raise DatasetError(f"per_category must be >= 1, got {per_category}")


def load_procedural(
    data: str | os.PathLike | None = None,
    *,
    per_category: int = 20,
    seed: int = 0,
    cache_dir: str | os.PathLike | None = None,
) -> EvalDataset:
    """The procedural set: from ``data`` (an h5 folder) or generated once into
    ``<cache_dir>/procedural-pc<per_category>-s<seed>`` and read from there after."""
    if data is not None:
        return load_h5_folder(data, name="procedural")
    _check_per_category(per_category)
    folder = Path(cache_dir or default_cache_dir()) / f"procedural-pc{per_category}-s{seed}"
    record = _record(folder)
    if record is None or (record.get("per_category"), record.get("seed")) != (per_category, seed):
        write_eval_set(folder, per_category, seed)
    dataset = load_h5_folder(folder, name="procedural")
    note = f"generated by xpt (per_category={per_category}, seed={seed})"
    return replace(dataset, notes=(*dataset.notes, note))


def load_procedural_scan(
    data: str | os.PathLike | None = None,
    *,
    variant: str = "rotated",
    per_category: int = 100,
    seed: int = 0,
    cache_dir: str | os.PathLike | None = None,
) -> EvalDataset:
    """The procedural-scan set (``variant`` rotated or upright): ``<data>/<variant>`` of a
    folder written by ``xpt synth --eval --scan``, or generated once into
    ``<cache_dir>/procedural-scan-pc<per_category>-s<seed>`` and read from there after."""
    if variant not in SCAN_VARIANTS:
        raise DatasetError(
            f"unknown procedural-scan variant {variant!r}; valid: {', '.join(SCAN_VARIANTS)}"
        )
    if data is not None:
        root = _require_folder(Path(data), "the folder of `xpt synth --eval --scan`")
        if not (root / variant).is_dir():
            raise _error(
                root,
                f"no {variant}/ sub-folder (expected the folder of `xpt synth --eval --scan`, "
                f"holding {' and '.join(f'{v}/' for v in SCAN_VARIANTS)})",
            )
    else:
        _check_per_category(per_category)
        root = Path(cache_dir or default_cache_dir()) / f"procedural-scan-pc{per_category}-s{seed}"
        if not all((root / v / RECORD).is_file() for v in SCAN_VARIANTS):
            from xpt.benchmarks.scanset import write_scan_set

            write_scan_set(root, per_category, seed)
    dataset = load_h5_folder(root / variant, name="procedural-scan", variant=variant)
    if data is None:
        note = f"generated by xpt (per_category={per_category}, seed={seed})"
        dataset = replace(dataset, notes=(*dataset.notes, note))
    return dataset


# ---------------------------------------------------------------- dispatch


def load_dataset(
    name: str,
    data: Path | None = None,
    *,
    variant: str | None = None,
    train: Path | None = None,
    test: Path | None = None,
    per_category: int | None = None,
    seed: int = 0,
    cache_dir: Path | None = None,
    point_set: PointSetOptions | None = None,
) -> EvalDataset:
    """The dataset ``name`` (one of :data:`DATASETS`) with the options that apply to it;
    an option that does not apply is refused rather than ignored. ``point_set`` says how a
    ModelNet folder is read (:mod:`xpt.benchmarks.pointsets`). A set named as a published
    one that differs from it carries a note saying so (:func:`standard_note`)."""
    if name not in DATASETS:
        raise DatasetError(f"unknown dataset {name!r}; valid: {', '.join(DATASETS)}")
    if (train is not None or test is not None) and name != "scanobjectnn":
        raise DatasetError(f"--train/--test apply to scanobjectnn only, not {name}")
    if variant is not None and name not in ("scanobjectnn", "procedural-scan"):
        raise DatasetError(f"{name} has no variants (got {variant!r})")
    generated = name in ("procedural", "procedural-scan") and data is None
    if per_category is not None and not generated:
        raise DatasetError(f"per_category applies only to a generated procedural set, not {name}")
    if point_set is not None and name not in MODELNET:
        raise DatasetError(f"--format and --up-axis apply to {' and '.join(MODELNET)}, not {name}")
    if name in (*MODELNET, "shards") and data is None:
        raise DatasetError(f"{name}: --data is needed (the folder to read)")
    return _with_standard_note(
        _load(name, data, variant, train, test, per_category, seed, cache_dir, point_set)
    )


def _load(
    name: str,
    data: Path | None,
    variant: str | None,
    train: Path | None,
    test: Path | None,
    per_category: int | None,
    seed: int,
    cache_dir: Path | None,
    point_set: PointSetOptions | None,
) -> EvalDataset:
    """:func:`load_dataset` once its options are checked."""
    if name in MODELNET:
        from xpt.benchmarks.pointsets import PointSetOptions, load_point_set

        return load_point_set(data, name, point_set or PointSetOptions())
    if name == "shards":
        return load_shards(data)
    if name == "scanobjectnn":
        if data is None and (train is None or test is None):
            raise DatasetError(
                "scanobjectnn: --data (a folder such as main_split) or --train and --test is needed"
            )
        return load_scanobjectnn(data, train=train, test=test, variant=variant)
    extra = {} if per_category is None else {"per_category": per_category}
    if name == "procedural":
        return load_procedural(data, seed=seed, cache_dir=cache_dir, **extra)
    return load_procedural_scan(
        data, variant=variant or "rotated", seed=seed, cache_dir=cache_dir, **extra
    )
