"""Writing shards: ``<split>-NNNNNN.tar`` files rolled by sample count and/or size.

Each shard is written under a temporary name (``.tmp-<name>``) and renamed when
complete, so a shard under its final name is always whole; a write that fails (a full
disk) removes the temporary file and raises :class:`~xpt.toolkit.fsio.WriteError` naming
the shard. Tars are written with the ``tarfile`` module with every member's mtime, uid,
gid and owner names fixed and the members of a sample in sorted order, so the same samples
give byte-identical shards. The sha256 and size are computed while writing.
"""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

from xpt.toolkit.fsio import TMP_PREFIX, writing
from xpt.toolkit.shards.schema import shard_name

BLOCK = tarfile.BLOCKSIZE
RECORD = tarfile.RECORDSIZE


@dataclass
class ShardInfo:
    """One finished shard. ``start``/``end``: the run positions of its first sample and
    one past its last (used to resume); ``views``: total views over its samples."""

    name: str
    samples: int = 0
    bytes: int = 0
    sha256: str = ""
    start: int = 0
    end: int = 0
    views: int = 0
    categories: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "samples": self.samples,
            "bytes": self.bytes,
            "sha256": self.sha256,
            "start": self.start,
            "end": self.end,
            "views": self.views,
            "categories": dict(sorted(self.categories.items())),
        }

    @classmethod
    def from_json(cls, data: Mapping) -> ShardInfo:
        return cls(
            name=str(data["name"]),
            samples=int(data["samples"]),
            bytes=int(data["bytes"]),
            sha256=str(data["sha256"]),
            start=int(data.get("start", 0)),
            end=int(data.get("end", 0)),
            views=int(data.get("views", 0)),
            categories={str(k): int(v) for k, v in data.get("categories", {}).items()},
        )


class _HashingFile(io.RawIOBase):
    """A write-only file that hashes and counts what passes through it."""

    def __init__(self, handle: io.BufferedWriter):
        self._handle = handle
        self.sha256 = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.size

    def write(self, data) -> int:  # type: ignore[override]
        self.sha256.update(data)
        self.size += len(data)
        return self._handle.write(data)


def tar_member_size(info: tarfile.TarInfo) -> int:
    """Bytes one regular member takes in a PAX tar: header(s) + data padded to blocks."""
    if len(info.name) <= tarfile.LENGTH_NAME and info.name.isascii() and info.size < 8**11:
        header = BLOCK  # a plain ustar header; no PAX record needed
    else:
        header = len(info.tobuf(tarfile.PAX_FORMAT, tarfile.ENCODING, "surrogateescape"))
    return header + -(-info.size // BLOCK) * BLOCK


def closed_tar_size(offset: int) -> int:
    """Final size of a tar whose members end at ``offset``: end blocks, record padding."""
    return -(-(offset + 2 * BLOCK) // RECORD) * RECORD


def _tarinfo(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = 0
    info.mode = 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.type = tarfile.REGTYPE
    return info


class ShardWriter:
    """Writes the samples of one split into rolling shards in ``directory``.

    ``max_samples`` / ``max_bytes`` (either may be None) bound each shard; a single
    sample larger than ``max_bytes`` gets a shard of its own. ``on_shard`` is called
    with the :class:`ShardInfo` of every shard as soon as it is complete and renamed.
    """

    def __init__(
        self,
        directory: str | os.PathLike,
        split: str,
        *,
        max_samples: int | None = None,
        max_bytes: int | None = None,
        start_index: int = 0,
        on_shard: Callable[[ShardInfo], None] | None = None,
    ):
        if max_samples is not None and max_samples < 1:
            raise ValueError(f"max samples per shard must be >= 1, got {max_samples}")
        if max_bytes is not None and max_bytes < RECORD:
            raise ValueError(f"max bytes per shard must be >= {RECORD}, got {max_bytes}")
        self.directory = Path(directory)
        self.split = split
        self.max_samples = max_samples
        self.max_bytes = max_bytes
        self.index = start_index
        self.on_shard = on_shard
        self.shards: list[ShardInfo] = []
        self._tar: tarfile.TarFile | None = None
        self._file: _HashingFile | None = None
        self._handle: io.BufferedWriter | None = None
        self._info: ShardInfo | None = None
        self._categories: Counter[str] = Counter()

    @property
    def _tmp_path(self) -> Path:
        return self.directory / f"{TMP_PREFIX}{shard_name(self.split, self.index)}"

    @contextmanager
    def _writing(self) -> Iterator[None]:
        """A failure to write the open shard drops it (its temporary file, so the message
        counts the space it took as free) and raises a WriteError naming its final path."""
        with writing(self.directory / shard_name(self.split, self.index), "the shard"):
            try:
                yield
            except BaseException:
                self.abort()
                raise

    def _open(self, position: int) -> None:
        with self._writing():
            self.directory.mkdir(parents=True, exist_ok=True)
            self._handle = open(self._tmp_path, "wb")  # noqa: SIM115 (closed in _finish/abort)
        self._file = _HashingFile(self._handle)
        self._tar = tarfile.open(fileobj=self._file, mode="w", format=tarfile.PAX_FORMAT)
        self._info = ShardInfo(name=shard_name(self.split, self.index), start=position)
        self._categories = Counter()

    def write(
        self, entries: Mapping[str, object], *, position: int, category: str, views: int
    ) -> None:
        """Append one encoded sample (``{"__key__": str, entry: bytes}``).

        ``position`` is the sample's place in the run's order, ``category`` its
        category id and ``views`` its number of views (manifest statistics).
        """
        key = str(entries["__key__"])
        members = []
        for name, data in sorted((n, d) for n, d in entries.items() if n != "__key__"):
            if not isinstance(data, bytes):
                raise TypeError(f"entry {name!r} of sample {key} is not bytes")
            members.append((_tarinfo(f"{key}.{name}", len(data)), data))
        size = sum(tar_member_size(info) for info, _ in members)
        if self._tar is not None and self.max_bytes is not None:
            if closed_tar_size(self._tar.offset + size) > self.max_bytes:
                self._finish()
        if self._tar is None:
            self._open(position)
        assert self._tar is not None and self._info is not None
        with self._writing():
            for info, data in members:
                self._tar.addfile(info, io.BytesIO(data))
        self._info.samples += 1
        self._info.end = position + 1
        self._info.views += views
        self._categories[category] += 1
        if self.max_samples is not None and self._info.samples >= self.max_samples:
            self._finish()

    def _finish(self) -> None:
        """Close the open shard, fsync it, rename it to its final name, report it."""
        assert self._tar is not None and self._file is not None and self._handle is not None
        assert self._info is not None
        with self._writing():
            self._tar.close()
            self._handle.flush()
            os.fsync(self._handle.fileno())
            self._handle.close()
            os.replace(self._tmp_path, self.directory / self._info.name)
        self._info.bytes = self._file.size
        self._info.sha256 = self._file.sha256.hexdigest()
        self._info.categories = dict(self._categories)
        info = self._info
        self.shards.append(info)
        self._tar = self._file = self._handle = self._info = None
        self.index += 1
        if self.on_shard is not None:
            self.on_shard(info)

    def close(self) -> list[ShardInfo]:
        """Finish the open shard (if any); returns the shards this writer completed."""
        if self._tar is not None:
            self._finish()
        return self.shards

    def abort(self) -> None:
        """Drop the open shard (its temporary file), keeping completed ones. On a full disk
        closing the file fails to flush its last bytes; it is removed all the same."""
        if self._handle is not None:
            with suppress(OSError):
                self._handle.close()
        self._tmp_path.unlink(missing_ok=True)
        self._tar = self._file = self._handle = self._info = None

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, exc_type, *exc: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
