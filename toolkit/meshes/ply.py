"""A small PLY point-cloud reader: the vertex x, y, z of ASCII and binary PLY files.

Written for the point clouds of the CrossPoint release (``ShapeNet/<synset>/<id>.ply``,
vertex elements with only x, y, z), it also accepts other scalar vertex properties
(ignored) and elements after the vertex element (not read). Every malformed file
raises :class:`PlyError` with a one-line reason; header counts are checked against
the file size before anything is allocated.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

_TYPES = {
    "char": "i1",
    "int8": "i1",
    "uchar": "u1",
    "uint8": "u1",
    "short": "i2",
    "int16": "i2",
    "ushort": "u2",
    "uint16": "u2",
    "int": "i4",
    "int32": "i4",
    "uint": "u4",
    "uint32": "u4",
    "float": "f4",
    "float32": "f4",
    "double": "f8",
    "float64": "f8",
}
_FORMATS = {"ascii": "", "binary_little_endian": "<", "binary_big_endian": ">"}
_HEADER_MAX = 64 * 1024


class PlyError(ValueError):
    """A PLY file that cannot be read; ``str`` is ``"path: reason"``."""

    def __init__(self, path: str | os.PathLike, reason: str):
        super().__init__(path, reason)
        self.path = str(path)
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


@dataclass
class PlyHeader:
    """format: ascii / binary_little_endian / binary_big_endian; vertex_count;
    properties: (name, numpy type code) of the vertex element, in order;
    data_offset: where the body starts."""

    format: str
    vertex_count: int
    properties: list[tuple[str, str]]
    data_offset: int


def parse_header(path: str | os.PathLike, data: bytes) -> PlyHeader:
    """Parse and check the header of PLY ``data`` (``path`` is only for messages)."""
    if not data.startswith(b"ply"):
        raise PlyError(path, "not a PLY file (no 'ply' magic)")
    end = data.find(b"end_header", 0, _HEADER_MAX)
    if end < 0:
        raise PlyError(path, "no 'end_header' within the first 64 KiB")
    newline = data.find(b"\n", end)
    offset = len(data) if newline < 0 else newline + 1
    try:
        lines = data[:end].decode("ascii").splitlines()
    except UnicodeDecodeError as error:
        raise PlyError(path, "header is not ASCII text") from error
    fmt: str | None = None
    elements: list[tuple[str, int, list[tuple[str, str]]]] = []
    for number, line in enumerate(lines[1:], start=2):
        words = line.split()
        if not words or words[0] in ("comment", "obj_info"):
            continue
        if words[0] == "format":
            if len(words) != 3 or words[1] not in _FORMATS:
                raise PlyError(path, f"header line {number}: unknown format {line.strip()!r}")
            fmt = words[1]
        elif words[0] == "element":
            if len(words) != 3 or not words[2].isdigit():
                raise PlyError(path, f"header line {number}: bad element line {line.strip()!r}")
            elements.append((words[1], int(words[2]), []))
        elif words[0] == "property":
            if not elements:
                raise PlyError(path, f"header line {number}: property before any element")
            if len(words) >= 2 and words[1] == "list":
                elements[-1][2].append((words[-1], "list"))
            elif len(words) == 3 and words[1] in _TYPES:
                elements[-1][2].append((words[2], _TYPES[words[1]]))
            else:
                raise PlyError(path, f"header line {number}: bad property {line.strip()!r}")
        else:
            raise PlyError(path, f"header line {number}: unexpected {line.strip()!r}")
    if fmt is None:
        raise PlyError(path, "header has no format line")
    if not elements or elements[0][0] != "vertex":
        raise PlyError(path, "the first element must be 'vertex'")
    _, count, properties = elements[0]
    names = [name for name, _ in properties]
    missing = [axis for axis in "xyz" if axis not in names]
    if missing:
        raise PlyError(path, f"vertex element has no {'/'.join(missing)} property")
    if any(kind == "list" for _, kind in properties):
        raise PlyError(path, "list properties in the vertex element are not supported")
    return PlyHeader(fmt, count, properties, offset)


def read_ply_points(path: str | os.PathLike) -> np.ndarray:
    """The vertex positions of a PLY file: (n, 3) float32, n >= 1, all finite."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise PlyError(path, f"cannot read: {error.strerror or error}") from error
    header = parse_header(path, data)
    body = data[header.data_offset :]
    if header.vertex_count == 0:
        raise PlyError(path, "no vertices")
    if header.format == "ascii":
        points = _read_ascii(path, body, header)
    else:
        points = _read_binary(path, body, header)
    if not np.isfinite(points).all():
        raise PlyError(path, "non-finite vertex coordinates")
    return points


def _read_binary(path: Path, body: bytes, header: PlyHeader) -> np.ndarray:
    order = _FORMATS[header.format]
    dtype = np.dtype([(name, order + code) for name, code in header.properties])
    needed = header.vertex_count * dtype.itemsize
    if len(body) < needed:
        have = len(body) // dtype.itemsize
        raise PlyError(
            path,
            f"truncated: header declares {header.vertex_count} vertices, the file holds {have}",
        )
    table = np.frombuffer(body, dtype=dtype, count=header.vertex_count)
    return np.stack([table[axis] for axis in "xyz"], axis=1).astype(np.float32)


def _read_ascii(path: Path, body: bytes, header: PlyHeader) -> np.ndarray:
    names = [name for name, _ in header.properties]
    columns = [names.index(axis) for axis in "xyz"]
    rows: list[bytes] = []
    for line in body.split(b"\n"):
        if line.strip():  # blank lines do not count as vertices
            rows.append(line)
            if len(rows) == header.vertex_count:
                break
    if len(rows) < header.vertex_count:
        raise PlyError(
            path,
            f"truncated: header declares {header.vertex_count} vertices, "
            f"the file holds {len(rows)}",
        )
    try:
        table = np.array([row.split() for row in rows], dtype=np.float64)
    except ValueError as error:
        raise PlyError(path, f"bad vertex line: {error}") from error
    if table.ndim != 2 or table.shape[1] != len(names):
        raise PlyError(path, f"vertex lines must have {len(names)} values each")
    return table[:, columns].astype(np.float32)
