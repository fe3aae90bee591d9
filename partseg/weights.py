"""Initialising the part-segmentation network from a CrossPoint checkpoint, strictly.

The release fine-tunes with ``model.load_state_dict(torch.load(path), strict=False)``
(``train_partseg.py``): a renamed key, a checkpoint of the classification DGCNN or one of
another ``emb_dims`` is silently skipped and the run fine-tunes a partly random encoder.
Here every tensor of the checkpoint's point encoder must land on a model key of the same
name and shape, every encoder key of the model must come from the checkpoint, and only the
segmentation head (``conv7..conv11``, ``bn7..bn10``) starts fresh; anything else is a
:class:`WeightsError`. Two deliberate exceptions, listed as ``ignored``: a projection head
(``inv_head``, unused by segmentation) of another width than the model's, and the head
BatchNorms ``bn7..bn10`` that the release's ``DGCNN_partseg(pretrain=True)`` creates but never
trains (a file without ``conv7..conv10``).

Sources: an xpt pretraining checkpoint (``last.pt``, ``best.pt``, ``epoch_XXX.pt``) of a
``dgcnn_seg`` run, an ``xpt export`` folder of one, or the release's raw ``DGCNN_partseg``
state dict (``train_crosspoint.py --model dgcnn_seg``; ``dist_train_crosspoint.py`` saves it
from DistributedDataParallel with ``module.`` on every key, which is stripped).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from xpt.train.models.dgcnn_partseg import HEAD_MODULES, PROJECTION_HEAD, DGCNNPartSeg

BACKBONE = "dgcnn_seg"
SHOWN = 3  # keys named in an error message
_MODULE = re.compile(r"^([A-Za-z_]+\d*)\.")
_UNTRAINED_RELEASE_BN = ("bn7", "bn8", "bn9", "bn10")


class WeightsError(ValueError):
    """A file that cannot initialise the network; one line naming the file and the reason."""


@dataclass(frozen=True)
class InitReport:
    """What :func:`init_from_checkpoint` did, key by key (sorted model key names).

    ``source``: "checkpoint" (xpt pretraining), "export" (``xpt export`` folder) or
    "reference" (a release state dict). ``loaded``: keys set from the file; ``new``: model
    keys the file does not supply, kept at their initialisation (the segmentation head, and
    ``inv_head`` when the file's did not fit); ``ignored``: file keys deliberately not loaded.
    """

    source: str
    loaded: tuple[str, ...]
    new: tuple[str, ...]
    ignored: tuple[str, ...]


def init_from_checkpoint(model: DGCNNPartSeg, path: Path) -> InitReport:
    """Load the point encoder stored at ``path`` into ``model`` (strict, see the module
    docstring); ``k`` may differ from the pretraining run's (it is not a weight)."""
    path = Path(path)
    weights, source = read_point_weights(path)
    own = model.state_dict()
    ignored = _ignored_keys(weights, own)
    kept = {key: value for key, value in weights.items() if key not in ignored}
    _check_fit(kept, own, path)
    _check_aliases(kept, own, path)
    new = sorted(set(own) - set(kept))
    optional = set(HEAD_MODULES) | ({PROJECTION_HEAD} if _head_keys(ignored) else set())
    missing = [key for key in new if _module(key) not in optional]
    if missing:
        raise WeightsError(f"{path}: {_count(missing, 'model key')} missing from the file")
    merged = {key: own[key] for key in new} | kept
    with torch.no_grad():
        model.load_state_dict(merged, strict=True)
    return InitReport(source, tuple(sorted(kept)), tuple(new), tuple(sorted(ignored)))


def read_point_weights(path: Path) -> tuple[dict[str, Tensor], str]:
    """The point encoder's tensors stored at ``path`` (release key names) and the source
    kind; a :class:`WeightsError` for anything else."""
    if path.is_dir():
        return _from_export(path), "export"
    from xpt.train.checkpoint import FORMAT, CheckpointError, checked_checkpoint, read_torch_file
    from xpt.train.models.checkpoint import strip_module_prefix

    try:
        loaded = read_torch_file(path)
        if isinstance(loaded, Mapping) and loaded.get("format") == FORMAT:
            state = checked_checkpoint(loaded, path)
            _check_backbone(state["config"].get("backbone"), path)
            return _tensors(state["models"].get("point"), path), "checkpoint"
    except CheckpointError as error:
        raise WeightsError(str(error)) from None
    weights = strip_module_prefix(_tensors(loaded, path))
    classifier = weights.get("conv5.0.weight")
    if classifier is not None and classifier.ndim == 3:  # DGCNN's conv5 is a Conv1d
        raise WeightsError(
            f"{path}: a release DGCNN (classification) state dict; part segmentation "
            f"fine-tunes DGCNN_partseg (train_crosspoint.py --model dgcnn_seg)"
        )
    return weights, "reference"


def _from_export(folder: Path) -> dict[str, Tensor]:
    """The ``point.*`` tensors of an ``xpt export`` folder of a dgcnn_seg encoder."""
    from xpt.train.encoder import EncoderLoadError, read_export

    try:
        config, tensors = read_export(folder)
    except EncoderLoadError as error:
        raise WeightsError(str(error)) from None
    _check_backbone(config.get("architecture", {}).get("backbone"), folder)
    prefix = "point."
    return {key[len(prefix) :]: value for key, value in tensors.items() if key.startswith(prefix)}


def _check_backbone(backbone: Any, path: Path) -> None:
    if backbone != BACKBONE:
        raise WeightsError(
            f"{path} holds a {backbone} encoder; part segmentation fine-tunes a {BACKBONE} "
            f"encoder (xpt pretrain --backbone {BACKBONE})"
        )


def _tensors(value: Any, path: Path) -> dict[str, Tensor]:
    """``value`` as a state dict, or a WeightsError saying what the file holds instead."""
    if (
        not isinstance(value, Mapping)
        or not value
        or not all(isinstance(key, str) and isinstance(t, Tensor) for key, t in value.items())
    ):
        what = type(value).__name__ if not isinstance(value, Mapping) else "dict of other values"
        raise WeightsError(f"{path}: neither an xpt checkpoint nor a state dict ({what})")
    return dict(value)


def _module(key: str) -> str:
    """The top-level module of a state-dict key ("conv7.1.weight" -> "conv7")."""
    found = _MODULE.match(key)
    return found.group(1) if found else key


def _head_keys(keys: Mapping[str, Any] | set[str]) -> list[str]:
    return [key for key in keys if _module(key) == PROJECTION_HEAD]


def _ignored_keys(weights: Mapping[str, Tensor], own: Mapping[str, Tensor]) -> set[str]:
    """File keys not loaded on purpose: an ``inv_head`` that does not fit the model's (all of
    it), and ``bn7..bn10`` from a file without the convolutions they belong to."""
    ignored: set[str] = set()
    head = _head_keys(weights)
    if any(key not in own or weights[key].shape != own[key].shape for key in head):
        ignored.update(head)
    modules = {_module(key) for key in weights}
    for bn in _UNTRAINED_RELEASE_BN:
        if f"conv{bn[2:]}" not in modules:
            ignored.update(key for key in weights if _module(key) == bn)
    return ignored


def _check_fit(weights: Mapping[str, Tensor], own: Mapping[str, Tensor], path: Path) -> None:
    """Every file key names a model key of the same shape; a renamed key is reported both
    as the file's unknown key and as the model's key it no longer fills."""
    unknown = [key for key in weights if key not in own]
    if unknown:
        optional = set(HEAD_MODULES) | {PROJECTION_HEAD}
        absent = [key for key in own if key not in weights and _module(key) not in optional]
        detail = f"; {_count(absent, 'model key')} missing" if absent else ""
        raise WeightsError(f"{path}: {_count(unknown, 'key')} not in the model{detail}")
    wrong = [key for key in weights if weights[key].shape != own[key].shape]
    wrong.sort(key=lambda key: weights[key].ndim < 2)  # convolution weights first
    if wrong:
        shown = ", ".join(
            f"{key} {tuple(weights[key].shape)} (model {tuple(own[key].shape)})"
            for key in wrong[:SHOWN]
        )
        more = ", ..." if len(wrong) > SHOWN else ""
        raise WeightsError(
            f"{path}: {len(wrong)} tensor(s) of another shape than the model's (another "
            f"emb_dims?): {shown}{more}"
        )


def _check_aliases(weights: Mapping[str, Tensor], own: Mapping[str, Tensor], path: Path) -> None:
    """Keys the model stores once under two names (``bnN`` and ``convN.1``) hold equal
    values in the file: a load would otherwise keep one of them without a word."""
    first: dict[int, str] = {}
    for key in own:
        other = first.setdefault(own[key].data_ptr(), key)
        if other != key and other in weights and key in weights:
            if not torch.equal(weights[other], weights[key]):
                raise WeightsError(
                    f"{path}: {other} and {key} are the same tensor in the model but differ "
                    f"in the file"
                )


def _count(keys: list[str], noun: str) -> str:
    """``2 keys (a, b)``, naming at most SHOWN of them."""
    shown = ", ".join(keys[:SHOWN]) + (", ..." if len(keys) > SHOWN else "")
    return f"{len(keys)} {noun}{'s' if len(keys) != 1 else ''} ({shown})"


def encoder_emb_dims(path: Path) -> int:
    """The ``emb_dims`` of the encoder stored at ``path`` (conv6's width), which the
    fine-tuned network must be built with."""
    weights, _ = read_point_weights(Path(path))
    conv6 = weights.get("conv6.0.weight")
    if conv6 is None:
        raise WeightsError(f"{path}: no conv6.0.weight, so no dgcnn_seg encoder")
    return int(conv6.shape[0])


__all__ = [
    "InitReport",
    "WeightsError",
    "encoder_emb_dims",
    "init_from_checkpoint",
    "read_point_weights",
]
