"""CrossPoint's point-cloud and image augmentations on batched tensors (any device).

Afham et al., CVPR 2022, and its release (``datasets/data.py``: ``trans_1`` / ``trans_2``
for points, the torchvision transform of ``train_crosspoint.py`` for images).

Randomness comes only from the ``torch.Generator`` passed in, or from one generator per
sample (:data:`Generators`): values are drawn on the generator's device and then moved to
the data's device, so a CPU generator drives CUDA data reproducibly. Each sample of a batch
gets its own draws; with per-sample generators they depend on that sample's generator
only, so a batch augmented in a DataLoader worker, in the main process or on the GPU, whole
or in parts, comes out the same.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
GRAY_WEIGHTS = (0.2989, 0.587, 0.114)


Generators = torch.Generator | Sequence[torch.Generator]
"""One generator for a whole batch, or one per sample (each sample's draws then come from
its own generator only: the result for a sample does not depend on its batch)."""


def _draw(shape: tuple[int, ...], generator: Generators, *, normal: bool = False) -> Tensor:
    """U[0, 1) (or N(0, 1) with ``normal``) float32 of ``shape`` from ``generator``, on its
    device; with per-sample generators, ``shape[1:]`` from each of the ``shape[0]``, stacked."""
    draw = torch.randn if normal else torch.rand
    if isinstance(generator, torch.Generator):
        return draw(shape, generator=generator, device=generator.device)
    if len(generator) != shape[0]:
        raise ValueError(f"{len(generator)} generators for a batch of {shape[0]}")
    return torch.stack([draw(shape[1:], generator=g, device=g.device) for g in generator])


def _uniform(
    shape: tuple[int, ...], low: float, high: float, generator: Generators, like: Tensor
) -> Tensor:
    """U[low, high) of ``shape`` from ``generator``, on ``like``'s device and dtype."""
    u = _draw(shape, generator)
    return (low + (high - low) * u).to(device=like.device, dtype=like.dtype)


def _check_points(points: Tensor) -> None:
    if points.ndim != 3 or points.shape[-1] != 3 or not points.is_floating_point():
        raise ValueError(f"points must be a float (B, N, 3) tensor, got {tuple(points.shape)}")


# ---------------------------------------------------------------------------- points


@dataclass(frozen=True)
class PointAugmentConfig:
    """Ranges of the point augmentations, applied in this order, each always.

    - normalise to the unit sphere (centroid to the origin, max radius 1);
    - scale by U[scale_low, scale_high]: one factor per cloud (isotropic), as the release's
      ``PointcloudScale(lo=0.5, hi=2)`` draws a single scalar; ``scale_per_axis`` draws one
      per axis instead;
    - rotate about the up axis (+Y) by U[0, 2*pi);
    - translate by U[-translate_range, translate_range] per axis times the cloud's extent
      on that axis (side of its axis-aligned bounding box, taken after scale and rotation);
    - jitter every coordinate by N(0, jitter_std) clipped to +-jitter_clip;
    - random input dropout: ratio r ~ U[0, max_dropout_ratio), each point dropped with
      probability r and replaced by the cloud's first point (keeps N fixed).
    """

    scale_low: float = 0.5
    scale_high: float = 2.0
    scale_per_axis: bool = False
    translate_range: float = 0.5
    jitter_std: float = 0.01
    jitter_clip: float = 0.05
    max_dropout_ratio: float = 0.875

    def __post_init__(self) -> None:
        if not 0 < self.scale_low <= self.scale_high:
            raise ValueError(
                f"need 0 < scale_low <= scale_high, got {self.scale_low}, {self.scale_high}"
            )
        if self.translate_range < 0:
            raise ValueError(f"translate_range must be >= 0, got {self.translate_range}")
        if self.jitter_std < 0 or self.jitter_clip < 0:
            raise ValueError(
                f"jitter_std and jitter_clip must be >= 0, got {self.jitter_std}, "
                f"{self.jitter_clip}"
            )
        if not 0 <= self.max_dropout_ratio < 1:
            raise ValueError(f"max_dropout_ratio must be in [0, 1), got {self.max_dropout_ratio}")


def normalize_unit_sphere(points: Tensor) -> Tensor:
    """Centre each cloud (B, N, 3) on its centroid and divide by its largest radius."""
    _check_points(points)
    centred = points - points.mean(dim=1, keepdim=True)
    radius = centred.norm(dim=2).amax(dim=1).clamp_min(torch.finfo(points.dtype).tiny)
    return centred / radius.view(-1, 1, 1)


def random_scale(
    points: Tensor, generator: Generators, low: float, high: float, *, per_axis: bool
) -> Tensor:
    """Multiply each cloud by U[low, high) (one factor, or one per axis with ``per_axis``)."""
    _check_points(points)
    scale = _uniform((points.shape[0], 1, 3 if per_axis else 1), low, high, generator, points)
    return points * scale


def rotation_about_y(angle: Tensor) -> Tensor:
    """Rotation matrices (B, 3, 3) by ``angle`` (B,) radians about +Y (right-handed)."""
    c, s = torch.cos(angle), torch.sin(angle)
    zero, one = torch.zeros_like(angle), torch.ones_like(angle)
    rows = (
        torch.stack((c, zero, s), dim=-1),
        torch.stack((zero, one, zero), dim=-1),
        torch.stack((-s, zero, c), dim=-1),
    )
    return torch.stack(rows, dim=-2)


def random_rotate_up(points: Tensor, generator: Generators) -> Tensor:
    """Rotate each cloud about the up axis (+Y) by U[0, 2*pi)."""
    _check_points(points)
    angle = _uniform((points.shape[0],), 0.0, 2 * math.pi, generator, points)
    return points @ rotation_about_y(angle).transpose(1, 2)


def random_translate(points: Tensor, generator: Generators, translate_range: float) -> Tensor:
    """Shift each cloud by U[-r, r) per axis times its bounding-box side on that axis."""
    _check_points(points)
    extent = points.amax(dim=1, keepdim=True) - points.amin(dim=1, keepdim=True)
    shift = _uniform((points.shape[0], 1, 3), -translate_range, translate_range, generator, points)
    return points + shift * extent


def random_jitter(points: Tensor, generator: Generators, std: float, clip: float) -> Tensor:
    """Add N(0, std) noise, clipped to [-clip, clip], to every coordinate."""
    _check_points(points)
    noise = _draw(tuple(points.shape), generator, normal=True)
    noise = (noise * std).clamp(-clip, clip)
    return points + noise.to(device=points.device, dtype=points.dtype)


def random_input_dropout(
    points: Tensor, generator: Generators, max_ratio: float
) -> tuple[Tensor, Tensor]:
    """Drop points with a per-cloud ratio r ~ U[0, max_ratio); dropped ones become point 0.

    Returns the new points (B, N, 3) and the drop mask (B, N) bool. As in the release a
    point is dropped when its U[0, 1) draw is <= r, so the expected dropped share is r.
    """
    _check_points(points)
    b, n, _ = points.shape
    ratio = _uniform((b, 1), 0.0, max_ratio, generator, points)
    drop = _uniform((b, n), 0.0, 1.0, generator, points) <= ratio
    return torch.where(drop.unsqueeze(-1), points[:, :1], points), drop


def augment_points(
    points: Tensor, generator: Generators, config: PointAugmentConfig | None = None
) -> Tensor:
    """The full point pipeline (see :class:`PointAugmentConfig`) on a batch (B, N, 3)."""
    config = config or PointAugmentConfig()
    x = normalize_unit_sphere(points)
    x = random_scale(
        x, generator, config.scale_low, config.scale_high, per_axis=config.scale_per_axis
    )
    x = random_rotate_up(x, generator)
    x = random_translate(x, generator, config.translate_range)
    x = random_jitter(x, generator, config.jitter_std, config.jitter_clip)
    return random_input_dropout(x, generator, config.max_dropout_ratio)[0]


# ---------------------------------------------------------------------------- images


@dataclass(frozen=True)
class ImageAugmentConfig:
    """Image pipeline: resize to ``size`` x ``size`` (bilinear, antialiased), colour jitter
    (factors U[max(0, 1-v), 1+v] for brightness / contrast / saturation, applied in a random
    order per image as torchvision's ColorJitter), horizontal flip with probability
    ``flip_p``, then normalisation by ``mean`` / ``std`` (ImageNet). Zero jitter and
    ``flip_p=0`` give a deterministic resize + normalise.
    """

    size: int = 224
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.4
    flip_p: float = 0.5
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def __post_init__(self) -> None:
        if self.size < 1:
            raise ValueError(f"size must be >= 1, got {self.size}")
        for name in ("brightness", "contrast", "saturation"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 0 <= self.flip_p <= 1:
            raise ValueError(f"flip_p must be in [0, 1], got {self.flip_p}")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ValueError(f"mean and std need 3 values, std > 0; got {self.mean}, {self.std}")


def _grayscale(images: Tensor) -> Tensor:
    """Luma (B, 1, H, W) of RGB images (B, 3, H, W) in [0, 1] (ITU-R 601, as torchvision);
    one matrix product, a third of the time of a weighted sum over the channels."""
    b, _, h, w = images.shape
    weights = torch.tensor(GRAY_WEIGHTS, dtype=images.dtype, device=images.device)
    return torch.matmul(weights.view(1, 1, 3), images.reshape(b, 3, h * w)).view(b, 1, h, w)


def _brightness(images: Tensor, factor: Tensor) -> Tensor:
    """Blend with black: ``factor * x`` clipped to [0, 1] (torchvision's adjust_brightness)."""
    return images.mul(factor).clamp_(0, 1)


def _contrast(images: Tensor, factor: Tensor) -> Tensor:
    """Blend with the mean grey level of each image (torchvision's adjust_contrast)."""
    mean = _grayscale(images).mean(dim=(2, 3), keepdim=True)
    return images.mul(factor).add_((1 - factor) * mean).clamp_(0, 1)


def _saturation(images: Tensor, factor: Tensor) -> Tensor:
    """Blend with the greyscale image (torchvision's adjust_saturation)."""
    return images.mul(factor).add_(_grayscale(images).mul_(1 - factor)).clamp_(0, 1)


def color_jitter(
    images: Tensor,
    generator: Generators,
    brightness: float,
    contrast: float,
    saturation: float,
) -> Tensor:
    """Brightness, contrast and saturation jitter of images (B, 3, H, W) in [0, 1].

    Per image: factors U[max(0, 1-v), 1+v], the three operations in a random order, as
    torchvision's ``ColorJitter`` (without hue). Each blends the image with a target,
    ``f * x + (1 - f) * target`` clipped to [0, 1]: black for brightness, the mean grey
    level for contrast, the greyscale image for saturation. Draws, in this order: the
    brightness, contrast and saturation factors (B each), then B x 3 uniforms whose
    argsort is each image's order. At each of the three steps only the operation chosen
    for an image is computed on it (the images are grouped by operation): three blends
    and two greyscale images per image in all.
    """
    b = images.shape[0]

    def factors(v: float) -> Tensor:
        return _uniform((b, 1, 1, 1), max(0.0, 1 - v), 1 + v, generator, images)

    fs = [factors(v) for v in (brightness, contrast, saturation)]
    order = _draw((b, 3), generator).argsort(dim=1).to(images.device)
    ops = (_brightness, _contrast, _saturation)
    owned = False  # whether ``images`` is this function's own tensor (may be written)
    for step in range(3):
        chosen = order[:, step]
        for op in range(3):
            index = (chosen == op).nonzero().squeeze(1)
            if len(index) == b:
                images, owned = ops[op](images, fs[op]), True
            elif len(index):
                if not owned:
                    images, owned = images.clone(), True
                images[index] = ops[op](images[index], fs[op][index])
    return images


def augment_images(
    images: Tensor, generator: Generators, config: ImageAugmentConfig | None = None
) -> Tensor:
    """uint8 images (B, H, W, 3) -> augmented, normalised float32 (B, 3, size, size)."""
    config = config or ImageAugmentConfig()
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(
            f"images must be uint8 (B, H, W, 3), got {images.dtype} {tuple(images.shape)}"
        )
    x = images.permute(0, 3, 1, 2).to(torch.float32, memory_format=torch.contiguous_format)
    x = x.div_(255.0)
    if x.shape[-2:] != (config.size, config.size):
        x = F.interpolate(
            x, size=(config.size, config.size), mode="bilinear", align_corners=False, antialias=True
        ).clamp(0, 1)
    if config.brightness or config.contrast or config.saturation:
        x = color_jitter(x, generator, config.brightness, config.contrast, config.saturation)
    flip = _uniform((x.shape[0],), 0.0, 1.0, generator, x) < config.flip_p
    index = flip.nonzero().squeeze(1)
    if len(index):
        x[index] = x[index].flip(-1)
    mean = torch.tensor(config.mean, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(config.std, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return x.sub_(mean).div_(std)


def augment_pair(
    points: Tensor,
    images: Tensor | None,
    generator: Generators,
    point_config: PointAugmentConfig | None = None,
    image_config: ImageAugmentConfig | None = None,
) -> tuple[Tensor, Tensor | None]:
    """The inputs of one CrossPoint step: points (B, N, 3) float -> two augmented copies
    (B, 2, N, 3); uint8 images (B, H, W, 3) -> augmented (B, 3, size, size) float32, or
    None when ``images`` is None. Draws, in this order: the first copies' point
    augmentations, the second copies', then the images'.
    """
    first = augment_points(points, generator, point_config)
    second = augment_points(points, generator, point_config)
    views = None if images is None else augment_images(images, generator, image_config)
    return torch.stack((first, second), dim=1), views
