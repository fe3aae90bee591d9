"""A training run's folder: started afresh, resumed or refused, and written by one process.

A folder holding ``last.pt`` is a run to resume (``--resume``) and is never started over; a
folder without it may hold the leftovers of a run stopped before its first checkpoint, which
a new run removes. Rank 0 holds the folder's lock for the length of the run.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from xpt.toolkit.console import err
from xpt.toolkit.failures import FAILURES_FILE
from xpt.toolkit.fsio import TMP_PREFIX
from xpt.toolkit.locks import FolderInUse, folder_lock
from xpt.train.checkpoint import BEST, LAST, readable_fallback
from xpt.train.config import CONFIG_FILE
from xpt.train.distributed import DistEnv
from xpt.train.errors import TrainingError
from xpt.train.metrics_log import METRICS_FILE, metric_rows

_CHECKPOINT_NAME = re.compile(rf"{re.escape(BEST)}|epoch_\d+\.pt")


@contextlib.contextmanager
def run_lock(run_dir: Path, env: DistEnv, command: str) -> Iterator[None]:
    """Rank 0 holds ``run_dir``'s lock for the body (``command``, e.g. "xpt pretrain", names
    the holder in another's refusal); when another process holds it, every rank raises the
    refusal (a rank left waiting for rank 0 would fail with a traceback)."""
    with contextlib.ExitStack() as held:
        refusal = None
        if env.is_main:
            try:
                held.enter_context(folder_lock(run_dir, command))
            except FolderInUse as error:
                refusal = f"{error.filename}: {error.strerror}"
        refusal = env.broadcast(refusal)
        if refusal is not None:
            raise TrainingError(refusal)
        yield


def fallback_hint(found: tuple[Path, int] | None) -> str:
    """What a run whose last.pt is missing or unreadable can resume from instead
    (``found``: :func:`~xpt.train.checkpoint.readable_fallback`'s answer)."""
    if found is None:
        return "no readable epoch_XXX.pt to resume from instead"
    return f"{found[0]} (step {found[1]}) is readable: copy it to {LAST} to resume from there"


def resume_wanted(run_dir: Path, resume: bool | str, env: DistEnv) -> bool:
    """Whether the run continues from ``run_dir/last.pt``: ``resume`` True or False, or
    "auto" (when last.pt exists, as rank 0 sees it). Refuses to resume without last.pt and
    to start over a folder that has one."""
    last_path = run_dir / LAST
    if resume == "auto":
        resume = bool(env.broadcast(last_path.exists()))
    elif not isinstance(resume, bool):
        raise TrainingError(f"resume must be True, False or 'auto', got {resume!r}")
    if resume and not last_path.exists():
        found = readable_fallback(run_dir)
        raise TrainingError(
            f"{run_dir}: nothing to resume (no {LAST})"
            + (f"; {fallback_hint(found)}" if found else "")
        )
    if not resume and last_path.exists():
        raise TrainingError(
            f"{run_dir}: already holds a run ({LAST}); pass --resume to continue it "
            "or choose another --out"
        )
    return resume


def clear_leftovers(run_dir: Path, read_config: Callable[[Path], Any]) -> None:
    """Make sure a new run in ``run_dir`` (which has no last.pt) appends to nothing.

    Checkpoints without ``last.pt`` are refused (they may be worth resuming). The leftovers
    of an xpt run stopped before its first checkpoint (its config.json, metrics.jsonl,
    failures.jsonl and temporary files) are removed with a note: no step of it can be
    resumed. Files of those names beside a config.json that ``read_config`` refuses (a
    ValueError: not this command's run) are refused.
    """
    if not run_dir.is_dir():
        return
    checkpoints = sorted(p.name for p in run_dir.iterdir() if _CHECKPOINT_NAME.fullmatch(p.name))
    if checkpoints:
        raise TrainingError(
            f"{run_dir}: holds checkpoints ({', '.join(checkpoints)}) but no {LAST}; copy one "
            f"of them to {LAST} and pass --resume, or choose another --out"
        )
    leftovers = [run_dir / n for n in (CONFIG_FILE, METRICS_FILE, FAILURES_FILE)]
    leftovers = [p for p in leftovers if p.exists()] + sorted(run_dir.glob(TMP_PREFIX + "*"))
    if not leftovers:
        return
    names = ", ".join(p.name for p in leftovers)
    try:
        read_config(run_dir / CONFIG_FILE)
    except ValueError:
        raise TrainingError(
            f"{run_dir}: holds {names} but no {LAST}, and no xpt run's {CONFIG_FILE}; "
            "remove them or choose another --out"
        ) from None
    steps = len(metric_rows(run_dir / METRICS_FILE))
    for path in leftovers:
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
    err.print(
        f"[yellow]note[/yellow] {run_dir}: removed {names} of an earlier run stopped before "
        f"its first checkpoint ({steps} step(s), none resumable); starting afresh",
        highlight=False,
    )


def changed_settings(
    config: dict[str, Any], run_dir: Path, saved: dict[str, Any], fields: Sequence[str]
) -> list[str]:
    """``"name old -> new"`` for each of ``fields`` whose value in ``config`` differs from
    the run's config.json (else from ``saved``, the checkpoint's config)."""
    with contextlib.suppress(OSError, ValueError):
        saved = json.loads((run_dir / CONFIG_FILE).read_text(encoding="utf-8"))
    return [f"{f} {saved.get(f)!r} -> {config[f]!r}" for f in fields if saved.get(f) != config[f]]
