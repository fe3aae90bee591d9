"""Shared point-encoder block: a per-point 1x1 convolution, batch norm and activation."""

from __future__ import annotations

from torch import Tensor, nn


class ConvNormAct(nn.Module):
    """``Conv1d(kernel_size=1, bias=False)`` -> ``BatchNorm1d`` -> ReLU or LeakyReLU.

    A shared per-point MLP layer on (B, C, N) -> (B, out_ch, N). ``negative_slope=0``
    gives ReLU (PointNet), 0.2 the LeakyReLU of DGCNN. Parameters: ``conv.weight``, ``bn.*``.
    """

    def __init__(self, in_ch: int, out_ch: int, *, negative_slope: float) -> None:
        super().__init__()
        self.conv = nn.Conv1d(in_ch, out_ch, kernel_size=1, bias=False)
        self.bn = nn.BatchNorm1d(out_ch)
        self.act = nn.LeakyReLU(negative_slope) if negative_slope else nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.bn(self.conv(x)))
