"""Training curves from ``metrics.jsonl``: loss, IMID, CMID, learning rate, probe accuracy.

``write_curves`` draws one run (``RUN/curves.png``, rewritten at every epoch end);
``xpt plot RUN...`` draws several runs on the same panels to compare them.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

from xpt.toolkit.fsio import atomic_write_bytes

if TYPE_CHECKING:
    from matplotlib.figure import Figure

METRICS_FILE = "metrics.jsonl"
CURVES_FILE = "curves.png"
STEP_METRICS = ("loss", "imid", "cmid", "lr")  # one panel each, against the step
PROBE_METRIC = "probe_accuracy"  # against the epoch, when the run probes


def read_metrics(run: str | os.PathLike) -> list[dict]:
    """The records of ``RUN/metrics.jsonl`` (a half-written last line is skipped)."""
    path = Path(run) / METRICS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file (not a pretraining run folder?)")
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def write_curves(runs: list[str | os.PathLike], out: str | os.PathLike) -> Path:
    """One PNG of every logged metric of ``runs`` (a line per run in each panel)."""
    import matplotlib.pyplot as plt

    figure = curves_figure(runs)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    plt.close(figure)
    return atomic_write_bytes(out, buffer.getvalue(), "the plot")


def curves_figure(runs: list[str | os.PathLike]) -> Figure:
    """A panel per logged metric (step metrics, then probe accuracy by epoch when probed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = [(label, read_metrics(run)) for label, run in zip(_labels(runs), runs, strict=True)]
    probing = any(PROBE_METRIC in r for _, records in series for r in records)
    panels = [*STEP_METRICS, PROBE_METRIC] if probing else list(STEP_METRICS)
    figure, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels), 3.2), squeeze=False)
    for axis, metric in zip(axes[0], panels, strict=True):
        x_key = "epoch" if metric == PROBE_METRIC else "step"
        for name, records in series:
            points = [(r[x_key], r[metric]) for r in records if r.get(metric) is not None]
            if points:
                xs, ys = zip(*points, strict=True)
                axis.plot(xs, ys, marker="o" if metric == PROBE_METRIC else None, label=name)
        axis.set_title(metric.replace("_", " "))
        axis.set_xlabel(x_key)
        axis.grid(alpha=0.3)
    if len(series) > 1:
        axes[0][0].legend(fontsize=8)
    figure.tight_layout()
    return figure


def _labels(runs: list[str | os.PathLike]) -> list[str]:
    """The shortest path tails that tell the runs apart (``a/pretrain``, ``b/pretrain``)."""
    parts = [Path(os.path.abspath(run)).parts for run in runs]
    for depth in range(1, max(map(len, parts)) + 1):
        labels = ["/".join(p[-depth:]) for p in parts]
        if len(set(labels)) == len(labels):
            return labels
    return [str(run) for run in runs]  # the same run given twice


class TensorBoardLog:
    """The numbers of each metrics record as TensorBoard scalars under ``folder`` (``RUN/tb``);
    needs the optional ``tensorboard`` package."""

    def __init__(self, folder: str | os.PathLike):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise ImportError(
                "--tensorboard needs the tensorboard package: pip install tensorboard "
                "(or pip install 'xpt[tensorboard]')"
            ) from None
        self.writer = SummaryWriter(str(folder))

    def log(self, record: dict) -> None:
        for name, value in record.items():
            number = isinstance(value, int | float) and not isinstance(value, bool)
            if number and name not in ("step", "epoch"):
                self.writer.add_scalar(name, value, record["step"])
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
