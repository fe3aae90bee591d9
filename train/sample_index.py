"""Where every sample of a set of local shards lies, for ``--shuffle full``.

The published code reshuffles its whole dataset every epoch. Streaming shards cannot do
that (a shuffle buffer mixes neighbours only), so for local shards the loader first reads
every shard's member headers once (:func:`build_index`: no data is read) and records each
sample's key and the byte range of its members. An epoch is then a fresh permutation of all
samples (:func:`epoch_positions`), read sample by sample with a seek each
(:func:`read_samples`): every sample exactly once per epoch, in an order that changes with
the epoch.

A shard that cannot be indexed to its end (truncated, unreadable) keeps the samples before
the fault, as the streaming reader does, and is reported once.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from webdataset.tariterators import base_plus_ext

from xpt.toolkit.seeding import derive_seed
from xpt.train.tar_members import local_members

# gzip, bzip2, xz: a compressed tar has no byte offsets to seek to
_COMPRESSED = (b"\x1f\x8b", b"BZh", b"\xfd7zXZ\x00")

MemberKey = Callable[[str, bool], tuple[str | None, str]]  # name, regular -> key, entry
Pick = Callable[[str, list[str]], set[str]]  # key, entries -> the entries worth reading


def picked_sample(
    key: str, url: str, members: dict[str, Callable[[], bytes]], pick: Pick
) -> dict[str, Any]:
    """``{"__key__", "__url__", entry: bytes}`` with the data of the entries ``pick`` keeps
    among ``members`` (entry -> a reader of its data); the others are never read."""
    sample: dict[str, Any] = {"__key__": key, "__url__": url}
    for entry in sorted(pick(key, sorted(members))):
        sample[entry] = members[entry]()
    return sample


class IndexingError(ValueError):
    """A shard that cannot be read by position (compressed); the message names it."""


@dataclass(frozen=True)
class SampleIndex:
    """Sample ``i`` is ``keys[i]`` in ``urls[shard[i]]``; its members' headers lie in the
    byte range ``[start[i], stop[i])`` of that file."""

    urls: tuple[str, ...]
    keys: tuple[str, ...]
    shard: np.ndarray  # int32 (S,)
    start: np.ndarray  # int64 (S,)
    stop: np.ndarray  # int64 (S,)

    def __len__(self) -> int:
        return len(self.keys)


def is_compressed(path: str) -> bool:
    """Whether the file at ``path`` starts like a gzip, bzip2 or xz stream."""
    with open(path, "rb") as file:
        return file.read(6).startswith(_COMPRESSED)


def build_index(urls: Sequence[str], on_fault: Callable[[str, Exception], None]) -> SampleIndex:
    """Index the samples of local tar files ``urls`` from their member headers.

    Consecutive regular members with one key (``base_plus_ext``) make a sample, as in
    webdataset. ``on_fault(url, error)`` hears of a shard that breaks off: its samples up
    to the one the fault cut into are kept. Raises :class:`IndexingError` for a compressed
    shard.
    """
    keys: list[str] = []
    shard: list[int] = []
    start: list[int] = []
    stop: list[int] = []
    for number, url in enumerate(urls):
        found: list[tuple[str, int]] = []  # (key, offset of its first member header)
        end = 0  # where the last sample's members end
        try:
            if is_compressed(url):
                raise IndexingError(
                    f"{Path(url).name}: a compressed tar cannot be read by position "
                    "(--shuffle full); use --shuffle buffer"
                )
            with open(url, "rb") as file:
                end = file.seek(0, 2)
                for name, regular, at, _ in local_members(file):
                    key = base_plus_ext(name)[0] if regular else None
                    if key is not None and (not found or found[-1][0] != key):
                        found.append((key, at))
        except IndexingError:
            raise
        except Exception as exc:
            on_fault(url, exc)
            if found:  # the sample the fault cut into
                end = found.pop()[1]
        for i, (key, at) in enumerate(found):
            keys.append(key)
            shard.append(number)
            start.append(at)
            stop.append(found[i + 1][1] if i + 1 < len(found) else end)
    return SampleIndex(
        tuple(urls),
        tuple(keys),
        np.asarray(shard, dtype=np.int32),
        np.asarray(start, dtype=np.int64),
        np.asarray(stop, dtype=np.int64),
    )


def epoch_positions(
    count: int,
    seed: int,
    epoch: int,
    rep: int,
    *,
    rank: int = 0,
    world_size: int = 1,
    worker: int = 0,
    workers: int = 1,
    chunk: int = 1,
) -> list[np.ndarray]:
    """This worker's chunks of one pass over ``count`` samples, in a fresh permutation.

    The permutation depends on (seed, epoch, pass) only. Rank ``r`` takes every
    ``world_size``-th position from ``r`` (equal shares of ``count // world_size``; the
    remainder waits for another epoch), cut into chunks of ``chunk``; worker ``w`` of
    ``workers`` takes chunks ``w, w + workers, ...``. A DataLoader collects its workers'
    chunks round-robin, so the main process receives the rank's share in permutation order.
    """
    rng = np.random.default_rng(derive_seed(seed, "permutation", epoch, rep))
    share = rng.permutation(count)[rank::world_size][: count // world_size]
    chunks = [share[i : i + chunk] for i in range(0, len(share), chunk)]
    return chunks[worker::workers]


def read_samples(
    index: SampleIndex,
    positions: Sequence[int],
    member_key: MemberKey,
    pick: Pick,
    on_error: Callable[[str, str, Exception], None],
) -> Iterator[dict[str, Any]]:
    """Samples ``{"__key__", "__url__", entry: bytes}`` at ``positions`` of ``index``: the
    entries ``pick(key, entries)`` keeps, read by seeking to each sample's members.
    ``on_error(key, url, error)`` hears of a sample that cannot be read (it is skipped)."""
    files: dict[str, Any] = {}
    try:
        for position in positions:
            key, url = index.keys[position], index.urls[index.shard[position]]
            try:
                if url not in files:
                    files[url] = open(url, "rb")  # noqa: SIM115 (closed below)
                members: dict[str, Callable[[], bytes]] = {}
                for name, regular, at, read in local_members(
                    files[url], int(index.start[position])
                ):
                    if at >= index.stop[position]:
                        break
                    member, entry = member_key(name, regular)
                    if member == key:
                        members[entry] = read
                sample = picked_sample(key, url, members, pick)
            except Exception as exc:
                on_error(key, url, exc)
                continue
            yield sample
    finally:
        for file in files.values():
            with contextlib.suppress(OSError):
                file.close()
