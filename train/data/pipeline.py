"""The WebDataset stages, run in each DataLoader worker over its shards::

    shard urls (shuffled per epoch) -> split by node -> split by worker -> tar samples
    -> choose one view per object -> shuffle buffer -> decode + resample -> chunks
    -> (with ``LoaderConfig.augment``) augment each chunk

(``--shuffle full`` reads the worker's chunks of a permutation of the sample index
instead.) Only ``points.npy`` and ``view_NN.{png,jpg,webp}`` members are ever read from a
shard; from a local shard only the points and the chosen view (drawn from the member names
before any view is read), and only the chosen view is decoded.

Determinism: the shard order depends on (seed, epoch, pass), the shuffle buffer on
(seed, epoch, pass, node, worker), and the view choice and point resampling of an object
on (seed, epoch, pass, key) only, as are an object's augmentations (its own generator,
:func:`~xpt.train.data.batch.augment_seed`). For a fixed worker count an epoch is
therefore the same sequence of batches every time it is read, which is what lets a
resumed run skip the batches it already trained on and continue exactly.
"""

from __future__ import annotations

import contextlib
import random
import tarfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import webdataset as wds
from torch.utils.data import IterableDataset

from xpt.toolkit.seeding import derive_seed
from xpt.toolkit.shards.schema import POINTS, VIEW_ENTRY
from xpt.train.augment import ImageAugmentConfig
from xpt.train.data.batch import Batch, augment_batch, augment_seed, collate
from xpt.train.data.decode import DecodeError, decode_points, decode_view, resample_points
from xpt.train.data.failures import FailureRecorder, SampleError, _shard_reason
from xpt.train.data.shard_sets import _is_local_file
from xpt.train.sample_index import (
    Pick,
    SampleIndex,
    epoch_positions,
    picked_sample,
    read_samples,
)
from xpt.train.tar_members import local_members

if TYPE_CHECKING:  # the loader module builds the pipeline
    from xpt.train.data.loader import LoaderConfig


def _shard_urls(urls: Sequence[str], seed: int, epoch: int, rep: int) -> list[dict]:
    """The shards ``{"url"}`` of one pass, in an order drawn from (seed, epoch, pass)."""
    order = list(urls)
    random.Random(derive_seed(seed, "shards", epoch, rep)).shuffle(order)
    return [{"url": url} for url in order]


def _shard_samples(
    sources: Iterable[dict], handler: FailureRecorder, pick: Pick | None = None
) -> Iterator[dict]:
    """Shards ``{"url"}`` -> samples ``{"__key__", "__url__", entry: bytes}`` of the wanted
    members (consecutive members with the same key make one sample, as in webdataset).

    ``pick(key, entries)`` names the entries of a sample worth reading. A local shard (a
    file, so seekable) is read by its member headers first: once a sample's headers are
    known only the picked members are read, the others skipped by seeking (a sample's 24
    views cost one read). Streams (``pipe:``, remote URLs) read every wanted member.

    A shard that cannot be opened or read to its end (missing, truncated, not a tar, a
    ``pipe:`` command that fails) is one failure named after the shard; the samples read
    whole before the fault are kept and the one it cut off is dropped.
    """
    for source in sources:
        url = source["url"]
        read = _seekable_samples if pick is not None and _is_local_file(url) else _streamed_samples
        try:
            yield from read(url, pick)
        except GeneratorExit:
            raise
        except Exception as exn:
            handler(SampleError(Path(url).name, url, _shard_reason(exn)))


def _wanted(member: str) -> bool:
    """Tar members a training sample needs: the points and the views. Everything else
    (json, normals, any .pyd / .pickle) is never even read from the stream."""
    entry = member.rsplit("/", 1)[-1].partition(".")[2].lower()
    return entry == POINTS or VIEW_ENTRY.match(entry) is not None


def _member_key(name: str, regular: bool) -> tuple[str | None, str]:
    """(key, entry) of a wanted regular member, (None, "") of any other."""
    key, entry = wds.tariterators.base_plus_ext(name)
    if not regular or key is None or not _wanted(name):
        return None, ""
    return key, entry.lower()


def _seekable_samples(url: str, pick: Pick) -> Iterator[dict]:
    """A local shard, member headers first: only the members ``pick`` keeps are read."""
    with open(url, "rb") as file:
        key: str | None = None
        members: dict[str, Callable[[], bytes]] = {}
        # (A sample is complete when the next one's header has been read: a shard cut off
        # inside a sample's members raises before that sample is yielded.)
        for name, regular, _, _, _, read in local_members(file):
            member_key, entry = _member_key(name, regular)
            if member_key is None:
                continue
            if key is not None and member_key != key:
                yield picked_sample(key, url, members, pick)
                members = {}
            key = member_key
            members[entry] = read
        if key is not None and members:
            yield picked_sample(key, url, members, pick)


def _streamed_samples(url: str, pick: Pick | None = None) -> Iterator[dict]:
    """A shard read as a stream, every wanted member in full (``pick`` unused)."""
    stream = wds.gopen(url)
    sample: dict | None = None
    try:
        tar = tarfile.open(fileobj=stream, mode="r|*")
        for member in tar:
            key, entry = _member_key(member.name, member.isreg())
            if key is None:
                continue
            if sample is not None and sample["__key__"] != key:
                yield sample
                sample = None
            if sample is None:
                sample = {"__key__": key, "__url__": url}
            sample[entry] = tar.extractfile(member).read()  # type: ignore[union-attr]
            tar.members = []  # a stream keeps no index: memory stays flat on long shards
    except GeneratorExit:  # the consumer stopped early: a closed pipe is no failure
        with contextlib.suppress(Exception):
            stream.close()
        raise
    except Exception:
        with contextlib.suppress(Exception):
            stream.close()
        raise
    stream.close()  # a pipe: command's exit status is checked here
    if sample is not None:
        yield sample


def _view_for(views: Sequence[str], seed: int, epoch: int, rep: int, key: str) -> str:
    """The view of ``key`` shown in this epoch and pass: one of the sorted ``views``."""
    rng = np.random.default_rng(derive_seed(seed, "view", epoch, rep, key))
    return sorted(views)[int(rng.integers(len(views)))]


def _view_picker(seed: int, epoch: int, rep: int) -> Pick:
    """``pick`` for :func:`_shard_samples`: the points and the view :func:`_choose_view`
    will choose (decided from the member names, before any view is read)."""

    def pick(key: str, entries: list[str]) -> set[str]:
        views = [name for name in entries if VIEW_ENTRY.match(name)]
        chosen = {_view_for(views, seed, epoch, rep, key)} if views else set()
        return chosen | ({POINTS} & set(entries))

    return pick


def _choose_view(
    samples: Iterable[dict], seed: int, epoch: int, rep: int, handler: FailureRecorder
) -> Iterator[dict]:
    """Keep the points and one view drawn at random (per object and epoch), undecoded."""
    for sample in samples:
        key, url = sample.get("__key__", "?"), sample.get("__url__")
        try:
            views = sorted(name for name in sample if VIEW_ENTRY.match(name))
            if POINTS not in sample:
                raise SampleError(key, url, f"no {POINTS} entry")
            if not views:
                raise SampleError(key, url, "no view_NN image entry")
            # (one view left: the reader's pick, which is the same draw)
            view = views[0] if len(views) == 1 else _view_for(views, seed, epoch, rep, key)
            yield {"__key__": key, "__url__": url, POINTS: sample[POINTS], view: sample[view]}
        except Exception as exn:
            handler(exn)


class FewestPoints:
    """The fewest points stored in one cloud among the samples decoded since the last drain."""

    def __init__(self) -> None:
        self.value: int | None = None

    def see(self, count: int) -> None:
        self.value = count if self.value is None else min(self.value, count)

    def drain(self) -> int | None:
        value, self.value = self.value, None
        return value


def _decode(
    samples: Iterable[dict],
    config: LoaderConfig,
    epoch: int,
    rep: int,
    handler: FailureRecorder,
    fewest: FewestPoints | None = None,
) -> Iterator[dict]:
    """Decode the points (resampled to ``config.points``) and the chosen view (resized)."""
    size = config.image_size
    for sample in samples:
        key, url = sample["__key__"], sample["__url__"]
        try:
            points = decode_points(sample[POINTS])
            if fewest is not None:
                fewest.see(len(points))
            rng = np.random.default_rng(derive_seed(config.seed, "points", epoch, rep, key))
            points = resample_points(points, config.points, rng)
            view = next(name for name in sample if VIEW_ENTRY.match(name))
            image = decode_view(view, sample[view], size)
            yield {
                "key": key,
                "points": torch.from_numpy(np.ascontiguousarray(points)),
                "image": torch.from_numpy(np.ascontiguousarray(image)),
            }
        except Exception as exn:
            if isinstance(exn, SampleError):
                reason = exn.reason
            elif isinstance(exn, DecodeError):
                reason = str(exn)
            else:
                reason = f"{type(exn).__name__}: {exn}"
            handler(SampleError(key, url, reason))


def _seeded(batches: Iterable[Batch], seed: int, epoch: int, rep: int) -> Iterator[Batch]:
    """``batches`` with each object's :func:`augment_seed` for this epoch and pass."""
    for batch in batches:
        batch.seeds = [augment_seed(seed, epoch, rep, key) for key in batch.keys]
        yield batch


class EpochStream(IterableDataset):
    """One pass (``rep``) over the shards of an epoch, as chunks
    ``{"batch": Batch | None, "failures": [...], "fewest_points": int | None}`` (collated
    in the worker: two tensors per chunk cross the process boundary; ``fewest_points``: the
    smallest stored cloud decoded for the chunk). Runs in each DataLoader worker, over its
    shards.
    """

    def __init__(
        self,
        urls: Sequence[str],
        config: LoaderConfig,
        epoch: int,
        rep: int = 0,
        index: SampleIndex | None = None,
    ):
        super().__init__()
        self.urls, self.config, self.epoch, self.rep = tuple(urls), config, epoch, rep
        self.index = index

    def pipeline(
        self, rep: int, handler: FailureRecorder, fewest: FewestPoints | None = None
    ) -> wds.DataPipeline:
        """``--shuffle buffer``: the stages over this worker's shards of the pass."""
        c = self.config
        rank, _, worker, _ = wds.utils.pytorch_worker_info()
        stages: list[Any] = [
            _shard_urls(self.urls, c.seed, self.epoch, rep),
            wds.split_by_node,
            wds.split_by_worker,
            lambda src: _shard_samples(src, handler, _view_picker(c.seed, self.epoch, rep)),
            lambda src: _choose_view(src, c.seed, self.epoch, rep, handler),
        ]
        if c.shuffle_buffer > 1:
            rng = random.Random(derive_seed(c.seed, "shuffle", self.epoch, rep, rank, worker))
            initial = min(c.shuffle_buffer, 100)
            stages.append(wds.shuffle(c.shuffle_buffer, initial=initial, rng=rng))
        stages += [
            lambda src: _decode(src, c, self.epoch, rep, handler, fewest),
            wds.batched(c.batch_size, collation_fn=collate, partial=True),
            lambda src: self._finished(src, rep),
        ]
        return wds.DataPipeline(stages)

    def indexed(
        self, rep: int, handler: FailureRecorder, fewest: FewestPoints | None = None
    ) -> Iterator[Batch]:
        """``--shuffle full``: this worker's chunks of the pass's permutation of the index,
        one batch per chunk (smaller when a sample fails)."""
        c, index = self.config, self.index
        assert index is not None
        rank, world_size, worker, workers = wds.utils.pytorch_worker_info()
        chunks = epoch_positions(
            len(index),
            c.seed,
            self.epoch,
            rep,
            rank=rank,
            world_size=world_size,
            worker=worker,
            workers=workers,
            chunk=c.batch_size,
        )
        pick = _view_picker(c.seed, self.epoch, rep)

        def failed(key: str, url: str, exn: Exception) -> None:
            handler(SampleError(key, url, _shard_reason(exn)))

        def batches() -> Iterator[Batch]:
            for chunk in chunks:
                samples = read_samples(index, chunk, pick, failed)
                chosen = _choose_view(samples, c.seed, self.epoch, rep, handler)
                decoded = list(_decode(chosen, c, self.epoch, rep, handler, fewest))
                if decoded:
                    yield collate(decoded)

        return self._finished(batches(), rep)

    def _finished(self, batches: Iterable[Batch], rep: int) -> Iterator[Batch]:
        """Batches with their augmentation seeds, augmented when the config says so."""
        c = self.config
        image_config = ImageAugmentConfig(size=c.image_size) if c.augment_images else None
        for batch in _seeded(batches, c.seed, self.epoch, rep):
            yield augment_batch(batch, image_config) if c.augment else batch

    def __iter__(self) -> Iterator[dict]:
        handler, fewest = FailureRecorder(), FewestPoints()
        read = self.pipeline if self.index is None else self.indexed
        for batch in read(self.rep, handler, fewest):
            yield {"batch": batch, "failures": handler.drain(), "fewest_points": fewest.drain()}
        yield {"batch": None, "failures": handler.drain(), "fewest_points": fewest.drain()}
