"""Members of a local tar file read from their headers alone (data read on demand).

The streaming loader uses it to skip the views a sample does not need, and the sample
index (``--shuffle full``) to record where the data of each sample's members lies. Plain
ustar and pax headers are parsed here at a fraction of ``tarfile``'s cost; anything else is
handed to ``tarfile``.
"""

from __future__ import annotations

import os
import tarfile
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple


class Member(NamedTuple):
    """One tar member. Offsets are in the file (in the decompressed stream of a compressed
    tar): ``header`` where its header (or the extended headers before it) starts, ``data``
    where its data starts; ``read`` reads the data."""

    name: str
    regular: bool
    header: int
    data: int
    size: int
    read: Callable[[], bytes]


_BLOCK = 512
_REGULAR_TYPES = (b"0", b"\0", b"7")
_PLAIN_TYPES = (*_REGULAR_TYPES, b"1", b"2", b"3", b"4", b"5", b"6")  # header says it all


def _plain_header(block: bytes) -> tuple[str, bool, int, bytes] | None:
    """(name, regular, size, type flag) of a ustar / GNU member header, or of a pax
    extended header (flag ``x``); None for anything else (a bad checksum, a GNU long name
    or global pax header, a base-256 size, not a header at all)."""
    flag = block[156:157]
    if len(block) != _BLOCK or flag not in _PLAIN_TYPES + (b"x",) or block[124] & 0x80:
        return None
    try:
        checksum = int(block[148:156].strip(b" \0") or b"-1", 8)
        size = int(block[124:136].strip(b" \0") or b"0", 8)
    except ValueError:
        return None
    if checksum != 256 + sum(block) - sum(block[148:156]):
        return None
    name = block[:100].split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
    prefix = block[345:500].split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
    name = f"{prefix}/{name}" if prefix else name
    regular = flag in _REGULAR_TYPES and not name.endswith("/")
    if flag == b"5" or name.endswith("/"):  # a folder, named as tarfile names it
        name = name.rstrip("/")
    return name, regular, size, flag


def _pax_records(data: bytes) -> dict[str, str] | None:
    """The ``path`` and ``size`` records of a pax extended header (None if malformed)."""
    records: dict[str, str] = {}
    pos = 0
    try:
        while pos < len(data) and data[pos] != 0:
            space = data.index(b" ", pos)
            length = int(data[pos:space])
            field_, _, value = data[space + 1 : pos + length - 1].partition(b"=")
            if field_ in (b"path", b"size"):
                records[field_.decode()] = value.decode("utf-8", "surrogateescape")
            pos += length
        if "size" in records:
            int(records["size"])
    except ValueError:
        return None
    return records


def data_reader(file: Any, offset: int, size: int) -> Callable[[], bytes]:
    """Reads ``size`` bytes of an open local tar from ``offset`` (a member's data); a shard
    cut off before their end raises ``ReadError("unexpected end of data")``, as tarfile."""

    def read() -> bytes:
        file.seek(offset)
        data = file.read(size)
        if len(data) != size:
            raise tarfile.ReadError("unexpected end of data")
        return data

    return read


def local_members(file: Any, start: int = 0) -> Iterator[Member]:
    """The members of an open local tar from offset ``start`` (a member header), from their
    headers alone (data read on demand).

    Plain ustar headers (as ``xpt shard`` writes) and pax extended headers (``path``,
    ``size``) are parsed here, at a fraction of ``tarfile``'s cost; from the first header
    that is anything else (GNU long names, global pax headers, a compressed or foreign
    file) on, ``tarfile`` reads the rest. Errors follow ``tarfile``: a shard cut off
    raises ``ReadError("unexpected end of data")``.
    """
    end = os.fstat(file.fileno()).st_size
    offset, resume = start, start  # resume: where tarfile takes over (a pax header's offset)
    pax: dict[str, str] = {}
    while True:
        if offset > end and not pax:
            raise tarfile.ReadError("unexpected end of data")
        file.seek(offset)
        block = file.read(_BLOCK)
        if len(block) < _BLOCK or not any(block):
            if offset == 0 or pax:  # an empty file, or a pax header's member cut off:
                offset = resume  # tarfile says what it is
                break
            return  # the end-of-archive marker (or the file's end)
        header = _plain_header(block)
        if header is None:
            offset = resume if pax else offset
            break
        name, regular, size, flag = header
        header_at = resume if pax else offset
        data = offset + _BLOCK
        if flag == b"x":
            if pax or data + size > end:
                break
            file.seek(data)
            records = _pax_records(file.read(size))
            if not records:
                break
            pax, resume = records, offset
            offset = data + -(-size // _BLOCK) * _BLOCK
            continue
        if pax:
            name, size, pax = pax.get("path", name), int(pax.get("size", size)), {}
            regular = regular and not name.endswith("/")
            name = name if regular else name.rstrip("/")

        yield Member(name, regular, header_at, data, size, data_reader(file, data, size))
        offset = data + (-(-size // _BLOCK) * _BLOCK if regular else 0)
    file.seek(offset)
    # (not closed here: its members are read after this generator may have ended; the
    # caller closes the file)
    tar = tarfile.open(fileobj=file, mode="r:*" if offset == 0 else "r:")
    while (member := tar.next()) is not None:
        tar.members = []  # no index kept: memory stays flat on long shards

        def extract(member: tarfile.TarInfo = member) -> bytes:
            return tar.extractfile(member).read()  # type: ignore[union-attr]

        yield Member(
            member.name, member.isreg(), member.offset, member.offset_data, member.size, extract
        )
