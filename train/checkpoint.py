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
import pickle
import re
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from xpt import __version__
from xpt.toolkit.fsio import atomic_write

FORMAT = "xpt-pretrain"
FORMAT_VERSION = 1
LAST = "last.pt"
BEST = "best.pt"
REQUIRED = ("models", "optimizer", "scaler", "schedule", "position", "rng", "config", "metrics")


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used; the message names the file."""


def epoch_checkpoint_name(epochs_done: int) -> str:
    """``epoch_XXX.pt`` for the checkpoint taken after ``epochs_done`` epochs."""
    return f"epoch_{epochs_done:03d}.pt"


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike) -> Path:
    """``torch.save`` to a temporary file beside ``path``, fsync, then rename over it.

    A failed write (a full disk) removes the temporary file, keeps the previous ``path`` and
    raises :class:`~xpt.toolkit.fsio.WriteError`, one line naming ``path`` and the free space.
    """
    return atomic_write(path, lambda handle: torch.save(state, handle), "the checkpoint")


def read_torch_file(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> Any:
    """``torch.load(path, weights_only=True)``, or a one-line CheckpointError naming the file
    and saying what it is instead (see :func:`diagnose_unreadable`)."""
    path = Path(path)
    if not path.is_file():
        what = "a folder, not a file" if path.is_dir() else "no such file"
        raise CheckpointError(f"{path}: {what}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises many types for files it cannot read
        raise CheckpointError(
            f"{path}: not a readable PyTorch checkpoint: {diagnose_unreadable(path, exc)}"
        ) from None


def diagnose_unreadable(path: str | os.PathLike, exc: BaseException) -> str:
    """What ``path`` is, judged from the file itself, when ``torch.load`` failed on it: empty,
    truncated, text or other bytes, or Python objects that weights-only loading refuses.

    torch's own messages name the unpickler's symptom instead (``pop from empty list`` for a
    text file, an OS error for a truncated one, nothing at all for an empty one).
    """
    path = Path(path)
    size = path.stat().st_size
    if size == 0:
        return "an empty file (0 bytes)"
    with open(path, "rb") as handle:
        head = handle.read(64)
    refused = _weights_only_refusal(exc)
    if head.startswith(b"PK\x03\x04"):  # the zip container of torch.save
        try:
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
        except (zipfile.BadZipFile, OSError):
            return f"truncated ({size} bytes; its zip archive has no end)"
        if not any(name.endswith("/data.pkl") or name == "data.pkl" for name in names):
            return "a zip archive without the data.pkl of a PyTorch checkpoint"
        if refused:
            return refused
        return f"damaged ({_first_line(exc)})"
    if head.startswith(b"\x80"):  # a pickle: the legacy (pre-zip) torch.save format
        if refused:
            return refused
        return f"truncated or damaged (legacy format, {size} bytes)"
    text = head.decode("utf-8", "ignore")  # (a character cut at byte 64 is dropped)
    if (
        not text.strip()
        or len(text) < len(head) - 3
        or not all(c.isprintable() or c.isspace() for c in text)
    ):
        return f"unknown bytes (it starts {head[:8]!r})"
    return f"a text file (it starts {text.strip().splitlines()[0][:40]!r})"


def _weights_only_refusal(exc: BaseException) -> str | None:
    """The reason torch's weights-only unpickler refused the file, if that is what failed."""
    if not isinstance(exc, pickle.UnpicklingError):
        return None
    found = re.search(r"WeightsUnpickler error: ([^\n]*)", str(exc))
    detail = (found.group(1) if found else _first_line(exc)).split(". ")[0].strip()
    return f"it holds Python objects that weights-only loading refuses ({detail})"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Load an xpt checkpoint with ``weights_only=True``; CheckpointError naming the file
    and saying what is wrong with it (unreadable, another kind of file, incomplete)."""
    return checked_checkpoint(read_torch_file(path, map_location), path)


def checked_checkpoint(state: Any, path: str | os.PathLike) -> dict:
    """``state`` (loaded from ``path``) if it is a complete xpt checkpoint of this format
    version, else a CheckpointError naming the file and what is wrong."""
    path = Path(path)
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path}: a PyTorch file, but not an xpt checkpoint ({_kind(state)})")
    if state.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format version {state.get('format_version')} is not "
            f"{FORMAT_VERSION}"
        )
    missing = [key for key in REQUIRED if key not in state]
    if missing:
        raise CheckpointError(f"{path}: an incomplete xpt checkpoint (no {', '.join(missing)})")
    return state


def _kind(value: Any) -> str:
    """A few words on what a loaded object is."""
    if isinstance(value, dict):
        tensors = sum(isinstance(v, torch.Tensor) for v in value.values())
        keys = ", ".join(map(str, list(value)[:3])) + (", ..." if len(value) > 3 else "")
        if value and tensors == len(value):
            return f"a state dict of {tensors} tensor(s): {keys}"
        return f"a dict with keys {keys}" if value else "an empty dict"
    return f"a {type(value).__name__}"


def readable_fallback(run_dir: str | os.PathLike) -> tuple[Path, int] | None:
    """The newest ``epoch_XXX.pt`` in ``run_dir`` that loads, with its step; None if none."""
    for path in sorted(Path(run_dir).glob("epoch_[0-9][0-9][0-9]*.pt"), reverse=True):
        try:
            return path, int(load_checkpoint(path)["position"]["step"])
        except (CheckpointError, KeyError, TypeError, ValueError):
            continue
    return None


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
    path: str | os.PathLike = "checkpoint",
) -> dict[str, int]:
    """Load models, optimiser, scaler and RNG states from ``state`` (read from ``path``);
    returns its position. Weights that do not fit the models (other model settings than the
    checkpoint's config says) raise a CheckpointError naming the first mismatch."""
    config = state.get("config", {})
    settings = ", ".join(f"{f} {config.get(f)!r}" for f in ("backbone", "emb_dims", "proj_dim"))
    for name, model in models.items():
        try:
            model.load_state_dict(state["models"][name])
        except (RuntimeError, KeyError) as exc:
            detail = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
            raise CheckpointError(
                f"{path}: its {name} encoder weights do not fit the model settings "
                f"({settings}): {(detail[1:] or detail or [type(exc).__name__])[0][:200]}"
            ) from None
    optimizer.load_state_dict(state["optimizer"])
    if state["scaler"]:
        scaler.load_state_dict(state["scaler"])
    restore_rng(state["rng"], generator)
    return dict(state["position"])
