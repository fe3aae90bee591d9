"""Console output shared by every command: progress bars, summary tables, ``--json``.

Progress and messages go to stderr so that stdout stays clean for piping; the
summary table goes to stdout.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from xpt.toolkit.fsio import atomic_write_json

T = TypeVar("T")

out = Console()
err = Console(stderr=True)


def error_exit(message: str) -> typer.Exit:
    """Print ``error <message>`` on stderr as one line and return the exit (status 1) for
    the caller to raise. ``message`` is plain text (file names may hold ``[``), never markup."""
    err.print(f"[red]error[/red] {escape(message)}", highlight=False, soft_wrap=True)
    return typer.Exit(code=1)


class _RateColumn(ProgressColumn):
    """Items per second, with the unit given as the task field ``unit``."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        unit = task.fields.get("unit", "it")
        return Text(f"{speed:.1f} {unit}/s" if speed else f"-- {unit}/s", style="cyan")


class _FailColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        failed = task.fields.get("failed", 0)
        return Text(f"{failed} failed", style="red" if failed else "dim")


class RunProgress:
    """A progress bar with items/s, ETA and a failure count.

    >>> with RunProgress("render", total=10, unit="obj") as bar:
    ...     bar.advance(ok=True)

    Failure messages printed through :meth:`fail` appear above the bar, one line each.
    When stderr is not a terminal (a log file, a batch job's output) the bar, which would
    show nothing there, is replaced by a plain line every ``XPT_PROGRESS_SECONDS`` (default
    30); ``XPT_NO_PROGRESS`` hides both.
    """

    def __init__(self, description: str, total: int | None, unit: str = "it"):
        hidden = bool(os.environ.get("XPT_NO_PROGRESS"))
        disable = hidden or not err.is_terminal
        plain = not hidden and not err.is_terminal
        self._plain = _PlainProgress(description, total, unit) if plain else None
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            _RateColumn(),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            _FailColumn(),
            console=err,
            disable=disable,
        )
        self._task = self._progress.add_task(description, total=total, unit=unit, failed=0)
        self.done = 0
        self.failed = 0

    def __enter__(self) -> RunProgress:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def advance(self, ok: bool = True, n: int = 1, detail: str | None = None) -> None:
        """Count ``n`` items done (failed unless ``ok``); ``detail`` (e.g. "loss 4.1234")
        goes into the plain progress line."""
        self.done += n
        if not ok:
            self.failed += n
        self._progress.update(self._task, advance=n, failed=self.failed)
        if self._plain is not None:
            self._plain.update(self.done, self.failed, detail)

    def fail(self, message: str) -> None:
        """Print a one-line failure message (the caller also calls ``advance(ok=False)``).

        ``message`` is plain text (file names may hold ``[``), never markup.
        """
        text = f"[red]failed[/red] {escape(message)}"
        self._progress.console.print(text, highlight=False, markup=True)

    def note(self, message: str) -> None:
        """Print a one-line message (markup allowed) above the bar."""
        self._progress.console.print(message, highlight=False, soft_wrap=True)


class _PlainProgress:
    """Progress as one plain line every ``XPT_PROGRESS_SECONDS`` (default 30): done of total,
    rate, failures, a detail such as the loss, ETA. For a stderr that is not a terminal."""

    def __init__(self, description: str, total: int | None, unit: str):
        self.description, self.total, self.unit = description, total, unit
        self.interval = _progress_seconds()
        self.started = self.last = time.monotonic()

    def update(self, done: int, failed: int, detail: str | None) -> None:
        now = time.monotonic()
        if now - self.last < self.interval:
            return
        self.last = now
        line = self.line(done, failed, detail, now - self.started)
        err.print(line, markup=False, highlight=False, soft_wrap=True)

    def line(self, done: int, failed: int, detail: str | None, seconds: float) -> str:
        """``render: 12/40 obj (30 %), 2.4 obj/s, 1 failed, eta 12 s``."""
        total, unit = self.total, self.unit
        rate = done / seconds if seconds > 0 else 0.0
        count = (
            f"{done:,}/{total:,} {unit} ({100 * done / total:.0f} %)"
            if total
            else f"{done:,} {unit}"
        )
        parts = [count, f"{rate:.1f} {unit}/s"] + ([f"{failed} failed"] if failed else [])
        parts += [detail] if detail else []
        if total and rate > 0:
            parts.append(f"eta {duration((total - done) / rate)}")
        return f"{self.description}: " + ", ".join(parts)


def _progress_seconds() -> float:
    """``XPT_PROGRESS_SECONDS``: seconds between plain progress lines (default 30)."""
    try:
        return max(0.0, float(os.environ.get("XPT_PROGRESS_SECONDS", "30")))
    except ValueError:
        return 30.0


def duration(seconds: float) -> str:
    """``42 s``, ``3 min 05 s``, ``2 h 07 min``: a time span as people read it."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def track(
    items: Iterable[T], description: str, total: int | None = None, unit: str = "it"
) -> Iterator[T]:
    """Iterate with a :class:`RunProgress` bar (no failure accounting)."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with RunProgress(description, total=total, unit=unit) as bar:
        for item in items:
            yield item
            bar.advance()


# Printed labels that the generic rule of :func:`label` would get wrong.
LABELS = {"c": "C", "hand_crafted_pct": "hand-crafted %"}


def label(key: object) -> str:
    """The printed label of a report key. Report keys are snake_case (``--json`` uses them
    as they are); tables show ``_`` as a space, a ``_pct`` suffix as `` %`` and a ``_per_s``
    suffix as ``/s``: ``objects_per_s`` -> ``objects/s``, ``overall_acc_pct`` ->
    ``overall acc %``. Keys that are not snake_case (data such as category ids) are
    shown as they are."""
    text = str(key)
    if text in LABELS:
        return LABELS[text]
    if not re.fullmatch(r"[a-z0-9_]+", text):
        return text
    if text.endswith("_pct"):
        text = text.removesuffix("_pct") + " %"
    elif text.endswith("_per_s"):
        text = text.removesuffix("_per_s") + "/s"
    return text.replace("_", " ")


def summary_table(title: str, rows: Mapping[str, Any] | Iterable[Mapping[str, Any]]) -> Table:
    """A rich table: a mapping gives two columns (key, value), rows of mappings give columns.

    Keys are shown through :func:`label`, so a summary dict serves both the table and ``--json``.
    The title, labels and cells are plain text, never markup: a path such as ``my data [v2]``
    is shown as it is.
    """
    table = Table(title=escape(title), title_justify="left")
    if isinstance(rows, Mapping):
        table.add_column("")
        table.add_column("value", justify="right")
        for key, value in rows.items():
            table.add_row(escape(label(key)), _fmt(value))
        return table
    rows = list(rows)
    columns = list(rows[0]) if rows else []
    for column in columns:
        justify = "left" if column == columns[0] else "right"
        table.add_column(escape(label(column)), justify=justify)
    for row in rows:
        table.add_row(*(_fmt(row.get(column)) for column in columns))
    return table


def print_table(title: str, rows: Mapping[str, Any] | Iterable[Mapping[str, Any]]) -> None:
    out.print(summary_table(title, rows))


@contextmanager
def stdout_to_stderr(when: bool = True) -> Iterator[None]:
    """While active (and ``when``), what goes to :data:`out` (tables) goes to stderr, so that
    ``--json -`` leaves stdout to the JSON alone."""
    if not when:
        yield
        return
    out.file = sys.stderr
    try:
        yield
    finally:
        out.file = None  # back to following sys.stdout


def write_json_report(path: str | os.PathLike | None, data: Any) -> None:
    """Write a ``--json`` report (``-`` means stdout); does nothing when ``path`` is None."""
    if path is None:
        return
    if str(path) == "-":
        sys.stdout.write(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")
        return
    atomic_write_json(Path(path), json.loads(json.dumps(data, default=str)))


def _fmt(value: Any) -> str:
    """A cell's text, escaped: what a report holds is data, never markup."""
    if isinstance(value, float):
        return f"{value:,.3f}" if abs(value) < 100 else f"{value:,.1f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return "" if value is None else escape(str(value))
