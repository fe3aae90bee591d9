"""The CrossPoint projection head shared by the point and image encoders."""

from __future__ import annotations

from torch import Tensor, nn


class ProjectionHead(nn.Module):
    """``Linear(in, hidden) -> BatchNorm1d(hidden) -> ReLU -> Linear(hidden, out)``.

    Maps a global feature (B, in_dim) to the invariant space (B, out_dim) where the
    NT-Xent loss is taken. ``bias`` follows the reference release: the DGCNN head has
    biases on both linears, the image head on neither. Parameters: ``fc1.*``, ``bn.*``,
    ``fc2.*`` (the reference ``inv_head.0`` / ``.1`` / ``.3``).
    """

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int, *, bias: bool) -> None:
        super().__init__()
        self.fc1 = nn.Linear(in_dim, hidden_dim, bias=bias)
        self.bn = nn.BatchNorm1d(hidden_dim)
        self.act = nn.ReLU()
        self.fc2 = nn.Linear(hidden_dim, out_dim, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.bn(self.fc1(x))))


# Reference ``inv_head`` (an nn.Sequential) index -> our attribute name.
REFERENCE_HEAD_NAMES = {"0": "fc1", "1": "bn", "3": "fc2"}
