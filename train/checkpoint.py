"""Pretraining checkpoints: written atomically, loadable with ``torch.load(weights_only=True)``.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts::

    format, format_version, xpt_version
    models      {"point": state_dict, "image": state_dict}   (clean parameter names)
    optimizer   Adam state_dict;  scaler: GradScaler state_dict (empty when unused)
    schedule    {"kind", "base_lr", "t_max", "unit"} (the LR is a function of the position)
    position    {"step", "epoch", "batch"}: optimiser steps done, the epoch in progress
                (0-based) and the batches of it already trained on
    rng         {"torch": CPU state, "cuda": [per-device states], "augment": generator state}
    config      the PretrainConfig as a dict
    metrics     the last step's loss values
    selection   (``best.pt`` only) how it was chosen: {"by", "split", "dataset", "epoch",
                "accuracy"}; "split" is "val" or, replaying the release, "test"

Python's ``random`` and numpy's global generators are not used by training, so they are
not stored; the data pipeline's position is ``position`` (its randomness is derived from
the seed, the epoch and the sample keys).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from xpt import __version__
from xpt.toolkit.fsio import TMP_PREFIX

FORMAT = "xpt-pretrain"
FORMAT_VERSION = 1
LAST = "last.pt"
BEST = "best.pt"


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used; the message names the file."""


def epoch_checkpoint_name(epochs_done: int) -> str:
    """``epoch_XXX.pt`` for the checkpoint taken after ``epochs_done`` epochs."""
    return f"epoch_{epochs_done:03d}.pt"


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike) -> Path:
    """``torch.save`` to a temporary file beside ``path``, fsync, then rename over it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX + path.name + ".", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(state, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Load a checkpoint with ``weights_only=True``; CheckpointError naming the file."""
    path = Path(path)
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"{path}: cannot load checkpoint: {exc}") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an xpt pretraining checkpoint")
    if state.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format version {state.get('format_version')} is not "
            f"{FORMAT_VERSION}"
        )
    return state


def rng_state(generator: torch.Generator) -> dict[str, Any]:
    """The RNG states a resumed run needs, as tensors: torch CPU, every CUDA device,
    and the augmentation generator."""
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "augment": generator.get_state(),
    }


def restore_rng(state: dict[str, Any], generator: torch.Generator) -> None:
    """Inverse of :func:`rng_state` (CUDA states are restored where CUDA is available)."""
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    generator.set_state(state["augment"])


def make_checkpoint(
    *,
    models: dict[str, nn.Module],
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    schedule: dict[str, Any],
    position: dict[str, int],
    generator: torch.Generator,
    config: dict[str, Any],
    metrics: dict[str, float],
    selection: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Assemble the checkpoint dict (see the module docstring)."""
    state = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "xpt_version": __version__,
        "models": {name: model.state_dict() for name, model in models.items()},
        "optimizer": optimizer.state_dict(),
        "scaler": scaler.state_dict(),
        "schedule": dict(schedule),
        "position": dict(position),
        "rng": rng_state(generator),
        "config": dict(config),
        "metrics": dict(metrics),
    }
    if selection is not None:
        state["selection"] = dict(selection)
    return state


def restore_checkpoint(
    state: dict[str, Any],
    *,
    models: dict[str, nn.Module],
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    generator: torch.Generator,
) -> dict[str, int]:
    """Load models, optimiser, scaler and RNG states from ``state``; returns its position."""
    for name, model in models.items():
        model.load_state_dict(state["models"][name])
    optimizer.load_state_dict(state["optimizer"])
    if state["scaler"]:
        scaler.load_state_dict(state["scaler"])
    restore_rng(state["rng"], generator)
    return dict(state["position"])
