"""``manifest.json``: what a shard set holds, how it was made, and each shard's checksum.

::

    {"format_version": 1, "complete": true, "xpt_version": "...", "samples": 120,
     "splits": {"train": {"samples": 108, "views": 1296,
                          "shards": [{"name", "samples", "bytes", "sha256",
                                      "start", "end", "views", "categories"}]},
                "val": {...}, "test": {...}},
     "categories": {"<id>": {"name", "label", "train", "val", "test", "samples"}},
     "failures": 2, "settings": {...}}

``test`` holds the objects of a source's own test split (ModelNet), which therefore
never reach train or val; it is empty for sources without splits.

The manifest is rewritten (atomically) after every completed shard with
``"complete": false``, which is what an interrupted run resumes from.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from xpt import __version__
from xpt.toolkit.fsio import atomic_write_json
from xpt.toolkit.shards.schema import FORMAT_VERSION, SPLITS
from xpt.toolkit.shards.writer import ShardInfo

MANIFEST = "manifest.json"
PART_DIR = "part-{index:03d}-of-{count:03d}"


class ManifestError(ValueError):
    """A missing, unreadable or inconsistent manifest."""


def part_directory(out: str | os.PathLike, index: int, count: int) -> Path:
    """Where part ``index`` of ``count`` writes its own shard set (``out`` when count == 1)."""
    out = Path(out)
    return out if count == 1 else out / PART_DIR.format(index=index, count=count)


def make_manifest(
    shards: Mapping[str, list[ShardInfo]],
    categories: Mapping[str, tuple[str, int | None]],
    settings: Mapping[str, Any],
    *,
    complete: bool,
    failures: int,
) -> dict[str, Any]:
    """The manifest dict; ``categories`` maps id -> (name, label) for every known id."""
    splits: dict[str, Any] = {}
    counts: dict[str, dict[str, int]] = {}
    for split in SPLITS:
        infos = shards.get(split, [])
        splits[split] = {
            "samples": sum(info.samples for info in infos),
            "views": sum(info.views for info in infos),
            "shards": [info.to_json() for info in infos],
        }
        for info in infos:
            for category, count in info.categories.items():
                row = counts.setdefault(category, dict.fromkeys(SPLITS, 0))
                row[split] += count
    category_table = {}
    for category, row in sorted(counts.items()):
        name, label = categories.get(category, (category, None))
        category_table[category] = {
            "name": name,
            "label": label,
            **row,
            "samples": sum(row.values()),
        }
    return {
        "format_version": FORMAT_VERSION,
        "xpt_version": __version__,
        "complete": complete,
        "samples": sum(split["samples"] for split in splits.values()),
        "splits": splits,
        "categories": category_table,
        "failures": failures,
        "settings": dict(settings),
    }


def write_manifest(directory: str | os.PathLike, manifest: Mapping[str, Any]) -> Path:
    return atomic_write_json(Path(directory) / MANIFEST, dict(manifest), "the manifest")


def read_manifest(directory: str | os.PathLike) -> dict[str, Any]:
    """Load and sanity-check ``<directory>/manifest.json``; ManifestError names the problem."""
    path = Path(directory) / MANIFEST
    if not path.is_file():
        raise ManifestError(f"{path}: no manifest (not a shard set, or the run never started)")
    try:
        text = path.read_bytes()
    except OSError as error:
        raise ManifestError(f"{path}: unreadable manifest: {error}") from error
    return parse_manifest(text, str(path))


def parse_manifest(data: bytes | str, where: str) -> dict[str, Any]:
    """Sanity-check manifest JSON read from ``where`` (a path or URL, for messages)."""
    try:
        manifest = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ManifestError(f"{where}: unreadable manifest: {error}") from error
    if not isinstance(manifest, dict) or not isinstance(manifest.get("splits"), dict):
        raise ManifestError(f"{where}: manifest has no 'splits' table")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ManifestError(
            f"{where}: format_version {manifest.get('format_version')!r}, "
            f"this xpt reads {FORMAT_VERSION}"
        )
    for split, table in manifest["splits"].items():
        if split not in SPLITS or not isinstance(table, dict):
            raise ManifestError(f"{where}: unknown split {split!r}")
        try:
            [ShardInfo.from_json(shard) for shard in table.get("shards", [])]
        except (KeyError, TypeError, ValueError) as error:
            raise ManifestError(f"{where}: bad shard entry in split {split!r}: {error}") from error
    return manifest


def manifest_shards(manifest: Mapping[str, Any]) -> dict[str, list[ShardInfo]]:
    """Split -> its :class:`ShardInfo` list, as recorded."""
    return {
        split: [ShardInfo.from_json(s) for s in manifest["splits"].get(split, {}).get("shards", [])]
        for split in SPLITS
    }


def shard_paths(directory: str | os.PathLike, split: str = "train") -> list[Path]:
    """The shard files of one split, in manifest order (for WebDataset readers)."""
    directory = Path(directory)
    return [directory / info.name for info in manifest_shards(read_manifest(directory))[split]]


def find_shard_sets(directory: str | os.PathLike) -> list[Path]:
    """``directory`` if it holds a manifest, else its ``part-*`` folders that do (sorted)."""
    directory = Path(directory)
    if (directory / MANIFEST).exists():
        return [directory]
    parts = sorted(p for p in directory.glob("part-*-of-*") if (p / MANIFEST).exists())
    return parts
