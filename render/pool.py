"""The render run: worker processes, resume, per-object time limit, failures, summary.

Every object is rendered in a worker process (``spawn`` start method: GL contexts and fork
do not mix); each worker opens one GL context and keeps it for all its objects. The parent
never touches OpenGL. It hands one object at a time to each worker and enforces the time
limit: a worker still busy with an object past its deadline is killed, the object is
recorded as failed with reason "time limit: ...", and a fresh worker takes its place. A worker
that dies (e.g. a crash inside a GL driver) costs only the object it was working on.

Workers write each object folder themselves (atomically); the parent appends
``render_manifest.jsonl`` and ``failures.jsonl``, so each file has a single writer. At the
end of a run ``failures.jsonl`` is rewritten to list only the objects that are failed now.

Ctrl-C or SIGTERM: the parent hands out no more objects, lets the workers finish the ones
they hold, and raises :class:`~xpt.toolkit.interrupts.Interrupted`; a second signal stops at
once. Workers ignore both signals (the parent decides), so they print no tracebacks, and
end with the parent, even a killed one (:func:`~xpt.toolkit.interrupts.start_worker`).
"""

from __future__ import annotations

import importlib
import json
import math
import multiprocessing
import os
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import asdict, dataclass, field
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import TYPE_CHECKING

from xpt.render.config import RenderConfig
from xpt.render.gl import RenderError
from xpt.render.output import (
    append_manifest,
    is_complete,
    manifest_entry,
    object_dir,
    read_manifest_keys,
)
from xpt.toolkit.cpus import usable_cpus
from xpt.toolkit.failures import FAILURES_FILE, Failure, FailureLog, read_failures
from xpt.toolkit.fsio import WriteError, atomic_write_text, make_folder
from xpt.toolkit.interrupts import (
    Interrupted,
    StopRequest,
    deferred_interrupts,
    interrupted_after,
    interrupts_ignored,
    start_worker,
)
from xpt.toolkit.locks import folder_lock, part_lock
from xpt.toolkit.meshes.geometry import AUTO, FORMAT_UP_AXES, UP_AXIS, file_up_axis
from xpt.toolkit.meshes.objects import MeshObject

if TYPE_CHECKING:
    from xpt.render.renderer import ObjectRenderer
    from xpt.toolkit.meshes.sources import Unread

DEFAULT_JOB = "xpt.render.pool:render_job"
TIME_LIMIT_REASON = "time limit"
STAGE = "render"
_POLL_S = 0.5
STARTUP_LIMIT_S = 300.0
_STOP_WAIT_S = 5.0


class JobError(Exception):
    """One object failed at ``stage`` ("load", "render", "write") for ``reason``.

    ``reset`` asks the worker to drop its GL context (after a GL error); ``fatal`` is the
    error that ends the whole run (a full disk: every later object would fail the same way).
    """

    def __init__(
        self, stage: str, reason: str, reset: bool = False, fatal: WriteError | None = None
    ):
        super().__init__(stage, reason)
        self.stage, self.reason, self.reset, self.fatal = stage, reason, reset, fatal


@dataclass
class RenderSummary:
    """What a run did; the fields of the summary table and of ``--json``."""

    objects: int = 0
    done: int = 0
    skipped: int = 0
    failed: int = 0
    unread: int = 0  # entries named like meshes that the source cannot read (recorded too)
    views: int = 0
    seconds: float = 0.0
    views_per_second: float = 0.0
    gl_renderer: str = "not started (nothing to render)"
    backend: str = "egl"
    workers: int = 0
    out: str = ""
    layout: str = ""
    note: str | None = None  # one line per note: layout detection, split folders, up axis
    failures: list[dict] = field(default_factory=list)

    def to_json(self) -> dict:
        return asdict(self)

    @property
    def all_failed(self) -> bool:
        """True when objects were to be rendered and every one of them failed."""
        return self.failed > 0 and self.done == 0 and self.skipped == 0


def describe(exc: BaseException) -> str:
    """A one-line reason: ``Type: message``."""
    message = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def render_job(renderer: ObjectRenderer, obj: MeshObject, out: Path, config: RenderConfig) -> dict:
    """Load, render and write one object (runs in a worker). Raises :class:`JobError`."""
    from xpt.render.output import write_object
    from xpt.render.scene import GeometryError
    from xpt.toolkit.meshes.budget import load_within_budget
    from xpt.toolkit.meshes.load import MeshError

    try:
        loaded, faces = load_within_budget(obj, max_faces=config.max_faces, up_axis=config.up_axis)
    except MeshError as exc:
        raise JobError("load", exc.reason) from None
    try:
        result = renderer.render(loaded.scene, obj.key)
    except GeometryError as exc:
        raise JobError("load", str(exc)) from None
    except Exception as exc:
        is_gl = type(exc).__module__.startswith("OpenGL")
        reason = ("GL error: " if is_gl else "") + describe(exc)
        raise JobError(STAGE, reason, reset=is_gl) from None
    result.warnings = [*loaded.warnings, *result.warnings]
    try:
        write_object(object_dir(out, obj), obj, result, config, loaded.source_up_axis, faces)
    except WriteError as exc:
        raise JobError("write", str(exc), fatal=exc if exc.disk_full else None) from None
    return {"views": len(result.color), "seconds": result.seconds, "warnings": result.warnings}


def _resolve(job: str) -> Callable:
    module, _, name = job.partition(":")
    return getattr(importlib.import_module(module), name)


def _worker_main(
    conn: Connection, config: RenderConfig, out: str, job: str, raster_threads: int
) -> None:
    """Worker process: open one GL context, then render objects until told to stop.

    ``raster_threads`` caps Mesa llvmpipe's rasteriser threads (``LP_NUM_THREADS``, unless
    the user set it) so that N workers do not start N x cores threads; GPU drivers ignore it.
    """
    start_worker()
    os.environ.setdefault("LP_NUM_THREADS", str(raster_threads))
    from xpt.render.renderer import ObjectRenderer

    try:
        function = _resolve(job)
        renderer = ObjectRenderer(config)
    except Exception as exc:
        conn.send(("fatal", describe(exc)))
        return
    conn.send(("ready", renderer.gl_renderer))
    try:
        while True:
            try:
                obj = conn.recv()
            except EOFError:
                return
            if obj is None:
                return
            try:
                conn.send(("done", function(renderer, obj, Path(out), config)))
            except JobError as exc:
                conn.send(("failed", exc.stage, exc.reason, exc.fatal))
                if exc.reset:
                    return  # the parent starts a fresh worker with a fresh context
            except Exception as exc:
                conn.send(("failed", STAGE, describe(exc), None))
    finally:
        renderer.close()


class _Worker:
    """The parent's handle on one worker process and the object it is working on."""

    def __init__(self, context: multiprocessing.context.BaseContext, args: tuple):
        self.conn, child = context.Pipe()
        self.process = context.Process(target=_worker_main, args=(child, *args), daemon=True)
        with interrupts_ignored():
            self.process.start()
        child.close()
        self.born = time.monotonic()
        self.ready = False
        self.gl_renderer: str | None = None
        self.obj: MeshObject | None = None
        self.deadline = math.inf
        self.started = 0.0

    def assign(self, obj: MeshObject, time_limit: float) -> None:
        self.conn.send(obj)
        self.obj, self.started = obj, time.monotonic()
        self.deadline = self.started + time_limit

    def finish(self) -> MeshObject:
        obj, self.obj, self.deadline = self.obj, None, math.inf
        return obj

    def messages(self) -> list[tuple]:
        """Every message waiting on the pipe; ``("eof",)`` when the pipe is closed."""
        found = []
        try:
            while self.conn.poll():
                found.append(self.conn.recv())
        except (EOFError, OSError):
            found.append(("eof",))
        return found

    def kill(self) -> None:
        self.process.kill()
        self.process.join()
        self.conn.close()

    def stop(self) -> None:
        try:
            self.conn.send(None)
        except OSError:
            pass
        self.process.join(_STOP_WAIT_S)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
        self.conn.close()


class _Run:
    """The parent's bookkeeping for one call of :func:`render_objects`."""

    def __init__(
        self, out: Path, config: RenderConfig, summary: RenderSummary, bar: object, failures: str
    ):
        self.out, self.config, self.summary, self.bar = out, config, summary, bar
        self.failures = FailureLog(out / failures)
        self.recorded = set(read_failures(self.failures.path))  # a re-run adds no duplicates
        self.failed_now: set[Failure] = set()
        self.complete: set[str] = set()  # keys of objects done or skipped in this run

    def fail(self, obj: MeshObject, stage: str, reason: str) -> None:
        self.record(Failure(obj.key, obj.where, stage, reason))
        self.summary.failed += 1
        if self.bar is not None:
            where = f" ({obj.where})" if obj.where else ""
            self.bar.fail(f"{obj.display}{where}: {stage}: {reason}")
            self.bar.advance(ok=False)

    def stop(self, obj: MeshObject, stage: str, error: WriteError) -> WriteError:
        """Record ``obj``'s failure (no line of its own) and return the one-line error that
        ends the run: on a full disk every later object would fail the same way."""
        with suppress(OSError):  # the full disk may refuse the record too: report the cause
            self.record(Failure(obj.key, obj.where, stage, str(error)))
        self.summary.failed += 1
        kept = f"render stopped ({self.summary.done} object(s) rendered are kept; run it again)"
        return WriteError(error.errno, f"{error.strerror}; {kept}", error.filename)

    def record(self, failure: Failure) -> None:
        """Record ``failure`` (once across runs) as one of this run's failures."""
        if failure not in self.recorded:
            self.failures.record(failure)
            self.recorded.add(failure)
        self.failed_now.add(failure)
        self.summary.failures.append(asdict(failure))

    def unread(self, entry: Unread) -> None:
        """An entry the source could not read: recorded and counted, not an object."""
        failure = entry.failure()
        self.record(failure)
        self.summary.unread += 1
        if self.bar is not None:
            self.bar.fail(f"{failure.path}: not read: {failure.reason}")

    def settle_failures(self) -> None:
        """Rewrite ``failures.jsonl`` (atomically) to the objects that are failed now.

        Lines of objects this run failed are replaced by this run's reasons, lines of
        objects now complete are dropped, and lines of objects not in this run are kept.
        """
        if not self.failures.path.exists():
            return
        failed_ids = {f.id for f in self.failed_now}
        kept = [
            f
            for f in dict.fromkeys([*read_failures(self.failures.path), *self.failed_now])
            if f in self.failed_now or (f.id not in failed_ids and f.id not in self.complete)
        ]
        text = "".join(json.dumps(asdict(f), sort_keys=True) + "\n" for f in kept)
        atomic_write_text(self.failures.path, text)

    def done(self, obj: MeshObject, info: dict) -> None:
        folder = object_dir(self.out, obj)
        entry = manifest_entry(obj, folder, self.out, info["views"], info["seconds"])
        append_manifest(self.out, entry)
        self.complete.add(obj.key)
        self.summary.done += 1
        self.summary.views += info["views"]
        if self.bar is not None:
            from rich.markup import escape

            for warning in info.get("warnings", []):
                self.bar.note(f"[yellow]warning[/yellow] {escape(f'{obj.display}: {warning}')}")
            self.bar.advance(ok=True)


def render_objects(
    objects: Sequence[MeshObject],
    out: str | Path,
    config: RenderConfig,
    *,
    workers: int = 1,
    progress: bool = True,
    job: str = DEFAULT_JOB,
    failures_file: str = FAILURES_FILE,
    unread: Sequence[Unread] = (),
) -> RenderSummary:
    """Render ``objects`` into ``out``; returns the run's summary.

    Objects whose folder is already complete (same settings) are skipped; failures go to
    ``<out>/<failures_file>`` (``failures.jsonl``) and never stop the run, as do the
    source's ``unread`` entries (stage "source"), except a full disk: that object's failure
    is recorded and the run stops with a :class:`~xpt.toolkit.fsio.WriteError`. ``job``
    ("module:function") is what a worker does per object, ``render_job`` unless a caller
    needs otherwise. Raises
    :class:`RenderError` when no worker can open a GL context, and
    :class:`~xpt.toolkit.interrupts.Interrupted` after SIGINT/SIGTERM (objects finished
    until then are kept and a re-run skips them).
    """
    from xpt.toolkit.console import RunProgress

    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    out = make_folder(out)
    summary = RenderSummary(objects=len(objects), backend=config.backend, out=str(out))
    listed = read_manifest_keys(out)
    seen: set[str] = set()
    pending: deque[MeshObject] = deque()
    duplicates, skipped = [], []
    for obj in objects:
        if obj.key in seen:
            duplicates.append(obj)
            continue
        seen.add(obj.key)
        axis = file_up_axis(obj.source, obj.path, config.up_axis)
        if is_complete(object_dir(out, obj), config, axis):
            skipped.append(obj)
        else:
            pending.append(obj)
    for obj in skipped:
        summary.skipped += 1
        if obj.key not in listed:  # finished by a run that stopped before its manifest line
            folder = object_dir(out, obj)
            append_manifest(out, manifest_entry(obj, folder, out, config.num_views, 0.0))
    start = time.perf_counter()
    with (
        RunProgress("render", total=len(pending) + len(duplicates), unit="obj") as bar,
        deferred_interrupts() as stop,
    ):
        run = _Run(out, config, summary, bar if progress else None, failures_file)
        for entry in unread:
            run.unread(entry)
        for obj in duplicates:
            run.fail(obj, "source", "duplicate object: same category and model id as another")
        run.complete.update(obj.key for obj in skipped)
        if pending:
            summary.workers = min(workers, len(pending))
            try:
                _drive(pending, run, summary.workers, job, stop)
            except Interrupted as again:
                raise interrupted_after(summary.done, again.signum, str(again)) from None
        run.settle_failures()
    if stop:
        raise interrupted_after(summary.done, stop.signum)
    summary.seconds = time.perf_counter() - start
    summary.views_per_second = summary.views / summary.seconds if summary.seconds > 0 else 0.0
    return summary


def _drive(pending: deque[MeshObject], run: _Run, count: int, job: str, stop: StopRequest) -> None:
    """Feed ``pending`` to ``count`` workers until every object is done or failed, or,
    once ``stop`` is set, until the objects being rendered are."""
    context = multiprocessing.get_context("spawn")
    args = (run.config, str(run.out), job, max(1, usable_cpus() // count))
    pool = [_Worker(context, args) for _ in range(count)]
    renderers: list[str] = []
    try:
        while pool:
            for worker in pool:
                if worker.ready and worker.obj is None and pending and not stop:
                    worker.assign(pending.popleft(), run.config.time_limit)
            now = time.monotonic()
            timeout = min([_POLL_S, *(w.deadline - now for w in pool)])
            wait([w.conn for w in pool] + [w.process.sentinel for w in pool], max(timeout, 0.0))
            kept = []
            for worker in pool:
                if not _service(worker, run, renderers, stop):
                    worker.kill()
                    if pending and not stop:
                        kept.append(_Worker(context, args))
                elif stop and worker.obj is None:
                    worker.kill()  # idle or still starting: it holds no work
                elif worker.ready and worker.obj is None and not pending:
                    worker.stop()
                else:
                    kept.append(worker)
            pool = kept
    finally:
        for worker in pool:
            worker.kill()
    run.summary.gl_renderer = ", ".join(sorted(set(renderers))) or run.summary.gl_renderer


def _service(worker: _Worker, run: _Run, renderers: list[str], stop: StopRequest) -> bool:
    """Handle a worker's messages, death and deadlines; False when it must be replaced.

    A worker that dies once ``stop`` is set (the Ctrl-C may have reached it too) did not
    crash: its object is neither done nor failed, and the resume renders it."""
    closed = False
    for message in worker.messages():
        kind = message[0]
        if kind == "ready":
            worker.ready = True
            renderers.append(message[1])
        elif kind == "fatal":
            raise RenderError(f"render worker could not start: {message[1]}")
        elif kind == "done":
            run.done(worker.finish(), message[1])
        elif kind == "failed" and message[3] is not None:
            raise run.stop(worker.finish(), message[1], message[3])
        elif kind == "failed":
            run.fail(worker.finish(), message[1], message[2])
        elif kind == "eof":
            closed = True
    if closed or not worker.process.is_alive():
        worker.process.join()
        code = worker.process.exitcode
        if stop:
            worker.finish()
            return False
        if not worker.ready:
            raise RenderError(f"render worker exited during start-up (exit code {code})")
        if worker.obj is not None:
            run.fail(worker.finish(), STAGE, f"worker crashed (exit code {code})")
        return False
    now = time.monotonic()
    if not worker.ready and now > worker.born + STARTUP_LIMIT_S:
        raise RenderError(f"render worker did not open a GL context within {STARTUP_LIMIT_S:g} s")
    if worker.obj is not None and now > worker.deadline:
        limit = run.config.time_limit
        run.fail(worker.finish(), STAGE, f"{TIME_LIMIT_REASON}: not done after {limit:g} s")
        return False
    return True


def part_failures_file(index: int, count: int) -> str:
    """``failures.jsonl``, or ``failures-part-III-of-NNN.jsonl`` for one part of a job array.

    Parts of a job array render into one folder at the same time; each keeps its own
    failure record so that no part ever rewrites another's (the file is rewritten at the
    end of a run to list only the objects that are failed now).
    """
    if count == 1:
        return FAILURES_FILE
    return f"failures-part-{index:03d}-of-{count:03d}.jsonl"


def up_axis_note(objects: Sequence[MeshObject], up_axis: str) -> str | None:
    """One line saying how many objects ``auto`` turned by their format's convention (STL and
    OFF are +Z up) and how to keep them as stored; None when it turned none."""
    from xpt.toolkit.meshes.load import FORMAT_NAMES

    if up_axis != AUTO:
        return None
    suffixes = [obj.path.suffix.lower() for obj in objects if obj.path is not None]
    turned = Counter(s for s in suffixes if FORMAT_UP_AXES.get(s, UP_AXIS) != UP_AXIS)
    if not turned:
        return None
    axes = {FORMAT_UP_AXES[suffix] for suffix in turned}
    count = sum(turned.values())
    formats = ", ".join(FORMAT_NAMES[s[1:]] for s in FORMAT_UP_AXES if s in turned)
    return (
        f"up axis: {count} object{'s' if count != 1 else ''} read as {'/'.join(sorted(axes))} "
        f"by their format's convention ({formats}); --up-axis {UP_AXIS} to keep them as stored"
    )


def run_render(
    source: str | Path,
    out: str | Path,
    config: RenderConfig,
    *,
    workers: int = 1,
    part: str | None = None,
    limit: int | None = None,
    categories: Sequence[str] | str | None = None,
    split: str | None = None,
    layout: str | None = None,
    per_category: int = 8,
    source_seed: int = 0,
    preview: str | Path | None = None,
    progress: bool = True,
) -> RenderSummary:
    """``xpt render``: open the source, take this job's ``--part``, render, write the preview.

    ``limit`` applies before the partition, so every part of a job array sees the same
    object list; the source's unread entries are spread over the parts the same way.
    Holds ``out``'s lock throughout (a part its own: the parts share ``out``), so a second
    run on it is refused (:func:`~xpt.toolkit.locks.folder_lock`).
    Raises ``ValueError`` (incl. ``SourceError``) for bad options or sources and
    :class:`RenderError` when rendering cannot start.
    """
    from xpt.render.preview import write_preview
    from xpt.toolkit.meshes.load import check_source_up_axis
    from xpt.toolkit.meshes.sources import scan_source
    from xpt.toolkit.partition import parse_part, part_of, select_part

    index, count = parse_part(part)
    with folder_lock(out, "xpt render", part_lock(index, count)):
        check_source_up_axis(source, config.up_axis)
        found = scan_source(
            source,
            categories=categories,
            split=split,
            limit=limit,
            per_category=per_category,
            seed=source_seed,
            layout=layout,
        )
        objects = list(select_part(found.objects, index, count))
        summary = render_objects(
            objects,
            out,
            config,
            workers=workers,
            progress=progress,
            failures_file=part_failures_file(index, count),
            unread=[u for u in found.unread if count == 1 or part_of(u.id, count) == index],
        )
        notes = [found.note, up_axis_note(objects, config.up_axis)]
        summary.layout, summary.note = found.layout, "\n".join(n for n in notes if n) or None
        if preview is not None:
            write_preview(preview, out, objects, config)
    return summary
