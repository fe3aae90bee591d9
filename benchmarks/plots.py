"""The picture of a benchmark: 2-D projections of test features and per-class accuracy.

One PNG shows, side by side, a scatter of each encoder's test features projected to 2-D
(coloured by class, the same colour for a class in every panel) and a grouped bar chart
of per-class accuracy, so a user sees at a glance where pretraining helps.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from xpt.toolkit.fsio import atomic_write_bytes

_PANEL_INCHES = 5.0
_DPI = 110
_LEGEND_MAX_CLASSES = 20


def project_2d(features: np.ndarray, *, method: str = "pca", seed: int = 0) -> np.ndarray:
    """Features (n, d) float -> (n, 2) float32 coordinates for a scatter plot.

    Columns are standardised first (zero-variance columns left at 0) so no feature
    dominates by its units. ``"pca"``: the top-2 principal components, each signed so
    its largest-magnitude loading is positive (deterministic across runs and
    platforms). ``"tsne"``: scikit-learn's t-SNE, PCA-initialised, seeded by ``seed``,
    perplexity ``min(30, (n - 1) / 3)``.
    """
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2 or features.shape[0] < 2 or features.shape[1] < 1:
        raise ValueError(f"features must have shape (n >= 2, d >= 1), got {features.shape}")
    if not np.all(np.isfinite(features)):
        raise ValueError("features must be finite")
    if method not in ("pca", "tsne"):
        raise ValueError(f"method must be 'pca' or 'tsne', got {method!r}")
    std = features.std(axis=0)
    centred = features - features.mean(axis=0)
    standardised = np.divide(centred, std, out=np.zeros_like(centred), where=std > 0)
    if method == "tsne":
        try:
            from sklearn.manifold import TSNE
        except ImportError as exc:
            raise ImportError("method='tsne' needs scikit-learn: pip install scikit-learn") from exc
        n = features.shape[0]
        tsne = TSNE(n_components=2, init="pca", random_state=seed, perplexity=min(30, (n - 1) / 3))
        return tsne.fit_transform(standardised).astype(np.float32)
    _, _, vt = np.linalg.svd(standardised, full_matrices=False)
    components = vt[:2]
    largest = components[np.arange(len(components)), np.abs(components).argmax(axis=1)]
    components = components * np.where(largest < 0, -1.0, 1.0)[:, None]
    out = np.zeros((features.shape[0], 2), dtype=np.float32)
    # Fewer than two components (d == 1): the second coordinate stays 0.
    out[:, : len(components)] = standardised @ components.T
    return out


def write_benchmark_plot(
    path: str | Path,
    *,
    panels: list[tuple[str, np.ndarray, np.ndarray]],
    class_names: Sequence[str],
    per_class_accuracy: dict[str, np.ndarray],
    title: str,
    method: str = "pca",
    seed: int = 0,
) -> Path:
    """Write the benchmark figure as one PNG at ``path`` atomically; returns the path.

    ``panels``: (panel title, test features (n, d) float, test labels (n,) int in
    [0, K)), one scatter each. ``per_class_accuracy``: name -> (K,) accuracy in [0, 1]
    (NaN for a class without test samples), drawn as grouped bars in percent. The figure
    is 5 inches wide per panel, bar chart included, at 110 dpi.
    """
    if not panels:
        raise ValueError("panels must not be empty")
    if not per_class_accuracy:
        raise ValueError("per_class_accuracy must not be empty")
    k = len(class_names)
    if k < 1:
        raise ValueError("class_names must not be empty")
    checked = [_check_panel(name, features, labels, k) for name, features, labels in panels]
    accuracies = {name: _check_accuracy(name, acc, k) for name, acc in per_class_accuracy.items()}
    try:
        from matplotlib.figure import Figure
        from matplotlib.lines import Line2D
    except ImportError as exc:
        raise ImportError("benchmark plots need matplotlib: pip install matplotlib") from exc

    colours = _class_colours(k)
    height = max(_PANEL_INCHES, 0.16 * k + 1.5)
    # A bare Figure renders with Agg and leaves pyplot's global state alone.
    fig = Figure(figsize=(_PANEL_INCHES * (len(checked) + 1), height), layout="constrained")
    axes = fig.subplots(1, len(checked) + 1)
    axis_name = "PC" if method == "pca" else "t-SNE"
    for ax, (name, features, labels) in zip(axes[:-1], checked, strict=True):
        xy = project_2d(features, method=method, seed=seed)
        ax.scatter(xy[:, 0], xy[:, 1], c=colours[labels], s=6, linewidths=0, alpha=0.85)
        ax.set_title(name)
        ax.set_xlabel(f"{axis_name} 1")
        ax.set_ylabel(f"{axis_name} 2")
        ax.set_xticks([])
        ax.set_yticks([])
    _bar_chart(axes[-1], class_names, accuracies, colours)
    if k <= _LEGEND_MAX_CLASSES:
        handles = [
            Line2D([], [], linestyle="", marker="o", color=colours[i], label=str(name))
            for i, name in enumerate(class_names)
        ]
        fig.legend(handles=handles, loc="outside lower center", ncol=min(k, 10), fontsize=8)
    fig.suptitle(title)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=_DPI)
    return atomic_write_bytes(path, buffer.getvalue(), "the plot")


def _check_panel(
    name: str, features: np.ndarray, labels: np.ndarray, k: int
) -> tuple[str, np.ndarray, np.ndarray]:
    """Validated (name, features (n, d), labels (n,) int64) of one scatter panel."""
    features, labels = np.asarray(features), np.asarray(labels)
    if features.ndim != 2 or features.shape[0] < 2:
        raise ValueError(f"panel {name!r}: features must be (n >= 2, d), got {features.shape}")
    if labels.shape != (features.shape[0],):
        raise ValueError(
            f"panel {name!r}: labels {labels.shape} do not match features {features.shape}"
        )
    if not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0 or labels.max() >= k:
        raise ValueError(f"panel {name!r}: labels must be integers in [0, {k})")
    return name, features, labels.astype(np.int64)


def _check_accuracy(name: str, accuracy: np.ndarray, k: int) -> np.ndarray:
    """Validated per-class accuracy (K,) float64 in [0, 1], NaN allowed."""
    accuracy = np.asarray(accuracy, dtype=np.float64)
    if accuracy.shape != (k,):
        raise ValueError(
            f"per_class_accuracy[{name!r}] must have shape ({k},), got {accuracy.shape}"
        )
    present = accuracy[~np.isnan(accuracy)]
    if np.any((present < 0) | (present > 1)):
        raise ValueError(f"per_class_accuracy[{name!r}] must be fractions in [0, 1]")
    return accuracy


def _class_colours(k: int) -> np.ndarray:
    """(k, 3) RGB colours: categorical tables up to 60 classes, then sampled from turbo."""
    from matplotlib import colormaps

    if k <= 10:
        return np.asarray(colormaps["tab10"].colors)[:k]
    tables = [colormaps[name].colors for name in ("tab20", "tab20b", "tab20c")]
    palette = np.concatenate([np.asarray(t) for t in tables])
    if k <= len(palette):
        return palette[:k]
    return colormaps["turbo"](np.linspace(0.0, 1.0, k))[:, :3]


def _bar_chart(
    ax, class_names: Sequence[str], accuracies: dict[str, np.ndarray], colours: np.ndarray
) -> None:
    """Horizontal grouped bars of per-class accuracy (%), one group per class, top down.

    A swatch of each class's scatter colour sits beside its name, so the chart is also
    the colour key when there are too many classes for a legend.
    """
    k, groups = len(class_names), len(accuracies)
    width = 0.8 / groups
    rows = np.arange(k)
    for g, (name, accuracy) in enumerate(accuracies.items()):
        label = f"{name} (mean {100 * np.nanmean(accuracy):.1f} %)"
        ax.barh(rows + (g - (groups - 1) / 2) * width, 100 * accuracy, height=width, label=label)
    ax.set_yticks(rows, [str(c) for c in class_names], fontsize=7 if k > 20 else 9)
    ax.tick_params(axis="y", length=0, pad=12)
    swatch_x = ax.get_yaxis_transform()  # x in axes fraction, y in data (class rows)
    ax.scatter(
        np.full(k, -0.012), rows, c=colours, marker="s", s=25, transform=swatch_x, clip_on=False
    )
    ax.set_ylim(k - 0.5, -0.5)
    ax.set_xlim(0, 100)
    ax.set_xlabel("accuracy (%)")
    ax.set_title("per-class accuracy")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.04), fontsize=8, ncol=1, frameon=False)
