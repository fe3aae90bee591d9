"""``procedural-parts``: xpt's embedded part-labelled set, in DGCNN's ShapeNetPart h5 layout.

Objects of the procedural library (all 19 categories, drawn with ``wide=True`` like the
classification evaluation set, from seeds of their own so no instance repeats a pretraining
or evaluation-set one), a cloud of ``points`` points on each, every point labelled with one
part of a fixed per-category vocabulary, as ShapeNetPart labels 16 categories with 50 parts
(here 19 categories, 65 parts). Global part ids run over the categories in library order,
each category's vocabulary in the order below; that order is also the tie rule's priority.

===========  ==============================================  ===============================
category     vocabulary (priority order)                     library parts merged into one
===========  ==============================================  ===============================
chair        back, seat, leg, arm                            legs + base (star base) -> leg
table        top, leg, apron, shelf                          legs + base (pedestal) -> leg
lamp         base, stem, shade, bulb
mug          body, handle                                    band -> body
bottle       body, cap                                       label -> body
airplane     body, wing, tail, engine                        fuselage -> body
car          body, cabin, wheel, spoiler                     wheels + hubs -> wheel
bench        seat, back, leg
bookshelf    frame, shelf, back, book
sofa         arm, back, cushion, base, leg
bed          headboard, footboard, pillow, mattress, frame,  mattress + blanket -> mattress
             leg
monitor      screen, casing, stand                           display -> screen, panel -> casing
vase         body, handle, foot
bowl         body, foot
stool        seat, leg, footrest
cabinet      body, door, handle, leg
cup          body, handle, saucer
guitar       body, neck                                      body + hardware (bridge, rosette)
                                                             -> body
plant        pot, stem, leaf                                 pot + soil -> pot,
                                                             leaves + foliage -> leaf
===========  ==============================================  ===============================

Labels come from the geometry (:func:`sample_labelled_parts`). Every library part is a union
of closed, outward-wound pieces. Points are drawn area-weighted over all parts with the
library's sampler, each labelled by the part it was drawn from, and a point is kept only if

* it lies on the visible surface: the spot :data:`SURFACE_EPS` outside its own piece, along
  the face normal, is inside no other piece of the object (generalised winding number below
  1/2). This drops points inside another part (the foot of a lamp's stem inside its base, a
  car's wheel inside its body) and points of faces pressed against another part (a cushion's
  underside on the sofa's base, a seat's underside on the legs' tops);
* no part of a label listed earlier in the vocabulary has its surface within
  :data:`SURFACE_EPS` of it. Where parts of two labels share a surface (a sofa's arm flush
  with the side of its base), that surface is sampled from, and labelled as, the part listed
  first, so no two points of different labels meet there.

Dropped points are replaced by further draws, so every cloud has exactly ``points`` points,
in random order (any prefix is a uniform sample). Pieces are the position-connected parts of
a part's mesh, so touching pieces of one part (two books side by side) count as one and keep
the faces they press together: those points carry the right label. Lengths are in the
library's frame, where the object's largest extent is 1, so :data:`SURFACE_EPS` is 1e-4 of
the object's size. Clouds are then normalised as ShapeNetPart's h5 files are (centred on
their mean, in the unit sphere), +Y up.

Layout: DGCNN's ``shapenet_part_seg_hdf5_data``, plus xpt's record (:func:`read_parts_set`
reads it back with the categories and part ids of the record)::

    <out>/hdf5_data/ply_data_<split><i>.h5   data float32 (N, P, 3), label uint8 (N, 1),
                                             pid uint8 (N, P); at most 2048 shapes a file
    <out>/hdf5_data/<split>_hdf5_file_list.txt      the split's file names, one a line
    <out>/hdf5_data/all_object_categories.txt       "Chair<tab>proc-chair" a line, label order
    <out>/hdf5_data/ply_data_<split>_<i>_id2file.json   "chair/chair-parts-000003" per shape
    <out>/parts.json       seed, counts, categories, vocabulary, id ranges, mapping, version
    <out>/failures.jsonl   objects left out, with the reason

Splits are train / val / test, about 70 / 10 / 20 per category, seeded. ``hdf5_data`` is
written into a temporary folder and renamed; ``parts.json`` is written last and marks a
complete set.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import h5py
import numpy as np

from xpt.partseg.data import (
    PartSet,
    PartSetError,
    first_points,
    h5_split_files,
    part_ranges_from_counts,
    read_dgcnn_h5,
)
from xpt.toolkit.failures import FAILURES_FILE, Failure, FailureLog
from xpt.toolkit.fsio import atomic_directory, atomic_write_json, make_folder
from xpt.toolkit.meshes.objects import MeshObject
from xpt.toolkit.procedural.parts import Part
from xpt.toolkit.seeding import derive_seed, rng, stable_fraction

SOURCE = "procedural-parts"
VERSION = 1  # of the geometry, labelling and layout: part of the cache folder's name
STAGE = "part-set"
SPLITS = ("train", "val", "test")
VAL_FRACTION, TEST_FRACTION = 0.1, 0.2
SURFACE_EPS = 1e-4  # in the library's frame (largest extent 1)
DEFAULT_POINTS = 2048
# 19 x 80 objects: ~30 s to generate on one core; 56 / 8 / 16 shapes a category per split.
DEFAULT_PER_CATEGORY = 80
SHAPES_PER_FILE = 2048  # as in shapenet_part_seg_hdf5_data
H5_FOLDER = "hdf5_data"
CATEGORY_FILE = "all_object_categories.txt"
RECORD = "parts.json"
DATA, LABEL, PID = "data", "label", "pid"

PART_VOCABULARY: dict[str, tuple[str, ...]] = {
    "chair": ("back", "seat", "leg", "arm"),
    "table": ("top", "leg", "apron", "shelf"),
    "lamp": ("base", "stem", "shade", "bulb"),
    "mug": ("body", "handle"),
    "bottle": ("body", "cap"),
    "airplane": ("body", "wing", "tail", "engine"),
    "car": ("body", "cabin", "wheel", "spoiler"),
    "bench": ("seat", "back", "leg"),
    "bookshelf": ("frame", "shelf", "back", "book"),
    "sofa": ("arm", "back", "cushion", "base", "leg"),
    "bed": ("headboard", "footboard", "pillow", "mattress", "frame", "leg"),
    "monitor": ("screen", "casing", "stand"),
    "vase": ("body", "handle", "foot"),
    "bowl": ("body", "foot"),
    "stool": ("seat", "leg", "footrest"),
    "cabinet": ("body", "door", "handle", "leg"),
    "cup": ("body", "handle", "saucer"),
    "guitar": ("body", "neck"),
    "plant": ("pot", "stem", "leaf"),
}

PART_OF: dict[str, dict[str, str]] = {
    "chair": {"back": "back", "seat": "seat", "legs": "leg", "base": "leg", "arms": "arm"},
    "table": {"top": "top", "legs": "leg", "base": "leg", "apron": "apron", "shelf": "shelf"},
    "lamp": {"base": "base", "stem": "stem", "shade": "shade", "bulb": "bulb"},
    "mug": {"body": "body", "band": "body", "handle": "handle"},
    "bottle": {"body": "body", "label": "body", "cap": "cap"},
    "airplane": {"fuselage": "body", "wings": "wing", "tail": "tail", "engines": "engine"},
    "car": {"body": "body", "cabin": "cabin", "wheels": "wheel", "hubs": "wheel",
            "spoiler": "spoiler"},
    "bench": {"seat": "seat", "back": "back", "legs": "leg"},
    "bookshelf": {"frame": "frame", "shelves": "shelf", "back": "back", "books": "book"},
    "sofa": {"arms": "arm", "back": "back", "cushions": "cushion", "base": "base", "legs": "leg"},
    "bed": {"headboard": "headboard", "footboard": "footboard", "pillows": "pillow",
            "mattress": "mattress", "blanket": "mattress", "frame": "frame", "legs": "leg"},
    "monitor": {"display": "screen", "panel": "casing", "stand": "stand"},
    "vase": {"body": "body", "handles": "handle", "foot": "foot"},
    "bowl": {"body": "body", "foot": "foot"},
    "stool": {"seat": "seat", "legs": "leg", "footrest": "footrest"},
    "cabinet": {"body": "body", "doors": "door", "handles": "handle", "legs": "leg"},
    "cup": {"body": "body", "handle": "handle", "saucer": "saucer"},
    "guitar": {"body": "body", "hardware": "body", "neck": "neck"},
    "plant": {"pot": "pot", "soil": "pot", "stems": "stem", "leaves": "leaf", "foliage": "leaf"},
}  # fmt: skip


def part_ranges(categories: Sequence[str]) -> tuple[tuple[int, int], ...]:
    """Per category ``[start, stop)`` of its global part ids, categories in the given order."""
    return part_ranges_from_counts(tuple(len(PART_VOCABULARY[name]) for name in categories))


def global_part_names(categories: Sequence[str]) -> tuple[str, ...]:
    """``"chair/back"`` ... for every global part id of ``categories``, in id order."""
    return tuple(f"{name}/{part}" for name in categories for part in PART_VOCABULARY[name])


def part_labels(category: str, parts: Sequence[Part]) -> np.ndarray:
    """(len(parts),) int64: each library part's index in ``category``'s vocabulary. Raises
    ``ValueError`` for a part name the mapping does not know (the library grew a part)."""
    mapping, vocabulary = PART_OF[category], PART_VOCABULARY[category]
    unknown = [part.name for part in parts if part.name not in mapping]
    if unknown:
        raise ValueError(f"{category} part {unknown[0]!r} has no entry in PART_OF")
    return np.array([vocabulary.index(mapping[part.name]) for part in parts], dtype=np.int64)


# ---------------------------------------------------------------- geometry


_PAIRS_PER_CHUNK = 1 << 15  # (point, triangle) pairs a vectorised step holds (cache-sized)
_MAX_DRAWS = 8


def winding_numbers(points: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """Generalised winding numbers (Jacobson et al. 2013) of outward-wound triangles.

    points : (m, 3) float; triangles : (f, 3, 3) float. Returns (m,) float64: for closed
    pieces, how many contain the point (1/2 on a face), which stays right where pieces
    overlap, unlike ray parity. Each triangle adds its solid angle (Van Oosterom and
    Strackee) over 4 pi.
    """
    points = np.asarray(points, dtype=np.float64)
    # (corner, coordinate, face): each coordinate of each corner a contiguous row
    corners = np.ascontiguousarray(np.asarray(triangles, dtype=np.float64).transpose(1, 2, 0))
    result = np.zeros(len(points))
    step = max(1, _PAIRS_PER_CHUNK // max(corners.shape[2], 1))
    for start in range(0, len(points), step):
        chunk = points[start : start + step]
        (ax, ay, az), (bx, by, bz), (cx, cy, cz) = (
            [corner[k][None, :] - chunk[:, k, None] for k in range(3)] for corner in corners
        )
        la = np.sqrt(ax * ax + ay * ay + az * az)
        lb = np.sqrt(bx * bx + by * by + bz * bz)
        lc = np.sqrt(cx * cx + cy * cy + cz * cz)
        det = ax * (by * cz - bz * cy) + ay * (bz * cx - bx * cz) + az * (bx * cy - by * cx)
        den = (
            la * lb * lc
            + (ax * bx + ay * by + az * bz) * lc
            + (bx * cx + by * cy + bz * cz) * la
            + (cx * ax + cy * ay + cz * az) * lb
        )
        result[start : start + step] = np.arctan2(det, den).sum(axis=1) / (2.0 * math.pi)
    return result


def near_surface(points: np.ndarray, triangles: np.ndarray, eps: float) -> np.ndarray:
    """(m,) bool: whether a point lies within ``eps`` of any of the triangles (f, 3, 3).
    Only (point, triangle) pairs whose boxes come within ``eps`` are measured exactly."""
    import trimesh

    points = np.asarray(points, dtype=np.float64)
    result = np.zeros(len(points), dtype=bool)
    lo, hi = triangles.min(axis=1) - eps, triangles.max(axis=1) + eps
    step = max(1, _PAIRS_PER_CHUNK // max(len(triangles), 1))
    for start in range(0, len(points), step):
        chunk = points[start : start + step]
        boxed = ((chunk[:, None] >= lo[None]) & (chunk[:, None] <= hi[None])).all(axis=2)
        which, face = np.nonzero(boxed)
        if len(which):
            closest = trimesh.triangles.closest_point(triangles[face], chunk[which])
            gap = chunk[which] - closest
            close = np.einsum("ij,ij->i", gap, gap) <= eps * eps
            result[start + which[close]] = True
    return result


def _piece_components(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """(f,) int64: the connected piece of each face, vertices joined by position (a box's
    faces, a loft's copied cap rings), so every closed piece is whole in one component."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    _, same = np.unique(vertices, axis=0, return_inverse=True)
    corners = same.reshape(-1)[faces]
    n = int(same.max()) + 1
    edges = coo_matrix(
        (np.ones(2 * len(faces)), (corners[:, [0, 1]].ravel(), corners[:, [1, 2]].ravel())),
        shape=(n, n),
    )
    _, component = connected_components(edges, directed=False)
    return component[corners[:, 0]].astype(np.int64)


@dataclass(frozen=True)
class PartSurface:
    """An object's surface, split into closed components: ``triangles`` (f, 3, 3) float64,
    ``component`` (f,) int64 per face, and per component its vocabulary ``label``, its
    ``area`` and its box ``lo`` / ``hi`` (c, 3)."""

    triangles: np.ndarray
    component: np.ndarray
    label: np.ndarray
    area: np.ndarray
    lo: np.ndarray
    hi: np.ndarray

    def faces_of(self, component: int) -> np.ndarray:
        """(k, 3, 3) the triangles of one component."""
        return self.triangles[self.component == component]


def part_surface(category: str, parts: Sequence[Part]) -> PartSurface:
    """The :class:`PartSurface` of one object's library parts."""
    from xpt.toolkit.meshes.sampling import triangle_areas

    labels = part_labels(category, parts)
    triangles, component, label = [], [], []
    for part, part_label in zip(parts, labels, strict=True):
        faces = np.asarray(part.piece.faces, dtype=np.int64)
        local = _piece_components(np.asarray(part.piece.vertices, dtype=np.float64), faces)
        component.append(local + len(label))
        label += [part_label] * (int(local.max()) + 1)
        triangles.append(np.asarray(part.piece.vertices, dtype=np.float64)[faces])
    triangles_all, component_all = np.concatenate(triangles), np.concatenate(component)
    count = len(label)
    area = np.bincount(component_all, triangle_areas(triangles_all), minlength=count)
    lo = np.full((count, 3), np.inf)
    hi = np.full((count, 3), -np.inf)
    np.minimum.at(lo, component_all, triangles_all.min(axis=1))
    np.maximum.at(hi, component_all, triangles_all.max(axis=1))
    return PartSurface(
        triangles_all, component_all, np.asarray(label, dtype=np.int64), area, lo, hi
    )


def _draw(
    surface: PartSurface, n: int, generator: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``n`` area-weighted surface samples in random order: points and face normals (n, 3),
    component (n,)."""
    from xpt.toolkit.meshes.sampling import sample_uniform

    total = surface.area.sum()
    if not total > 0.0:
        raise ValueError("the object has no surface area")
    counts = generator.multinomial(n, surface.area / total)
    points, normals, component = [], [], []
    for index in np.flatnonzero(counts):
        drawn, drawn_normals = sample_uniform(surface.faces_of(index), counts[index], generator)
        points.append(drawn)
        normals.append(drawn_normals)
        component.append(np.full(counts[index], index, dtype=np.int64))
    order = generator.permutation(n)
    return (
        np.concatenate(points)[order],
        np.concatenate(normals)[order],
        np.concatenate(component)[order],
    )


def _inside_box(points: np.ndarray, lo: np.ndarray, hi: np.ndarray, pad: float) -> np.ndarray:
    return ((points >= lo - pad) & (points <= hi + pad)).all(axis=1)


def hidden(
    surface: PartSurface, points: np.ndarray, normals: np.ndarray, component: np.ndarray
) -> np.ndarray:
    """(m,) bool: samples not on the visible surface, i.e. whose spot just outside their own
    component (``SURFACE_EPS`` along the normal) lies inside another component."""
    outside = points + SURFACE_EPS * normals
    result = np.zeros(len(points), dtype=bool)
    for index in range(len(surface.label)):
        ask = (component != index) & ~result
        ask &= _inside_box(outside, surface.lo[index], surface.hi[index], 0.0)
        if ask.any():
            winding = winding_numbers(outside[ask], surface.faces_of(index))
            result[np.flatnonzero(ask)[winding > 0.5]] = True
    return result


def outranked(surface: PartSurface, points: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(m,) bool: samples within ``SURFACE_EPS`` of a component whose label comes earlier in
    the vocabulary (that label wins the shared surface)."""
    result = np.zeros(len(points), dtype=bool)
    for index, label in enumerate(surface.label):
        ask = (labels > label) & ~result
        ask &= _inside_box(points, surface.lo[index], surface.hi[index], SURFACE_EPS)
        if ask.any():
            close = near_surface(points[ask], surface.faces_of(index), SURFACE_EPS)
            result[np.flatnonzero(ask)[close]] = True
    return result


def sample_labelled_parts(
    category: str, parts: Sequence[Part], points: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """``points`` labelled points on the visible surface of one object (module doc).

    Returns (points, 3) float64 in the library's frame and (points,) int64 vocabulary
    indices. Raises ``ValueError`` when too little of the surface is visible.
    """
    if points < 1:
        raise ValueError(f"points must be at least 1, got {points}")
    surface = part_surface(category, parts)
    generator = np.random.default_rng(seed)
    kept_points, kept_labels, found, drawn_total = [], [], 0, 0
    for _ in range(_MAX_DRAWS):
        visible = max(found / drawn_total if drawn_total else 0.8, 0.05)
        n = int((points - found) / visible * 1.1) + 64
        drawn_total += n
        drawn, normals, component = _draw(surface, n, generator)
        labels = surface.label[component]
        keep = ~hidden(surface, drawn, normals, component)
        keep[keep] = ~outranked(surface, drawn[keep], labels[keep])
        kept_points.append(drawn[keep])
        kept_labels.append(labels[keep])
        found += int(keep.sum())
        if found >= points:
            return np.concatenate(kept_points)[:points], np.concatenate(kept_labels)[:points]
    raise ValueError(f"only {found} of {points} points fell on the visible surface")


# ---------------------------------------------------------------- objects and splits


def _categories(categories: Sequence[str] | None) -> tuple[str, ...]:
    """The asked categories in library order (all 19 by default); ``ValueError`` names an
    unknown one."""
    from xpt.toolkit.procedural import ALL_CATEGORIES

    if categories is None:
        return ALL_CATEGORIES
    unknown = [name for name in categories if name not in ALL_CATEGORIES]
    if unknown:
        raise ValueError(
            f"unknown procedural category {unknown[0]!r}; valid: {', '.join(ALL_CATEGORIES)}"
        )
    return tuple(name for name in ALL_CATEGORIES if name in categories)


def part_objects(
    per_category: int, seed: int = 0, categories: Sequence[str] | None = None
) -> list[MeshObject]:
    """``per_category`` objects of each category: model ids ``chair-parts-000003``, seeds
    ``derive_seed(seed, "parts", category, index)`` (never a pretraining or evaluation-set
    instance), ``label`` the category's index in the library."""
    from xpt.toolkit.procedural import ALL_CATEGORIES, category_id

    return [
        MeshObject(
            source=SOURCE,
            category_id=category_id(name),
            category_name=name,
            model_id=f"{name}-parts-{index:06d}",
            label=ALL_CATEGORIES.index(name),
            seed=derive_seed(seed, "parts", name, index),
        )
        for name in _categories(categories)
        for index in range(per_category)
    ]


def split_part_objects(objects: Sequence[MeshObject], seed: int) -> dict[str, list[MeshObject]]:
    """Train / val / test lists, per category about 70 / 10 / 20 in a stable seeded order
    (at least one test object from two objects on, one val object from three on); each
    list in a seeded order."""
    by_category: dict[str, list[MeshObject]] = {}
    for obj in objects:
        by_category.setdefault(obj.category_name, []).append(obj)
    result: dict[str, list[MeshObject]] = {split: [] for split in SPLITS}
    for members in by_category.values():
        members = sorted(
            members, key=lambda o: (stable_fraction("parts-split", seed, o.key), o.key)
        )
        n = len(members)
        n_test = min(max(1, round(n * TEST_FRACTION)), n - 1)
        n_val = min(max(1, round(n * VAL_FRACTION)), n - n_test - 1) if n >= 3 else 0
        result["test"] += members[:n_test]
        result["val"] += members[n_test : n_test + n_val]
        result["train"] += members[n_test + n_val :]
    for split in SPLITS:
        ordered = sorted(result[split], key=lambda o: o.key)
        order = rng(seed, "parts-order", split).permutation(len(ordered))
        result[split] = [ordered[i] for i in order]
    return result


# ---------------------------------------------------------------- writing


@dataclass
class _SplitArrays:
    """One split before writing: points (n, P, 3), category (n,), parts (n, P), names."""

    points: list[np.ndarray]
    category: list[int]
    parts: list[np.ndarray]
    names: list[str]


def labelled_cloud(obj: MeshObject, points: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """One object's cloud, normalised as ShapeNetPart's h5 (points, 3) float32, and its
    vocabulary indices (points,) int64."""
    from xpt.toolkit.evalset import normalize_unit_sphere
    from xpt.toolkit.procedural import build_parts

    parts = build_parts(obj.category_name, int(obj.seed), wide=True)
    cloud, labels = sample_labelled_parts(
        obj.category_name, parts, points, derive_seed(seed, "parts-points", obj.key)
    )
    return normalize_unit_sphere(cloud), labels


def _sample_splits(
    splits: dict[str, list[MeshObject]],
    categories: tuple[str, ...],
    points: int,
    seed: int,
    log: FailureLog,
) -> tuple[dict[str, _SplitArrays], list[Failure]]:
    """Every object's labelled cloud (global part ids); a failing object is recorded in
    ``log`` (once) and left out."""
    from xpt.toolkit.console import RunProgress

    offsets = dict(zip(categories, (start for start, _ in part_ranges(categories)), strict=True))
    arrays = {split: _SplitArrays([], [], [], []) for split in SPLITS}
    failures: list[Failure] = []
    total = sum(len(members) for members in splits.values())
    with RunProgress("part set", total=total, unit="obj") as bar:
        for split, members in splits.items():
            for obj in members:
                try:
                    cloud, labels = labelled_cloud(obj, points, seed)
                except ValueError as error:
                    failure = Failure(obj.key, None, STAGE, str(error))
                    log.record_once(failure)
                    failures.append(failure)
                    bar.fail(failure.line())
                    bar.advance(ok=False)
                    continue
                target = arrays[split]
                target.points.append(cloud)
                target.category.append(categories.index(obj.category_name))
                target.parts.append(labels + offsets[obj.category_name])
                target.names.append(obj.display)
                bar.advance()
    return arrays, failures


def _write_h5_folder(
    folder: Path, arrays: dict[str, _SplitArrays], categories: tuple[str, ...]
) -> dict[str, list[str]]:
    """The DGCNN files of every non-empty split into ``folder``; returns the h5 names."""
    from xpt.toolkit.evalset import h5_name, id2file_name
    from xpt.toolkit.procedural import category_id

    files: dict[str, list[str]] = {}
    for split, split_arrays in arrays.items():
        count = len(split_arrays.names)
        files[split] = []
        for index, start in enumerate(range(0, count, SHAPES_PER_FILE)):
            rows = slice(start, start + SHAPES_PER_FILE)
            with h5py.File(folder / h5_name(split, index), "w") as handle:
                handle.create_dataset(DATA, data=np.stack(split_arrays.points[rows]))
                label = np.asarray(split_arrays.category[rows], dtype=np.uint8)
                handle.create_dataset(LABEL, data=label.reshape(-1, 1))
                pid = np.stack(split_arrays.parts[rows]).astype(np.uint8)
                handle.create_dataset(PID, data=pid)
            names = json.dumps(split_arrays.names[rows])
            (folder / id2file_name(split, index)).write_text(names + "\n")
            files[split].append(h5_name(split, index))
        if files[split]:
            listing = "".join(f"{name}\n" for name in files[split])
            (folder / f"{split}_hdf5_file_list.txt").write_text(listing)
    lines = "".join(f"{name.capitalize()}\t{category_id(name)}\n" for name in categories)
    (folder / CATEGORY_FILE).write_text(lines)
    return files


def write_parts_set(
    out: str | os.PathLike,
    per_category: int,
    seed: int = 0,
    *,
    categories: Sequence[str] | None = None,
    points: int = DEFAULT_POINTS,
) -> dict:
    """Generate, label and write the set to ``out`` (layout in the module doc); returns the
    summary (counts per split, files, failures). Raises ``ValueError`` for bad arguments or
    when a train or test split ends up empty."""
    if per_category < 2:
        raise ValueError(
            f"per_category must be >= 2 (a train and a test object), got {per_category}"
        )
    if not 1 <= points <= 1 << 20:
        raise ValueError(f"points must be in 1..{1 << 20}, got {points}")
    names = _categories(categories)
    out = Path(out)
    make_folder(out)
    (out / RECORD).unlink(missing_ok=True)  # the set is incomplete until the record is back
    splits = split_part_objects(part_objects(per_category, seed, names), seed)
    log = FailureLog(out / FAILURES_FILE)
    arrays, failures = _sample_splits(splits, names, points, seed, log)
    empty = [split for split in ("train", "test") if not arrays[split].names]
    if empty:
        raise ValueError(f"{out}: every object of the {empty[0]} split failed")
    with atomic_directory(out / H5_FOLDER) as tmp:
        files = _write_h5_folder(tmp, arrays, names)
    counts = {split: len(values.names) for split, values in arrays.items()}
    atomic_write_json(out / RECORD, _record(names, per_category, seed, points, counts, failures))
    return {
        "out": str(out),
        "categories": len(names),
        "parts": part_ranges(names)[-1][1],
        **counts,
        "points": points,
        "files": sum(len(f) for f in files.values()),
        "failed": len(failures),
    }


def _record(
    names: tuple[str, ...],
    per_category: int,
    seed: int,
    points: int,
    counts: dict[str, int],
    failures: list[Failure],
) -> dict:
    """``parts.json``: everything that defines the set, and what came of it."""
    from xpt import __version__

    return {
        "source": SOURCE,
        "version": VERSION,
        "seed": seed,
        "per_category": per_category,
        "points": points,
        "wide": True,
        "split_fractions": {"val": VAL_FRACTION, "test": TEST_FRACTION},
        "surface_eps": SURFACE_EPS,
        "categories": list(names),
        "vocabulary": {name: list(PART_VOCABULARY[name]) for name in names},
        "part_ranges": [list(bounds) for bounds in part_ranges(names)],
        "part_names": list(global_part_names(names)),
        "part_of": {name: PART_OF[name] for name in names},
        "counts": counts,
        "failures": len(failures),
        "xpt_version": __version__,
    }


# ---------------------------------------------------------------- reading


def _read_record(folder: Path) -> dict:
    """``parts.json`` of a set folder, checked; ``PartSetError`` in one line otherwise."""
    path = folder / RECORD
    if not folder.is_dir():
        raise PartSetError(f"{folder}: no such folder (expected one of `xpt synth --eval --parts`)")
    if not path.is_file():
        raise PartSetError(
            f"{folder}: no {RECORD} (not a folder written by `xpt synth --eval --parts`, "
            "or its writing was interrupted)"
        )
    try:
        record = json.loads(path.read_text())
        categories = tuple(record["categories"])
        vocabulary = {name: tuple(record["vocabulary"][name]) for name in categories}
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as error:
        raise PartSetError(f"{path}: unreadable or incomplete record ({error!r})") from None
    if not categories or not all(len(parts) >= 1 for parts in vocabulary.values()):
        raise PartSetError(f"{path}: lists no categories or a category without parts")
    return record


def _shape_ids(h5: Path, split: str, count: int) -> list[str] | None:
    """The names ``ply_data_<split>_<i>_id2file.json`` gives the shapes of ``h5`` (None
    when there is no such file)."""
    from xpt.toolkit.evalset import id2file_name

    index = h5.stem[len(f"ply_data_{split}") :]
    path = h5.with_name(id2file_name(split, int(index))) if index.isdigit() else None
    if path is None or not path.is_file():
        return None
    try:
        names = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise PartSetError(f"{path}: unreadable ({error})") from None
    if not isinstance(names, list) or len(names) != count:
        raise PartSetError(f"{path}: not a list of {count} names, one per shape of {h5.name}")
    return [str(name) for name in names]


def read_parts_set(folder: str | os.PathLike, points: int | None = None) -> PartSet:
    """A set written by :func:`write_parts_set` (``folder`` or its ``hdf5_data``), named and
    ranged by its ``parts.json``; clouds cut to their first ``points`` points when given."""
    folder = Path(folder)
    if folder.name == H5_FOLDER and not (folder / RECORD).exists():
        folder = folder.parent
    record = _read_record(folder)
    categories = tuple(record["categories"])
    vocabulary = [tuple(record["vocabulary"][name]) for name in categories]
    ranges = part_ranges_from_counts(tuple(len(parts) for parts in vocabulary))
    h5 = folder / H5_FOLDER
    part_set = read_dgcnn_h5(
        h5,
        name=SOURCE,
        categories=categories,
        part_ranges=ranges,
        part_names=tuple(
            f"{name}/{part}"
            for name, parts in zip(categories, vocabulary, strict=True)
            for part in parts
        ),
    )
    if points is not None:
        part_set = first_points(part_set, points)
    return replace(part_set, splits={
        split: replace(values, shape_ids=_split_shape_ids(h5, split, len(values)))
        for split, values in part_set.splits.items()
    })  # fmt: skip


def _split_shape_ids(h5: Path, split: str, count: int) -> tuple[str, ...] | None:
    """The names the id2file files beside a split's h5 files give its shapes, in file order
    (None when any file has none)."""
    names = []
    for path in h5_split_files(h5, split):
        with h5py.File(path, "r") as handle:
            file_names = _shape_ids(path, split, len(handle[LABEL]))
        if file_names is None:
            return None
        names.extend(file_names)
    if len(names) != count:
        raise PartSetError(f"{h5}: {len(names)} id2file names for the {count} {split} shapes")
    return tuple(names)


def cache_folder(
    per_category: int, points: int, seed: int, cache_dir: str | os.PathLike | None = None
) -> Path:
    """Where :func:`load_procedural_parts` keeps a generated set: named by its size, points,
    seed and :data:`VERSION`, under xpt's cache (``$XPT_CACHE``, ...)."""
    from xpt.benchmarks.datasets import default_cache_dir

    name = f"{SOURCE}-pc{per_category}-p{points}-s{seed}-v{VERSION}"
    return Path(cache_dir or default_cache_dir()) / name


def _is_complete(folder: Path, per_category: int, points: int, seed: int) -> bool:
    try:
        record = json.loads((folder / RECORD).read_text())
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    wanted = {"version": VERSION, "per_category": per_category, "points": points, "seed": seed}
    return isinstance(record, dict) and all(record.get(k) == v for k, v in wanted.items())


def load_procedural_parts(
    data: str | os.PathLike | None = None,
    *,
    points: int = DEFAULT_POINTS,
    seed: int = 0,
    per_category: int = DEFAULT_PER_CATEGORY,
    cache_dir: str | os.PathLike | None = None,
) -> PartSet:
    """The procedural-parts set: read from ``data`` (a folder of ``xpt synth --eval --parts``,
    clouds cut to ``points``), or, without ``data``, generated once into
    :func:`cache_folder` and read from there after."""
    if data is not None:
        return read_parts_set(data, points)
    folder = cache_folder(per_category, points, seed, cache_dir)
    if not _is_complete(folder, per_category, points, seed):
        from xpt.toolkit.console import err

        err.print(
            f"procedural-parts: generating {per_category} objects per category into {folder} "
            "(once; later runs read it)",
            markup=False,
        )
        write_parts_set(folder, per_category, seed, points=points)
    return read_parts_set(folder, points)
