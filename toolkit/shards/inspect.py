"""``xpt inspect``: a summary of a shard set, and a preview sheet of a few samples.

The summary comes from the manifest alone (no shard is read); the preview reads
the first samples of the set and draws, for each, some of its views next to an
orthographic scatter of its point cloud.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from xpt.toolkit.fsio import atomic_write_bytes
from xpt.toolkit.shards.manifest import manifest_shards, read_manifest
from xpt.toolkit.shards.schema import SPLITS, decode_sample, iter_tar_samples


def summarize(directory: str | os.PathLike) -> dict[str, Any]:
    """Counts of one shard set: samples, splits, shards, bytes, categories, views, points.

    ``complete``: the manifest says the set was finished and every shard it lists is there
    at its recorded size (:func:`shard_file_problems`)."""
    directory = Path(directory)
    manifest = read_manifest(directory)
    shards = manifest_shards(manifest)
    samples = int(manifest.get("samples", 0))
    views = sum(info.views for split in SPLITS for info in shards[split])
    settings = manifest.get("settings", {})
    return {
        "directory": str(directory),
        "complete": bool(manifest.get("complete")) and not shard_file_problems(directory),
        "samples": samples,
        "train": sum(info.samples for info in shards["train"]),
        "val": sum(info.samples for info in shards["val"]),
        "test": sum(info.samples for info in shards["test"]),
        "shards": sum(len(shards[split]) for split in SPLITS),
        "bytes": sum(info.bytes for split in SPLITS for info in shards[split]),
        "categories": len(manifest.get("categories", {})),
        "views_per_sample": round(views / samples, 3) if samples else 0,
        "points_per_sample": settings.get("num_points"),
        "image_format": settings.get("image_format"),
        "failures": manifest.get("failures", 0),
        "seed": settings.get("seed"),
    }


def shard_file_problems(directory: str | os.PathLike) -> list[str]:
    """What is wrong with the shard files a manifest lists: missing, or not the recorded size.

    One ``stat`` per shard (cheap on any set size); ``xpt verify`` reads the contents.
    """
    directory = Path(directory)
    problems = []
    for split in SPLITS:
        for info in manifest_shards(read_manifest(directory))[split]:
            path = directory / info.name
            try:
                size = path.stat().st_size
            except FileNotFoundError:
                problems.append(f"{path}: missing (the manifest lists it)")
                continue
            if size != info.bytes:
                what = "truncated" if size < info.bytes else "longer than recorded"
                problems.append(f"{path}: {what}: {size} bytes, the manifest says {info.bytes}")
    return problems


def category_rows(directory: str | os.PathLike) -> list[dict[str, Any]]:
    """One row per category: id, name, label, train, val, test, samples."""
    manifest = read_manifest(directory)
    return [
        {"category": category, **row} for category, row in manifest.get("categories", {}).items()
    ]


def iter_samples(directory: str | os.PathLike) -> Iterator[dict[str, Any]]:
    """Decoded samples of a set in manifest order (train shards, then val)."""
    directory = Path(directory)
    shards = manifest_shards(read_manifest(directory))
    for split in SPLITS:
        for info in shards[split]:
            for raw in iter_tar_samples(directory / info.name):
                yield decode_sample(raw)


def point_scatter(
    points: np.ndarray, size: int = 128, azimuth: float = 45.0, elevation: float = 25.0
) -> np.ndarray:
    """An orthographic scatter of a normalised cloud: (N, 3) -> (size, size, 3) uint8.

    The view looks at the origin from ``azimuth``/``elevation`` degrees (up axis +Y);
    the unit sphere fills the image; nearer points are drawn later and warmer.
    """
    points = np.asarray(points, dtype=np.float64)
    az, el = np.radians(azimuth), np.radians(elevation)
    yaw = np.array([[np.cos(az), 0, -np.sin(az)], [0, 1, 0], [np.sin(az), 0, np.cos(az)]])
    pitch = np.array([[1, 0, 0], [0, np.cos(el), -np.sin(el)], [0, np.sin(el), np.cos(el)]])
    view = points @ yaw.T @ pitch.T
    order = np.argsort(view[:, 2])  # far (negative z) first, near last
    view = view[order]
    pixels = np.clip(((view[:, :2] * [1, -1] + 1.0) * 0.5 * (size - 1)).round(), 0, size - 2)
    u, v = pixels[:, 0].astype(int), pixels[:, 1].astype(int)
    near = np.clip((view[:, 2] + 1.0) / 2.0, 0.0, 1.0)[:, None]
    colour = ((1 - near) * [40, 90, 200] + near * [230, 80, 40]).astype(np.uint8)
    image = np.full((size, size, 3), 255, dtype=np.uint8)
    for du in (0, 1):
        for dv in (0, 1):
            image[v + dv, u + du] = colour
    return image


def preview_rows(
    directory: str | os.PathLike, *, samples: int = 6, views: int = 3, size: int = 128
) -> tuple[list[list[np.ndarray]], list[str]]:
    """The first ``samples`` samples as rows: up to ``views`` views, then a ``size``-pixel
    scatter of the point cloud; and a label per row (``category/model_id``)."""
    rows, labels = [], []
    for sample in iter_samples(directory):
        if len(rows) == samples:
            break
        rows.append([*sample["views"][:views], point_scatter(sample["points"], size)])
        meta = sample["json"]
        labels.append(f"{meta['category_name']}/{meta['model_id']}")
    if not rows:
        raise ValueError(f"{directory}: no samples to preview")
    return rows, labels


def write_preview(
    directory: str | os.PathLike,
    path: str | os.PathLike,
    *,
    samples: int = 6,
    views: int = 3,
    cell: int = 128,
) -> Path:
    """Write a contact sheet of :func:`preview_rows` as a PNG (atomically)."""
    from PIL import Image

    from xpt.toolkit.contact_sheet import contact_sheet

    rows, labels = preview_rows(directory, samples=samples, views=views, size=cell)
    sheet = contact_sheet([[Image.fromarray(a) for a in row] for row in rows], labels, cell)
    buffer = io.BytesIO()
    sheet.save(buffer, "PNG")
    return atomic_write_bytes(path, buffer.getvalue())
