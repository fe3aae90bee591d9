"""Each augmentation has its documented effect, and a fixed generator makes them repeatable."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch

from xpt.train.augment import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ImageAugmentConfig,
    PointAugmentConfig,
    augment_images,
    augment_points,
    color_jitter,
    normalize_unit_sphere,
    random_input_dropout,
    random_jitter,
    random_rotate_up,
    random_scale,
    random_translate,
)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def cloud(b: int = 8, n: int = 256, seed: int = 100) -> torch.Tensor:
    """Anisotropic, off-centre clouds (B, N, 3)."""
    g = gen(seed)
    return torch.randn(b, n, 3, generator=g) * torch.tensor([3.0, 1.0, 0.5]) + 4.0


def test_unit_sphere_normalisation() -> None:
    out = normalize_unit_sphere(cloud())
    torch.testing.assert_close(out.mean(dim=1), torch.zeros(8, 3), atol=1e-5, rtol=0)
    torch.testing.assert_close(out.norm(dim=2).amax(dim=1), torch.ones(8))
    assert torch.equal(normalize_unit_sphere(torch.ones(1, 4, 3)), torch.zeros(1, 4, 3))


def test_rotation_is_about_y_and_rigid() -> None:
    points = normalize_unit_sphere(cloud())
    out = random_rotate_up(points, gen())
    torch.testing.assert_close(out.norm(dim=2), points.norm(dim=2))
    torch.testing.assert_close(out[..., 1], points[..., 1])
    exact = "donot_use_mm_for_euclid_dist"
    torch.testing.assert_close(
        torch.cdist(out, out, compute_mode=exact), torch.cdist(points, points, compute_mode=exact)
    )
    # One angle per cloud, different between clouds, and a proper rotation (no mirror).
    angle_in = torch.atan2(points[..., 0], points[..., 2])
    angle_out = torch.atan2(out[..., 0], out[..., 2])
    delta = torch.remainder(angle_out - angle_in, 2 * math.pi)
    spread = torch.remainder(delta - delta[:, :1] + math.pi, 2 * math.pi) - math.pi
    assert spread.abs().max() < 1e-3
    assert delta[:, 0].std() > 0.5


@pytest.mark.parametrize("per_axis", [False, True])
def test_scale_in_range(per_axis: bool) -> None:
    points = normalize_unit_sphere(cloud(b=256, n=16))
    out = random_scale(points, gen(), 0.5, 2.0, per_axis=per_axis)
    ratio = out / points  # (B, N, 3), constant over points
    torch.testing.assert_close(ratio, ratio[:, :1].expand_as(ratio))
    factors = ratio[:, 0]
    assert factors.min() >= 0.5 and factors.max() <= 2.0
    assert factors.min() < 0.55 and factors.max() > 1.9
    axis_spread = (factors.amax(dim=1) - factors.amin(dim=1)).max()
    assert (axis_spread > 0.1) if per_axis else (axis_spread < 1e-5)


def test_translation_is_one_shift_bounded_by_the_extent() -> None:
    points = normalize_unit_sphere(cloud(b=64))
    out = random_translate(points, gen(), 0.5)
    shift = out - points
    torch.testing.assert_close(shift, shift[:, :1].expand_as(shift))
    extent = points.amax(dim=1) - points.amin(dim=1)
    relative = shift[:, 0] / extent
    assert relative.abs().max() <= 0.5 + 1e-6 and relative.abs().max() > 0.4
    assert relative.min() < 0 < relative.max()


def test_jitter_is_clipped_with_the_right_spread() -> None:
    points = torch.zeros(4, 20000, 3)
    noise = random_jitter(points, gen(), 0.01, 0.05)
    assert 0.0098 < noise.std() < 0.0102 and noise.abs().max() <= 0.05
    clipped = random_jitter(points, gen(), 0.1, 0.05)
    assert clipped.abs().max() == pytest.approx(0.05)
    assert (clipped.abs() == 0.05).float().mean() > 0.5  # |N(0, 0.1)| > 0.05 for ~62 %


def test_dropout_replaces_by_first_point_with_ratio_in_range() -> None:
    points = cloud(b=64, n=2000)
    out, drop = random_input_dropout(points, gen(), 0.875)
    first = points[:, :1].expand_as(points)
    assert torch.equal(out[drop], first[drop])
    assert torch.equal(out[~drop], points[~drop])
    changed = (out != points).any(dim=2)
    assert torch.equal(changed, drop & (points != first).any(dim=2))
    ratio = drop.float().mean(dim=1)
    assert ratio.max() < 0.875 + 0.04  # binomial noise over 2000 points: sigma < 0.012
    assert ratio.min() < 0.1 and ratio.max() > 0.75
    assert 0.35 < ratio.mean() < 0.52  # U[0, 0.875) has mean 0.4375
    none, none_dropped = random_input_dropout(points, gen(), 0.0)
    assert not none_dropped.any() and torch.equal(none, points)


@pytest.mark.parametrize("per_axis", [False, True])
@pytest.mark.parametrize("per_sample", [False, True])
def test_point_pipeline_equals_the_steps_in_turn(per_axis: bool, per_sample: bool) -> None:
    """The fused pipeline draws as the step functions do, one after the other, and gives
    their result to float rounding (the dropped points exactly the first point)."""
    points = cloud(b=5, n=300)
    config = PointAugmentConfig(scale_per_axis=per_axis)

    def generators(seed: int) -> torch.Generator | list[torch.Generator]:
        return [gen(seed + i) for i in range(5)] if per_sample else gen(seed)

    g = generators(11)
    x = normalize_unit_sphere(points)
    x = random_scale(x, g, config.scale_low, config.scale_high, per_axis=per_axis)
    x = random_rotate_up(x, g)
    x = random_translate(x, g, config.translate_range)
    x = random_jitter(x, g, config.jitter_std, config.jitter_clip)
    expected, drop = random_input_dropout(x, g, config.max_dropout_ratio)
    out = augment_points(points, generators(11), config)
    assert out.is_contiguous() and out.shape == points.shape
    torch.testing.assert_close(out, expected)
    assert torch.equal(out[drop], out[:, :1].expand_as(out)[drop])
    assert augment_points(torch.ones(2, 4, 3), gen(), config).isfinite().all()  # one point


def test_full_point_pipeline_is_deterministic_and_bounded() -> None:
    points = cloud(b=4, n=512)
    a = augment_points(points, gen(7))
    assert a.shape == points.shape and a.dtype == points.dtype
    assert torch.equal(a, augment_points(points, gen(7)))
    assert not torch.allclose(a, augment_points(points, gen(8)))
    # unit sphere * scale <= 2 -> radius 2; translation <= 0.5 * extent <= 2 per axis; jitter.
    assert a.abs().max() <= 2.0 + 2.0 + 0.05
    g = gen(9)
    view_1, view_2 = augment_points(points, g), augment_points(points, g)
    assert not torch.allclose(view_1, view_2)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"scale_low": 0.0},
        {"scale_low": 2.0, "scale_high": 1.0},
        {"translate_range": -0.1},
        {"jitter_std": -1.0},
        {"max_dropout_ratio": 1.0},
    ],
)
def test_point_config_is_validated(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        PointAugmentConfig(**kwargs)


PLAIN = ImageAugmentConfig(size=16, brightness=0.0, contrast=0.0, saturation=0.0, flip_p=0.0)


def _mean_std() -> tuple[torch.Tensor, torch.Tensor]:
    return torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)


def test_image_shape_dtype_and_normalisation() -> None:
    images = torch.full((2, 24, 40, 3), 128, dtype=torch.uint8)
    out = augment_images(images, gen(), PLAIN)
    assert out.shape == (2, 3, 16, 16) and out.dtype == torch.float32
    mean, std = _mean_std()
    torch.testing.assert_close(out, ((128 / 255 - mean) / std).expand(2, 3, 16, 16))
    noise = torch.randint(0, 256, (8, 16, 16, 3), generator=gen(1), dtype=torch.uint8)
    out = augment_images(noise, gen(), PLAIN)  # already 16 x 16: no resampling
    pixels = noise.double().div(255).reshape(-1, 3)
    expected_mean = (pixels.mean(dim=0) - mean.view(3).double()) / std.view(3).double()
    expected_std = pixels.std(dim=0) / std.view(3).double()
    torch.testing.assert_close(out.mean(dim=(0, 2, 3)).double(), expected_mean, atol=1e-5, rtol=0)
    torch.testing.assert_close(out.std(dim=(0, 2, 3)).double(), expected_std, atol=1e-5, rtol=0)
    torch.testing.assert_close(
        out.permute(0, 2, 3, 1).reshape(-1, 3).double() * std.view(3) + mean.view(3),
        pixels,
        atol=1e-6,
        rtol=0,
    )
    with pytest.raises(ValueError, match="uint8"):
        augment_images(noise.float(), gen(), PLAIN)


def test_flip_flips() -> None:
    images = torch.zeros(3, 16, 16, 3, dtype=torch.uint8)
    images[:, :, :4] = 255  # bright left quarter
    plain = augment_images(images, gen(), PLAIN)
    flipped = augment_images(images, gen(), replace(PLAIN, flip_p=1.0))
    assert torch.equal(flipped, plain.flip(-1))
    assert not torch.equal(flipped, plain)
    half = replace(PLAIN, flip_p=0.5)
    sides = [bool(augment_images(images[:1], gen(s), half)[0, 0, 0, -1] > 0) for s in range(20)]
    assert 0 < sum(sides) < 20


def test_brightness_factor_range_and_grey_invariants() -> None:
    images = torch.full((64, 4, 4, 3), 102, dtype=torch.uint8)  # grey 0.4
    x = images.permute(0, 3, 1, 2).float() / 255
    bright = color_jitter(x, gen(), 0.4, 0.0, 0.0)
    factor = bright[:, 0, 0, 0] / 0.4
    assert factor.min() >= 0.6 - 1e-5 and factor.max() <= 1.4 + 1e-5
    assert factor.min() < 0.65 and factor.max() > 1.35
    # Contrast and saturation blend towards the grey level, so a grey image stays grey.
    torch.testing.assert_close(color_jitter(x, gen(), 0.0, 0.4, 0.4), x, atol=1e-3, rtol=0)


def test_saturation_moves_colours_towards_grey_and_back() -> None:
    red = torch.zeros(32, 3, 2, 2)
    red[:, 0] = 0.8
    red[:, 1:] = 0.2
    out = color_jitter(red, gen(), 0.0, 0.0, 0.4)
    spread = out[:, 0, 0, 0] - out[:, 1, 0, 0]
    assert spread.min() < 0.6 * 0.7 and spread.max() > 0.6 * 1.3
    assert out.min() >= 0 and out.max() <= 1


def test_image_pipeline_is_deterministic() -> None:
    images = torch.randint(0, 256, (3, 20, 20, 3), generator=gen(2), dtype=torch.uint8)
    config = ImageAugmentConfig(size=8)
    a = augment_images(images, gen(5), config)
    assert torch.equal(a, augment_images(images, gen(5), config))
    assert not torch.equal(a, augment_images(images, gen(6), config))


@pytest.mark.parametrize(
    "kwargs", [{"size": 0}, {"brightness": -0.1}, {"flip_p": 1.5}, {"std": (1.0, 0.0, 1.0)}]
)
def test_image_config_is_validated(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        ImageAugmentConfig(**kwargs)


def _reference_color_jitter(
    images: torch.Tensor,
    generator: torch.Generator,
    brightness: float,
    contrast: float,
    saturation: float,
) -> torch.Tensor:
    """The previous implementation: every operation on the whole batch at each step, the
    chosen one kept per image (same draws, same formulas)."""
    weights = torch.tensor((0.2989, 0.587, 0.114)).view(1, 3, 1, 1)

    def grey(x: torch.Tensor) -> torch.Tensor:
        return (x * weights).sum(dim=1, keepdim=True)

    def blend(x: torch.Tensor, other: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
        return (f * x + (1 - f) * other).clamp(0, 1)

    b = images.shape[0]
    f_b, f_c, f_s = (
        max(0.0, 1 - v) + (1 + v - max(0.0, 1 - v)) * torch.rand((b, 1, 1, 1), generator=generator)
        for v in (brightness, contrast, saturation)
    )
    order = torch.rand((b, 3), generator=generator).argsort(dim=1)
    for step in range(3):
        op = order[:, step].view(b, 1, 1, 1)
        candidates = (
            blend(images, torch.zeros_like(images), f_b),
            blend(images, grey(images).mean(dim=(2, 3), keepdim=True), f_c),
            blend(images, grey(images), f_s),
        )
        images = torch.where(op == 0, candidates[0], torch.where(op == 1, *candidates[1:]))
    return images


@pytest.mark.parametrize("batch", [1, 3, 32])
def test_color_jitter_equals_the_all_operations_reference(batch: int) -> None:
    images = torch.rand((batch, 3, 12, 10), generator=gen(3))
    for seed in range(4):
        expected = _reference_color_jitter(images, gen(seed), 0.4, 0.4, 0.4)
        out = color_jitter(images, gen(seed), 0.4, 0.4, 0.4)
        torch.testing.assert_close(out, expected, atol=1e-6, rtol=0)
    before = images.clone()
    color_jitter(images, gen(0), 0.4, 0.4, 0.4)
    assert torch.equal(images, before)  # the input is left as it was


@pytest.mark.parametrize("stored", [20, 8])
@pytest.mark.parametrize("per_sample", [False, True])
def test_image_pipeline_equals_the_previous_implementation(stored: int, per_sample: bool) -> None:
    """Resized (20 px -> 8) or not (8 px), one generator or one per image: the same draws
    and, to float rounding, the same images as the batched implementation it replaced."""
    images = torch.randint(0, 256, (6, stored, stored, 3), generator=gen(2), dtype=torch.uint8)
    config = ImageAugmentConfig(size=8)

    def generators() -> torch.Generator | list[torch.Generator]:
        return [gen(9 + i) for i in range(6)] if per_sample else gen(9)

    x = images.permute(0, 3, 1, 2).float() / 255.0
    if stored != 8:
        x = torch.nn.functional.interpolate(
            x, size=(8, 8), mode="bilinear", align_corners=False, antialias=True
        ).clamp(0, 1)
    g = generators()
    if per_sample:
        x = torch.cat(
            [_reference_color_jitter(x[i : i + 1], g[i], 0.4, 0.4, 0.4) for i in range(6)]
        )
        flip = torch.stack([torch.rand((1, 1, 1), generator=g[i]) for i in range(6)]) < 0.5
    else:
        x = _reference_color_jitter(x, g, 0.4, 0.4, 0.4)
        flip = torch.rand((6, 1, 1, 1), generator=g) < 0.5
    assert 0 < int(flip.sum()) < 6
    x = torch.where(flip, x.flip(-1), x)
    mean, std = torch.tensor(IMAGENET_MEAN), torch.tensor(IMAGENET_STD)
    expected = (x - mean.view(1, 3, 1, 1)) / std.view(1, 3, 1, 1)
    out = augment_images(images, generators(), config)
    assert out.is_contiguous()
    torch.testing.assert_close(out, expected)
