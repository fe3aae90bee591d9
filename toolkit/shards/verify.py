"""``xpt verify``: re-read a shard set and report every problem by file name.

Checks, per shard listed in the manifest: present, size, sha256, readable as a tar
to the end, sample count, and every sample against the schema (decoding with the
schema's decoders, never unpickling). Across the set: unique keys, split and
category counts, the failure count, that it holds at least one sample, and that the
folder holds nothing else (foreign files, shards the manifest does not list,
temporary leftovers).
"""

from __future__ import annotations

import hashlib
import os
import tarfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xpt.toolkit.failures import FAILURES_FILE, read_failures
from xpt.toolkit.fsio import TMP_PREFIX
from xpt.toolkit.locks import is_lock_file
from xpt.toolkit.shards.manifest import (
    MANIFEST,
    ManifestError,
    manifest_shards,
    read_manifest,
)
from xpt.toolkit.shards.schema import SHARD_NAME, SPLITS, SchemaError, check_sample, decode_json
from xpt.toolkit.shards.schema import iter_tar_samples as _iter_tar_samples
from xpt.toolkit.shards.writer import ShardInfo

_CHUNK = 1 << 20


@dataclass(frozen=True)
class Problem:
    """One thing wrong: ``name`` is the file (shard, manifest, foreign file) it concerns."""

    name: str
    reason: str

    def line(self) -> str:
        return f"{self.name}: {self.reason}"


@dataclass
class VerifyReport:
    directory: Path
    problems: list[Problem] = field(default_factory=list)
    shards: int = 0
    samples: int = 0
    bytes: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems

    def add(self, name: str, reason: str) -> None:
        self.problems.append(Problem(name, reason))

    def to_json(self) -> dict[str, Any]:
        return {
            "directory": str(self.directory),
            "ok": self.ok,
            "shards": self.shards,
            "samples": self.samples,
            "bytes": self.bytes,
            "problems": [{"name": p.name, "reason": p.reason} for p in self.problems],
        }


def file_sha256(path: Path) -> tuple[str, int]:
    """(hex sha256, size in bytes) of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def _verify_shard(
    directory: Path, split: str, info: ShardInfo, report: VerifyReport, keys: set[str]
) -> None:
    path = directory / info.name
    if not path.is_file():
        report.add(info.name, "missing: listed in the manifest but not on disk")
        return
    report.shards += 1
    sha256, size = file_sha256(path)
    report.bytes += size
    if size != info.bytes:
        state = "truncated" if size < info.bytes else "longer than recorded"
        report.add(info.name, f"{state}: {size:,} bytes, the manifest says {info.bytes:,}")
    elif sha256 != info.sha256:
        report.add(info.name, "sha256 mismatch: the file's bytes changed (corrupt)")
    samples = 0
    views = 0
    categories: Counter[str] = Counter()
    try:
        for raw in _iter_tar_samples(path):
            samples += 1
            key = raw["__key__"]
            if key in keys:
                report.add(info.name, f"sample {key}: key also appears in another shard")
            keys.add(key)
            problems = check_sample(raw)
            for problem in problems:
                report.add(info.name, f"sample {key}: {problem}")
            if problems:
                continue
            meta = decode_json(raw["json"])
            if meta["split"] != split:
                report.add(info.name, f"sample {key}: split {meta['split']!r} in a {split} shard")
            categories[meta["category_id"]] += 1
            views += meta["num_views"]
    except (tarfile.TarError, EOFError, OSError, SchemaError) as error:
        report.add(info.name, f"unreadable tar after {samples} samples: {error}")
        report.samples += samples
        return
    report.samples += samples
    if samples != info.samples:
        report.add(info.name, f"{samples} samples, the manifest says {info.samples}")
    elif info.categories and dict(categories) != info.categories:
        report.add(info.name, "per-category counts differ from the manifest")
    elif info.views and views != info.views:
        report.add(info.name, f"{views} views, the manifest says {info.views}")


def verify_shards(directory: str | os.PathLike) -> VerifyReport:
    """Check one shard set (a folder with ``manifest.json``); never raises for bad data."""
    directory = Path(directory)
    report = VerifyReport(directory)
    try:
        manifest = read_manifest(directory)
    except ManifestError as error:
        report.add(MANIFEST, str(error))
        return report
    if not manifest.get("complete", False):
        report.add(MANIFEST, "incomplete: the run was interrupted (run xpt shard again to resume)")
    if not manifest.get("samples"):
        report.add(MANIFEST, "empty: the set holds no samples (see failures.jsonl for why)")
    shards = manifest_shards(manifest)
    keys: set[str] = set()
    for split in SPLITS:
        for info in shards[split]:
            _verify_shard(directory, split, info, report, keys)
        recorded = manifest["splits"].get(split, {}).get("samples", 0)
        if recorded != sum(info.samples for info in shards[split]):
            report.add(MANIFEST, f"{split}: {recorded} samples but its shards hold a different sum")
    category_total = sum(row.get("samples", 0) for row in manifest.get("categories", {}).values())
    if category_total != manifest.get("samples"):
        report.add(
            MANIFEST, f"categories add up to {category_total}, not {manifest.get('samples')}"
        )
    failures_path = directory / FAILURES_FILE
    try:
        failures = read_failures(failures_path)
        if len(failures) != manifest.get("failures", len(failures)):
            report.add(
                FAILURES_FILE,
                f"{len(failures)} failures, the manifest says {manifest.get('failures')}",
            )
    except (ValueError, TypeError) as error:
        report.add(FAILURES_FILE, f"unreadable: {error}")
    listed = {info.name for split in SPLITS for info in shards[split]}
    for path in sorted(directory.iterdir()):
        name = path.name
        if name in listed or name in (MANIFEST, FAILURES_FILE) or is_lock_file(name):
            continue
        if name.startswith(TMP_PREFIX):
            report.add(name, "temporary file left by an interrupted run")
        elif SHARD_NAME.match(name):
            report.add(name, "shard not listed in the manifest")
        else:
            report.add(name, "foreign file: not part of the shard set")
    return report
