"""A pretrained encoder for use in other code: ``xpt.load_encoder(path).features(points)``.

:func:`load_encoder` reads an export folder (``config.json`` + ``model.safetensors``, written
by ``xpt export``), any xpt checkpoint (``last.pt``, ``best.pt``, ``epoch_XXX.pt``) or a
CrossPoint release DGCNN state dict (with or without DataParallel's ``module.`` prefixes),
and returns an :class:`Encoder` in eval mode. ``Encoder.features`` gives the global feature
the benchmarks use, for clouds normalised as pretraining normalises them.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from xpt.train.augment import IMAGENET_MEAN, IMAGENET_STD, normalize_unit_sphere

EXPORT_FORMAT = "xpt-encoder"
EXPORT_FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"


class EncoderLoadError(ValueError):
    """A path that does not hold a usable encoder; the message names it and says why."""


@dataclass
class Encoder:
    """A frozen point encoder (and the image encoder when the source has one).

    ``settings`` holds the architecture (``backbone``, ``k``, ``emb_dims``, ``proj_dim``,
    and ``image_encoder`` / ``image_size`` with an image encoder) and ``source`` where the
    weights come from (kind, path, sha256, step).
    """

    point: nn.Module
    settings: dict[str, Any]
    image: nn.Module | None = None
    source: dict[str, Any] = field(default_factory=dict)

    @property
    def device(self) -> torch.device:
        return next(self.point.parameters()).device

    def to(self, device: str | torch.device) -> Encoder:
        self.point.to(device)
        if self.image is not None:
            self.image.to(device)
        return self

    def features(
        self, points: np.ndarray | Tensor, *, normalize: bool = True, batch_size: int = 32
    ) -> np.ndarray | Tensor:
        """Global features of (N, 3) or (B, N, 3) clouds: (feature_dim,) or (B, feature_dim).

        Each cloud is centred on its centroid and scaled into the unit sphere first, as
        pretraining does (``normalize=False`` feeds the points as given, as the release's
        evaluation does with ModelNet40's already normalised clouds). numpy in, numpy out.
        """
        single = points.ndim == 2
        batch = torch.as_tensor(np.asarray(points) if not torch.is_tensor(points) else points)
        batch = batch.float().reshape(-1, *batch.shape[-2:])
        if batch.shape[-1] != 3:
            raise ValueError(f"points must be (N, 3) or (B, N, 3), got {tuple(points.shape)}")
        out = self._batched(self.point.forward_features, batch, normalize, batch_size)
        out = out[0] if single else out
        return out.cpu().numpy() if not torch.is_tensor(points) else out

    def image_features(
        self, images: np.ndarray | Tensor, *, batch_size: int = 32
    ) -> np.ndarray | Tensor:
        """Global image features of (H, W, 3) or (B, H, W, 3) uint8 RGB images, resized to the
        pretraining size and normalised as in pretraining. numpy in, numpy out."""
        if self.image is None:
            raise ValueError("this encoder has no image encoder (export it with --with-image)")
        single = images.ndim == 3
        batch = torch.as_tensor(np.asarray(images) if not torch.is_tensor(images) else images)
        batch = batch.reshape(-1, *batch.shape[-3:]).permute(0, 3, 1, 2).float() / 255.0
        size = int(self.settings["image_size"])
        batch = nn.functional.interpolate(batch, size=(size, size), mode="bilinear")
        mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
        batch = (batch - mean) / std
        out = self._batched(self.image.forward_features, batch, False, batch_size)
        out = out[0] if single else out
        return out.cpu().numpy() if not torch.is_tensor(images) else out

    def _batched(self, forward: Any, batch: Tensor, normalize: bool, batch_size: int) -> Tensor:
        chunks = []
        with torch.inference_mode():
            for start in range(0, len(batch), batch_size):
                chunk = batch[start : start + batch_size].to(self.device)
                chunks.append(forward(normalize_unit_sphere(chunk) if normalize else chunk))
        return torch.cat(chunks)


def load_encoder(path: str | os.PathLike, *, device: str | torch.device | None = None) -> Encoder:
    """The encoder stored at ``path`` (export folder, xpt checkpoint or release state dict),
    in eval mode on ``device`` (default: CUDA when available)."""
    path = Path(path)
    if path.is_dir():
        encoder = _from_export(path)
    else:
        encoder = _from_checkpoint(path)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    return encoder.to(device)


def _from_checkpoint(path: Path) -> Encoder:
    from xpt.benchmarks.features import EncoderError, point_encoder_from
    from xpt.train.checkpoint import CheckpointError, read_torch_file
    from xpt.train.models import build_image_encoder

    try:
        loaded = read_torch_file(path)  # once: the point and image encoders both come from it
        point, info = point_encoder_from(loaded, path)
    except (CheckpointError, EncoderError) as error:
        raise EncoderLoadError(str(error)) from None
    proj_dim = _proj_dim(point)
    settings = {
        "backbone": info.backbone,
        "k": info.k,
        "emb_dims": info.emb_dims,
        "proj_dim": proj_dim,
    }
    source = {"kind": info.kind, "path": str(path), "sha256": info.sha256, "step": info.step}
    image = None
    if info.kind == "checkpoint":
        state = loaded  # checked by point_encoder_from
        config = state["config"]
        image = build_image_encoder(config["image_encoder"], proj_dim=config["proj_dim"])
        image.load_state_dict(state["models"]["image"])
        image.eval()
        settings |= {"image_encoder": config["image_encoder"], "image_size": config["image_size"]}
        source |= {"selection": state.get("selection"), "pretraining": config}
    return Encoder(point, settings, image, source)


def read_export(folder: Path) -> tuple[dict[str, Any], dict[str, Tensor]]:
    """An ``xpt export`` folder's config and tensors (``point.*``, ``image.*``), checked;
    an :class:`EncoderLoadError` names what is missing or unreadable."""
    from safetensors.torch import load_file

    config_path, weights_path = folder / CONFIG_FILE, folder / WEIGHTS_FILE
    for needed in (config_path, weights_path):
        if not needed.is_file():
            raise EncoderLoadError(f"{folder}: no {needed.name} (not an xpt export folder)")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise EncoderLoadError(f"{config_path}: unreadable: {error}") from None
    if not isinstance(config, dict) or config.get("format") != EXPORT_FORMAT:
        raise EncoderLoadError(f"{config_path}: not an xpt encoder config")
    try:
        weights = load_file(str(weights_path))
    except Exception as error:  # safetensors raises its own error types for bad files
        raise EncoderLoadError(f"{weights_path}: unreadable safetensors file: {error}") from None
    return config, weights


def _from_export(folder: Path) -> Encoder:
    from xpt.train.models import build_image_encoder, build_point_encoder

    config, weights = read_export(folder)
    arch = config["architecture"]
    point = build_point_encoder(
        arch["backbone"], k=arch["k"], emb_dims=arch["emb_dims"], proj_dim=arch["proj_dim"]
    )
    point.load_state_dict(_part(weights, "point"))
    image = None
    if "image_encoder" in arch and any(name.startswith("image.") for name in weights):
        image = build_image_encoder(arch["image_encoder"], proj_dim=arch["proj_dim"])
        image.load_state_dict(_part(weights, "image"))
        image.eval()
    return Encoder(point.eval(), dict(arch), image, dict(config.get("source", {})))


def _part(weights: dict[str, Tensor], prefix: str) -> dict[str, Tensor]:
    return {k[len(prefix) + 1 :]: v for k, v in weights.items() if k.startswith(prefix + ".")}


def _proj_dim(point: nn.Module) -> int:
    """The projection size of a point encoder's head (its last linear layer's outputs)."""
    last = [m for m in point.modules() if isinstance(m, nn.Linear)][-1]
    return int(last.out_features)
