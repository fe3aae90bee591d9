from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from xpt.benchmarks.plots import project_2d, write_benchmark_plot

DPI, PANEL_INCHES = 110, 5.0


def _clusters(n_per: int = 20, d: int = 8, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two well-separated Gaussian clusters (n, d) float64 and their labels (n,) int64."""
    rng = np.random.default_rng(seed)
    labels = np.repeat([0, 1], n_per)
    offset = np.zeros(d)
    offset[: d // 2] = 10.0
    return rng.normal(size=(2 * n_per, d)) + labels[:, None] * offset, labels


def _write(path, k: int = 3, n_panels: int = 2, method: str = "pca"):
    rng = np.random.default_rng(1)
    labels = np.repeat(np.arange(k), 10)
    panels = [(f"encoder {i}", rng.normal(size=(len(labels), 16)), labels) for i in range(n_panels)]
    accuracy = {"pretrained": rng.uniform(size=k), "hand-crafted": rng.uniform(size=k)}
    names = [f"class {i}" for i in range(k)]
    return write_benchmark_plot(
        path,
        panels=panels,
        class_names=names,
        per_class_accuracy=accuracy,
        title="test",
        method=method,
    )


def test_pca_separates_two_clusters_along_first_axis():
    features, labels = _clusters()
    xy = project_2d(features)
    assert xy.shape == (40, 2) and xy.dtype == np.float32
    first_a, first_b = xy[labels == 0, 0], xy[labels == 1, 0]
    assert first_a.max() < first_b.min() or first_b.max() < first_a.min()
    assert abs(first_a.mean() - first_b.mean()) > 5 * max(first_a.std(), first_b.std())


def test_pca_is_deterministic_and_ignores_constant_columns():
    features, _ = _clusters()
    padded = np.concatenate([features, np.full((len(features), 1), 3.0)], axis=1)
    first = project_2d(padded)
    np.testing.assert_array_equal(first, project_2d(padded.copy()))
    np.testing.assert_allclose(first, project_2d(features), atol=1e-5)
    # The sign convention makes a flipped input give the same picture.
    np.testing.assert_allclose(project_2d(-features), project_2d(features) * [-1, -1], atol=1e-5)


def test_pca_of_one_column_fills_the_first_axis_only():
    xy = project_2d(np.arange(5.0)[:, None])
    assert np.all(xy[:, 1] == 0) and np.ptp(xy[:, 0]) > 0


def test_tsne_runs_on_tiny_input_and_is_seeded():
    features, labels = _clusters(n_per=20)
    xy = project_2d(features, method="tsne", seed=3)
    assert xy.shape == (40, 2) and xy.dtype == np.float32 and np.all(np.isfinite(xy))
    np.testing.assert_array_equal(xy, project_2d(features, method="tsne", seed=3))


def test_project_2d_rejects_bad_input():
    with pytest.raises(ValueError, match="shape"):
        project_2d(np.zeros(5))
    with pytest.raises(ValueError, match="finite"):
        project_2d(np.array([[1.0, np.inf], [0.0, 1.0]]))
    with pytest.raises(ValueError, match="method"):
        project_2d(np.zeros((4, 2)), method="umap")


@pytest.mark.parametrize("n_panels", [1, 2])
def test_writes_a_png_whose_width_follows_the_panels(tmp_path, n_panels):
    path = _write(tmp_path / "plots" / "benchmark.png", n_panels=n_panels)
    assert path == tmp_path / "plots" / "benchmark.png"
    with Image.open(path) as image:
        assert image.format == "PNG"
        width, height = image.size
    assert width == pytest.approx(PANEL_INCHES * DPI * (n_panels + 1), abs=2)
    assert height == pytest.approx(PANEL_INCHES * DPI, abs=2)
    assert [p.name for p in path.parent.iterdir()] == ["benchmark.png"]  # no temp file left


def test_forty_classes_grow_the_bar_chart_and_tsne_works(tmp_path):
    path = _write(tmp_path / "many.png", k=40, n_panels=1, method="tsne")
    with Image.open(path) as image:
        assert image.size[1] > PANEL_INCHES * DPI + 50


def test_rewrite_replaces_the_file_and_nan_accuracy_is_drawn_as_no_bar(tmp_path):
    path = tmp_path / "b.png"
    path.write_bytes(b"old")
    features, labels = _clusters()
    write_benchmark_plot(
        path,
        panels=[("p", features, labels)],
        class_names=["a", "b"],
        per_class_accuracy={"a": np.array([np.nan, 0.5])},
        title="t",
    )
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bad_arguments_raise(tmp_path):
    features, labels = _clusters()
    ok = {"a": np.full(2, 0.5)}
    path = tmp_path / "x.png"

    def write(panels, accuracy=ok, names=("a", "b")):
        write_benchmark_plot(
            path, panels=panels, class_names=names, per_class_accuracy=accuracy, title="t"
        )

    with pytest.raises(ValueError, match="panels"):
        write([])
    with pytest.raises(ValueError, match="do not match"):
        write([("p", features, labels[:-1])])
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        write([("p", features, labels + 1)])
    with pytest.raises(ValueError, match="shape"):
        write([("p", features, labels)], accuracy={"a": np.full(3, 0.5)})
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        write([("p", features, labels)], accuracy={"a": np.full(2, 50.0)})
    with pytest.raises(ValueError, match="per_class_accuracy"):
        write([("p", features, labels)], accuracy={})
    assert not path.exists()
