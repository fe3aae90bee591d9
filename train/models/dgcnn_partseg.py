"""DGCNN for part segmentation (Wang et al., "Dynamic Graph CNN for Learning on Point Clouds",
2019) as CrossPoint's release builds it (``models/dgcnn.py``: ``Transform_Net``,
``DGCNN_partseg``), with the release's state-dict names and shapes, so its files load strictly.

The encoder: a 3x3 spatial transform of the input, three EdgeConv blocks (two 1x1
convolutions on ``cat(x_j - x_i, x_i)`` over the k nearest neighbours in feature space, the
point itself included, then a max over neighbours; one convolution in the third block) of 64
channels each, ``conv6`` from their concatenation (192) to ``emb_dims`` and a max over points:
the global feature (B, emb_dims). Every block is ``Sequential(conv, bn, LeakyReLU(0.2))`` whose
BatchNorm is also registered as ``bnN``, exactly as the release does, so a state dict holds
both ``bnN.*`` and ``convN.1.*`` (the same tensors).

- :class:`DGCNNSegEncoder` is the release's ``DGCNN_partseg(pretrain=True)``, a CrossPoint
  point encoder (``xpt pretrain --backbone dgcnn_seg``) with the projection head ``inv_head``.
- :class:`DGCNNPartSeg` is ``DGCNN_partseg(pretrain=False)``, the fine-tuning network: the
  same encoder and a segmentation head on cat(global feature, category embedding, x1, x2, x3).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from xpt.train.models.edgeconv import EDGECONV_IMPLS, edge_features

SLOPE = 0.2  # LeakyReLU negative slope of every block
EDGE_WIDTH = 64  # channels of the three EdgeConv blocks
# Modules of the segmentation head; a checkpoint of the encoder has none of them.
HEAD_MODULES = ("bn7", "bn8", "bn9", "bn10", "conv7", "conv8", "conv9", "conv10", "conv11")
PROJECTION_HEAD = "inv_head"
RELEASE_PROJ_DIM = 256  # the release's inv_head output width


def _points_first(points: Tensor) -> Tensor:
    """(B, N, 3) float points -> (B, 3, N), after checking the shape."""
    if points.ndim != 3 or points.shape[-1] != 3:
        raise ValueError(f"points must be (B, N, 3), got {tuple(points.shape)}")
    return points.transpose(2, 1)


class TransformNet(nn.Module):
    """The 3x3 input transform: edge features (B, 6, N, k) -> matrices (B, 3, 3).

    Keys as the release's ``Transform_Net``: its ``bn3`` is the BatchNorm after ``linear1``
    (512); ``conv3`` carries its own BatchNorm1d(1024) (``conv3.1.*``), registered once
    (the release's first ``self.bn3`` is re-assigned). ``transform`` starts as the identity
    (weight 0, bias eye(3)).
    """

    def __init__(self) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(64)
        self.bn2 = nn.BatchNorm2d(128)
        self.bn3 = nn.BatchNorm1d(512)
        self.conv1 = _block(nn.Conv2d(6, 64, kernel_size=1, bias=False), self.bn1)
        self.conv2 = _block(nn.Conv2d(64, 128, kernel_size=1, bias=False), self.bn2)
        self.conv3 = _block(nn.Conv1d(128, 1024, kernel_size=1, bias=False), nn.BatchNorm1d(1024))
        self.linear1 = nn.Linear(1024, 512, bias=False)
        self.linear2 = nn.Linear(512, 256, bias=False)
        self.bn4 = nn.BatchNorm1d(256)
        self.transform = nn.Linear(256, 9)
        nn.init.zeros_(self.transform.weight)
        with torch.no_grad():
            self.transform.bias.copy_(torch.eye(3).flatten())

    def forward(self, edges: Tensor) -> Tensor:
        x = self.conv2(self.conv1(edges)).amax(dim=-1)  # (B, 128, N)
        x = self.conv3(x).amax(dim=-1)  # (B, 1024)
        x = F.leaky_relu(self.bn3(self.linear1(x)), SLOPE)
        x = F.leaky_relu(self.bn4(self.linear2(x)), SLOPE)
        return self.transform(x).view(-1, 3, 3)


def _block(conv: nn.Module, bn: nn.Module) -> nn.Sequential:
    """``Sequential(conv, bn, LeakyReLU(0.2))``: keys ``0.weight`` and ``1.*``."""
    return nn.Sequential(conv, bn, nn.LeakyReLU(SLOPE))


class _PartSegEncoder(nn.Module):
    """The encoder layers shared by :class:`DGCNNSegEncoder` and :class:`DGCNNPartSeg`, under
    the release's flat names: ``transform_net.*``, ``bn1..bn6``, ``conv1..conv6`` and the
    projection head ``inv_head`` (``Linear(e, e) -> BN(e) -> ReLU -> Linear(e, proj_dim)``).

    ``k`` is read at every forward, so it may be changed after construction.
    """

    def __init__(self, *, k: int, emb_dims: int, proj_dim: int) -> None:
        super().__init__()
        if k < 1 or emb_dims < 1 or proj_dim < 1:
            raise ValueError(f"k, emb_dims, proj_dim must be >= 1, got {k}, {emb_dims}, {proj_dim}")
        self.k = k
        self.emb_dims = emb_dims
        self.transform_net = TransformNet()
        w = EDGE_WIDTH
        for index, conv in enumerate(
            (
                nn.Conv2d(6, w, kernel_size=1, bias=False),
                nn.Conv2d(w, w, kernel_size=1, bias=False),
                nn.Conv2d(2 * w, w, kernel_size=1, bias=False),
                nn.Conv2d(w, w, kernel_size=1, bias=False),
                nn.Conv2d(2 * w, w, kernel_size=1, bias=False),
                nn.Conv1d(3 * w, emb_dims, kernel_size=1, bias=False),
            ),
            start=1,
        ):
            self.add_block(index, conv)
        self.inv_head = nn.Sequential(
            nn.Linear(emb_dims, emb_dims),
            nn.BatchNorm1d(emb_dims),
            nn.ReLU(),
            nn.Linear(emb_dims, proj_dim),
        )

    def add_block(self, index: int, conv: nn.Conv1d | nn.Conv2d) -> None:
        """Register ``bn{index}`` and ``conv{index} = Sequential(conv, bn, LeakyReLU)``."""
        bn = nn.BatchNorm2d(conv.out_channels)
        if isinstance(conv, nn.Conv1d):
            bn = nn.BatchNorm1d(conv.out_channels)
        setattr(self, f"bn{index}", bn)
        setattr(self, f"conv{index}", _block(conv, bn))

    def encode(self, points: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Points (B, N, 3) -> global feature (B, emb_dims, 1) and the per-point features
        x1, x2, x3 (B, 64, N) of the three EdgeConv blocks."""
        x = _points_first(points)
        rotation = self.transform_net(edge_features(x, self.k))
        x = torch.bmm(points, rotation).transpose(2, 1)  # each cloud (N, 3) times its 3x3
        x1 = self.conv2(self.conv1(edge_features(x, self.k))).amax(dim=-1)
        x2 = self.conv4(self.conv3(edge_features(x1, self.k))).amax(dim=-1)
        x3 = self.conv5(edge_features(x2, self.k)).amax(dim=-1)
        features = self.conv6(torch.cat((x1, x2, x3), dim=1)).amax(dim=-1, keepdim=True)
        return features, x1, x2, x3


class DGCNNSegEncoder(_PartSegEncoder):
    """The part-segmentation DGCNN encoder as a CrossPoint point encoder (``"dgcnn_seg"``).

    Input points (B, N, 3) float, channels last. ``forward_features`` -> (B, emb_dims), the
    max over points of ``conv6`` (as the release's pretraining feature), ``forward_head`` ->
    (B, proj_dim), ``forward`` -> both. ``edgeconv`` is accepted for the interface of
    :func:`~xpt.train.models.build_point_encoder` and ignored: the blocks apply two
    convolutions before the max over neighbours, so the fast EdgeConv does not apply.

    The release's keys without ``bn7..bn10``: ``DGCNN_partseg(pretrain=True)`` creates the
    segmentation head's BatchNorms but never uses them (their parameters would get no
    gradient, which DistributedDataParallel refuses). The release's pretraining forward
    calls ``x.squeeze()``, which drops the batch dimension of a batch of one; ours keeps it.
    """

    def __init__(
        self, *, k: int = 15, emb_dims: int = 1024, proj_dim: int = 256, edgeconv: str = "fast"
    ) -> None:
        super().__init__(k=k, emb_dims=emb_dims, proj_dim=proj_dim)
        if edgeconv not in EDGECONV_IMPLS:
            raise ValueError(f"unknown edgeconv {edgeconv!r}; valid: {', '.join(EDGECONV_IMPLS)}")
        self.feature_dim = emb_dims

    def forward_features(self, points: Tensor) -> Tensor:
        """Global feature (B, emb_dims) of points (B, N, 3)."""
        return self.encode(points)[0].squeeze(-1)

    def forward_head(self, feat: Tensor) -> Tensor:
        """Projection (B, proj_dim) of a global feature (B, emb_dims)."""
        return self.inv_head(feat)

    def forward(self, points: Tensor) -> tuple[Tensor, Tensor]:
        feat = self.forward_features(points)
        return feat, self.forward_head(feat)


class DGCNNPartSeg(_PartSegEncoder):
    """The fine-tuning network: per-point part logits (B, parts, N).

    ``forward(points, category)``: points (B, N, 3) float, channels last; category a (B,)
    int64 tensor of category indices or a (B, categories) one-hot (as the release feeds
    it). The head: the category one-hot through ``conv7`` (-> 64), cat(global feature,
    that, x1, x2, x3) at every point (emb_dims + 64 + 192 channels), ``conv8`` (256),
    dropout, ``conv9`` (256), dropout, ``conv10`` (128), ``conv11`` (parts, no BN).
    ``inv_head`` (projection width 256, as the release) is kept so that the release's
    fine-tuned state dicts load strictly; the segmentation forward does not use it.
    """

    def __init__(
        self,
        parts: int,
        categories: int = 16,
        *,
        k: int = 40,
        emb_dims: int = 1024,
        dropout: float = 0.5,
    ) -> None:
        super().__init__(k=k, emb_dims=emb_dims, proj_dim=RELEASE_PROJ_DIM)
        if parts < 1 or categories < 1 or not 0 <= dropout < 1:
            raise ValueError(
                f"need parts >= 1, categories >= 1, 0 <= dropout < 1; got {parts}, "
                f"{categories}, {dropout}"
            )
        self.parts = parts
        self.categories = categories
        self.add_block(7, nn.Conv1d(categories, 64, kernel_size=1, bias=False))
        self.add_block(8, nn.Conv1d(emb_dims + 64 + 3 * EDGE_WIDTH, 256, kernel_size=1, bias=False))
        self.dp1 = nn.Dropout(dropout)
        self.add_block(9, nn.Conv1d(256, 256, kernel_size=1, bias=False))
        self.dp2 = nn.Dropout(dropout)
        self.add_block(10, nn.Conv1d(256, 128, kernel_size=1, bias=False))
        self.conv11 = nn.Conv1d(128, parts, kernel_size=1, bias=False)

    def one_hot(self, category: Tensor, batch: int) -> Tensor:
        """(B,) indices or a (B, categories) one-hot -> (B, categories, 1) float."""
        if category.shape == (batch,) and not category.is_floating_point():
            if bool(((category < 0) | (category >= self.categories)).any()):
                raise ValueError(
                    f"category indices must be in [0, {self.categories}), got "
                    f"{category.min().item()}..{category.max().item()}"
                )
            category = F.one_hot(category.long(), self.categories)
        elif category.shape != (batch, self.categories):
            raise ValueError(
                f"category must be ({batch},) indices or a ({batch}, {self.categories}) "
                f"one-hot, got {tuple(category.shape)} {category.dtype}"
            )
        return category.to(self.conv7[0].weight.dtype).unsqueeze(-1)

    def forward(self, points: Tensor, category: Tensor) -> Tensor:
        features, x1, x2, x3 = self.encode(points)
        label = self.conv7(self.one_hot(category, points.shape[0]))  # (B, 64, 1)
        context = torch.cat((features, label), dim=1).expand(-1, -1, points.shape[1])
        x = self.conv8(torch.cat((context, x1, x2, x3), dim=1))
        x = self.conv9(self.dp1(x))
        x = self.conv10(self.dp2(x))
        return self.conv11(x)


__all__ = [
    "HEAD_MODULES",
    "PROJECTION_HEAD",
    "DGCNNPartSeg",
    "DGCNNSegEncoder",
    "TransformNet",
]
