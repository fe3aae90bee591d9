"""Import of the data layout the CrossPoint release downloads, without re-rendering.

::

    <root>/ShapeNet/<synset>/<model_id>.ply                        point clouds (x, y, z)
    <root>/ShapeNetRendering/<synset>/<model_id>/rendering/00.png  137x137 RGBA views
    <root>/ShapeNetRendering/<synset>/<model_id>/rendering/rendering_metadata.txt

(``<root>`` may also be the folder holding ``data/`` with both inside.) Each PLY
becomes one sample: its points moved into the normalised frame of their own
bounding box (centre at the origin, half-diagonal 1) and resampled to N points,
and its views composited onto white. The 3D-R2N2 camera parameters
(azimuth, elevation, distance ratio, field of view) are kept per view.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import trimesh

from xpt.toolkit.meshes.geometry import normalization
from xpt.toolkit.meshes.objects import MeshObject
from xpt.toolkit.meshes.ply import PlyError, read_ply_points
from xpt.toolkit.meshes.sampling import subsample_points
from xpt.toolkit.shards.build import SampleError, base_meta, points_seed
from xpt.toolkit.shards.schema import Sample
from xpt.toolkit.shards.views import ViewError, read_rgb

SOURCE = "crosspoint"
POINTS_DIR = "ShapeNet"
RENDERINGS_DIR = "ShapeNetRendering"
# The 13 ShapeNet categories of 3D-R2N2's ShapeNetRendering.
R2N2_SYNSETS = {
    "02691156": "airplane",
    "02828884": "bench",
    "02933112": "cabinet",
    "02958343": "car",
    "03001627": "chair",
    "03211117": "display",
    "03636649": "lamp",
    "03691459": "loudspeaker",
    "04090263": "rifle",
    "04256520": "sofa",
    "04379243": "table",
    "04401088": "telephone",
    "04530566": "watercraft",
}


class CrossPointLayoutError(ValueError):
    """A folder that is not in the CrossPoint release layout."""


def find_root(path: str | os.PathLike) -> Path:
    """The folder holding ``ShapeNet/`` and ``ShapeNetRendering/`` (``path`` or ``path/data``)."""
    path = Path(path)
    for root in (path, path / "data"):
        if (root / POINTS_DIR).is_dir() and (root / RENDERINGS_DIR).is_dir():
            return root
    raise CrossPointLayoutError(
        f"{path}: not the CrossPoint layout (expected {POINTS_DIR}/ and {RENDERINGS_DIR}/ "
        "in it or in its data/ folder)"
    )


def is_crosspoint_layout(path: str | os.PathLike) -> bool:
    try:
        find_root(path)
    except CrossPointLayoutError:
        return False
    return True


def rendering_folder(root: Path, synset: str, model_id: str) -> Path:
    return root / RENDERINGS_DIR / synset / model_id / "rendering"


def crosspoint_objects(
    path: str | os.PathLike,
    *,
    categories: Sequence[str] | None = None,
    limit: int | None = None,
) -> list[MeshObject]:
    """One :class:`MeshObject` per PLY file, sorted by (synset, model id).

    ``categories`` filters by synset id or name; labels are the index of the synset
    among all synsets present. ``limit`` keeps the first objects of that order.
    """
    root = find_root(path)
    synsets = sorted(p.name for p in (root / POINTS_DIR).iterdir() if p.is_dir())
    wanted = None if categories is None else set(categories)
    if wanted is not None:
        known = set(synsets) | {R2N2_SYNSETS.get(s, s) for s in synsets}
        unknown = sorted(wanted - known)
        if unknown:
            raise CrossPointLayoutError(f"{root}: no categories {', '.join(unknown)}")
    objects: list[MeshObject] = []
    for label, synset in enumerate(synsets):
        name = R2N2_SYNSETS.get(synset, synset)
        if wanted is not None and synset not in wanted and name not in wanted:
            continue
        for ply in sorted((root / POINTS_DIR / synset).glob("*.ply")):
            objects.append(
                MeshObject(
                    source=SOURCE,
                    category_id=synset,
                    category_name=name,
                    model_id=ply.stem,
                    label=label,
                    path=ply,
                    extra={"rendering": str(rendering_folder(root, synset, ply.stem))},
                )
            )
    if not objects:
        raise CrossPointLayoutError(f"{root}: no point clouds under {POINTS_DIR}/<synset>/*.ply")
    return objects[:limit] if limit is not None else objects


def read_rendering_metadata(path: Path) -> list[dict[str, float]]:
    """``rendering_metadata.txt`` (``az el 0 dist_ratio fov`` a line) -> one dict per view."""
    cameras = []
    for line in path.read_text(encoding="utf-8").splitlines():
        values = line.split()
        if len(values) < 5:
            continue
        azimuth, elevation, _, distance_ratio, fov = (float(v) for v in values[:5])
        cameras.append(
            {
                "azimuth": azimuth,
                "elevation": elevation,
                "distance_ratio": distance_ratio,
                "fov": fov,
            }
        )
    return cameras


def read_views(
    folder: Path, max_views: int | None = None, alpha: str = "white"
) -> tuple[list[np.ndarray], list[dict], list[str]]:
    """The RGB views of one rendering folder, their camera dicts, warnings.

    ``alpha``: "white" composites the RGBA views onto white, "drop" discards alpha as the
    published loader does (:func:`~xpt.toolkit.shards.views.read_rgb`).

    An unreadable ``rendering_metadata.txt`` is a warning: the views keep no angles.
    """
    if not folder.is_dir():
        raise ViewError(f"{folder}: no rendering folder")
    files = sorted((p for p in folder.glob("*.png") if p.stem.isdigit()), key=lambda p: int(p.stem))
    if not files:
        raise ViewError(f"{folder}: no PNG views")
    files = files[:max_views] if max_views is not None else files
    metadata_path = folder / "rendering_metadata.txt"
    warnings = []
    try:
        metadata = read_rendering_metadata(metadata_path) if metadata_path.is_file() else []
    except (OSError, UnicodeDecodeError, ValueError) as error:
        metadata = []
        reason = " ".join(f"{type(error).__name__}: {error}".split())
        warnings.append(f"{metadata_path.name} unreadable, views kept without angles ({reason})")
    images = [read_rgb(path, alpha) for path in files]
    cameras = []
    for path, image in zip(files, images, strict=True):
        camera: dict[str, Any] = {
            "image": path.name,
            "width": image.shape[1],
            "height": image.shape[0],
        }
        index = int(path.stem)
        if index < len(metadata):
            camera.update(metadata[index])
        cameras.append(camera)
    return images, cameras, warnings


@dataclass
class CrossPointSampleMaker:
    """Builds samples from the CrossPoint layout (see :mod:`xpt.toolkit.shards.build`)."""

    num_points: int = 2048
    sampler: str = "uniform"
    seed: int = 0
    max_views: int | None = None
    alpha: str = "white"

    def __call__(self, obj: MeshObject) -> Sample:
        try:
            raw = read_ply_points(obj.path)
        except PlyError as error:
            raise SampleError("load", error.reason) from error
        try:
            norm = normalization(trimesh.Trimesh(vertices=raw, process=False))
        except ValueError as error:
            raise SampleError("points", str(error)) from error
        seed = points_seed(self.seed, obj.key)
        points = subsample_points(norm.apply(raw), self.num_points, seed, self.sampler)
        try:
            images, cameras, warnings = read_views(
                Path(obj.extra["rendering"]), self.max_views, self.alpha
            )
        except ViewError as error:
            raise SampleError("views", str(error)) from error
        meta = {
            **base_meta(obj, self.seed),
            "points_seed": seed,
            "sampler": self.sampler,
            "source_points": len(raw),
            "cameras": cameras,
            "camera_frame": "3d-r2n2",
            "normalization": norm.to_json(),
            "up_axis": "+Y",
            "warnings": warnings,
        }
        return Sample(obj.key, points, images, meta)

    def describe(self) -> dict[str, Any]:
        return {"views": "crosspoint", "max_views": self.max_views, "alpha": self.alpha}
