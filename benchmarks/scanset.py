"""``procedural-scan``: partial, cluttered, noisy scans of procedural objects (the ScanObjectNN
analogue and the demo's evaluation set).

Each evaluation object (``xpt.toolkit.procedural.objects(..., eval=True)``) is placed on a
floor among a few clutter solids and seen by a virtual depth sensor: the scene is rendered
with xpt's own renderer (depth read back), every object pixel of ``views`` depth maps is
back-projected into the object's frame, the points within a box around the object are kept
(object, the floor under it and any clutter that reaches into the box, as ScanObjectNN's
OBJ_BG keeps background inside the object's box), sensor noise is added, ``num_points``
points are drawn in random order (so the first N are a uniform subset, as the release's
"first 1024" expects) and the cloud is normalised as ModelNet's h5 files are.

Two variants are written side by side from the same scans: ``upright`` (the object's own
frame, +Y up, facing +Z) and ``rotated`` (each cloud turned about +Y by a seeded random
angle). A margin on ``rotated`` can come from rotation invariance alone (pretraining
augments with such rotations); ``upright`` isolates shape features. Reports show both.

Layout (``xpt synth --eval --scan OUT``)::

    OUT/upright/   the modelnet40_ply_hdf5_2048 layout (xpt.toolkit.evalset)
    OUT/rotated/   the same objects and points, rotated
"""

from __future__ import annotations

import io
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import trimesh

from xpt import __version__
from xpt.toolkit.evalset import (
    SPLITS,
    SplitArrays,
    normalize_unit_sphere,
    split_objects,
    write_h5_set,
)
from xpt.toolkit.failures import FAILURES_FILE, Failure, FailureLog
from xpt.toolkit.meshes.objects import MeshObject
from xpt.toolkit.seeding import rng

VARIANTS = ("rotated", "upright")
SOURCE = "procedural-scan"
STAGE = "scan"
_FLOOR_COLOUR = (150, 150, 150, 255)
_CLUTTER_COLOUR = (120, 110, 100, 255)


@dataclass(frozen=True)
class ScanConfig:
    """How each object is scanned (lengths in the object's frame: largest extent 1, floor y=0).

    ``views`` depth maps per object from 3D-R2N2's cameras (seeded random azimuth,
    elevation 25-30 degrees) at ``size`` pixels; ``clutter`` solids (count drawn from the
    inclusive range) stand around the object at ``clutter_distance`` from its centre;
    the crop keeps points within the object's box grown by ``margin`` on every side;
    ``noise`` is the standard deviation of Gaussian sensor noise. The defaults were tuned
    so that a random-init PointNet scores about 57 % (rotated) and 75 % (upright) under the
    ``xpt`` protocol (docs/BENCHMARKS.md).
    """

    views: int = 1
    size: int = 192
    floor: bool = True
    clutter: tuple[int, int] = (2, 4)
    clutter_distance: tuple[float, float] = (0.55, 0.9)
    clutter_size: tuple[float, float] = (0.15, 0.45)
    margin: float = 0.25
    noise: float = 0.02
    num_points: int = 2048

    def __post_init__(self) -> None:
        if self.views < 1 or self.num_points < 1 or self.size < 16:
            raise ValueError("views and num_points must be >= 1 and size >= 16")
        if self.clutter[0] < 0 or self.clutter[1] < self.clutter[0]:
            raise ValueError(
                f"clutter must be a range (lo, hi) with 0 <= lo <= hi, got {self.clutter}"
            )
        if self.margin < 0 or self.noise < 0:
            raise ValueError("margin and noise must be >= 0")


class ScanError(ValueError):
    """An object whose scan holds too few points."""


def _floor(half: float) -> trimesh.Trimesh:
    vertices = np.array([[-half, 0, -half], [half, 0, -half], [half, 0, half], [-half, 0, half]])
    mesh = trimesh.Trimesh(vertices, [[0, 2, 1], [0, 3, 2]], process=False)
    mesh.visual.face_colors = _FLOOR_COLOUR
    return mesh


def _clutter(generator: np.random.Generator, config: ScanConfig) -> list[trimesh.Trimesh]:
    """A few boxes and cylinders standing on the floor around the origin."""
    solids = []
    for _ in range(int(generator.integers(config.clutter[0], config.clutter[1] + 1))):
        size = generator.uniform(*config.clutter_size, size=3)
        if generator.random() < 0.5:
            solid = trimesh.creation.box(extents=size)
        else:
            solid = trimesh.creation.cylinder(radius=0.5 * size[0], height=size[1], sections=16)
            solid.apply_transform(trimesh.transformations.rotation_matrix(math.pi / 2, [1, 0, 0]))
        angle = generator.uniform(0, 2 * math.pi)
        distance = generator.uniform(*config.clutter_distance)
        lo = solid.bounds[0]
        solid.apply_translation([distance * math.cos(angle), -lo[1], distance * math.sin(angle)])
        solid.visual.face_colors = _CLUTTER_COLOUR
        solids.append(solid)
    return solids


def back_project(depth: np.ndarray, K: np.ndarray, cam_to_world: np.ndarray) -> np.ndarray:
    """World points (m, 3) float64 of the non-background pixels of a linear depth map.

    ``depth`` (H, W): camera-frame distance along the viewing axis, 0 = background;
    conventions as in :mod:`xpt.render.cameras` (pixel centres at +0.5, OpenCV image axes,
    OpenGL camera looking down -Z).
    """
    rows, cols = np.nonzero(depth > 0)
    d = depth[rows, cols].astype(np.float64)
    x = (cols + 0.5 - K[0, 2]) * d / K[0, 0]
    y = (rows + 0.5 - K[1, 2]) * d / K[1, 1]
    camera = np.stack([x, -y, -d], axis=1)
    pose = np.asarray(cam_to_world, dtype=np.float64)
    return camera @ pose[:3, :3].T + pose[:3, 3]


def rotate_about_up(points: np.ndarray, angle: float) -> np.ndarray:
    """(..., 3) points turned by ``angle`` radians about +Y."""
    c, s = math.cos(angle), math.sin(angle)
    rotation = np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]], dtype=points.dtype)
    return points @ rotation.T


def scan_points(
    renderer, obj: MeshObject, config: ScanConfig, generator: np.random.Generator
) -> np.ndarray:
    """Every back-projected pixel of ``obj``'s scene (floor and clutter included) that
    falls in the crop box: (m, 3) float64 in the object's own frame (+Y up, floor y = 0).

    ``renderer`` is an :class:`xpt.render.renderer.ObjectRenderer` with depth enabled;
    ``generator`` places the clutter.
    """
    from xpt.toolkit.procedural import build_parts, to_scene

    scene = to_scene(build_parts(obj.category_name, obj.seed, wide=True))
    bounds = scene.bounds
    if config.floor:
        scene.add_geometry(_floor(1.2), node_name="scan-floor", geom_name="scan-floor")
    for index, solid in enumerate(_clutter(generator, config)):
        name = f"scan-clutter-{index}"
        scene.add_geometry(solid, node_name=name, geom_name=name)
    result = renderer.render(scene, key=obj.key)
    # The renderer works in the scene's normalised frame; map back to the object's own.
    inverse, centre = 1.0 / result.normalization.scale, np.asarray(result.normalization.centre)
    points = np.concatenate(
        [
            back_project(depth, np.asarray(cam["K"]), np.asarray(cam["cam_to_world"])) * inverse
            + centre
            for depth, cam in zip(result.depth, result.cameras, strict=True)
        ]
    )
    lo, hi = bounds[0] - config.margin, bounds[1] + config.margin
    lo[1] = bounds[0][1] - 0.01  # the floor the object stands on, not what lies under it
    return points[np.all((points >= lo) & (points <= hi), axis=1)]


def scan_object(renderer, obj: MeshObject, config: ScanConfig, seed: int) -> np.ndarray:
    """The upright scan of one procedural object: (num_points, 3) float32 in random order,
    with sensor noise, normalised into the unit sphere (as ModelNet's h5 clouds)."""
    generator = rng(seed, "scan", obj.key)
    points = scan_points(renderer, obj, config, generator)
    if len(points) < 32:
        raise ScanError(f"{obj.display}: only {len(points)} scanned points")
    pick = generator.choice(len(points), config.num_points, replace=len(points) < config.num_points)
    points = points[pick] + generator.normal(0.0, config.noise, size=(config.num_points, 3))
    return normalize_unit_sphere(points)


def scan_angle(seed: int, obj: MeshObject) -> float:
    """The seeded rotation (radians) of ``obj`` in the ``rotated`` variant."""
    return float(rng(seed, "scan-rotation", obj.key).uniform(0.0, 2.0 * math.pi))


def write_scan_set(
    out: str | os.PathLike,
    per_category: int = 100,
    seed: int = 0,
    *,
    categories: list[str] | None = None,
    config: ScanConfig = ScanConfig(),
    backend: str = "egl",
) -> dict[str, dict[str, int]]:
    """Scan ``per_category`` evaluation objects of each category and write both variants
    under ``out`` (see the module doc); returns the counts per variant and split. An object
    whose scan fails is left out and recorded in ``out/failures.jsonl``."""
    from xpt.render.config import RenderConfig
    from xpt.render.renderer import ObjectRenderer
    from xpt.render.scene import GeometryError
    from xpt.toolkit.console import RunProgress
    from xpt.toolkit.procedural import objects as procedural_objects

    if per_category < 2:
        raise ValueError(
            f"per_category must be >= 2 (a train and a test object), got {per_category}"
        )
    out = Path(out)
    objects = procedural_objects(per_category, seed, categories, eval=True)
    shape_names = list(dict.fromkeys(obj.category_name for obj in objects))
    splits = split_objects(objects, 0.25, seed)
    render = RenderConfig(
        rig="r2n2",
        views=config.views,
        size=config.size,
        depth=True,
        antialias=False,
        seed=seed,
        backend=backend,
    )
    log = FailureLog(out / FAILURES_FILE)
    failures = 0
    scans: dict[str, list[tuple[MeshObject, np.ndarray]]] = {split: [] for split in SPLITS}
    with ObjectRenderer(render) as renderer, RunProgress("scan", len(objects), "obj") as bar:
        for split in SPLITS:
            for obj in splits[split]:
                try:
                    scans[split].append((obj, scan_object(renderer, obj, config, seed)))
                except (ScanError, GeometryError) as error:
                    failure = Failure(obj.key, None, STAGE, str(error))
                    log.record(failure)
                    bar.fail(failure.line())
                    bar.advance(ok=False)
                    failures += 1
                    continue
                bar.advance()
    empty = [split for split, items in scans.items() if not items]
    if empty:
        raise ValueError(f"{out}: no object could be scanned for the {empty[0]} split")
    counts: dict[str, dict[str, int]] = {}
    for variant in VARIANTS:
        arrays = {}
        for split, items in scans.items():
            clouds = [
                rotate_about_up(points, scan_angle(seed, obj)) if variant == "rotated" else points
                for obj, points in items
            ]
            arrays[split] = SplitArrays(
                np.stack(clouds).astype(np.float32),
                np.asarray([shape_names.index(obj.category_name) for obj, _ in items]),
                [f"{obj.category_name}/{obj.model_id}" for obj, _ in items],
            )
        counts[variant] = {split: len(a.labels) for split, a in arrays.items()}
        record = {
            "source": SOURCE,
            "variant": variant,
            "seed": seed,
            "per_category": per_category,
            "scan": asdict(config),
            "shape_names": shape_names,
            "counts": counts[variant],
            "failures": failures,
            "xpt_version": __version__,
        }
        write_h5_set(out / variant, arrays, shape_names, record)
    return counts


def write_scan_preview(
    out: str | os.PathLike, path: str | os.PathLike, *, categories: int = 8, scans: int = 4
) -> Path:
    """A contact sheet of the set written in ``out``: per category (the first
    ``categories``), ``scans`` upright training scans and the first one rotated."""
    from PIL import Image

    from xpt.toolkit.contact_sheet import contact_sheet
    from xpt.toolkit.evalset import read_h5_split
    from xpt.toolkit.fsio import atomic_write_bytes
    from xpt.toolkit.shards.inspect import point_scatter

    out = Path(out)
    upright, labels = read_h5_split(out / "upright", "train")
    rotated, _ = read_h5_split(out / "rotated", "train")
    names = (out / "upright" / "shape_names.txt").read_text().split()
    rows, row_labels = [], []
    for label, name in enumerate(names[:categories]):
        members = np.flatnonzero(labels.reshape(-1) == label)[:scans]
        if not len(members):
            continue
        cells = [point_scatter(upright[i]) for i in members]
        cells.append(point_scatter(rotated[members[0]]))
        rows.append([Image.fromarray(cell) for cell in cells])
        row_labels.append(f"{name} (last: rotated)")
    buffer = io.BytesIO()
    contact_sheet(rows, row_labels, 128).save(buffer, "PNG")
    return atomic_write_bytes(path, buffer.getvalue())
