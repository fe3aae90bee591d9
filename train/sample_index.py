"""Where every sample of a set of local shards lies, for ``--shuffle full``.

The published code reshuffles its whole dataset every epoch. Streaming shards cannot do
that (a shuffle buffer mixes neighbours only), so for local shards the loader first reads
every shard's member headers once (:func:`build_index`: no data is read) and records each
sample's key and where the data of each of its members lies. An epoch is then a fresh
permutation of all samples (:func:`epoch_positions`), read sample by sample
(:func:`read_samples`) with one seek and read per member the sample needs (no header is
parsed again): every sample exactly once per epoch, in an order that changes with the epoch.

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
from xpt.train.tar_members import data_reader, local_members

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
    """Sample ``i`` is ``keys[i]`` in ``urls[shard[i]]``; its wanted members are rows
    ``first[i]:first[i + 1]`` of the member table: entry ``entries[entry[m]]``, ``size[m]``
    bytes of data from byte ``data[m]`` of that file. (Arrays, with the entry names stored
    once: a ShapeNet-sized set, 25 wanted members per sample, takes about 22 MB.)"""

    urls: tuple[str, ...]
    keys: tuple[str, ...]
    shard: np.ndarray  # int32 (S,)
    first: np.ndarray  # int64 (S + 1,)
    entries: tuple[str, ...]
    entry: np.ndarray  # int32 (M,)
    data: np.ndarray  # int64 (M,)
    size: np.ndarray  # int64 (M,)

    def __len__(self) -> int:
        return len(self.keys)

    def members(self, i: int) -> list[tuple[str, int, int]]:
        """(entry, data offset, size) of sample ``i``'s wanted members."""
        rows = range(self.first[i], self.first[i + 1])
        return [(self.entries[self.entry[m]], int(self.data[m]), int(self.size[m])) for m in rows]


def is_compressed(path: str) -> bool:
    """Whether the file at ``path`` starts like a gzip, bzip2 or xz stream."""
    with open(path, "rb") as file:
        return file.read(6).startswith(_COMPRESSED)


def build_index(
    urls: Sequence[str], on_fault: Callable[[str, Exception], None], member_key: MemberKey
) -> SampleIndex:
    """Index the samples of local tar files ``urls`` from their member headers.

    Consecutive regular members with one key (``base_plus_ext``) make a sample, as in
    webdataset; of its members, those ``member_key`` gives a key (the sample's: it splits
    names as ``base_plus_ext`` does) are recorded under the entry it names (the others are
    never read). ``on_fault(url, error)`` hears of a shard that breaks off: its samples up to
    the one the fault cut into are kept. Raises :class:`IndexingError` for a compressed
    shard.
    """
    keys: list[str] = []
    shard: list[int] = []
    first: list[int] = [0]
    entries: dict[str, int] = {}
    table: list[tuple[int, int, int]] = []  # (entry, data offset, size)
    for number, url in enumerate(urls):
        found: list[tuple[str, int]] = []  # (key, its first row in table)
        try:
            if is_compressed(url):
                raise IndexingError(
                    f"{Path(url).name}: a compressed tar cannot be read by position "
                    "(--shuffle full); use --shuffle buffer"
                )
            with open(url, "rb") as file:
                for name, regular, _, data, size, _ in local_members(file):
                    key, entry = member_key(name, regular)
                    wanted = key is not None
                    if not wanted and regular:  # not read, but it may start a sample
                        key = base_plus_ext(name)[0]
                    if key is None:
                        continue
                    if not found or found[-1][0] != key:
                        found.append((key, len(table)))
                    if wanted:
                        table.append((entries.setdefault(entry, len(entries)), data, size))
        except IndexingError:
            raise
        except Exception as exc:
            on_fault(url, exc)
            if found:  # the sample the fault cut into
                del table[found.pop()[1] :]
        for i, (key, _) in enumerate(found):
            keys.append(key)
            shard.append(number)
            first.append(found[i + 1][1] if i + 1 < len(found) else len(table))
    rows = np.asarray(table, dtype=np.int64).reshape(-1, 3)
    return SampleIndex(
        tuple(urls),
        tuple(keys),
        np.asarray(shard, dtype=np.int32),
        np.asarray(first, dtype=np.int64),
        tuple(entries),
        rows[:, 0].astype(np.int32),
        rows[:, 1].copy(),
        rows[:, 2].copy(),
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
    pick: Pick,
    on_error: Callable[[str, str, Exception], None],
) -> Iterator[dict[str, Any]]:
    """Samples ``{"__key__", "__url__", entry: bytes}`` at ``positions`` of ``index``: the
    entries ``pick(key, entries)`` keeps, each read with one seek to where the index says
    its data lies. ``on_error(key, url, error)`` hears of a sample that cannot be read (it
    is skipped)."""
    files: dict[str, Any] = {}
    try:
        for position in positions:
            key, url = index.keys[position], index.urls[index.shard[position]]
            try:
                if url not in files:
                    files[url] = open(url, "rb")  # noqa: SIM115 (closed below)
                file = files[url]
                members = {
                    entry: data_reader(file, offset, size)
                    for entry, offset, size in index.members(position)
                }
                sample = picked_sample(key, url, members, pick)
            except Exception as exc:
                on_error(key, url, exc)
                continue
            yield sample
    finally:
        for file in files.values():
            with contextlib.suppress(OSError):
                file.close()
