"""Streaming training data: WebDataset shards -> batches of (point cloud, one view) per object.

The pipeline (explicit ``wds.DataPipeline`` stages, run inside DataLoader workers)::

    shard urls (shuffled per epoch) -> split by node -> split by worker -> tar samples
    -> choose one view per object -> shuffle buffer -> decode + resample -> chunks
    -> (with ``LoaderConfig.augment``) augment each chunk

and the main process re-batches the workers' chunks into full batches of ``batch_size``.
Entry names and decoders come from the shard schema (``xpt.toolkit.shards.schema``). Only
``points.npy`` and ``view_NN.{png,jpg,webp}`` members are ever read from a shard; from a
local shard only the points and the chosen view (drawn from the member names before any
view is read), and only the chosen view is decoded; nothing is unpickled.

Determinism: the shard order depends on (seed, epoch, pass), the shuffle buffer on
(seed, epoch, pass, node, worker), and the view choice and point resampling of an object
on (seed, epoch, pass, key) only, as are an object's augmentations (its own generator,
:func:`augment_seed`). For a fixed worker count an epoch is therefore the same
sequence of batches every time it is read, which is what lets a resumed run skip the
batches it already trained on and continue exactly.

A corrupt shard or sample is skipped: the stage that meets it records it, once, as a
:class:`~xpt.toolkit.failures.Failure` (a shard that breaks off under the shard's file
name), the worker ships the records with its next chunk, and the loader counts them, keeps
them (``ShardLoader.failures``) and reports each one through ``on_error`` (a warning by
default). Clouds stored with fewer points than asked for are filled with repeated points;
the loader says so once through ``on_note``. Workers ignore SIGINT and SIGTERM: the
training loop stops them.
"""

from __future__ import annotations

import contextlib
import functools
import io
import itertools
import math
import random
import re
import tarfile
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import webdataset as wds
from PIL import Image, UnidentifiedImageError
from torch.utils.data import DataLoader, IterableDataset

from xpt.toolkit.cpus import usable_cpus
from xpt.toolkit.failures import Failure
from xpt.toolkit.locks import start_worker
from xpt.toolkit.seeding import derive_seed
from xpt.toolkit.shards.manifest import MANIFEST, ManifestError, find_shard_sets, read_manifest
from xpt.toolkit.shards.remote import (
    is_remote,
    manifest_url,
    opener_url,
    read_remote_manifest,
    sibling_url,
)
from xpt.toolkit.shards.schema import (
    DECODERS,
    POINTS,
    VIEW_ENTRY,
    SchemaError,
    decode_entry,
    decode_image,
    entry_extension,
    open_image,
)
from xpt.train.augment import ImageAugmentConfig, augment_pair
from xpt.train.sample_index import (
    IndexingError,
    Pick,
    SampleIndex,
    build_index,
    epoch_positions,
    is_compressed,
    picked_sample,
    read_samples,
)
from xpt.train.tar_members import local_members

STAGE = "pretrain-data"


class ShardSpecError(ValueError):
    """The SHARDS argument names nothing that can be read."""


# ---------------------------------------------------------------------------- decoding


class DecodeError(ValueError):
    """An entry that cannot be decoded; the message names the entry and the reason."""


@contextlib.contextmanager
def _decode_errors(entry: str) -> Iterator[None]:
    """Turn any failure inside the block into a one-line DecodeError naming ``entry``."""
    try:
        yield
    except UnidentifiedImageError:
        raise DecodeError(f"{entry}: not a readable image") from None
    except SchemaError as exc:
        raise DecodeError(str(exc)) from None
    except Exception as exc:
        raise DecodeError(f"{entry}: {type(exc).__name__}: {exc}") from None


def _decoded(entry: str, data: bytes) -> Any:
    """``schema.decode_entry`` (the shard schema's decoder dict, keyed by extension; it
    refuses pickles) with every failure turned into a one-line DecodeError."""
    with _decode_errors(entry):
        return decode_entry(entry, data)


_NPY_MAGIC = b"\x93NUMPY"


@functools.lru_cache(maxsize=64)
def _npy_header(version: bytes, header: bytes) -> tuple[tuple[int, ...], bool, np.dtype]:
    """(shape, fortran_order, dtype) of a .npy header (``header``: from the length field
    after the version bytes), parsed and checked by numpy; cached, as the clouds of a
    shard set share a few headers."""
    read = np.lib.format.read_array_header_1_0
    if version == b"\x02\x00":
        read = np.lib.format.read_array_header_2_0
    return read(io.BytesIO(header))


def _npy_floats(data: bytes) -> np.ndarray | None:
    """A float array stored as ``.npy`` (format 1.0 or 2.0), as a read-only view of
    ``data``; None for anything else (other dtypes, other versions, damaged bytes), which
    ``np.load`` then decodes or refuses with its own message. Nothing is unpickled."""
    if data[:6] != _NPY_MAGIC:
        return None
    version = bytes(data[6:8])
    if version not in (b"\x01\x00", b"\x02\x00"):
        return None
    start = 10 if version == b"\x01\x00" else 12
    end = start + int.from_bytes(data[8:start], "little")
    if len(data) < end:
        return None
    try:
        shape, fortran_order, dtype = _npy_header(version, bytes(data[8:end]))
    except (ValueError, TypeError):
        return None
    count = math.prod(shape)
    if dtype.kind != "f" or min(shape, default=0) < 0 or len(data) - end < count * dtype.itemsize:
        return None
    array = np.frombuffer(data, dtype, count, end)
    return array.reshape(shape[::-1]).T if fortran_order else array.reshape(shape)


def decode_points(data: bytes) -> np.ndarray:
    """``points.npy`` bytes (float32 or float16, never unpickled) -> float32 (N, 3), finite,
    a fresh writable array."""
    points = _npy_floats(data)
    if points is None:
        points = _decoded(POINTS, data)
    if points.ndim != 2 or points.shape[1] != 3 or len(points) == 0 or points.dtype.kind != "f":
        raise DecodeError(
            f"{POINTS}: points must be float (N, 3), got {points.dtype} {points.shape}"
        )
    if not np.isfinite(points).all():
        raise DecodeError(f"{POINTS}: non-finite point coordinates")
    points = np.ascontiguousarray(points, dtype=np.float32)
    return points if points.flags.writeable else points.copy()


def _resized(image: Image.Image, size: int | None) -> Image.Image:
    """``image`` resized to (size, size) with PIL BILINEAR; unchanged when ``size`` is None
    or already the image's size."""
    if size is None or image.size == (size, size):
        return image
    return image.resize((size, size), Image.Resampling.BILINEAR)


def decode_view(entry: str, data: bytes, size: int | None = None) -> np.ndarray:
    """A ``view_NN.{png,jpg,webp}`` entry -> uint8 (H, W, 3) RGB, resized to (size, size)
    with PIL BILINEAR when ``size`` is given; a fresh writable array.

    An alpha channel is dropped, as the release's ``Image.convert("RGB")`` does. RGB and
    RGBA images stay PIL images until the one copy into NumPy; other modes are read as
    ``schema.decode_image`` returns them (so grey and palette images are refused).
    """
    if DECODERS.get(entry_extension(entry)) is decode_image:
        with _decode_errors(entry):
            image = open_image(data)
        if image.mode == "RGBA":
            image = image.convert("RGB")
        if image.mode == "RGB":
            return np.array(_resized(image, size))
        with _decode_errors(entry):
            array = np.asarray(image)
    else:
        array = _decoded(entry, data)
    if array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] not in (3, 4):
        raise DecodeError(f"{entry}: not an RGB uint8 image ({array.dtype} {array.shape})")
    rgb = np.array(array[..., :3])  # a writable copy, without any alpha
    return rgb if size is None else np.array(_resized(Image.fromarray(rgb), size))


def _wanted(member: str) -> bool:
    """Tar members a training sample needs: the points and the views. Everything else
    (json, normals, any .pyd / .pickle) is never even read from the stream."""
    entry = member.rsplit("/", 1)[-1].partition(".")[2].lower()
    return entry == POINTS or VIEW_ENTRY.match(entry) is not None


def resample_points(points: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """points : (M, 3) float -> (n, 3): a random subset when M > n, all M plus random
    repeats when M < n, unchanged when M == n."""
    m = len(points)
    if m == n:
        return points
    if m > n:
        return points[rng.choice(m, n, replace=False)]
    return np.concatenate([points, points[rng.integers(0, m, n - m)]])


# ---------------------------------------------------------------------------- shard lists


@dataclass(frozen=True)
class ShardSet:
    """Resolved shard URLs; ``samples`` is the epoch length when known (manifest or scan);
    ``missing``: the local shards left out because they are not there (``skip_missing``)."""

    urls: tuple[str, ...]
    samples: int | None
    spec: str
    missing: tuple[str, ...] = ()


def resolve_shards(
    spec: str | Path | Sequence[str | Path],
    split: str | Sequence[str] = "train",
    skip_missing: bool = False,
) -> ShardSet:
    """Shard URLs from SHARDS.

    ``spec`` is a shard folder or its ``manifest.json`` (the shards of ``split``, or of each
    of several splits in that order, with the manifest's sample count; splits the set does
    not have are left out, and none of them is an error; without a manifest, the folder's
    ``<split>-*.tar``), a local
    path or brace pattern (``train-{000000..000099}.tar``; counts from a manifest beside
    the shards, or a scan of the tar headers), or a list of these. Remote sets
    (:mod:`xpt.toolkit.shards.remote`): a URL of a set's folder or ``manifest.json``
    (``https://host/set/``, ``s3://bucket/set/``, ``pipe:curl -s URL/manifest.json``) is read
    like a folder, its manifest through the same opener as the shards and the shard URLs
    made beside it; a URL of shards (``.tar``, brace patterns, ``pipe:`` commands naming
    no manifest) is read as given (count unknown).

    A local shard that a manifest lists but that is not there is an error naming it; with
    ``skip_missing`` it is left out (``ShardSet.missing``) with its samples. (A file a pattern
    names is recorded as a failure when the loader cannot open it, as a damaged one is.)
    Local files that hold no sample at all are named with the reason (empty, not a tar).
    Raises :class:`ShardSpecError`.
    """
    splits = (split,) if isinstance(split, str) else tuple(split)
    if not isinstance(spec, str | Path):
        parts = [resolve_shards(s, splits, skip_missing) for s in spec]
        if not parts:
            raise ShardSpecError("no shards given")
        counts = [p.samples for p in parts]
        total = None if None in counts else sum(counts)  # type: ignore[arg-type]
        urls = tuple(url for p in parts for url in p.urls)
        missing = tuple(url for p in parts for url in p.missing)
        return ShardSet(urls, total, " ".join(p.spec for p in parts), missing)
    text = str(spec)
    if is_remote(text):
        return _from_remote(text, splits)
    path = Path(text)
    if path.is_dir() or path.name == MANIFEST:
        return _from_folder(path if path.is_dir() else path.parent, splits, text, skip_missing)
    urls = [re.sub(r"^file://?", "", u) for u in wds.shardlists.expand_urls(text)]
    if not any(Path(u).is_file() for u in urls):
        raise ShardSpecError(f"{text}: no such shard file or folder")
    samples = _count_local(urls)  # a missing file of a pattern is recorded when read
    if samples == 0:
        for url in urls:
            if reason := _not_a_shard(Path(url)):
                raise ShardSpecError(f"{url}: {reason}")
    return ShardSet(tuple(urls), samples, text)


def _named(splits: Sequence[str]) -> str:
    return " or ".join(repr(s) for s in splits)


def _from_remote(spec: str, splits: Sequence[str]) -> ShardSet:
    """A remote set (its manifest read through the opener, shard URLs beside it), or
    remote shard URLs as given (brace patterns expanded; sample count unknown)."""
    manifest = manifest_url(spec)
    if manifest is None:
        urls = [opener_url(url) for url in wds.shardlists.expand_urls(spec)]
        return ShardSet(tuple(urls), None, spec)
    try:
        entries = read_remote_manifest(manifest)["splits"]
    except ManifestError as exc:
        raise ShardSpecError(str(exc)) from None
    urls, samples = [], 0
    for split in splits:
        entry = entries.get(split, {})
        urls += [
            opener_url(sibling_url(manifest, info["name"])) for info in entry.get("shards", [])
        ]
        samples += int(entry.get("samples", 0))
    if not urls:
        raise ShardSpecError(f"{manifest}: the manifest lists no {_named(splits)} shards")
    return ShardSet(tuple(urls), samples, spec)


def _from_folder(folder: Path, splits: Sequence[str], spec: str, skip_missing: bool) -> ShardSet:
    """A shard set folder (or one holding ``part-*`` sets): the splits' shards in manifest
    order, split by split; without any manifest, the folder's ``<split>-*.tar`` files."""
    sets = find_shard_sets(folder)
    if not sets:
        urls = [str(p) for split in splits for p in sorted(folder.glob(f"{split}-*.tar"))]
        if not urls:
            tars = " or ".join(f"{split}-*.tar" for split in splits)
            raise ShardSpecError(f"{folder}: no {MANIFEST} and no {tars} shards")
        return ShardSet(tuple(urls), _count_local(urls), spec)
    urls = []
    samples = 0
    listed: dict[str, int] = {}  # url -> the samples the manifest gives it
    for split in splits:
        for shard_set in sets:
            try:
                entry = read_manifest(shard_set)["splits"].get(split, {})
            except ManifestError as exc:
                raise ShardSpecError(str(exc)) from None
            for info in entry.get("shards", []):
                urls.append(str(shard_set / info["name"]))
                listed[urls[-1]] = int(info.get("samples", 0))
            samples += int(entry.get("samples", 0))
    if not urls:
        raise ShardSpecError(f"{folder}: the manifest lists no {_named(splits)} shards")
    urls, missing = _present(urls, "the manifest lists it", skip_missing)
    if not urls:
        raise ShardSpecError(f"{folder}: every shard the manifest lists is missing")
    samples -= sum(listed[url] for url in missing)
    return ShardSet(tuple(urls), samples, spec, tuple(missing))


def _present(urls: list[str], why: str, skip_missing: bool) -> tuple[list[str], list[str]]:
    """(the shards of ``urls`` that are there, the local ones that are not) where
    ``skip_missing``; otherwise a :class:`ShardSpecError` naming the first missing one."""
    missing = [url for url in urls if not is_remote(url) and not Path(url).exists()]
    if missing and not skip_missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise ShardSpecError(
            f"{missing[0]}: missing ({why}){more}; restore it, or pass --skip-missing-shards "
            "to train without it"
        )
    gone = set(missing)
    return [url for url in urls if url not in gone], missing


def _not_a_shard(path: Path) -> str | None:
    """Why the local file ``path`` cannot be a shard at all (empty, not a tar); None if it
    may be one."""
    try:
        if path.stat().st_size == 0:
            return "an empty file (0 bytes), not a shard"
        if not tarfile.is_tarfile(path):
            return "not a tar file, so not a shard"
    except OSError as exc:
        return exc.strerror or str(exc)
    return None


def _count_local(paths: Sequence[str]) -> int:
    """Samples in local shards: from a manifest beside them, else by reading tar headers."""
    total = 0
    manifests: dict[Path, dict[str, int]] = {}
    for url in paths:
        path = Path(url)
        if path.parent not in manifests:
            manifests[path.parent] = _manifest_counts(path.parent)
        count = manifests[path.parent].get(path.name)
        total += _scan_count(path) if count is None else count
    return total


def _manifest_counts(folder: Path) -> dict[str, int]:
    """Shard name -> samples, from ``folder``'s manifest (empty without a valid one)."""
    if not (folder / MANIFEST).exists():
        return {}
    try:
        manifest = read_manifest(folder)
    except ManifestError:
        return {}
    return {
        info["name"]: int(info["samples"])
        for entry in manifest["splits"].values()
        for info in entry.get("shards", [])
    }


def _scan_count(path: Path) -> int:
    """Distinct sample keys among the readable members of one tar (0 when unreadable)."""
    keys = set()
    try:
        with tarfile.open(path) as tar:
            for member in tar:
                key, _ = wds.tariterators.base_plus_ext(member.name)
                if member.isreg() and key is not None:
                    keys.add(key)
    except (OSError, tarfile.TarError):
        pass
    return len(keys)


# ---------------------------------------------------------------------------- failures


class SampleError(ValueError):
    """An object, or a whole shard, that cannot be used: ``key`` is the object's key, or the
    shard's file name when the whole shard (or the rest of it) is lost."""

    def __init__(self, key: str, url: str | None, reason: str):
        super().__init__(f"{url}: {key}: {reason}")
        self.key, self.url, self.reason = key, url, reason


class FailureRecorder:
    """The pipeline stages' error handler: records each problem as one Failure."""

    def __init__(self) -> None:
        self.pending: list[Failure] = []

    def __call__(self, exn: SampleError) -> None:
        self.pending.append(Failure(exn.key, exn.url, STAGE, exn.reason))

    def drain(self) -> list[Failure]:
        taken, self.pending = self.pending, []
        return taken


def _shard_reason(exn: Exception) -> str:
    """Why a shard could not be read to its end, in one line."""
    if isinstance(exn, tarfile.ReadError) and "unexpected end of data" in str(exn):
        return "truncated: the tar data ends inside a member (unexpected end of data)"
    if isinstance(exn, tarfile.ReadError) and "could not be opened" in str(exn):
        # (tarfile lists every compression it tried, one line each)
        return "an empty file (0 bytes)" if "empty file" in str(exn) else "not a tar file"
    if isinstance(exn, OSError) and exn.strerror:
        return f"{type(exn).__name__}: {exn.strerror}"
    return f"{type(exn).__name__}: {exn}" if str(exn) else type(exn).__name__


# ---------------------------------------------------------------------------- stages


@dataclass(frozen=True)
class LoaderConfig:
    """What the pipeline produces: batches of ``batch_size`` objects with ``points``
    points each and one view resized to ``image_size`` x ``image_size``.

    ``augment``: each chunk is augmented where it is made (in the DataLoader workers, or in
    the main process without workers) by :func:`augment_batch`, with the paper's point and
    image augmentations; ``augment_images`` False leaves the images out (no ``views``).
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


def _shard_urls(urls: Sequence[str], seed: int, epoch: int, rep: int) -> list[dict]:
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


def _is_local_file(url: str) -> bool:
    return not is_remote(url) and not url.startswith("pipe:") and Path(url).is_file()


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


# ---------------------------------------------------------------------------- batches


@dataclass
class Batch:
    """``points`` float32 (B, N, 3), ``images`` uint8 (B, H, W, 3), ``keys`` (B,).

    ``seeds`` (B,): each object's augmentation seed for this epoch and pass (see
    :func:`augment_seed`); ``pair`` float32 (B, 2, N, 3) and ``views`` float32
    (B, 3, S, S): the augmented inputs, when the loader augments (else None).
    """

    points: torch.Tensor
    images: torch.Tensor
    keys: list[str] = field(default_factory=list)
    seeds: list[int] = field(default_factory=list)
    pair: torch.Tensor | None = None
    views: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.keys)

    def _map(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> Batch:
        return Batch(
            fn(self.points),
            fn(self.images),
            self.keys,
            self.seeds,
            None if self.pair is None else fn(self.pair),
            None if self.views is None else fn(self.views),
        )

    def to(self, device: torch.device | str) -> Batch:
        return self._map(lambda t: t.to(device, non_blocking=True))

    def pin_memory(self) -> Batch:
        """Page-locked copies (DataLoader's ``pin_memory`` calls this on each chunk)."""
        return self._map(lambda t: t.pin_memory())

    def generators(self) -> list[torch.Generator]:
        """One CPU generator per object, seeded with its ``seeds`` entry."""
        return [torch.Generator().manual_seed(seed) for seed in self.seeds]


def augment_seed(seed: int, epoch: int, rep: int, key: str) -> int:
    """The seed of an object's augmentations in one epoch and pass: they depend on the
    object, not on its batch, worker or rank, so a resumed run draws the same ones."""
    return derive_seed(seed, "augment", epoch, rep, key)


def _seeded(batches: Iterable[Batch], seed: int, epoch: int, rep: int) -> Iterator[Batch]:
    for batch in batches:
        batch.seeds = [augment_seed(seed, epoch, rep, key) for key in batch.keys]
        yield batch


def augment_batch(batch: Batch, image_config: ImageAugmentConfig | None) -> Batch:
    """``batch`` with ``pair`` and (with an ``image_config``) ``views`` filled in by
    :func:`~xpt.train.augment.augment_pair`, each object drawing from its own seed."""
    images = batch.images if image_config is not None else None
    pair, views = augment_pair(batch.points, images, batch.generators(), None, image_config)
    return Batch(batch.points, batch.images, batch.keys, batch.seeds, pair, views)


def collate(samples: Sequence[dict]) -> Batch:
    """Stack decoded samples (all already ``points`` x 3 and ``image_size`` square)."""
    return Batch(
        torch.stack([torch.as_tensor(s["points"], dtype=torch.float32) for s in samples]),
        torch.stack([torch.as_tensor(s["image"], dtype=torch.uint8) for s in samples]),
        [s["key"] for s in samples],
    )


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
