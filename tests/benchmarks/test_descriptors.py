from __future__ import annotations

import numpy as np
import pytest

from xpt.benchmarks.descriptors import DescriptorConfig, descriptor_names, shape_descriptors

CONFIG = DescriptorConfig(bins=8, pairs=512)
BINS = CONFIG.bins
HISTOGRAMS = {name: slice(i * BINS, (i + 1) * BINS) for i, name in enumerate(["d2", "h", "r", "c"])}


def _cloud(seed: int, n: int = 256) -> np.ndarray:
    """An anisotropic float64 cloud, so the horizontal principal axes are well defined."""
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 3)) * np.array([1.0, 0.6, 0.3]) + rng.normal(size=3)


def _rotate_y(points: np.ndarray, angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    rotation = np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])
    return points @ rotation.T


def test_shape_matches_names():
    clouds = np.stack([_cloud(i) for i in range(3)])
    features = shape_descriptors(clouds, CONFIG)
    assert features.shape == (3, len(descriptor_names(CONFIG)))
    assert features.dtype == np.float32
    default = descriptor_names()
    assert len(default) == 70
    assert shape_descriptors(clouds.astype(np.float32)).shape == (3, 70)
    assert default[0] == "d2_00" and default[15] == "d2_15" and default[16] == "height_00"
    assert "pca_extent_0" in default and len(set(default)) == len(default)


def test_histograms_sum_to_one():
    features = shape_descriptors(np.stack([_cloud(i) for i in range(4)]), CONFIG)
    for part in HISTOGRAMS.values():
        np.testing.assert_allclose(features[:, part].sum(axis=1), 1.0, atol=1e-6)
        assert np.all(features[:, part] >= 0)


@pytest.mark.parametrize("angle", [0.3, np.pi / 2, 2.0, np.pi, 5.5])
def test_invariant_to_rotation_about_up(angle):
    cloud = _cloud(1)
    before = shape_descriptors(cloud[None], CONFIG)
    after = shape_descriptors(_rotate_y(cloud, angle)[None], CONFIG)
    # Every column, D2 included: the points keep their order, so the pairs are the same.
    assert np.abs(after - before).max() < 1e-4


def test_up_axis_is_configurable():
    cloud = _cloud(2)
    swapped = cloud[:, [1, 2, 0]]  # old y becomes axis 0
    config_x = DescriptorConfig(bins=BINS, pairs=512, up_axis=0)
    np.testing.assert_allclose(
        shape_descriptors(swapped[None], config_x),
        shape_descriptors(cloud[None], CONFIG),
        atol=1e-5,
    )


def test_invariant_to_point_order_except_d2():
    cloud = _cloud(3)
    permuted = cloud[np.random.default_rng(0).permutation(len(cloud))]
    before, after = shape_descriptors(np.stack([cloud, permuted]), CONFIG)
    assert np.abs(after[BINS:] - before[BINS:]).max() < 1e-6
    # D2 sees other pairs but the same shape: close, not equal.
    assert np.abs(after[:BINS] - before[:BINS]).sum() < 0.3


def test_invariant_to_scale_and_translation():
    cloud = _cloud(4)
    moved = cloud * 7.5 + np.array([3.0, -20.0, 0.5])
    before, after = shape_descriptors(np.stack([cloud, moved]), CONFIG)
    assert np.abs(after - before).max() < 1e-5


def test_identical_clouds_give_identical_descriptors():
    cloud = _cloud(5)
    first, second = shape_descriptors(np.stack([cloud, cloud]), CONFIG)
    np.testing.assert_array_equal(first, second)
    np.testing.assert_array_equal(first, shape_descriptors(cloud[None], CONFIG)[0])


def test_batch_equals_per_cloud():
    clouds = np.stack([_cloud(i) for i in range(7)])
    batched = shape_descriptors(clouds, CONFIG, batch_size=3)
    single = np.concatenate([shape_descriptors(c[None], CONFIG) for c in clouds])
    np.testing.assert_array_equal(batched, single)


def _sphere(n: int, rng: np.random.Generator) -> np.ndarray:
    v = rng.normal(size=(n, 3))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _disc(n: int, rng: np.random.Generator) -> np.ndarray:
    r, t = np.sqrt(rng.uniform(size=n)), rng.uniform(0, 2 * np.pi, size=n)
    return np.stack([r * np.cos(t), np.zeros(n), r * np.sin(t)], axis=1)


def _tall_cylinder(n: int, rng: np.random.Generator) -> np.ndarray:
    t = rng.uniform(0, 2 * np.pi, size=n)
    return np.stack([0.2 * np.cos(t), rng.uniform(-2, 2, size=n), 0.2 * np.sin(t)], axis=1)


def test_distinguishes_sphere_disc_and_cylinder():
    rng = np.random.default_rng(0)
    shapes = np.stack([f(512, rng) for f in (_sphere, _disc, _tall_cylinder)])
    features = shape_descriptors(shapes, CONFIG)
    names = descriptor_names(CONFIG)
    for i in range(3):
        for j in range(i + 1, 3):
            assert np.abs(features[i] - features[j]).sum() > 1.0
    extent_up = features[:, names.index("extent_up")]
    assert extent_up[1] < 1e-6 < extent_up[0] < extent_up[2]  # flat disc, round sphere, tall
    sphere_c = features[0, HISTOGRAMS["c"]]
    assert sphere_c[-1] > 0.5  # a sphere's points all lie near the max radius
    assert features[1, HISTOGRAMS["c"]][-1] < 0.3  # a disc's fill the whole radius


@pytest.mark.parametrize(
    "shape", [(10, 3), (2, 10, 2), (2, 1, 3), (2, 10, 3, 1)], ids=["2d", "xy", "one-point", "4d"]
)
def test_bad_shapes_raise(shape):
    with pytest.raises(ValueError, match=r"\(B, N >= 2, 3\)"):
        shape_descriptors(np.zeros(shape))


def test_non_finite_and_bad_settings_raise():
    cloud = _cloud(0)[None]
    cloud[0, 5, 1] = np.nan
    with pytest.raises(ValueError, match="finite"):
        shape_descriptors(cloud)
    with pytest.raises(ValueError, match="batch_size"):
        shape_descriptors(_cloud(0)[None], batch_size=0)
    with pytest.raises(ValueError, match="up_axis"):
        DescriptorConfig(up_axis=3)
    with pytest.raises(ValueError, match="bins"):
        DescriptorConfig(bins=0)
