"""Fixtures shared by the test packages."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest


def family_cloud(family: str, rng: np.random.Generator, points: int) -> np.ndarray:
    """(points, 3) float32 of a simple shape family (sphere, box, ring, rod), centred,
    randomly scaled, max radius 1."""
    if family == "sphere":
        p = rng.normal(size=(points, 3))
        p /= np.linalg.norm(p, axis=1, keepdims=True)
    elif family == "box":
        p = rng.uniform(-1, 1, size=(points, 3)) * [0.6, 0.3, 0.5]
    elif family == "ring":
        t = rng.uniform(0, 2 * np.pi, points)
        p = np.stack([np.cos(t), 0.05 * rng.normal(size=points), np.sin(t)], axis=1)
    elif family == "rod":
        thin = 0.05 * rng.normal(size=(points, 2))
        p = np.stack([thin[:, 0], rng.uniform(-1, 1, points), thin[:, 1]], axis=1)
    else:
        raise ValueError(f"unknown family {family!r}")
    p = p * rng.uniform(0.7, 1.0) - p.mean(axis=0)
    return (p / np.linalg.norm(p, axis=1).max()).astype(np.float32)


@pytest.fixture(scope="session")
def write_modelnet_h5() -> Callable[..., Path]:
    """A writer of ``modelnet40_ply_hdf5_2048`` folders as its authors packed them (h5py
    directly, not xpt's writer): shuffled ``uint8`` (n, 1) labels, ``<split>_files.txt``
    listing ``data/modelnet40_ply_hdf5_2048/...`` paths, ``shape_names.txt``."""
    import h5py

    def write(
        folder: Path,
        classes: Sequence[str],
        per_class: dict[str, int],
        points: int = 64,
        seed: int = 0,
    ) -> Path:
        folder.mkdir(parents=True)
        rng = np.random.default_rng(seed)
        for split, count in per_class.items():
            labels = np.repeat(np.arange(len(classes)), count)
            rng.shuffle(labels)
            data = np.stack([family_cloud(classes[label], rng, points) for label in labels])
            with h5py.File(folder / f"ply_data_{split}0.h5", "w") as handle:
                handle.create_dataset("data", data=data)
                handle.create_dataset("label", data=labels.astype(np.uint8).reshape(-1, 1))
            (folder / f"{split}_files.txt").write_text(
                f"data/modelnet40_ply_hdf5_2048/ply_data_{split}0.h5\n"
            )
        (folder / "shape_names.txt").write_text("".join(f"{name}\n" for name in classes))
        return folder

    return write


DGCNN_REFERENCE = Path(__file__).resolve().parent / "data" / "dgcnn_reference_fixture.pt"


@pytest.fixture(scope="session")
def dgcnn_reference() -> dict:
    """The release DGCNN's state dict (float32), test clouds and expected features."""
    import torch

    data = torch.load(DGCNN_REFERENCE, weights_only=True)
    data["state_dict"] = {
        k: v.float() if v.is_floating_point() else v for k, v in data["state_dict"].items()
    }
    return data
