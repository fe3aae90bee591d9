"""Frozen point encoders and their global features, cached on disk.

An encoder comes from an xpt pretraining checkpoint (``last.pt``, ``best.pt``,
``epoch_XXX.pt``), from a state dict saved by the CrossPoint release (recognised by its
key names), or is a seeded random initialisation of the same architecture: the baseline
every report shows. Features are ``forward_features`` (the global feature before the
projection head) in eval mode under ``torch.inference_mode``, in batches, on the GPU when
there is one. They are cached as ``.npz`` files named by a hash of (encoder, dataset
fingerprint, split, points, k), so a second run with the same inputs computes nothing.
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from xpt.benchmarks.protocols import PointsSpec
from xpt.toolkit.fsio import atomic_write_bytes
from xpt.toolkit.memory import heap_checkpoint, retain_freed_memory
from xpt.toolkit.meshes.sampling import subsample_points
from xpt.toolkit.seeding import derive_seed

FEATURE_CACHE_VERSION = 2
BN_STATS = ("checkpoint", "train")
REFERENCE_K = 15  # the release's pretraining setting; its state dicts do not record k


class EncoderError(ValueError):
    """A file that does not hold a usable point encoder; the message names it."""


@dataclass(frozen=True)
class EncoderInfo:
    """Where an encoder's weights come from and its architecture.

    ``kind``: "checkpoint" (xpt), "reference" (a CrossPoint release state dict) or
    "random-init". ``sha256`` of the file for loaded encoders, ``init_seed`` for random ones.
    ``selected_on``: the split a ``best.pt`` was chosen on ("val" or "test"), if it was.
    """

    kind: str
    backbone: str
    k: int
    emb_dims: int
    path: str | None = None
    sha256: str | None = None
    init_seed: int | None = None
    step: int | None = None
    selected_on: str | None = None

    @property
    def label(self) -> str:
        if self.kind == "random-init":
            return f"random init (seed {self.init_seed})"
        name = Path(self.path or "").name
        return f"{name} (step {self.step})" if self.step is not None else name

    @property
    def cache_id(self) -> str:
        if self.kind == "random-init":
            return f"random-{self.backbone}-k{self.k}-e{self.emb_dims}-s{self.init_seed}"
        return f"{self.kind}-{self.sha256}-k{self.k}"

    def to_dict(self) -> dict:
        return {**asdict(self), "label": self.label}


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _state_dict_of(loaded: object) -> Mapping[str, Tensor] | None:
    """A flat name -> tensor mapping in ``loaded``, unwrapping one level of
    ``{"state_dict"|"model_state_dict"|"model": ...}`` as training scripts often save."""
    if isinstance(loaded, Mapping):
        if loaded and all(isinstance(v, Tensor) for v in loaded.values()):
            return loaded
        for key in ("state_dict", "model_state_dict", "model"):
            inner = loaded.get(key)
            if (
                isinstance(inner, Mapping)
                and inner
                and all(isinstance(v, Tensor) for v in inner.values())
            ):
                return inner
    return None


def load_point_encoder(
    path: str | os.PathLike, *, k: int | None = None
) -> tuple[nn.Module, EncoderInfo]:
    """The point encoder stored in ``path``, in eval mode, with its :class:`EncoderInfo`.

    ``k`` overrides DGCNN's neighbour count (required knowledge for reference state dicts,
    which do not record it; :data:`REFERENCE_K` by default).
    """
    from xpt.train.checkpoint import CheckpointError, read_torch_file

    path = Path(path)
    if not path.is_file():
        raise EncoderError(f"{path}: no such checkpoint file")
    try:
        loaded = read_torch_file(path)
    except CheckpointError as exc:
        raise EncoderError(str(exc)) from None
    return point_encoder_from(loaded, path, k=k)


def point_encoder_from(
    loaded: Any, path: str | os.PathLike, *, k: int | None = None
) -> tuple[nn.Module, EncoderInfo]:
    """:func:`load_point_encoder` for the object already loaded from ``path`` (which is read
    again only for its sha256)."""
    from xpt.train.checkpoint import FORMAT, CheckpointError, checked_checkpoint
    from xpt.train.models import build_point_encoder
    from xpt.train.models.checkpoint import strip_module_prefix
    from xpt.train.models.dgcnn import load_reference_state_dict

    path = Path(path)
    sha = file_sha256(path)
    if isinstance(loaded, Mapping) and loaded.get("format") == FORMAT:
        try:
            state = checked_checkpoint(loaded, path)
        except CheckpointError as exc:
            raise EncoderError(str(exc)) from None
        config = state["config"]
        backbone, emb_dims = config["backbone"], config["emb_dims"]
        own_k = config["k"] if k is None else k
        model = build_point_encoder(
            backbone, k=own_k, emb_dims=emb_dims, proj_dim=config["proj_dim"]
        )
        try:
            model.load_state_dict(state["models"]["point"])
        except (RuntimeError, KeyError) as exc:
            first = str(exc).strip().splitlines()[0]
            raise EncoderError(
                f"{path}: point encoder does not match its config: {first}"
            ) from None
        selection = state.get("selection") or {}
        info = EncoderInfo(
            "checkpoint",
            backbone,
            own_k,
            emb_dims,
            str(path),
            sha,
            step=state["position"]["step"],
            selected_on=selection.get("split"),
        )
        return model.eval(), info
    weights = _state_dict_of(loaded)
    if weights is None:
        raise EncoderError(f"{path}: neither an xpt checkpoint nor a state dict of tensors")
    weights = strip_module_prefix(weights)
    if "transform_net.transform.weight" in weights:
        raise EncoderError(
            f"{path}: the release's part-segmentation DGCNN (DGCNN_partseg); xpt benchmark "
            "evaluates its xpt checkpoints (xpt pretrain --backbone dgcnn_seg), and xpt "
            "finetune --task partseg fine-tunes this file"
        )
    if "conv5.0.weight" not in weights:
        raise EncoderError(
            f"{path}: a state dict, but not a CrossPoint DGCNN one (no conv5.0.weight; "
            f"first keys: {', '.join(list(weights)[:3])})"
        )
    emb_dims = int(weights["conv5.0.weight"].shape[0])
    own_k = REFERENCE_K if k is None else k
    proj = weights.get("inv_head.3.weight")
    model = build_point_encoder(
        "dgcnn",
        k=own_k,
        emb_dims=emb_dims,
        proj_dim=int(proj.shape[0]) if proj is not None else 256,
    )
    try:
        load_reference_state_dict(model, {n: t.float() for n, t in weights.items()})
    except ValueError as exc:
        raise EncoderError(f"{path}: {exc}") from None
    return model.eval(), EncoderInfo("reference", "dgcnn", own_k, emb_dims, str(path), sha)


def random_point_encoder(
    backbone: str, *, k: int = 15, emb_dims: int = 1024, seed: int = 0
) -> tuple[nn.Module, EncoderInfo]:
    """An untrained encoder of the given architecture, initialised from ``seed`` alone
    (global RNG state is left as it was), in eval mode."""
    from xpt.train.models import build_point_encoder

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(seed, "random-init"))
        model = build_point_encoder(backbone, k=k, emb_dims=emb_dims)
    return model.eval(), EncoderInfo("random-init", backbone, k, emb_dims, init_seed=seed)


def with_k(model: nn.Module, info: EncoderInfo, k: int) -> tuple[nn.Module, EncoderInfo]:
    """The same weights with DGCNN's neighbour count set to ``k`` (PointNet: unchanged).

    EdgeConv weights do not depend on k, which is how the release's few-shot script
    evaluates a k=15 checkpoint with k=5.
    """
    if info.backbone not in ("dgcnn", "dgcnn_seg") or info.k == k:
        return model, info
    model = copy.deepcopy(model)
    model.k = k  # (dgcnn_seg reads it at every forward)
    if info.backbone == "dgcnn":
        for layer in (model.conv1, model.conv2, model.conv3, model.conv4):
            layer.k = k
    return model, EncoderInfo(**{**asdict(info), "k": k})


def select_points(points: np.ndarray, spec: PointsSpec, seed: int = 0) -> np.ndarray:
    """(n, P, 3) -> (n, count, 3) float32 as ``spec`` says (the first ``count`` points, or
    a per-cloud seeded ``fps``/``random`` subset). Asking for more points than stored is
    an error for "first" (the release never pads)."""
    points = np.asarray(points, dtype=np.float32)
    if spec.count is None or spec.count == points.shape[1] and spec.resample == "first":
        return points
    if spec.resample == "first":
        if spec.count > points.shape[1]:
            raise ValueError(
                f"asked for the first {spec.count} points of clouds of {points.shape[1]}"
            )
        return np.ascontiguousarray(points[:, : spec.count])
    sampler = "fps" if spec.resample == "fps" else "uniform"
    return np.stack(
        [
            subsample_points(cloud, spec.count, derive_seed(seed, "eval-points", i), sampler)
            for i, cloud in enumerate(points)
        ]
    )


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def extract_features(
    model: nn.Module,
    points: np.ndarray,
    *,
    batch_size: int = 16,
    device: torch.device | None = None,
    description: str = "features",
) -> np.ndarray:
    """Global features (n, feature_dim) float32 of clouds (n, N, 3) with a frozen encoder.

    Large activations are served from the heap and reused batch after batch, within a
    memory budget (:func:`~xpt.toolkit.memory.retain_freed_memory`): 2x the objects/s on
    CPU."""
    from xpt.toolkit.console import RunProgress

    device = device or default_device()
    model = model.to(device).eval()
    features = np.zeros((len(points), model.feature_dim), dtype=np.float32)
    with (
        torch.inference_mode(),
        retain_freed_memory(),
        RunProgress(description, total=len(points), unit="obj") as bar,
    ):
        for start in range(0, len(points), batch_size):
            # (a copy: evaluation arrays are read-only, torch wants writable memory)
            batch = torch.from_numpy(np.array(points[start : start + batch_size], dtype=np.float32))
            # (written into one array made before the loop: a long-lived chunk per batch
            # would land inside freed activations and fragment the kept heap)
            features[start : start + len(batch)] = (
                model.forward_features(batch.to(device)).float().cpu().numpy()
            )
            bar.advance(n=len(batch))
            heap_checkpoint()
    return features


class FeatureCache:
    """``.npz`` feature files in ``folder`` named by a hash of what determines them.
    ``folder`` None disables caching."""

    def __init__(self, folder: str | os.PathLike | None):
        self.folder = None if folder is None else Path(folder)

    @staticmethod
    def key(parts: Mapping[str, object]) -> str:
        text = json.dumps({"version": FEATURE_CACHE_VERSION, **parts}, sort_keys=True)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]

    def get(self, key: str) -> np.ndarray | None:
        if self.folder is None:
            return None
        path = self.folder / f"{key}.npz"
        try:
            with np.load(path, allow_pickle=False) as stored:
                return stored["features"]
        except (OSError, ValueError, KeyError):
            return None  # absent, or damaged: recompute and overwrite

    def put(self, key: str, features: np.ndarray, meta: Mapping[str, object]) -> None:
        if self.folder is None:
            return
        buffer = io.BytesIO()
        np.savez(buffer, features=features, meta=np.array(json.dumps(meta, sort_keys=True)))
        atomic_write_bytes(self.folder / f"{key}.npz", buffer.getvalue(), "the feature cache")


def recalibrate_batchnorm(
    model: nn.Module,
    points: np.ndarray,
    *,
    batch_size: int = 16,
    device: torch.device | None = None,
) -> nn.Module:
    """A copy of ``model`` whose BatchNorm running statistics are re-estimated on ``points``
    (n, N, 3): one pass in train mode without gradients, cumulative averages over the
    batches (momentum None), then eval mode. No label and no weight is touched.

    An encoder's stored statistics describe whatever it last saw in train mode: identity
    for a random initialisation, augmented pretraining clouds for a checkpoint. Estimating
    every encoder's statistics on the same unlabelled evaluation clouds makes a comparison
    of encoders a comparison of their weights.
    """
    from torch.nn.modules.batchnorm import _BatchNorm

    device = device or default_device()
    model = copy.deepcopy(model).to(device)
    for module in model.modules():
        if isinstance(module, _BatchNorm):
            module.reset_running_stats()
            module.momentum = None
    model.train()
    with torch.no_grad(), retain_freed_memory():
        for start in range(0, len(points), batch_size):
            chunk = np.array(points[start : start + batch_size], dtype=np.float32)
            model.forward_features(torch.from_numpy(chunk).to(device))
            heap_checkpoint()
    return model.eval()


def encoder_feature_pair(
    model: nn.Module,
    info: EncoderInfo,
    train: np.ndarray,
    test: np.ndarray,
    *,
    fingerprint: str,
    spec: PointsSpec,
    seed: int,
    cache: FeatureCache,
    bn_stats: str = "checkpoint",
    batch_size: int = 16,
    device: torch.device | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Features of a dataset's train (n, P, 3) and test clouds, from ``cache`` when present.

    ``bn_stats`` "checkpoint" uses the encoder as stored; "train" first re-estimates its
    BatchNorm statistics on the train clouds (:func:`recalibrate_batchnorm`), once.
    """
    if bn_stats not in BN_STATS:
        raise ValueError(f"bn_stats must be one of {', '.join(BN_STATS)}, got {bn_stats!r}")
    parts = {
        "encoder": info.cache_id,
        "dataset": fingerprint,
        "points": asdict(spec),
        "seed": seed if spec.resample != "first" else None,
        "bn_stats": bn_stats,
    }
    splits = {"train": train, "test": test}
    keys = {split: FeatureCache.key({**parts, "split": split}) for split in splits}
    result = {}
    for split, points in splits.items():
        cached = cache.get(keys[split])
        if cached is not None and cached.shape[0] == len(points):
            result[split] = cached
    missing = [split for split in splits if split not in result]
    if missing:
        chosen = {split: select_points(splits[split], spec, seed) for split in splits}
        if bn_stats == "train":
            model = recalibrate_batchnorm(
                model, chosen["train"], batch_size=batch_size, device=device
            )
        for split in missing:
            result[split] = extract_features(
                model, chosen[split], batch_size=batch_size, device=device,
                description=f"{info.label} {split}",
            )  # fmt: skip
            cache.put(keys[split], result[split], {**parts, "split": split})
    return result["train"], result["test"]
