"""The loader: :class:`ShardLoader` runs the pipeline in DataLoader workers, one pass at a
time, and re-batches the workers' chunks into full batches of ``batch_size`` in the main
process, for the epoch length the shard set gives.

Each failure the workers ship is counted, kept (``ShardLoader.failures``) and reported
through ``on_error`` (a warning by default). Clouds stored with fewer points than asked for
are filled with repeated points; the loader says so once through ``on_note``. Workers
ignore SIGINT and SIGTERM: the training loop stops them.
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import webdataset as wds
from torch.utils.data import DataLoader

from xpt.toolkit.cpus import usable_cpus
from xpt.toolkit.failures import Failure
from xpt.toolkit.interrupts import start_worker
from xpt.toolkit.seeding import derive_seed
from xpt.train.data.batch import Batch
from xpt.train.data.failures import STAGE, _shard_reason
from xpt.train.data.pipeline import EpochStream, _member_key
from xpt.train.data.shard_sets import ShardSet, ShardSpecError, _is_local_file, resolve_shards
from xpt.train.sample_index import IndexingError, SampleIndex, build_index, is_compressed


@dataclass(frozen=True)
class LoaderConfig:
    """What the pipeline produces: batches of ``batch_size`` objects with ``points``
    points each and one view resized to ``image_size`` x ``image_size``.

    ``augment``: each chunk is augmented where it is made (in the DataLoader workers, or in
    the main process without workers) by :func:`~xpt.train.data.batch.augment_batch`, with
    the paper's point and image augmentations; ``augment_images`` False leaves the images out
    (no ``views``).
    ``pin_memory``: chunks arrive in page-locked memory, for non-blocking copies to a GPU.
    ``shuffle``: "buffer" shuffles the shard order and a ``shuffle_buffer``-sample buffer
    (any shards); "full" reads a fresh permutation of every sample each epoch from an index
    of the shards (local, uncompressed shards; :mod:`xpt.train.sample_index`).
    """

    batch_size: int
    points: int
    image_size: int
    seed: int = 0
    shuffle: str = "buffer"
    shuffle_buffer: int = 1000
    workers: int = 0
    samples_per_epoch: int | None = None
    augment: bool = False
    augment_images: bool = True
    pin_memory: bool = False


def loader_workers(
    requested: int, shards: int | None, cpus: int | None = None
) -> tuple[int, str | None]:
    """The DataLoader workers to start for ``requested``, and a one-line note when it matters.

    No more than ``shards``: a worker reads whole shards, so one without a shard only idles
    (and the batches are the same either way); ``shards`` None: any worker reads any sample
    (``--shuffle full``). More workers than ``cpus`` (default: :func:`usable_cpus`) only
    share them; with whole shards per worker the batch order follows the worker count, so
    the count is kept (a run gives the same batches on any machine) and the note says so.
    """
    cpus = usable_cpus() if cpus is None else cpus
    if shards is None:
        if requested <= cpus:
            return requested, None
        return cpus, (
            f"--workers {requested} > {cpus} CPU{'s' if cpus != 1 else ''}: using {cpus} data "
            f"worker{'s' if cpus != 1 else ''} (the batches are the same with any count); "
            f"pass --workers {cpus} to silence this"
        )
    workers = max(0, min(requested, max(shards, 1)))
    plural = "s" if workers != 1 else ""
    if workers < requested:
        return workers, (
            f"--workers {requested} > {shards} shard{'s' if shards != 1 else ''}: using "
            f"{workers} data worker{plural} (a worker reads whole shards: xpt shard "
            f"--max-samples writes more); pass --workers {workers} to silence this"
        )
    if workers > cpus:
        return workers, (
            f"{workers} data worker{plural} share {cpus} CPU{'s' if cpus != 1 else ''} (kept: "
            f"the batch order follows --workers); pass --workers {cpus} for a faster run"
        )
    return workers, None


def warn_failure(failure: Failure) -> None:
    """The default ``on_error``: a one-line warning."""
    warnings.warn(f"skipped {failure.line()}", stacklevel=2)


def warn_note(message: str) -> None:
    """The default ``on_note``: a one-line warning."""
    warnings.warn(message, stacklevel=2)


class ShardLoader:
    """Batches from shards, one epoch at a time, counting the samples and shards skipped.

    ``steps_per_epoch`` is ``samples // (batch_size * world_size)`` with the sample count
    from ``config.samples_per_epoch`` or the shard set (manifest); epochs then have exactly
    that many full batches (going round the shards again if skipped samples leave it
    short). With no known count an epoch is one pass over the shards.

    Several ranks (``RANK`` / ``WORLD_SIZE``, as torchrun sets them): each pass's shard order
    (shuffled by seed, epoch and pass, the same on every rank) is split by rank, then by
    DataLoader worker, so a shard is read by one rank and one worker. When every rank's
    share holds the same number of objects (shard count a multiple of ``world_size``, equal
    shards) each object is read once per epoch, less the remainder of under one batch per
    rank. Otherwise every rank still makes ``steps_per_epoch`` steps: a rank whose share runs
    short goes on into its share of the next pass (a fresh shuffle), one with more leaves
    the rest, so that epoch reads some objects twice and others not at all (which ones
    changes with the epoch). With no known count a rank's epoch ends with its share; the
    training loop then ends the epoch on every rank when the first runs out.

    At most one worker per shard is started (a worker reads whole shards; the batches are
    the same as with ``config.workers``). ``on_note`` hears, once, when the shards hold
    clouds of fewer points than ``config.points`` (their points are repeated to fill them).

    ``config.shuffle == "full"``: the shards (local files) are indexed first (``index``), the
    epoch length is the indexed sample count (or ``config.samples_per_epoch``), and each
    pass is a fresh permutation of every sample, split equally between ranks
    (:func:`~xpt.train.sample_index.epoch_positions`): every object is read once per epoch,
    less a remainder of under one batch per rank, and the batches do not depend on the
    worker count. A shard that breaks off is reported once, when it is indexed.
    """

    def __init__(
        self,
        shards: ShardSet,
        config: LoaderConfig,
        on_error: Callable[[Failure], None] | None = warn_failure,
        on_note: Callable[[str], None] | None = warn_note,
    ):
        self.shards, self.config, self.on_error = shards, config, on_error
        self.on_note = on_note
        self.failures: list[Failure] = []
        self.fewest_points: int | None = None  # the smallest stored cloud read so far
        self.index: SampleIndex | None = None
        self.workers = min(config.workers, len(shards.urls))
        samples = config.samples_per_epoch or shards.samples
        if config.shuffle == "full":
            self.index = index_shards(shards, self._fail)
            self.workers = loader_workers(config.workers, None)[0]
            samples = config.samples_per_epoch or len(self.index)
        elif config.shuffle != "buffer":
            raise ValueError(f"shuffle must be 'buffer' or 'full', got {config.shuffle!r}")
        world_size = wds.utils.pytorch_worker_info()[1]
        self.steps_per_epoch: int | None = None
        if samples is not None:
            self.steps_per_epoch = samples // (config.batch_size * world_size)
            if self.steps_per_epoch == 0:
                nodes = f" on each of {world_size} nodes" if world_size > 1 else ""
                raise ValueError(
                    f"{shards.spec}: {samples} samples per epoch make no full batch of "
                    f"{config.batch_size}{nodes}"
                )

    @property
    def failure_count(self) -> int:
        return len(self.failures)

    def _fail(self, failure: Failure) -> None:
        self.failures.append(failure)
        if self.on_error is not None:
            self.on_error(failure)

    def epoch(self, epoch: int, skip: int = 0) -> Iterator[Batch]:
        """The batches of ``epoch`` (0-based), without the first ``skip`` (already used)."""
        c = self.config
        pending: list[Batch] = []
        produced = 0
        # Pass after pass over the shards (one pass without a known epoch length). A pass is
        # one DataLoader, so every worker finishes its shards before any object is read
        # again; a pass that yields nothing ends the epoch.
        for rep in itertools.count() if self.steps_per_epoch is not None else range(1):
            loader = DataLoader(
                EpochStream(self.shards.urls, c, epoch, rep, self.index),
                batch_size=None,
                num_workers=self.workers,
                generator=torch.Generator().manual_seed(derive_seed(c.seed, "loader", epoch)),
                prefetch_factor=2 if self.workers else None,
                pin_memory=c.pin_memory,
                worker_init_fn=start_worker,  # the main process decides when to stop
            )
            samples = 0
            with warnings.catch_warnings():
                # torch's "more workers than CPUs" warning: loader_workers' note says it once
                warnings.filterwarnings("ignore", "This DataLoader will create", UserWarning)
                chunks = iter(loader)
            for chunk in chunks:
                for failure in chunk["failures"]:
                    self._fail(failure)
                self._count_points(chunk["fewest_points"])
                if chunk["batch"] is not None:
                    pending.append(chunk["batch"])
                    samples += len(chunk["batch"])
                while sum(map(len, pending)) >= c.batch_size:
                    batch, pending = _take(pending, c.batch_size)
                    if c.pin_memory and not batch.points.is_pinned():  # stitched from chunks
                        batch = batch.pin_memory()
                    produced += 1
                    if produced > skip:
                        yield batch
                    if produced == self.steps_per_epoch:
                        return
            if samples == 0:
                return

    def _count_points(self, fewest: int | None) -> None:
        """Note (once) the first cloud stored with fewer points than ``config.points``."""
        if fewest is None:
            return
        n, before = self.config.points, self.fewest_points
        self.fewest_points = fewest if before is None else min(before, fewest)
        told = before is not None and before < n
        if told or fewest >= n or self.on_note is None:
            return
        self.on_note(
            f"{self.shards.spec}: clouds of {fewest} stored points, fewer than --points {n}: "
            f"their points are repeated to make {n} (use --points {fewest} or fewer, or "
            f"xpt shard --points {n})"
        )


def _take(chunks: list[Batch], n: int) -> tuple[Batch, list[Batch]]:
    """The first ``n`` objects of ``chunks`` as one batch, and the rest."""
    if len(chunks[0]) == n:
        return chunks[0], chunks[1:]

    def cat(name: str) -> torch.Tensor | None:
        parts = [getattr(c, name) for c in chunks]
        return None if any(p is None for p in parts) else torch.cat(parts)

    whole = Batch(
        cat("points"),  # type: ignore[arg-type]
        cat("images"),  # type: ignore[arg-type]
        [key for c in chunks for key in c.keys],
        [seed for c in chunks for seed in c.seeds],
        cat("pair"),
        cat("views"),
    )

    def part(s: slice) -> Batch:
        return Batch(
            whole.points[s],
            whole.images[s],
            whole.keys[s],
            whole.seeds[s],
            None if whole.pair is None else whole.pair[s],
            None if whole.views is None else whole.views[s],
        )

    rest = part(slice(n, None))
    return part(slice(0, n)), [rest] if len(rest) else []


def resolve_shuffle(mode: str, shards: ShardSet) -> str:
    """``--shuffle``: "auto" is "full" where every shard is a local, uncompressed file
    (what reading by position needs), else "buffer"; other modes are kept."""
    if mode != "auto":
        return mode
    try:
        readable = all(_is_local_file(url) and not is_compressed(url) for url in shards.urls)
    except OSError:
        readable = False
    return "full" if readable else "buffer"


def index_shards(shards: ShardSet, on_fault: Callable[[Failure], None]) -> SampleIndex:
    """The sample index of local ``shards`` (``--shuffle full``); a shard that breaks off is
    one failure named after the shard. Raises :class:`ShardSpecError` for shards that are
    not local files or are compressed."""
    remote = next((url for url in shards.urls if not _is_local_file(url)), None)
    if remote is not None:
        raise ShardSpecError(
            f"--shuffle full reads samples by position from local shard files; {remote} is "
            "not one (use --shuffle buffer)"
        )

    def fault(url: str, exn: Exception) -> None:
        on_fault(Failure(Path(url).name, url, STAGE, _shard_reason(exn)))

    try:
        return build_index(shards.urls, fault, _member_key)
    except IndexingError as exc:
        raise ShardSpecError(str(exc)) from None


def time_loader(
    shards: str | Path | Sequence[str | Path], config: LoaderConfig, epoch: int = 0
) -> dict[str, float]:
    """Time one epoch of :class:`ShardLoader` as the training loop receives it (with
    ``config.augment``: augmented inputs included). Returns ``samples``, ``seconds``,
    ``samples_per_s`` and ``first_batch_s`` of the epoch (``first_batch_s``: worker start-up,
    shuffle-buffer fill and first chunk), and ``setup_s``: building the loader before it
    (the sample index with ``shuffle="full"``, which a run builds once for all its epochs).
    The speed harness's entry point for the data path."""
    import time

    start = time.perf_counter()
    loader = ShardLoader(resolve_shards(shards), config, on_error=None, on_note=None)
    setup = time.perf_counter() - start
    return {"setup_s": setup, **time_epoch(loader, epoch)}


def time_epoch(loader: ShardLoader, epoch: int) -> dict[str, float]:
    """``samples``, ``seconds``, ``samples_per_s`` and ``first_batch_s`` of one epoch of
    ``loader`` (see :func:`time_loader`)."""
    import time

    start = time.perf_counter()
    first, samples = None, 0
    for batch in loader.epoch(epoch):
        if first is None:
            first = time.perf_counter() - start
        samples += len(batch)
    seconds = time.perf_counter() - start
    return {
        "samples": samples,
        "seconds": seconds,
        "samples_per_s": samples / seconds if seconds else 0.0,
        "first_batch_s": first or 0.0,
    }
