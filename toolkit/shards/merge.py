"""``xpt merge``: the part sets of one ``xpt shard --part i/n`` job array -> one shard set.

The merged set holds exactly the samples an unpartitioned run with the same settings
writes (same keys, byte-identical members: a sample depends only on its object and the
seed, never on the part), and its manifest passes ``xpt verify``. No tar data is copied:
each part's shards are hard-linked into the output under new names (``<split>-NNNNNN.tar``
numbered across the parts in part order), so merging costs one link per shard and the
part folders stay valid. Only where a link is impossible (another file system) is a
shard copied, and the summary counts it.

Order: the merged set is the parts' shards one after another (part 0 first). Each part
writes its objects in its own seeded order, so the sample order (and the shard
boundaries) differ from an unpartitioned run's; the samples per split are the same, and
the same parts always merge into byte-identical shards. Training reads shards and
samples shuffled, so the order does not matter to it.

Refused, with one line each: a folder that is not a shard set, an incomplete part (an
interrupted run), parts made with different settings or of different partitions, the
same part twice or samples in the wrong part (overlap), missing parts, a part shard that
is missing or not its recorded size.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import tarfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from xpt.toolkit.failures import FAILURES_FILE, read_failures
from xpt.toolkit.fsio import atomic_directory, atomic_write_text, not_a_folder
from xpt.toolkit.locks import carry_lock, folder_lock, is_lock_file
from xpt.toolkit.partition import parse_part, part_of
from xpt.toolkit.shards.manifest import (
    MANIFEST,
    PART_DIR,
    ManifestError,
    find_shard_sets,
    make_manifest,
    manifest_shards,
    read_manifest,
    write_manifest,
)
from xpt.toolkit.shards.schema import SPLITS, SchemaError, shard_name, split_member
from xpt.toolkit.shards.writer import ShardInfo

# Settings that differ between the parts of one run by design.
PART_SETTINGS = ("part", "objects", "objects_digest")
# Errors of a link that a copy can stand in for (another file system, no hard links).
_NO_LINK = {errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EOPNOTSUPP}


class MergeError(ValueError):
    """Parts that cannot be merged; the message is one line naming the folder or file."""


@dataclass
class Part:
    folder: Path
    manifest: dict[str, Any]
    index: int
    count: int

    @property
    def label(self) -> str:
        return f"{self.index}/{self.count}"


@dataclass
class MergeResult:
    out: Path
    manifest: dict[str, Any]
    parts: int
    linked: int
    copied: int
    seconds: float

    def summary(self) -> dict[str, Any]:
        splits = self.manifest["splits"]
        return {
            "out": str(self.out),
            "parts": self.parts,
            "samples": self.manifest["samples"],
            "train": splits["train"]["samples"],
            "val": splits["val"]["samples"],
            "test": splits["test"]["samples"],
            "shards": self.linked + self.copied,
            "bytes": sum(sh["bytes"] for s in splits.values() for sh in s["shards"]),
            "linked": self.linked,
            "copied": self.copied,
            "failures": self.manifest["failures"],
            "seconds": round(self.seconds, 3),
        }


def find_parts(paths: list[Path]) -> list[Path]:
    """The part folders named by ``paths``: each a part set, or a folder holding part-* sets."""
    folders: list[Path] = []
    for path in paths:
        if not path.exists():
            raise MergeError(f"{path}: no such folder")
        if not path.is_dir():
            raise MergeError(f"{path}: a file, not a part folder")
        found = find_shard_sets(path)
        if not found:
            raise MergeError(f"{path}: not a shard set (no {MANIFEST}) and no part-* sets in it")
        folders += found
    return folders


def _read_part(folder: Path) -> Part:
    try:
        manifest = read_manifest(folder)
    except ManifestError as error:
        raise MergeError(str(error)) from None
    part = (manifest.get("settings") or {}).get("part")
    try:
        index, count = parse_part(part) if isinstance(part, str) else (None, None)
    except ValueError:
        index = count = None
    if index is None or count is None or "merged" in manifest.get("settings", {}):
        raise MergeError(f"{folder}: not a part of an `xpt shard --part i/n` run")
    if count == 1:
        raise MergeError(f"{folder}: a whole set (made without --part): nothing to merge")
    if not manifest.get("complete"):
        raise MergeError(
            f"{folder}: incomplete part {index}/{count} (its run was interrupted: run the same "
            "`xpt shard --part` command again to finish it)"
        )
    return Part(folder, manifest, index, count)


def check_parts(folders: list[Path]) -> list[Part]:
    """The parts of one run, in part order; MergeError says what is wrong."""
    if not folders:
        raise MergeError("no parts given")
    parts = [_read_part(folder) for folder in folders]
    first = parts[0]
    by_index: dict[int, Part] = {}
    for part in parts:
        if part.count != first.count:
            raise MergeError(
                f"{part.folder}: part {part.label}, but {first.folder} is part {first.label} "
                "(parts of different partitions)"
            )
        if part.index in by_index:
            other = by_index[part.index]
            same = other.folder.resolve() == part.folder.resolve()
            raise MergeError(
                f"{part.folder}: given twice"
                if same
                else f"{part.folder} and {other.folder} are both part {part.label} (overlapping)"
            )
        by_index[part.index] = part
        theirs, mine = _comparable(first.manifest), _comparable(part.manifest)
        if mine != theirs:
            changed = sorted(k for k in set(theirs) | set(mine) if theirs.get(k) != mine.get(k))
            raise MergeError(
                f"{part.folder}: made with other settings than {first.folder} "
                f"({', '.join(changed)})"
            )
    missing = [i for i in range(first.count) if i not in by_index]
    if missing:
        names = ", ".join(f"{i}/{first.count}" for i in missing)
        where = PART_DIR.format(index=missing[0], count=first.count)
        raise MergeError(f"missing part {names} of {first.count} (e.g. {where}): run it first")
    return [by_index[i] for i in range(first.count)]


def _comparable(manifest: dict[str, Any]) -> dict[str, Any]:
    settings = dict(manifest.get("settings") or {})
    for name in PART_SETTINGS:
        settings.pop(name, None)
    return settings


def _check_files(part: Part, owner: dict[str, Path]) -> None:
    """Each shard present at its recorded size; its keys (tar headers only) this part's
    and in no other shard."""
    for infos in manifest_shards(part.manifest).values():
        for info in infos:
            path = part.folder / info.name
            try:
                size = path.stat().st_size
            except FileNotFoundError:
                raise MergeError(f"{path}: missing (the part's manifest lists it)") from None
            if size != info.bytes:
                raise MergeError(
                    f"{path}: {size:,} bytes, the manifest says {info.bytes:,} "
                    "(run `xpt verify` on the part)"
                )
            for key in _keys(path):
                if key in owner and owner[key] != path:
                    raise MergeError(f"{path}: sample {key} is also in {owner[key]} (overlapping)")
                owner[key] = path
                if part_of(key, part.count) != part.index:
                    raise MergeError(
                        f"{path}: sample {key} belongs to part "
                        f"{part_of(key, part.count)}/{part.count}, not {part.label} (overlapping)"
                    )


def _keys(path: Path) -> set[str]:
    """The sample keys of a local tar, from its headers (the data is seeked over)."""
    try:
        with tarfile.open(path, mode="r:") as tar:
            return {split_member(m.name)[0] for m in tar if m.isfile()}
    except (tarfile.TarError, EOFError, SchemaError) as error:
        raise MergeError(f"{path}: unreadable tar ({error}); run `xpt verify` on it") from None


def _place(source: Path, target: Path) -> bool:
    """Hard-link ``source`` as ``target`` (True), or copy it where no link is possible."""
    try:
        os.link(source, target)
        return True
    except OSError as error:
        if error.errno not in _NO_LINK:
            raise
    shutil.copyfile(source, target)
    return False


def merge_parts(paths: list[Path], out: Path) -> MergeResult:
    """Merge the parts named by ``paths`` (see :func:`find_parts`) into the set ``out``.

    ``out`` must be new, empty, or an earlier merge (which is replaced); it is written
    as a temporary folder beside it and renamed when whole, holding ``out``'s lock
    (:func:`~xpt.toolkit.locks.folder_lock`: a second merge into it is refused).
    """
    started = time.perf_counter()
    parts = check_parts(find_parts(paths))
    _check_out(out, parts)
    with folder_lock(out, "xpt merge"):
        return _merge(parts, out, started)


def _merge(parts: list[Part], out: Path, started: float) -> MergeResult:
    """:func:`merge_parts` once the parts are checked and ``out`` is locked."""
    owner: dict[str, Path] = {}
    for part in parts:
        _check_files(part, owner)
    shards: dict[str, list[ShardInfo]] = {split: [] for split in SPLITS}
    sources: list[tuple[Path, str]] = []
    offset = dict.fromkeys(SPLITS, 0)
    categories: dict[str, tuple[str, int | None]] = {}
    failures = {}
    for part in parts:
        for split, infos in manifest_shards(part.manifest).items():
            for info in infos:
                name = shard_name(split, len(shards[split]))
                moved = ShardInfo(**{**asdict(info), "name": name})
                moved.start, moved.end = info.start + offset[split], info.end + offset[split]
                shards[split].append(moved)
                sources.append((part.folder / info.name, name))
            offset[split] += infos[-1].end if infos else 0
        for category, row in part.manifest.get("categories", {}).items():
            categories.setdefault(category, (row.get("name", category), row.get("label")))
        recorded = read_failures(part.folder / FAILURES_FILE)
        if len(recorded) != part.manifest.get("failures", len(recorded)):
            raise MergeError(
                f"{part.folder / FAILURES_FILE}: {len(recorded)} failures, the part's manifest "
                f"says {part.manifest.get('failures')}"
            )
        failures.update({failure.id: failure for failure in recorded})
    settings = {
        **_comparable(parts[0].manifest),
        "objects": sum(int(p.manifest["settings"].get("objects", 0)) for p in parts),
        "merged": {
            "parts": len(parts),
            "objects_digests": [p.manifest["settings"].get("objects_digest") for p in parts],
        },
    }
    final_failures = [failures[key] for key in sorted(failures)]
    manifest = make_manifest(
        shards, categories, settings, complete=True, failures=len(final_failures)
    )
    linked = 0
    with atomic_directory(out) as tmp:
        carry_lock(out, tmp)
        for source, name in sources:
            linked += _place(source, tmp / name)
        atomic_write_text(
            tmp / FAILURES_FILE,
            "".join(json.dumps(asdict(f), sort_keys=True) + "\n" for f in final_failures),
        )
        write_manifest(tmp, manifest)
    return MergeResult(
        out=out,
        manifest=read_manifest(out),
        parts=len(parts),
        linked=linked,
        copied=len(sources) - linked,
        seconds=time.perf_counter() - started,
    )


def _check_out(out: Path, parts: list[Part]) -> None:
    """``out`` may be new, empty or an earlier merge; never a part or a folder of them."""
    resolved = out.resolve()
    for part in parts:
        if resolved in (part.folder.resolve(), *part.folder.resolve().parents):
            raise MergeError(f"{out}: holds the parts; give a new folder as --out")
    if reason := not_a_folder(out):
        raise MergeError(f"{out}: {reason}")
    if not out.exists() or all(is_lock_file(path.name) for path in out.iterdir()):
        return
    try:
        earlier = "merged" in (read_manifest(out).get("settings") or {})
    except ManifestError:
        earlier = False
    if not earlier:
        raise MergeError(f"{out}: exists and is not an earlier merge; give a new or empty folder")
