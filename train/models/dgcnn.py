"""DGCNN point encoder (Wang et al., "Dynamic Graph CNN for Learning on Point Clouds", 2019)
as used by CrossPoint (Afham et al., CVPR 2022), numerically identical to the release.

Four EdgeConv layers (64, 64, 128, 256) over the k nearest neighbours in feature space,
``conv5`` to ``emb_dims``, global feature ``cat(max, mean)`` over points (2 * emb_dims),
projection head ``Linear(2e, e) -> BN -> ReLU -> Linear(e, proj_dim)``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch
from torch import Tensor, nn

from xpt.train.models.checkpoint import LoadReport, load_renamed_state_dict, strip_module_prefix
from xpt.train.models.edgeconv import EDGECONV_IMPLS, EdgeConv, edge_features, knn
from xpt.train.models.heads import REFERENCE_HEAD_NAMES, ProjectionHead
from xpt.train.models.layers import ConvNormAct

EDGE_CHANNELS = (64, 64, 128, 256)


class DGCNN(nn.Module):
    """DGCNN encoder with the CrossPoint projection head.

    Input points (B, N, 3) float, channels last. ``forward_features`` -> (B, 2*emb_dims),
    ``forward_head`` -> (B, proj_dim), ``forward`` -> both. ``edgeconv`` picks the EdgeConv
    formulation, "fast" (default) or "plain" (the reference's; see
    :mod:`xpt.train.models.edgeconv`): same function, same parameters and state-dict names.
    """

    def __init__(
        self, *, k: int = 15, emb_dims: int = 1024, proj_dim: int = 256, edgeconv: str = "fast"
    ) -> None:
        super().__init__()
        if k < 1 or emb_dims < 1 or proj_dim < 1:
            raise ValueError(f"k, emb_dims, proj_dim must be >= 1, got {k}, {emb_dims}, {proj_dim}")
        if edgeconv not in EDGECONV_IMPLS:
            raise ValueError(f"unknown edgeconv {edgeconv!r}; valid: {', '.join(EDGECONV_IMPLS)}")
        self.k = k
        self.edgeconv = edgeconv
        self.emb_dims = emb_dims
        self.feature_dim = 2 * emb_dims
        c1, c2, c3, c4 = EDGE_CHANNELS
        self.conv1 = EdgeConv(3, c1, k, impl=edgeconv)
        self.conv2 = EdgeConv(c1, c2, k, impl=edgeconv)
        self.conv3 = EdgeConv(c2, c3, k, impl=edgeconv)
        self.conv4 = EdgeConv(c3, c4, k, impl=edgeconv)
        self.conv5 = ConvNormAct(sum(EDGE_CHANNELS), emb_dims, negative_slope=0.2)
        self.head = ProjectionHead(2 * emb_dims, emb_dims, proj_dim, bias=True)

    def forward_features(self, points: Tensor) -> Tensor:
        """Global feature (B, 2*emb_dims) = cat(max, mean) over points of ``conv5``."""
        if points.ndim != 3 or points.shape[-1] != 3:
            raise ValueError(f"points must be (B, N, 3), got {tuple(points.shape)}")
        x = points.transpose(2, 1)
        per_layer = []
        for conv in (self.conv1, self.conv2, self.conv3, self.conv4):
            x = conv(x)
            per_layer.append(x)
        x = self.conv5(torch.cat(per_layer, dim=1))
        return torch.cat((x.amax(dim=-1), x.mean(dim=-1)), dim=1)

    def forward_head(self, feat: Tensor) -> Tensor:
        """Projection (B, proj_dim) of a global feature (B, 2*emb_dims)."""
        return self.head(feat)

    def forward(self, points: Tensor) -> tuple[Tensor, Tensor]:
        feat = self.forward_features(points)
        return feat, self.forward_head(feat)


_CONV = re.compile(r"^conv([1-5])\.([01])\.(.+)$")
_BN = re.compile(r"^bn([1-5])\.(.+)$")
_HEAD = re.compile(r"^inv_head\.(\d+)\.(.+)$")


def checkpoint_filter_fn(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Rename a reference-release DGCNN state dict to our names.

    Reference ``convN`` is ``Sequential(conv, bn, act)`` with the same BatchNorm also
    registered as ``bnN``: ``convN.0.*`` -> ``convN.conv.*``, ``convN.1.*`` -> ``convN.bn.*``,
    and each ``bnN.*`` is dropped after checking it equals ``convN.1.*`` (used in its place
    when ``convN.1.*`` is absent). ``inv_head.{0,1,3}`` -> ``head.{fc1,bn,fc2}``. A leading
    ``module.`` (DataParallel) is stripped; other keys pass through unchanged so the loader
    reports them as unexpected.
    """
    state_dict = strip_module_prefix(state_dict)
    out: dict[str, Tensor] = {}
    duplicates: dict[str, tuple[str, Tensor]] = {}
    for key, value in state_dict.items():
        if m := _CONV.match(key):
            n, index, rest = m.groups()
            out[f"conv{n}.{'conv' if index == '0' else 'bn'}.{rest}"] = value
        elif m := _BN.match(key):
            n, rest = m.groups()
            duplicates[f"conv{n}.bn.{rest}"] = (key, value)
        elif (m := _HEAD.match(key)) and m.group(1) in REFERENCE_HEAD_NAMES:
            out[f"head.{REFERENCE_HEAD_NAMES[m.group(1)]}.{m.group(2)}"] = value
        else:
            out[key] = value
    for ours, (theirs, value) in duplicates.items():
        if ours not in out:
            out[ours] = value
        elif out[ours].shape != value.shape or not torch.equal(out[ours], value):
            raise ValueError(
                f"{theirs}: duplicated BatchNorm entry differs from its Sequential copy "
                f"({ours.replace('.bn.', '.1.')})"
            )
    return out


def load_reference_state_dict(
    model: DGCNN, state_dict: Mapping[str, Tensor], *, strict: bool = True
) -> LoadReport:
    """Load a state dict saved by the CrossPoint release (``models/dgcnn.py``, class DGCNN).

    Missing / unexpected keys are named (ValueError when ``strict``); a tensor of the wrong
    shape is always refused naming the key and both shapes.
    """
    return load_renamed_state_dict(model, checkpoint_filter_fn(state_dict), strict=strict)


__all__ = [
    "DGCNN",
    "EDGECONV_IMPLS",
    "EdgeConv",
    "checkpoint_filter_fn",
    "edge_features",
    "knn",
    "load_reference_state_dict",
]
