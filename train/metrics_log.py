"""A run's metrics: ``metrics.jsonl`` (a line per step and per probe), its TensorBoard
mirror and ``curves.png``; and what a run reads back from them (the best probe, the
figures of a finished run, the lines past a resumed checkpoint).

Only rank 0 writes (:class:`MetricsLog` with ``write`` False writes nowhere), so every
rank can log unconditionally.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from xpt.toolkit.fsio import atomic_write_text
from xpt.train.curves import CURVES_FILE, METRICS_FILE, TensorBoardLog, write_curves
from xpt.train.errors import TrainingError


class MetricsLog:
    """Appends records to ``run_dir/metrics.jsonl`` (flushed, so a kill loses at most a torn
    line) and, with ``tensorboard``, to TensorBoard under ``run_dir/tb``; ``with`` opens it.

    ``write`` False (ranks other than 0): records go nowhere and no curves are drawn.
    """

    def __init__(self, run_dir: Path, write: bool = True, tensorboard: bool = False):
        self.run_dir = run_dir
        self.path = run_dir / METRICS_FILE
        self.write = write
        try:
            self.board = TensorBoardLog(run_dir / "tb") if tensorboard and write else None
        except ImportError as missing:
            raise TrainingError(str(missing)) from None
        self._handle: IO[str] | None = None

    def __enter__(self) -> MetricsLog:
        self._handle = open(self.path if self.write else os.devnull, "a", encoding="utf-8")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def log(self, record: dict[str, Any]) -> None:
        """One line of ``record`` (its numbers to TensorBoard too); needs the log open."""
        assert self._handle is not None, "log() outside `with MetricsLog(...)`"
        self._handle.write(json.dumps(record) + "\n")
        self._handle.flush()
        if self.board is not None:
            self.board.log(record)

    def draw_curves(self) -> None:
        """Redraw ``curves.png`` from the lines so far (rank 0)."""
        if self.write:
            write_curves([self.run_dir], self.run_dir / CURVES_FILE)


@dataclass
class EpochStats:
    """Steps, objects and seconds of one epoch, and the sums of its logged values."""

    steps: int = 0
    samples: int = 0
    seconds: float = 0.0
    sums: dict[str, float] = field(default_factory=dict)

    def add(self, values: dict[str, float], samples: int, seconds: float) -> None:
        self.steps += 1
        self.samples += samples
        self.seconds += seconds
        for name, value in values.items():
            self.sums[name] = self.sums.get(name, 0.0) + value

    def mean(self, name: str) -> float:
        return self.sums.get(name, 0.0) / max(self.steps, 1)

    def means(self) -> dict[str, float]:
        """The mean of every value, in the order they were logged."""
        return {name: self.mean(name) for name in self.sums}


def metric_rows(path: Path) -> list[dict[str, Any]]:
    """The step lines of ``metrics.jsonl`` (probe lines and torn lines left out)."""
    rows = []
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            with contextlib.suppress(ValueError):
                row = json.loads(line)
                if isinstance(row, dict) and "loss" in row and "step" in row:
                    rows.append(row)
    return rows


def best_probe(path: Path) -> tuple[float, int] | None:
    """(accuracy, epoch) of the best probe line in ``metrics.jsonl`` (the latest on ties: the
    more trained of two equal encoders)."""
    best = None
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            with contextlib.suppress(ValueError, KeyError, TypeError):
                row = json.loads(line)
                if "probe_accuracy" in row and (best is None or row["probe_accuracy"] >= best[0]):
                    best = (float(row["probe_accuracy"]), int(row["epoch"]))
    return best


def truncate_metrics(path: Path, step: int) -> None:
    """Drop metric lines past ``step`` (written after the checkpoint a run resumes from)."""
    if not path.exists():
        return
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            if json.loads(line)["step"] <= step:
                kept.append(line)
        except (ValueError, KeyError, TypeError):
            pass  # blank, or half-written by a run killed mid-write
    atomic_write_text(path, "".join(line + "\n" for line in kept))


def final_figures(path: Path, epochs_done: int) -> tuple[float | None, float | None]:
    """(mean loss, mean objects/s) of the steps of epoch ``epochs_done`` in ``metrics.jsonl``:
    the figures of a finished run's last epoch, for a summary when nothing was trained."""
    rows = [r for r in metric_rows(path) if r.get("epoch") == epochs_done]
    rates = [r["samples_per_s"] for r in rows if r.get("samples_per_s")]
    loss = sum(r["loss"] for r in rows) / len(rows) if rows else None
    return loss, sum(rates) / len(rates) if rates else None
