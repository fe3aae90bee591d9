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

import numpy as np
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
    """The full point pipeline (see :class:`PointAugmentConfig`) on a batch (B, N, 3).

    The same draws as :func:`normalize_unit_sphere`, :func:`random_scale`,
    :func:`random_rotate_up`, :func:`random_translate`, :func:`random_jitter` and
    :func:`random_input_dropout` in turn, and the same result to float rounding, in fewer
    passes: the clouds are processed as (B, 3, N), so the per-axis reductions and
    broadcasts run over contiguous rows, and the scale and rotation are one 3 x 3 matrix
    product per cloud.
    """
    config = config or PointAugmentConfig()
    _check_points(points)
    b, n, _ = points.shape
    scale = _uniform(
        (b, 1, 3 if config.scale_per_axis else 1),
        config.scale_low,
        config.scale_high,
        generator,
        points,
    )
    angle = _uniform((b,), 0.0, 2 * math.pi, generator, points)
    r = config.translate_range
    shift = _uniform((b, 3, 1), -r, r, generator, points)
    noise = _draw((b, n, 3), generator, normal=True)
    ratio = _uniform((b, 1), 0.0, config.max_dropout_ratio, generator, points)
    drop = _uniform((b, n), 0.0, 1.0, generator, points) <= ratio
    x = points.transpose(1, 2).contiguous()
    x.sub_(x.mean(dim=2, keepdim=True))
    radius = (x * x).sum(dim=1).amax(dim=1).sqrt_().clamp_min_(torch.finfo(x.dtype).tiny)
    x = torch.bmm(rotation_about_y(angle) * scale, x.div_(radius.view(b, 1, 1)))
    x.add_(shift * (x.amax(dim=2, keepdim=True) - x.amin(dim=2, keepdim=True)))
    noise = noise.mul_(config.jitter_std).clamp_(-config.jitter_clip, config.jitter_clip)
    x.add_(noise.to(device=x.device, dtype=x.dtype).transpose(1, 2))
    x = torch.where(drop.unsqueeze(1).expand(-1, 3, -1), x[:, :, :1], x)
    return x.transpose(1, 2).contiguous()


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


def _jitter_draws(
    b: int, generator: Generators, brightness: float, contrast: float, saturation: float
) -> tuple[list[tuple[float, float, float]], list[list[int]]]:
    """Per image: the (brightness, contrast, saturation) factors, each U[max(0, 1-v), 1+v]
    in float32, and the order of the three operations. Draws, in this order: the brightness,
    contrast and saturation factors (B each), then B x 3 uniforms whose argsort is the order."""
    factors = [
        max(0.0, 1 - v) + (1 + v - max(0.0, 1 - v)) * _draw((b,), generator)
        for v in (brightness, contrast, saturation)
    ]
    order = _draw((b, 3), generator).argsort(dim=1)
    return list(zip(*(f.tolist() for f in factors), strict=True)), order.tolist()


def _jitter_one_(
    image: Tensor, factors: tuple[float, float, float], order: list[int], weights: Tensor
) -> None:
    """Brightness, contrast and saturation jitter of one image (3, H, W) in [0, 1], in place,
    in ``order`` (0, 1, 2: brightness, contrast, saturation). Each blends the image with a
    target, ``f * x + (1 - f) * target`` clipped to [0, 1]: black for brightness, the mean
    grey level for contrast, the greyscale image for saturation. ``weights`` (3,): the grey
    weights (ITU-R 601 luma, as torchvision); the grey image is one matrix product, the mean
    grey level the weighted sum of the channel means."""
    flat = image.view(3, -1)
    for op in order:
        f = factors[op]
        if op == 0:
            image.mul_(f)
        else:
            if op == 1:
                target = torch.dot(flat.sum(dim=1), weights) / flat.shape[1]
            else:
                target = torch.matmul(weights.view(1, 3), flat).view(1, *image.shape[1:])
            torch.lerp(target, image, f, out=image)
        image.clamp_(0, 1)


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
    argsort is each image's order. Returns a new tensor (the input is left as it is); each
    image is processed on its own, in place in the output (it stays in the CPU's cache).
    """
    draws = _jitter_draws(images.shape[0], generator, brightness, contrast, saturation)
    out = images.clone(memory_format=torch.contiguous_format)
    weights = torch.tensor(GRAY_WEIGHTS, dtype=out.dtype, device=out.device)
    for image, factors, order in zip(out, *draws, strict=True):
        _jitter_one_(image, factors, order, weights)
    return out


def _copy_(dst: Tensor, src: Tensor, flip: bool) -> None:
    """``dst`` = ``src`` (converted to its dtype), mirrored left-right with ``flip``; on the
    CPU by NumPy, whose transposing (uint8 HWC -> float CHW) copy is faster than torch's
    and mirrors at no cost."""
    if dst.device.type == "cpu":
        view = src.numpy()
        np.copyto(dst.numpy(), view[..., ::-1] if flip else view, casting="unsafe")
    else:
        dst.copy_(src.flip(-1) if flip else src)


def augment_images(
    images: Tensor, generator: Generators, config: ImageAugmentConfig | None = None
) -> Tensor:
    """uint8 images (B, H, W, 3) -> augmented, normalised float32 (B, 3, size, size).

    Draws, in this order: the colour jitter's (see :func:`color_jitter`, when any jitter is
    set), then B uniforms for the flips. Each image is converted, jittered, flipped and
    normalised on its own, in place in the output, so it stays in the CPU's cache; the flip
    is done first, on the uint8 image (the colour operations act per pixel, or on the mean
    grey level)."""
    config = config or ImageAugmentConfig()
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(
            f"images must be uint8 (B, H, W, 3), got {images.dtype} {tuple(images.shape)}"
        )
    b, size = images.shape[0], config.size
    jitter = config.brightness or config.contrast or config.saturation
    draws = (
        _jitter_draws(b, generator, config.brightness, config.contrast, config.saturation)
        if jitter
        else ([(1.0, 1.0, 1.0)] * b, [[]] * b)
    )
    flips = (_draw((b,), generator) < config.flip_p).tolist()
    pictures = images.permute(0, 3, 1, 2)
    if pictures.shape[-2:] != (size, size):
        pictures = F.interpolate(
            pictures.float().div_(255.0),
            size=(size, size),
            mode="bilinear",
            align_corners=False,
            antialias=True,
        ).clamp_(0, 1)
    out = torch.empty((b, 3, size, size), dtype=torch.float32, device=images.device)
    weights = torch.tensor(GRAY_WEIGHTS, dtype=out.dtype, device=out.device)
    mean = torch.tensor(config.mean, dtype=out.dtype, device=out.device).view(3, 1, 1)
    std = torch.tensor(config.std, dtype=out.dtype, device=out.device).view(3, 1, 1)
    for image, picture, factors, order, flip in zip(out, pictures, *draws, flips, strict=True):
        _copy_(image, picture, flip)
        if picture.dtype == torch.uint8:
            image.mul_(1 / 255)  # half the time of a division, the same to float rounding
        _jitter_one_(image, factors, order, weights)
        image.sub_(mean).div_(std)
    return out


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
