"""The failure record: one JSON line per object a stage could not handle.

``failures.jsonl`` holds ``{"id", "path", "stage", "reason"}`` per line. Lines are
appended and flushed one at a time, so a crash never loses what was recorded.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from xpt.toolkit.fsio import printable, writing

FAILURES_FILE = "failures.jsonl"


@dataclass(frozen=True)
class Failure:
    """Why one object was left out (or degraded) at one stage."""

    id: str
    path: str | None
    stage: str
    reason: str

    def __post_init__(self) -> None:
        # a file name that is not UTF-8 must not put a lone surrogate into the JSON record
        for name in ("id", "path", "stage", "reason"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, printable(str(value)))

    def line(self) -> str:
        """The one-line console form: ``id (path): stage: reason``."""
        where = f" ({self.path})" if self.path else ""
        return f"{self.id}{where}: {self.stage}: {self.reason}"


class FailureLog:
    """Appends failures to ``<folder>/failures.jsonl`` and counts them."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.count = 0
        self._recorded: set[tuple[str, str]] | None = None  # (id, stage) in the file

    def record(self, failure: Failure) -> None:
        """Append ``failure``; a failed write raises a WriteError naming the record."""
        line = json.dumps(asdict(failure), sort_keys=True) + "\n"
        with writing(self.path, "the failure record"):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a+b") as handle:
                if handle.tell() > 0:  # close a line torn by an earlier crash first
                    handle.seek(-1, os.SEEK_END)
                    if handle.read(1) != b"\n":
                        line = "\n" + line
                handle.write(line.encode("utf-8"))
                handle.flush()
        self.count += 1

    def record_once(self, failure: Failure) -> None:
        """:meth:`record`, unless the file already holds this object's failure at this stage
        (a rerun that resumes meets an earlier run's failures again)."""
        if self._recorded is None:
            self._recorded = {(f.id, f.stage) for f in read_failures(self.path)}
        if (failure.id, failure.stage) not in self._recorded:
            self.record(failure)
            self._recorded.add((failure.id, failure.stage))


def read_failures(path: str | os.PathLike) -> list[Failure]:
    """All failures recorded in ``path`` (empty when the file does not exist).

    A line torn by a crash is skipped.
    """
    path = Path(path)
    if not path.exists():
        return []
    failures = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            failures.append(Failure(**json.loads(line)))
        except (ValueError, TypeError):
            continue
    return failures
