"""Tiny WebDataset shards in the pinned sample schema, written here with ``TarWriter``.

Each sample is one object: ``points.npy`` (N, 3) in the normalised frame, ``view_00.png`` /
``view_01.png`` (32 x 32 RGB) and ``json`` metadata. Objects come from a few simple shape
families (sphere, box, ring) whose colour follows the family, so a contrastive model has
something to learn from even at this size.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import webdataset as wds
from PIL import Image

FAMILIES = ("sphere", "box", "ring")
COLOURS = {"sphere": (220, 40, 40), "box": (40, 200, 60), "ring": (40, 60, 220)}


def _cloud(family: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """(n, 3) float32 points of one family, inside the unit sphere."""
    if family == "sphere":
        p = rng.normal(size=(n, 3))
        p /= np.linalg.norm(p, axis=1, keepdims=True)
    elif family == "box":
        p = rng.uniform(-1, 1, size=(n, 3)) * np.array([0.5, 0.3, 0.4])
    else:
        t = rng.uniform(0, 2 * np.pi, size=n)
        p = np.stack([np.cos(t), 0.1 * rng.normal(size=n), np.sin(t)], axis=1)
    return (0.9 * p / np.abs(p).max()).astype(np.float32)


def _view(family: str, index: int, size: int, rng: np.random.Generator) -> bytes:
    image = np.full((size, size, 3), 255, np.uint8)
    lo, hi = size // 4, 3 * size // 4 + index
    image[lo:hi, lo:hi] = COLOURS[family]
    image = np.clip(image.astype(int) + rng.integers(-10, 10, image.shape), 0, 255)
    buffer = io.BytesIO()
    Image.fromarray(image.astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def write_shard_set(
    out: Path,
    *,
    train_shards: tuple[int, ...] = (6, 6),
    val_samples: int = 2,
    points: int = 64,
    views: int = 2,
    size: int = 32,
    seed: int = 0,
    float16_shard: int | None = 1,
) -> Path:
    """Write ``train-NNNNNN.tar`` (sample counts ``train_shards``), ``val-000000.tar``,
    ``manifest.json`` and an empty ``failures.jsonl`` into ``out``; returns ``out``.

    Shard ``float16_shard`` stores its points as float16 (the ``--points-dtype`` option).
    """
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    splits: dict[str, dict] = {}
    counter = 0
    layout = [("train", i, n) for i, n in enumerate(train_shards)]
    layout += [("val", 0, val_samples)] if val_samples else []
    for split, index, count in layout:
        name = f"{split}-{index:06d}.tar"
        with wds.TarWriter(str(out / name)) as sink:
            for _ in range(count):
                family = FAMILIES[counter % len(FAMILIES)]
                model_id = f"{family}{counter:04d}"
                cloud = _cloud(family, points, rng)
                if split == "train" and index == float16_shard:
                    cloud = cloud.astype(np.float16)
                sample = {
                    "__key__": f"procedural_{family}_{model_id}",
                    "points.npy": _npy(cloud),
                    "json": json.dumps(
                        {
                            "source": "procedural",
                            "category_id": family,
                            "category_name": family,
                            "model_id": model_id,
                            "label": FAMILIES.index(family),
                            "split": split,
                            "num_views": views,
                            "num_points": points,
                            "cameras": [],
                            "normalization": {"centre": [0.0, 0.0, 0.0], "scale": 1.0},
                            "seed": seed,
                            "xpt_version": "test",
                            "format_version": 1,
                        }
                    ).encode(),
                }
                for v in range(views):
                    sample[f"view_{v:02d}.png"] = _view(family, v, size, rng)
                sink.write(sample)
                counter += 1
        entry = splits.setdefault(split, {"samples": 0, "shards": []})
        entry["samples"] += count
        entry["shards"].append(
            {"name": name, "samples": count, "bytes": (out / name).stat().st_size, "sha256": ""}
        )
    manifest = {
        "format_version": 1,
        "splits": splits,
        "categories": {f: {"name": f} for f in FAMILIES},
        "settings": {"points": points, "views": views, "size": size},
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2))
    (out / "failures.jsonl").write_text("")
    return out


@pytest.fixture(scope="session")
def tiny_shards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A read-only shard set: 12 train samples in 2 shards, 2 val samples."""
    return write_shard_set(tmp_path_factory.mktemp("shards"))


@pytest.fixture
def make_shards() -> Callable[..., Path]:
    """The writer itself, for tests that need their own (e.g. to corrupt it)."""
    return write_shard_set


@pytest.fixture(scope="session")
def tiny_settings() -> dict:
    """PretrainConfig fields for steps of milliseconds: PointNet on 32 points, 16-px images."""
    return dict(
        backbone="pointnet",
        image_encoder="resnet18",
        batch_size=4,
        points=32,
        emb_dims=32,
        image_size=16,
        workers=0,
        shuffle_buffer=8,
    )
