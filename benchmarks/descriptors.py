"""Hand-crafted global shape descriptors: the no-learning baseline of ``xpt benchmark``.

A linear SVM on these features shows what "no learning at all" achieves beside a
pretrained and a random-init encoder. The descriptor concatenates

- the D2 shape distribution (Osada, Funkhouser, Chazelle, Dobkin, "Shape
  Distributions", ACM TOG 2002): a histogram of distances between random point pairs;
- histograms of the height along the up axis, of the radial distance from the up axis
  and of the distance from the centroid;
- the sorted eigenvalues of the 3x3 covariance, the extent along the up axis and the
  two extents along the principal axes of the horizontal plane.

Every cloud is first centred on its mean and scaled to unit max radius, the way the
encoders' inputs are normalised, so the descriptor ignores position and size. Every part
is invariant to rotation about the up axis and to point order (D2 up to its pair
sampling).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_HISTOGRAMS = ("d2", "height", "radial", "centroid")


@dataclass(frozen=True)
class DescriptorConfig:
    """Settings of :func:`shape_descriptors`; ``up_axis`` 1 is +Y, xpt's and ModelNet40's up."""

    bins: int = 16
    pairs: int = 4096
    up_axis: int = 1
    seed: int = 0

    def __post_init__(self) -> None:
        if self.bins < 1:
            raise ValueError(f"bins must be at least 1, got {self.bins}")
        if self.pairs < 1:
            raise ValueError(f"pairs must be at least 1, got {self.pairs}")
        if self.up_axis not in (0, 1, 2):
            raise ValueError(f"up_axis must be 0, 1 or 2, got {self.up_axis}")


def descriptor_names(config: DescriptorConfig = DescriptorConfig()) -> list[str]:
    """One name per column of :func:`shape_descriptors`' output, in order."""
    width = max(2, len(str(config.bins - 1)))
    names = [f"{kind}_{i:0{width}d}" for kind in _HISTOGRAMS for i in range(config.bins)]
    return names + ["eig_0", "eig_1", "eig_2", "extent_up", "pca_extent_0", "pca_extent_1"]


def shape_descriptors(
    points: np.ndarray, config: DescriptorConfig = DescriptorConfig(), *, batch_size: int = 256
) -> np.ndarray:
    """Descriptors of a batch of clouds: points (B, N, 3) float -> (B, D) float32.

    D = 4 * ``config.bins`` + 6 (see :func:`descriptor_names`). The D2 pair indices are
    drawn once from ``config.seed`` and shared by every cloud, so identical clouds give
    identical descriptors. Work is vectorised over ``batch_size`` clouds at a time to
    bound memory (about ``batch_size * pairs * 48`` bytes).
    """
    points = np.asarray(points)
    if points.ndim != 3 or points.shape[2] != 3 or points.shape[1] < 2:
        raise ValueError(f"points must have shape (B, N >= 2, 3), got {points.shape}")
    if not np.issubdtype(points.dtype, np.number) or not np.all(np.isfinite(points)):
        raise ValueError("points must be finite numbers")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    n = points.shape[1]
    rng = np.random.default_rng(config.seed)
    first = rng.integers(0, n, size=config.pairs)
    # A non-zero offset modulo N: the two points of a pair are always distinct.
    second = (first + rng.integers(1, n, size=config.pairs)) % n
    out = np.empty((points.shape[0], 4 * config.bins + 6), dtype=np.float32)
    for start in range(0, points.shape[0], batch_size):
        chunk = points[start : start + batch_size].astype(np.float64)
        out[start : start + batch_size] = _describe(chunk, first, second, config)
    return out


def _describe(
    points: np.ndarray, first: np.ndarray, second: np.ndarray, config: DescriptorConfig
) -> np.ndarray:
    """(B, N, 3) float64 -> (B, D) float64; see :func:`shape_descriptors`."""
    points = points - points.mean(axis=1, keepdims=True)
    radius = np.linalg.norm(points, axis=2)
    scale = radius.max(axis=1)
    # A cloud collapsed to one point stays at the origin instead of dividing by zero.
    scale = np.where(scale > 0, scale, 1.0)[:, None]
    points = points / scale[:, :, None]
    radius = radius / scale
    horizontal_axes = [a for a in range(3) if a != config.up_axis]
    height = points[:, :, config.up_axis]
    horizontal = points[:, :, horizontal_axes]

    d2 = np.linalg.norm(points[:, first] - points[:, second], axis=2)
    histograms = [
        _histogram(d2, 0.0, 2.0, config.bins),
        _histogram(height, -1.0, 1.0, config.bins),
        _histogram(np.linalg.norm(horizontal, axis=2), 0.0, 1.0, config.bins),
        _histogram(radius, 0.0, 1.0, config.bins),
    ]

    n = points.shape[1]
    covariance = np.einsum("bni,bnj->bij", points, points) / n
    eigenvalues = np.linalg.eigvalsh(covariance)[:, ::-1]
    extent_up = height.max(axis=1) - height.min(axis=1)
    horizontal_cov = np.einsum("bni,bnj->bij", horizontal, horizontal) / n
    _, axes = np.linalg.eigh(horizontal_cov)
    # eigh sorts ascending: reverse so the axis of larger horizontal variance comes first.
    projected = np.einsum("bni,bij->bnj", horizontal, axes[:, :, ::-1])
    extents = projected.max(axis=1) - projected.min(axis=1)
    return np.concatenate([*histograms, eigenvalues, extent_up[:, None], extents], axis=1)


def _histogram(values: np.ndarray, low: float, high: float, bins: int) -> np.ndarray:
    """Per-row histogram of values (B, M) over [low, high], summing to 1: (B, bins).

    Values at ``high`` (the farthest point has radius exactly 1) go to the last bin, and
    rounding just outside the range is clipped to the nearest bin.
    """
    index = np.floor((values - low) * (bins / (high - low))).astype(np.int64)
    index = np.clip(index, 0, bins - 1) + bins * np.arange(values.shape[0])[:, None]
    counts = np.bincount(index.ravel(), minlength=values.shape[0] * bins)
    return counts.reshape(values.shape[0], bins) / values.shape[1]
