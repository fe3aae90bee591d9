"""Point and image encoders for CrossPoint, built by name from plain dicts.

Every encoder has ``feature_dim``, ``forward_features(x) -> (B, feature_dim)`` (the global
feature used for evaluation), ``forward_head(feat) -> (B, proj_dim)`` and
``forward(x) -> (feat, z)``.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from xpt.train.models.dgcnn import DGCNN
from xpt.train.models.dgcnn_partseg import DGCNNSegEncoder
from xpt.train.models.pointnet import PointNet
from xpt.train.models.resnet import ResNet, resnet18, resnet50

POINT_ENCODERS: dict[str, Callable[..., nn.Module]] = {
    "dgcnn": lambda *, k, emb_dims, proj_dim, edgeconv: DGCNN(
        k=k, emb_dims=emb_dims, proj_dim=proj_dim, edgeconv=edgeconv
    ),
    "pointnet": lambda *, k, emb_dims, proj_dim, edgeconv: PointNet(
        emb_dims=emb_dims, proj_dim=proj_dim
    ),
    "dgcnn_seg": lambda *, k, emb_dims, proj_dim, edgeconv: DGCNNSegEncoder(
        k=k, emb_dims=emb_dims, proj_dim=proj_dim, edgeconv=edgeconv
    ),
}
IMAGE_ENCODERS: dict[str, Callable[..., ResNet]] = {"resnet50": resnet50, "resnet18": resnet18}


def build_point_encoder(
    name: str,
    *,
    k: int = 15,
    emb_dims: int = 1024,
    proj_dim: int = 256,
    edgeconv: str = "fast",
) -> nn.Module:
    """Point encoder "dgcnn", "pointnet" or "dgcnn_seg" (the part-segmentation DGCNN's
    encoder; ``k`` is used by the DGCNNs, ``edgeconv`` by "dgcnn" only)."""
    if name not in POINT_ENCODERS:
        raise ValueError(f"unknown point encoder {name!r}; valid: {', '.join(POINT_ENCODERS)}")
    return POINT_ENCODERS[name](k=k, emb_dims=emb_dims, proj_dim=proj_dim, edgeconv=edgeconv)


def build_image_encoder(name: str, *, proj_dim: int = 256) -> ResNet:
    """Image encoder "resnet50" or "resnet18", randomly initialised."""
    if name not in IMAGE_ENCODERS:
        raise ValueError(f"unknown image encoder {name!r}; valid: {', '.join(IMAGE_ENCODERS)}")
    return IMAGE_ENCODERS[name](proj_dim=proj_dim)


__all__ = [
    "DGCNN",
    "DGCNNSegEncoder",
    "IMAGE_ENCODERS",
    "POINT_ENCODERS",
    "PointNet",
    "ResNet",
    "build_image_encoder",
    "build_point_encoder",
]
