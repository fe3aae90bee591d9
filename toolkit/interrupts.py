"""Stopping long work cleanly on Ctrl-C (SIGINT), SIGTERM or SIGUSR1 (what batch schedulers
such as SLURM send before they preempt or cancel a job, or before its time limit).

Inside :func:`deferred_interrupts` the first signal only sets a flag that the work checks
at a safe point (after a training step, between objects), so it can save what it has done
and stop; a second signal raises :class:`Interrupted` at once, which still unwinds through
the atomic writers (``xpt.toolkit.fsio``), so no half-written file is left under a final
name. The shell convention for the exit status is 128 + the signal number: 130 for SIGINT,
143 for SIGTERM, 138 for SIGUSR1.

Worker processes (DataLoader workers, process pools) call :func:`ignore_interrupts` first:
a terminal's Ctrl-C goes to the whole process group and a scheduler's SIGTERM to every
process of the job, but only the main process should decide when to stop (workers that
die mid-read would print tracebacks and fail the main process's next read), and
:func:`start_worker` also has the kernel SIGKILL them when their parent dies, so ``kill -9``
of the parent leaves no orphans (nor the multiprocessing resource tracker, which ends once
they have).
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
_WATCH_S = 0.5

# SIGUSR1: what SLURM's --signal sends by default before a time limit (POSIX only).
SIGNALS = (signal.SIGINT, signal.SIGTERM) + (
    (signal.SIGUSR1,) if hasattr(signal, "SIGUSR1") else ()
)


class Interrupted(KeyboardInterrupt):
    """Work stopped by a signal; the message says where and what was kept."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        """128 + the signal number (130 for SIGINT, 143 for SIGTERM)."""
        return 128 + self.signum


class StopRequest:
    """Set by the first of :data:`SIGNALS` inside :func:`deferred_interrupts`; true once set."""

    def __init__(self) -> None:
        self.signum: int | None = None

    def __bool__(self) -> bool:
        return self.signum is not None

    @property
    def name(self) -> str:
        """The signal's name ("SIGINT", "SIGTERM"), or "" before any."""
        return "" if self.signum is None else signal.Signals(self.signum).name


@contextmanager
def deferred_interrupts() -> Iterator[StopRequest]:
    """Defer SIGINT, SIGTERM and SIGUSR1 to safe points of the body; the previous handlers are
    restored on exit.

    The first signal sets the yielded :class:`StopRequest`; a second one (of any kind)
    raises :class:`Interrupted` wherever the body is. Outside the main thread, where Python
    cannot handle signals, nothing is installed and the request is never set.
    """
    request = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield request
        return

    def handle(signum: int, frame: FrameType | None) -> None:
        if request:
            raise Interrupted(f"{signal.Signals(signum).name} again: stopped at once", signum)
        request.signum = signum

    previous = {s: signal.signal(s, handle) for s in SIGNALS}
    try:
        yield request
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def interrupted_after(done: int, signum: int, how: str = "interrupted") -> Interrupted:
    """The :class:`Interrupted` of a run over objects that stopped after ``done`` of them;
    ``how`` says how it stopped (a second signal's message)."""
    return Interrupted(
        f"{how} after {done} objects; finished work is kept; run the same command again to resume",
        signum,
    )


@contextmanager
def interrupts_ignored() -> Iterator[None]:
    """Ignore SIGINT, SIGTERM and SIGUSR1 while starting worker processes in the body.

    A spawned process inherits the ignoring from its first instruction (Python installs
    its Ctrl-C handler only where SIGINT is not ignored), so a signal that lands while
    it is still starting up cannot print a traceback from it. Keep the body short: a
    signal to this process in it is lost.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, signal.SIG_IGN) for s in SIGNALS}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def ignore_interrupts(*_: object) -> None:
    """Ignore SIGINT, SIGTERM and SIGUSR1 in this (worker) process: the main process stops it.

    Takes and ignores any arguments, so it can be a DataLoader ``worker_init_fn`` or a pool
    ``initializer`` as it is.
    """
    for s in SIGNALS:
        signal.signal(s, signal.SIG_IGN)


def start_worker(*_: object) -> None:
    """The first call of a worker process: ignore SIGINT/SIGTERM/SIGUSR1 (the parent decides
    when to stop) and end with the parent (:func:`die_with_parent`). Takes and ignores any
    arguments, so it can be a pool ``initializer`` or a DataLoader ``worker_init_fn``."""
    ignore_interrupts()
    die_with_parent()


def die_with_parent() -> None:
    """Have this process SIGKILLed when its parent dies, even by SIGKILL (workers ignore
    SIGTERM, so nothing else would stop them): Linux's ``PR_SET_PDEATHSIG``, elsewhere a
    thread polling ``os.getppid()``. Linux sends the signal when the parent's *thread* that
    started this process ends: start workers from a thread that outlives them."""
    parent = multiprocessing.parent_process()
    expected = parent.pid if parent is not None else os.getppid()
    if not _set_parent_death_signal(signal.SIGKILL):
        threading.Thread(target=_watch_parent, args=(expected,), daemon=True).start()
    if os.getppid() != expected:  # the parent died before the signal was armed
        os.kill(os.getpid(), signal.SIGKILL)


def _set_parent_death_signal(signum: int) -> bool:
    """``prctl(PR_SET_PDEATHSIG, signum)``; False where it is unavailable."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        return ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signum, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _watch_parent(expected: int) -> None:
    while os.getppid() == expected:
        time.sleep(_WATCH_S)
    os.kill(os.getpid(), signal.SIGKILL)
