"""Where a training run's data failures and the loader's notes go: each distinct failure
printed once and appended to ``failures.jsonl``, each note one console line."""

from __future__ import annotations

from pathlib import Path

from rich.markup import escape

from xpt.toolkit.console import RunProgress, err
from xpt.toolkit.failures import Failure, FailureLog, read_failures


class FailureSink:
    """Data failures: each distinct one printed once and appended to failures.jsonl; and
    the data loader's notes, one line each. With ``record`` False (ranks other than 0)
    nothing is written: the failures wait in ``pending`` for rank 0 to record them."""

    def __init__(self, path: Path, record: bool = True):
        self.log = FailureLog(path)
        self.seen = {(f.id, f.path, f.reason) for f in read_failures(path)}
        self.bar: RunProgress | None = None
        self.record = record
        self.pending: list[Failure] = []

    def __call__(self, failure: Failure) -> None:
        key = (failure.id, failure.path, failure.reason)
        if key in self.seen:
            return
        self.seen.add(key)
        if not self.record:
            self.pending.append(failure)
            return
        self.log.record(failure)
        if self.bar is not None:
            self.bar.fail(failure.line())
        else:
            err.print(f"[red]skipped[/red] {escape(failure.line())}", highlight=False)

    def note(self, message: str) -> None:
        line = f"[yellow]note[/yellow] {escape(message)}"
        if self.bar is not None:
            self.bar.note(line)
        else:
            err.print(line, highlight=False, soft_wrap=True)
