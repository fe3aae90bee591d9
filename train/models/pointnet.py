"""PointNet point encoder (Qi et al., CVPR 2017), CrossPoint's second backbone.

The release never shipped it; this follows the PointNet of the DGCNN code base that
CrossPoint builds on: a shared MLP 64-64-64-128-emb_dims (``Conv1d(bias=False)`` + BN + ReLU
per point), max pooling over points to a global feature of emb_dims (1024), no input /
feature transform nets. The projection head mirrors the reference's head for a plain
emb_dims feature: ``Linear(e, e) -> BN -> ReLU -> Linear(e, proj_dim)``.
"""

from __future__ import annotations

from torch import Tensor, nn

from xpt.train.models.heads import ProjectionHead
from xpt.train.models.layers import ConvNormAct

MLP_CHANNELS = (64, 64, 64, 128)


class PointNet(nn.Module):
    """PointNet encoder with a projection head.

    Input points (B, N, 3) float, channels last. ``forward_features`` -> (B, emb_dims),
    ``forward_head`` -> (B, proj_dim), ``forward`` -> both.
    """

    def __init__(self, *, emb_dims: int = 1024, proj_dim: int = 256) -> None:
        super().__init__()
        if emb_dims < 1 or proj_dim < 1:
            raise ValueError(f"emb_dims, proj_dim must be >= 1, got {emb_dims}, {proj_dim}")
        self.emb_dims = emb_dims
        self.feature_dim = emb_dims
        channels = (3, *MLP_CHANNELS, emb_dims)
        self.mlp = nn.Sequential(
            *(
                ConvNormAct(c_in, c_out, negative_slope=0.0)
                for c_in, c_out in zip(channels[:-1], channels[1:], strict=True)
            )
        )
        self.head = ProjectionHead(emb_dims, emb_dims, proj_dim, bias=True)

    def forward_features(self, points: Tensor) -> Tensor:
        """Global feature (B, emb_dims): max over points of the shared MLP."""
        if points.ndim != 3 or points.shape[-1] != 3:
            raise ValueError(f"points must be (B, N, 3), got {tuple(points.shape)}")
        return self.mlp(points.transpose(2, 1)).amax(dim=-1)

    def forward_head(self, feat: Tensor) -> Tensor:
        """Projection (B, proj_dim) of a global feature (B, emb_dims)."""
        return self.head(feat)

    def forward(self, points: Tensor) -> tuple[Tensor, Tensor]:
        feat = self.forward_features(points)
        return feat, self.forward_head(feat)
