"""SHARDS -> a :class:`ShardSet`: the shard URLs of a folder, manifest, pattern, remote set
or list of these, with the epoch's sample count (from manifests, or a scan of the tars).

Remote sets are read through :mod:`xpt.toolkit.shards.remote`; anything that names no
readable shard is a :class:`ShardSpecError`.
"""

from __future__ import annotations

import re
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import webdataset as wds

from xpt.toolkit.shards.manifest import MANIFEST, ManifestError, find_shard_sets, read_manifest
from xpt.toolkit.shards.remote import (
    is_remote,
    manifest_url,
    opener_url,
    read_remote_manifest,
    sibling_url,
)


class ShardSpecError(ValueError):
    """The SHARDS argument names nothing that can be read."""


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
    """``splits`` for a message: ``'train' or 'val'``."""
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


def _is_local_file(url: str) -> bool:
    """Whether ``url`` names a local file (not a remote URL, not a ``pipe:`` command)."""
    return not is_remote(url) and not url.startswith("pipe:") and Path(url).is_file()
