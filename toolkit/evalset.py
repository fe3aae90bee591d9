"""The labelled procedural evaluation set, in the exact ``modelnet40_ply_hdf5_2048`` layout.

::

    <out>/ply_data_train0.h5 ...   data float32 (n, P, 3), label uint8 (n, 1),
    <out>/ply_data_test0.h5 ...    normal float32 (n, P, 3); at most 2048 shapes a file
    <out>/ply_data_train_0_id2file.json ...   "category/model_id" per shape
    <out>/shape_names.txt          one category name a line (library order); label = line
    <out>/train_files.txt          data/<out name>/ply_data_train0.h5 ... (ModelNet's style)
    <out>/test_files.txt
    <out>/eval_set.json            seed, counts and categories (xpt's own record)

The objects come from ``xpt.toolkit.procedural.objects(..., eval=True)``: instances
disjoint from the pretraining set, drawn from the wider parameter range, including
categories the pretraining set does not have. Points are normalised as in
ModelNet's h5 files: centred on their mean, scaled into the unit sphere.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from xpt import __version__
from xpt.toolkit.failures import FAILURES_FILE, Failure, FailureLog
from xpt.toolkit.fsio import TMP_PREFIX, atomic_write_json, atomic_write_text
from xpt.toolkit.meshes.geometry import as_mesh
from xpt.toolkit.meshes.objects import MeshObject
from xpt.toolkit.meshes.sampling import sample_surface
from xpt.toolkit.seeding import derive_seed, rng, stable_fraction

SHAPES_PER_FILE = 2048  # as in modelnet40_ply_hdf5_2048
SPLITS = ("train", "test")
STAGE = "eval-set"
# The layout's names: h5 datasets and the files beside them.
DATA, LABEL, NORMAL = "data", "label", "normal"
SHAPE_NAMES = "shape_names.txt"
RECORD = "eval_set.json"


@dataclass
class EvalSetResult:
    out: Path
    shape_names: list[str]
    counts: dict[str, int]
    files: dict[str, list[str]]
    failures: list[Failure] = field(default_factory=list)

    def summary(self) -> dict:
        return {
            "out": str(self.out),
            "categories": len(self.shape_names),
            "train": self.counts["train"],
            "test": self.counts["test"],
            "files": sum(len(f) for f in self.files.values()),
            "failed": len(self.failures),
        }


def normalize_unit_sphere(points: np.ndarray) -> np.ndarray:
    """ModelNet h5 normalisation: (n, 3) -> centred on the mean, max radius 1, float32."""
    centred = np.asarray(points, dtype=np.float64) - np.mean(points, axis=0)
    radius = float(np.linalg.norm(centred, axis=1).max())
    if radius <= 0.0:
        raise ValueError("all points coincide")
    return (centred / radius).astype(np.float32)


def split_objects(
    objects: Sequence[MeshObject], test_fraction: float, seed: int
) -> dict[str, list[MeshObject]]:
    """Train/test lists, each in a seeded order.

    An object's own ``split`` ("train"/"test", as the procedural library assigns) is
    kept; for the others, per category, a stable ``test_fraction`` share (at least
    one when the category has two or more such objects) goes to test.
    """
    result: dict[str, list[MeshObject]] = {split: [] for split in SPLITS}
    unassigned: dict[str, list[MeshObject]] = {}
    for obj in objects:
        if obj.split in SPLITS:
            result[obj.split].append(obj)
        else:
            unassigned.setdefault(obj.category_name, []).append(obj)
    for members in unassigned.values():
        members = sorted(members, key=lambda o: (stable_fraction("eval-split", seed, o.key), o.key))
        n_test = min(max(1, round(len(members) * test_fraction)), len(members) - 1)
        result["test"] += members[:n_test]
        result["train"] += members[n_test:]
    for split in SPLITS:
        ordered = sorted(result[split], key=lambda o: o.key)
        permutation = rng(seed, "eval-order", split).permutation(len(ordered))
        result[split] = [ordered[i] for i in permutation]
    return result


def h5_name(split: str, index: int) -> str:
    """``ply_data_<split><index>.h5``, as modelnet40_ply_hdf5_2048 names its files."""
    return f"ply_data_{split}{index}.h5"


def id2file_name(split: str, index: int) -> str:
    """``ply_data_<split>_<index>_id2file.json``: the object name of every shape of a file."""
    return f"ply_data_{split}_{index}_id2file.json"


def file_list_name(split: str) -> str:
    """``<split>_files.txt``: the h5 files of a split, one a line."""
    return f"{split}_files.txt"


@dataclass
class SplitArrays:
    """One split before writing: points (n, P, 3), labels (n,), names (n,), optional normals."""

    points: np.ndarray
    labels: np.ndarray
    names: list[str]
    normals: np.ndarray | None = None


def _write_h5(path: Path, arrays: dict[str, np.ndarray]) -> None:
    import h5py

    tmp = path.with_name(TMP_PREFIX + path.name)
    try:
        with h5py.File(tmp, "w") as handle:
            for name, values in arrays.items():
                handle.create_dataset(name, data=values)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_h5_set(
    out: str | os.PathLike,
    splits: dict[str, SplitArrays],
    shape_names: Sequence[str],
    record: dict,
    shapes_per_file: int = SHAPES_PER_FILE,
) -> dict[str, list[str]]:
    """Write labelled splits to ``out`` in the layout of the module doc; returns the h5
    file names per split. ``record`` becomes ``eval_set.json``. Files of an earlier,
    larger set in the same folder are removed."""
    if len(shape_names) > 256:
        raise ValueError(f"{len(shape_names)} categories do not fit uint8 labels")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files: dict[str, list[str]] = {}
    for split, arrays in splits.items():
        count = len(arrays.labels)
        files[split] = []
        for index, start in enumerate(range(0, max(count, 1), shapes_per_file)):
            rows = slice(start, start + shapes_per_file)
            datasets = {
                DATA: np.asarray(arrays.points[rows], dtype=np.float32),
                LABEL: np.asarray(arrays.labels[rows], dtype=np.uint8).reshape(-1, 1),
            }
            if arrays.normals is not None:
                datasets[NORMAL] = np.asarray(arrays.normals[rows], dtype=np.float32)
            _write_h5(out / h5_name(split, index), datasets)
            atomic_write_json(out / id2file_name(split, index), list(arrays.names[rows]))
            files[split].append(h5_name(split, index))
    written = {n for names in files.values() for n in names}
    written |= {id2file_name(s, i) for s, names in files.items() for i in range(len(names))}
    for stale in out.glob("ply_data_*"):
        if stale.name not in written:
            stale.unlink()
    atomic_write_text(out / SHAPE_NAMES, "".join(f"{name}\n" for name in shape_names))
    for split, names in files.items():
        lines = "".join(f"data/{out.name}/{name}\n" for name in names)
        atomic_write_text(out / file_list_name(split), lines)
    atomic_write_json(out / RECORD, record)
    return files


def write_eval_set(
    out: str | os.PathLike,
    per_category: int = 20,
    seed: int = 0,
    *,
    categories: Sequence[str] | None = None,
    num_points: int = 2048,
    test_fraction: float = 0.2,
    shapes_per_file: int = SHAPES_PER_FILE,
    sampler: str = "uniform",
) -> EvalSetResult:
    """Generate, sample and write the evaluation set to ``out`` (see the module doc)."""
    from xpt.toolkit.console import RunProgress
    from xpt.toolkit.meshes.load import MeshError, load_object
    from xpt.toolkit.procedural import objects as procedural_objects

    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test fraction must be in (0, 1), got {test_fraction}")
    if per_category < 1 or num_points < 1 or shapes_per_file < 1:
        raise ValueError("per_category, num_points and shapes_per_file must be >= 1")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    log = FailureLog(out / FAILURES_FILE)  # shared with `xpt synth --eval` in the same folder
    objects = procedural_objects(per_category, seed, categories, eval=True)
    shape_names = list(dict.fromkeys(obj.category_name for obj in objects))
    splits = split_objects(objects, test_fraction, seed)
    failures: list[Failure] = []
    arrays: dict[str, SplitArrays] = {}
    with RunProgress("eval set", total=len(objects), unit="obj") as bar:
        for split in SPLITS:
            clouds, normals, labels, names = [], [], [], []
            for obj in splits[split]:
                try:
                    mesh = as_mesh(load_object(obj).scene)
                    points, normal = sample_surface(
                        mesh, num_points, derive_seed(seed, "eval-points", obj.key), sampler
                    )
                    clouds.append(normalize_unit_sphere(points))
                except (MeshError, ValueError) as error:
                    reason = error.reason if isinstance(error, MeshError) else str(error)
                    failure = Failure(obj.key, obj.where, STAGE, reason)
                    log.record_once(failure)
                    failures.append(failure)
                    bar.fail(failure.line())
                    bar.advance(ok=False)
                    continue
                normals.append(normal)
                labels.append(shape_names.index(obj.category_name))
                names.append(f"{obj.category_name}/{obj.model_id}")
                bar.advance()
            empty = np.zeros((0, num_points, 3), dtype=np.float32)
            arrays[split] = SplitArrays(
                np.stack(clouds) if clouds else empty,
                np.asarray(labels, dtype=np.int64),
                names,
                np.stack(normals) if normals else empty,
            )
    counts = {split: len(a.labels) for split, a in arrays.items()}
    eval_only = _eval_only_categories()
    record = {
        "source": "procedural-eval",
        "seed": seed,
        "per_category": per_category,
        "num_points": num_points,
        "test_fraction": test_fraction,
        "sampler": sampler,
        "shape_names": shape_names,
        "eval_only_categories": [c for c in shape_names if c in eval_only],
        "counts": counts,
        "failures": len(failures),
        "xpt_version": __version__,
    }
    files = write_h5_set(out, arrays, shape_names, record, shapes_per_file)
    return EvalSetResult(out, shape_names, counts, files, failures)


def _eval_only_categories() -> set[str]:
    from xpt.toolkit.procedural import EVAL_ONLY_CATEGORIES

    return set(EVAL_ONLY_CATEGORIES)


def split_files(out: str | os.PathLike, split: str) -> list[Path]:
    """The h5 files of ``split`` in ``out``, in order.

    ``<split>_files.txt`` is read when present; its lines are paths relative to wherever
    the files were packed (``data/modelnet40_ply_hdf5_2048/ply_data_train0.h5``), so only
    their file names are used, resolved in ``out``. Without a list, the files matching
    ``ply_data_<split><n>.h5`` are taken in the order of ``n``.
    """
    out = Path(out)
    listing = out / file_list_name(split)
    if listing.is_file():
        return [
            out / Path(line.strip()).name
            for line in listing.read_text().splitlines()
            if line.strip()
        ]
    numbered = []
    for path in out.glob(f"ply_data_{split}*.h5"):
        digits = path.stem[len(f"ply_data_{split}") :]
        if digits.isdigit():
            numbered.append((int(digits), path))
    return [path for _, path in sorted(numbered)]


def read_h5_split(out: str | os.PathLike, split: str) -> tuple[np.ndarray, np.ndarray]:
    """All ``data`` and ``label`` of one split, in file order (for tests)."""
    import h5py

    datas, labels = [], []
    for path in split_files(out, split):
        with h5py.File(path, "r") as handle:
            datas.append(handle[DATA][:])
            labels.append(handle[LABEL][:])
    return np.concatenate(datas), np.concatenate(labels)
