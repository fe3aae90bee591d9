"""Part-segmentation data: ShapeNetPart in its two published layouts, read into one model.

A :class:`PartSet` holds named :class:`PartSplit` s (``train``, ``test`` and, when the source
has one, ``val``): points (N, P, 3) float32, one category (N,) int64 per shape and one
GLOBAL part id (N, P) int64 per point; category ``c`` owns the part ids
``range(*part_ranges[c])`` (ShapeNetPart: 16 categories, 50 part ids).

Readers:

* :func:`read_dgcnn_h5`: the ``shapenet_part_seg_hdf5_data`` release (PointNet's
  ``hdf5_data`` folder) that DGCNN and CrossPoint read: ``ply_data_<split><i>.h5`` with
  ``data`` (N, 2048, 3) float32, ``label`` (N, 1) uint8 and ``pid`` (N, 2048) uint8.
* :func:`read_partanno`: ``shapenetcore_partanno_segmentation_benchmark_v0_normal`` (the
  PointNet++ release): one ``<synset>/<id>.txt`` of "x y z nx ny nz part" rows a shape and
  ``train_test_split/shuffled_<split>_file_list.json``.
* :func:`load_part_set`: a dataset name and a path -> the set, the layout recognised.

Malformed data raises :class:`PartSetError`, one line naming the file and the problem.
:func:`label_fraction` draws the seeded, category-stratified subsets of the label-efficiency
runs.
"""

from __future__ import annotations

import json
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from xpt.toolkit.meshes.load import is_number
from xpt.toolkit.seeding import rng

PART_SETS = ("shapenetpart", "procedural-parts")
SPLITS = ("train", "val", "test")  # val may be absent from a set
SHAPENETPART_CATEGORIES = (
    "airplane", "bag", "cap", "car", "chair", "earphone", "guitar", "knife", "lamp",
    "laptop", "motorbike", "mug", "pistol", "rocket", "skateboard", "table",
)  # fmt: skip
# ShapeNetCore synset of each category, as synsetoffset2category.txt and
# all_object_categories.txt list them (same order).
SHAPENETPART_SYNSETS = (
    "02691156", "02773838", "02954340", "02958343", "03001627", "03261776", "03467517",
    "03624134", "03636649", "03642806", "03790512", "03797390", "03948459", "04099429",
    "04225987", "04379243",
)  # fmt: skip
SHAPENETPART_PARTS_PER_CATEGORY = (4, 2, 2, 4, 4, 3, 3, 2, 4, 2, 6, 2, 3, 3, 3, 3)
# Shapes per split in both releases (16,881 in all); CrossPoint fine-tunes on train + val.
SHAPENETPART_SPLIT_SIZES = {"train": 12137, "val": 1870, "test": 2874}

H5_FOLDERS = ("hdf5_data", "shapenet_part_seg_hdf5_data")
H5_CATEGORY_FILE = "all_object_categories.txt"
PARTANNO_FOLDER = "shapenetcore_partanno_segmentation_benchmark_v0_normal"
PARTANNO_CATEGORY_FILE = "synsetoffset2category.txt"
PARTANNO_SPLIT_FOLDER = "train_test_split"
_PARTANNO_COLUMNS = 7  # x y z nx ny nz part


class PartSetError(ValueError):
    """Malformed or unusable part-segmentation data; the message is one line naming the file
    and the reason."""


def _error(where: object, problem: str) -> PartSetError:
    return PartSetError(" ".join(f"{where}: {problem}".split()))


def part_ranges_from_counts(counts: tuple[int, ...]) -> tuple[tuple[int, int], ...]:
    """Per category ``[start, stop)`` of its global part ids, categories numbered in turn."""
    stops = np.cumsum(counts).tolist()
    return tuple((stop - count, stop) for count, stop in zip(counts, stops, strict=True))


SHAPENETPART_PART_RANGES = part_ranges_from_counts(SHAPENETPART_PARTS_PER_CATEGORY)


@dataclass(frozen=True, eq=False)
class PartSplit:
    """One split: ``points`` (N, P, 3) float32, ``category`` (N,) int64 (index into the set's
    categories), ``parts`` (N, P) int64 global part ids, ``shape_ids`` (N,) when the source
    names its shapes (e.g. ``"02691156/1a04e3eab45ca15dd86060f189eb133"``)."""

    points: np.ndarray
    category: np.ndarray
    parts: np.ndarray
    shape_ids: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        n = len(self.points)
        if self.points.ndim != 3 or self.points.shape[2] != 3:
            raise ValueError(f"points have shape {self.points.shape}, expected (N, P, 3)")
        if self.category.shape != (n,):
            raise ValueError(f"category has shape {self.category.shape}, expected ({n},)")
        if self.parts.shape != self.points.shape[:2]:
            raise ValueError(
                f"parts have shape {self.parts.shape}, expected {self.points.shape[:2]}"
            )
        if self.shape_ids is not None and len(self.shape_ids) != n:
            raise ValueError(f"{len(self.shape_ids)} shape ids for {n} shapes")

    def __len__(self) -> int:
        return len(self.points)

    def subset(self, index: np.ndarray) -> PartSplit:
        """The shapes at ``index`` (integer indices), in that order."""
        index = np.asarray(index)
        if index.dtype.kind not in "iu":
            raise ValueError(f"subset takes integer indices, got {index.dtype}")
        ids = None if self.shape_ids is None else tuple(self.shape_ids[i] for i in index)
        return PartSplit(self.points[index], self.category[index], self.parts[index], ids)


@dataclass(frozen=True, eq=False)
class PartSet:
    """A checked part-segmentation set. ``part_ranges[c]`` is category ``c``'s
    ``[start, stop)`` of global part ids; ``source`` the path read, for reports."""

    name: str
    categories: tuple[str, ...]
    part_ranges: tuple[tuple[int, int], ...]
    splits: Mapping[str, PartSplit]
    part_names: tuple[str, ...] | None = None
    source: str = ""

    def __post_init__(self) -> None:
        if len(self.part_ranges) != len(self.categories):
            raise ValueError(
                f"{len(self.part_ranges)} part ranges for {len(self.categories)} categories"
            )
        if self.part_names is not None and len(self.part_names) != self.num_parts:
            raise ValueError(f"{len(self.part_names)} part names for {self.num_parts} parts")

    @property
    def num_parts(self) -> int:
        """How many global part ids the categories own together."""
        return max((stop for _, stop in self.part_ranges), default=0)

    def parts_of(self, category: int) -> range:
        """The global part ids of ``category``."""
        return range(*self.part_ranges[category])


# ---------------------------------------------------------------- the published set


def is_standard(part_set: PartSet) -> bool | None:
    """Whether a set read as ShapeNetPart is the published one (its 16 categories in label
    order, its part ranges and split sizes); None for a set named as no published one."""
    if part_set.name != "shapenetpart":
        return None
    sizes = {split: len(values) for split, values in part_set.splits.items()}
    return (
        part_set.categories == SHAPENETPART_CATEGORIES
        and part_set.part_ranges == SHAPENETPART_PART_RANGES
        and sizes == SHAPENETPART_SPLIT_SIZES
    )


def standard_note(part_set: PartSet) -> str | None:
    """One line for reports saying how a set read as ShapeNetPart differs from the published
    one, None when it is that set or is named as no published set."""
    if is_standard(part_set) is not False:
        return None
    expected = " / ".join(f"{count} {split}" for split, count in SHAPENETPART_SPLIT_SIZES.items())
    found = " / ".join(f"{len(values)} {split}" for split, values in part_set.splits.items())
    return (
        f"not the standard ShapeNetPart ({expected} shapes; this set: {found}): "
        "no paper figure is shown beside it"
    )


def _category_lines(path: Path) -> list[tuple[str, str]]:
    """(name, synset) of each "Name<tab>synset" line of a category file, checked against the
    ShapeNetPart synsets."""
    try:
        lines = [line.split() for line in path.read_text().splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as error:
        raise _error(path, f"unreadable: {error}") from None
    bad = next((i for i, fields in enumerate(lines) if len(fields) != 2), None)
    if bad is not None:
        raise _error(path, f"line {bad + 1} is not 'Name<tab>synset': {' '.join(lines[bad])}")
    unknown = [synset for _, synset in lines if synset not in SHAPENETPART_SYNSETS]
    if unknown:
        raise _error(path, f"synset {unknown[0]} is not one of the 16 ShapeNetPart categories")
    return [(name, synset) for name, synset in lines]


# ---------------------------------------------------------------- DGCNN's h5 release


def _h5_folder(root: Path) -> Path | None:
    """The folder holding the h5 files: ``root`` itself, or ``hdf5_data`` /
    ``shapenet_part_seg_hdf5_data`` (/ ``hdf5_data``) under it; None when none holds any."""
    candidates = [
        root,
        root / H5_FOLDERS[0],
        root / H5_FOLDERS[1],
        root.joinpath(*H5_FOLDERS[::-1]),
    ]
    for folder in candidates:
        if folder.is_dir() and any(folder.glob("*.h5")):
            return folder
    return None


def _natural_key(path: Path) -> list[object]:
    """Sort key comparing digit runs as numbers (train2 before train10)."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name)]


def h5_split_files(folder: Path, split: str) -> list[Path]:
    """A split's h5 files: those ``<split>_hdf5_file_list.txt`` names when it exists (one file
    name a line, PointNet's layout), else the release's glob ``*<split>*.h5``. Sorted in both
    cases: the release's glob is not (it concatenates in the file system's listing order),
    so its shape order is not reproducible; ours is."""
    listing = folder / f"{split}_hdf5_file_list.txt"
    if not listing.exists():
        return sorted(folder.glob(f"*{split}*.h5"), key=_natural_key)
    try:
        names = [line.strip() for line in listing.read_text().splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as error:
        raise _error(listing, f"unreadable: {error}") from None
    files = [folder / Path(name).name for name in names]
    missing = [path.name for path in files if not path.is_file()]
    if missing:
        raise _error(listing, f"lists {missing[0]}, which is not in {folder}")
    return sorted(files, key=_natural_key)


def _h5_arrays(path: Path) -> dict[str, np.ndarray]:
    """``data``, ``label`` and ``pid`` of one h5 file, as stored."""
    from xpt.toolkit.h5files import H5Error, read_datasets

    try:
        return read_datasets(path, ("data", "label", "pid"))
    except H5Error as error:
        raise _error(path, str(error)) from None


def _check_h5_shapes(path: Path, data: np.ndarray, label: np.ndarray, pid: np.ndarray) -> None:
    if data.ndim != 3 or data.shape[2] != 3 or data.dtype.kind != "f":
        raise _error(path, f"'data' is {data.dtype} {data.shape}, expected float (N, P, 3)")
    n, points = data.shape[:2]
    if label.dtype.kind not in "iu" or label.shape not in ((n,), (n, 1)):
        raise _error(
            path, f"'label' is {label.dtype} {label.shape}, expected integers ({n}, 1) for "
            f"the {n} shapes of 'data'"
        )  # fmt: skip
    if pid.dtype.kind not in "iu" or pid.shape != (n, points):
        raise _error(
            path, f"'pid' is {pid.dtype} {pid.shape}, expected integers ({n}, {points}) as "
            f"'data' holds {n} shapes of {points} points"
        )  # fmt: skip
    if not np.isfinite(data).all():
        raise _error(path, "'data' holds NaN or inf coordinates")


def _check_labels(
    path: Path,
    category: np.ndarray,
    parts: np.ndarray,
    names: tuple[str, ...],
    part_ranges: tuple[tuple[int, int], ...],
) -> None:
    """Every label indexes ``names`` and every part id lies inside its shape's category
    range; shapes are counted from 0 in the file."""
    categories = len(names)
    outside = (category < 0) | (category >= categories)
    if outside.any():
        first = int(np.flatnonzero(outside)[0])
        raise _error(
            path, f"{int(outside.sum())} labels outside 0..{categories - 1} "
            f"(first: shape {first}, label {int(category[first])})"
        )  # fmt: skip
    ranges = np.asarray(part_ranges)[category]  # (N, 2)
    bad = (parts < ranges[:, :1]) | (parts >= ranges[:, 1:])
    if bad.any():
        first = int(np.flatnonzero(bad.any(axis=1))[0])
        start, stop = part_ranges[category[first]]
        found = int(parts[first][bad[first]][0])
        raise _error(
            path, f"{int(bad.sum())} part ids outside their category's range (first: "
            f"shape {first}, a {names[category[first]]}, part {found} not "
            f"in {start}..{stop - 1})"
        )  # fmt: skip


def _read_h5_file(
    path: Path, names: tuple[str, ...], part_ranges: tuple[tuple[int, int], ...]
) -> PartSplit:
    """One checked ``ply_data_*.h5`` file of the layout."""
    arrays = _h5_arrays(path)
    data, label, pid = arrays["data"], arrays["label"], arrays["pid"]
    _check_h5_shapes(path, data, label, pid)
    category = label.reshape(-1).astype(np.int64)
    parts = pid.astype(np.int64)
    _check_labels(path, category, parts, names, part_ranges)
    return PartSplit(data.astype(np.float32, copy=False), category, parts)


def _check_point_count(pieces: list[tuple[Path, PartSplit]]) -> None:
    """Every file of a set must hold clouds of one point count."""
    first, first_piece = pieces[0]
    points = first_piece.points.shape[1]
    for path, piece in pieces:
        if piece.points.shape[1] != points:
            raise _error(
                path, f"clouds of {piece.points.shape[1]} points, but {first.name} has "
                f"clouds of {points}: a set needs one point count"
            )  # fmt: skip


def _concatenate(pieces: list[PartSplit]) -> PartSplit:
    return PartSplit(
        np.concatenate([piece.points for piece in pieces]),
        np.concatenate([piece.category for piece in pieces]),
        np.concatenate([piece.parts for piece in pieces]),
    )


def read_dgcnn_h5(
    root: Path,
    *,
    name: str = "shapenetpart",
    categories: tuple[str, ...] = SHAPENETPART_CATEGORIES,
    part_ranges: tuple[tuple[int, int], ...] = SHAPENETPART_PART_RANGES,
    part_names: tuple[str, ...] | None = None,
) -> PartSet:
    """ShapeNetPart from DGCNN's ``shapenet_part_seg_hdf5_data`` release.

    ``root`` is the folder of the h5 files (PointNet's ``hdf5_data``), the
    ``shapenet_part_seg_hdf5_data`` folder holding it (or holding the files, as CrossPoint's
    download leaves them) or a folder above. Each split's files come from PointNet's
    ``<split>_hdf5_file_list.txt`` when present, else the release's ``*<split>*.h5`` glob;
    ``val`` may be absent. Labels index :data:`SHAPENETPART_CATEGORIES` (checked against
    ``all_object_categories.txt`` when present), ``pid`` are global part ids; clouds keep
    all their points (2,048 in the release) as stored.

    Another set in the same layout (``procedural-parts``) passes its own ``name``,
    ``categories``, ``part_ranges`` and ``part_names``; its labels are checked against those.
    """
    root = Path(root)
    folder = _h5_folder(root)
    if folder is None:
        raise _error(root, "no h5 files here, in hdf5_data/ or in shapenet_part_seg_hdf5_data/")
    category_file = folder / H5_CATEGORY_FILE
    if category_file.exists() and categories == SHAPENETPART_CATEGORIES:
        _check_category_order(category_file)
    files: dict[str, list[Path]] = {}
    for split in SPLITS:
        files[split] = h5_split_files(folder, split)
        if not files[split] and split != "val":
            raise _error(folder, f"no h5 files for the {split} split (no *{split}*.h5)")
    pieces = {
        split: [(path, _read_h5_file(path, categories, part_ranges)) for path in paths]
        for split, paths in files.items()
    }
    _check_point_count([piece for split_pieces in pieces.values() for piece in split_pieces])
    splits = {
        split: _concatenate([piece for _, piece in split_pieces])
        for split, split_pieces in pieces.items()
        if split_pieces
    }
    for split, values in splits.items():
        if len(values) == 0:
            named = ", ".join(path.name for path in files[split])
            raise _error(folder, f"the {split} split holds 0 shapes ({named})")
    return PartSet(
        name=name,
        categories=categories,
        part_ranges=part_ranges,
        splits=splits,
        part_names=part_names,
        source=str(folder),
    )


def _check_category_order(path: Path) -> None:
    """``all_object_categories.txt`` must list the 16 synsets in label order."""
    synsets = tuple(synset for _, synset in _category_lines(path))
    if synsets != SHAPENETPART_SYNSETS:
        raise _error(
            path, f"lists {len(synsets)} synsets that are not the 16 ShapeNetPart categories "
            "in label order (airplane 02691156 ... table 04379243), so its labels are not theirs"
        )  # fmt: skip


# ---------------------------------------------------------------- the partanno txt release


def _partanno_folder(root: Path) -> Path | None:
    """``root`` or its ``shapenetcore_partanno_segmentation_benchmark_v0_normal`` folder,
    whichever holds ``synsetoffset2category.txt``; None when neither does."""
    for folder in (root, root / PARTANNO_FOLDER):
        if (folder / PARTANNO_CATEGORY_FILE).is_file():
            return folder
    return None


def _split_list(path: Path) -> list[tuple[str, str]]:
    """(synset, id) of each ``shape_data/<synset>/<id>`` entry of a split's json list."""
    try:
        listed = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise _error(path, f"unreadable: {error}") from None
    if not isinstance(listed, list) or not all(isinstance(item, str) for item in listed):
        raise _error(path, "not a JSON list of 'shape_data/<synset>/<id>' strings")
    entries = [item.split("/")[-2:] for item in listed]
    bad = next(
        (
            item
            for item, parts in zip(listed, entries, strict=True)
            if len(parts) != 2 or not all(parts)
        ),
        None,
    )
    if bad is not None:
        raise _error(path, f"entry '{bad}' is not 'shape_data/<synset>/<id>'")
    return [(synset, shape) for synset, shape in entries]


def _row_problem(path: Path) -> str:
    """What is wrong with the first bad line of a shape file (a Python pass, run only once
    the fast parser has refused the file)."""
    for number, line in enumerate(path.read_text(errors="replace").splitlines(), start=1):
        fields = line.split()
        if fields and len(fields) != _PARTANNO_COLUMNS:
            return f"line {number} has {len(fields)} columns, expected 7 (x y z nx ny nz part)"
        bad = next((field for field in fields if not is_number(field)), None)
        if bad is not None:
            return f"line {number}: '{bad}' is not a number"
    return "not rows of 7 numbers (x y z nx ny nz part)"


def _read_rows(path: Path) -> np.ndarray:
    """The (n, 7) float32 rows "x y z nx ny nz part" of one shape file. np.loadtxt is the
    fastest parser here (C since numpy 1.23, ~1.3 ms for 2,800 rows, ahead of splitting
    the text); a refused file gets a second pass that names its bad line."""
    if not path.is_file():
        raise _error(path, "no such file (listed in the split lists)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # an empty file; refused below
            rows = np.loadtxt(path, dtype=np.float32, ndmin=2)
    except (ValueError, UnicodeDecodeError):
        raise _error(path, _row_problem(path)) from None
    except OSError as error:
        raise _error(path, f"unreadable: {error}") from None
    if rows.size == 0:
        raise _error(path, "holds no points")
    if rows.shape[1] != _PARTANNO_COLUMNS:
        raise _error(path, _row_problem(path))
    return rows


def sample_rows(count: int, points: int, seed: int, shape_id: str) -> np.ndarray:
    """``points`` row indices out of ``count``, a fixed function of (seed, shape id): without
    replacement when there are enough rows, else every row once plus random repeats; in a
    random order, so any prefix is itself a uniform sample."""
    generator = rng(seed, "partanno-points", shape_id)
    if count >= points:
        return generator.choice(count, size=points, replace=False)
    extra = generator.choice(count, size=points - count, replace=True)
    return generator.permutation(np.concatenate([np.arange(count), extra]))


def _read_shape(
    path: Path, category: int, points: int, seed: int, shape_id: str
) -> tuple[np.ndarray, np.ndarray]:
    """(xyz (points, 3) float32, parts (points,) int64) of one shape file, checked."""
    rows = _read_rows(path)
    if not np.isfinite(rows).all():
        raise _error(path, "holds NaN or inf values")
    parts = rows[:, 6].astype(np.int64)
    start, stop = SHAPENETPART_PART_RANGES[category]
    bad = (parts != rows[:, 6]) | (parts < start) | (parts >= stop)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise _error(
            path, f"{int(bad.sum())} rows whose part (7th column) is not a part id of "
            f"{SHAPENETPART_CATEGORIES[category]} ({start}..{stop - 1}; first: row {first + 1}, "
            f"part {rows[first, 6]:g})"
        )  # fmt: skip
    chosen = sample_rows(len(rows), points, seed, shape_id)
    return rows[chosen, :3], parts[chosen]


def _read_partanno_split(
    folder: Path, listing: Path, synsets: dict[str, int], points: int, seed: int
) -> PartSplit:
    entries = _split_list(listing)
    if not entries:
        raise _error(listing, "lists no shapes")
    xyz, parts, category, ids = [], [], [], []
    for synset, shape in entries:
        if synset not in synsets:
            raise _error(
                listing, f"lists a shape of synset {synset}, not in {PARTANNO_CATEGORY_FILE}"
            )
        shape_id = f"{synset}/{shape}"
        cloud, labels = _read_shape(
            folder / synset / f"{shape}.txt", synsets[synset], points, seed, shape_id
        )
        xyz.append(cloud)
        parts.append(labels)
        category.append(synsets[synset])
        ids.append(shape_id)
    return PartSplit(
        np.stack(xyz), np.asarray(category, dtype=np.int64), np.stack(parts), tuple(ids)
    )


def read_partanno(root: Path, points: int = 2048, seed: int = 0) -> PartSet:
    """ShapeNetPart from ``shapenetcore_partanno_segmentation_benchmark_v0_normal``.

    ``root`` is that folder (or the one above). Shapes come from
    ``train_test_split/shuffled_<split>_file_list.json`` in listed order (``val`` may be
    absent); each file's part column is the global part id. Shapes hold varying point
    counts: ``points`` rows are drawn per shape (:func:`sample_rows`, seeded by ``seed`` and
    the shape id). Normals are dropped; coordinates are kept as stored (this release is
    already normalised).
    """
    root = Path(root)
    folder = _partanno_folder(root)
    if folder is None:
        raise _error(root, f"no {PARTANNO_CATEGORY_FILE} here or in {PARTANNO_FOLDER}/")
    if points < 1:
        raise ValueError(f"points must be at least 1, got {points}")
    synsets = {
        synset: SHAPENETPART_SYNSETS.index(synset)
        for _, synset in _category_lines(folder / PARTANNO_CATEGORY_FILE)
    }
    splits: dict[str, PartSplit] = {}
    for split in SPLITS:
        listing = folder / PARTANNO_SPLIT_FOLDER / f"shuffled_{split}_file_list.json"
        if not listing.exists() and split == "val":
            continue
        if not listing.exists():
            raise _error(listing, f"no such file (the {split} split's shape list)")
        splits[split] = _read_partanno_split(folder, listing, synsets, points, seed)
    return PartSet(
        name="shapenetpart",
        categories=SHAPENETPART_CATEGORIES,
        part_ranges=SHAPENETPART_PART_RANGES,
        splits=splits,
        source=str(folder),
    )


# ---------------------------------------------------------------- by name


def first_points(part_set: PartSet, points: int) -> PartSet:
    """Each cloud's first ``points`` points (the release itself uses all 2,048)."""
    stored = next(iter(part_set.splits.values())).points.shape[1]
    if points > stored:
        raise _error(
            part_set.source, f"clouds of {stored} points, fewer than the {points} asked for"
        )
    splits = {
        name: PartSplit(
            split.points[:, :points], split.category, split.parts[:, :points], split.shape_ids
        )
        for name, split in part_set.splits.items()
    }
    return replace(part_set, splits=splits)


def load_part_set(
    dataset: str,
    data: Path | None,
    *,
    points: int = 2048,
    seed: int = 0,
    per_category: int | None = None,
) -> PartSet:
    """The part set named ``dataset`` (:data:`PART_SETS`): ``shapenetpart`` from ``data`` in
    either published layout (recognised from its files; h5 clouds cut to their first
    ``points`` points; ``seed`` draws the partanno layout's points), ``procedural-parts``
    from xpt's embedded generator (``per_category`` objects, generated with seed 0 whatever
    ``seed``: every fine-tuning seed sees the same set)."""
    if dataset == "procedural-parts":
        from xpt.partseg.procedural import DEFAULT_PER_CATEGORY, load_procedural_parts

        return load_procedural_parts(
            data, points=points, per_category=per_category or DEFAULT_PER_CATEGORY
        )
    if dataset != "shapenetpart":
        raise PartSetError(
            f"unknown part-segmentation dataset '{dataset}' (known: {', '.join(PART_SETS)})"
        )
    if data is None:
        raise PartSetError(
            "shapenetpart needs a data folder (DGCNN's h5 release or the partanno txt release)"
        )
    if points < 1:
        raise ValueError(f"points must be at least 1, got {points}")
    data = Path(data)
    if not data.exists():
        raise _error(data, "no such folder (expected a ShapeNetPart release)")
    if not data.is_dir():
        raise _error(data, "is a file, expected a ShapeNetPart release folder")
    if _h5_folder(data) is not None:
        return first_points(read_dgcnn_h5(data), points)
    if _partanno_folder(data) is not None:
        return read_partanno(data, points=points, seed=seed)
    raise _error(
        data, "not a ShapeNetPart folder: expected DGCNN's h5 release (ply_data_*.h5 with "
        "data, label, pid; here, in hdf5_data/ or in shapenet_part_seg_hdf5_data/) or the "
        f"partanno txt release ({PARTANNO_CATEGORY_FILE}, {PARTANNO_SPLIT_FOLDER}/"
        "shuffled_*_file_list.json, <synset>/<id>.txt)"
    )  # fmt: skip


# ---------------------------------------------------------------- label fractions


def label_fraction(split: PartSplit, fraction: float, seed: int) -> np.ndarray:
    """Sorted indices (int64) of a seeded ``fraction`` of ``split``'s shapes, stratified by
    category: per category ``round(fraction * count)`` shapes (halves round up), at least
    one for every category present. Each category's shapes are taken in a fixed seeded
    order, so smaller fractions are subsets of larger ones under one seed."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    if fraction == 1.0:
        return np.arange(len(split), dtype=np.int64)
    chosen = [np.empty(0, dtype=np.int64)]
    for category in np.unique(split.category):
        members = np.flatnonzero(split.category == category)
        keep = max(1, min(len(members), int(np.floor(fraction * len(members) + 0.5))))
        order = rng(seed, "label-fraction", int(category)).permutation(len(members))
        chosen.append(members[order[:keep]])
    return np.sort(np.concatenate(chosen)).astype(np.int64)
