"""Readers of single point-cloud files as other tools write them: the x, y, z of each point.

``xpt benchmark`` reads per-object point sets from such files (ModelNet in a
``<class>/{train,test}/`` tree, PointNet++'s ``modelnet40_normal_resampled`` txt files).
Supported, by lower-cased suffix (:data:`POINT_SUFFIXES`):

* ``.npy``: an (N, >=3) float or int array (columns past z, e.g. normals, ignored) or a
  structured array with fields x, y, z.
* ``.txt`` / ``.xyz``: rows of numbers, comma- or whitespace-separated, the same count
  (>= 3) in every row; blank lines and ``#`` comments are skipped.
* ``.pcd``: the Point Cloud Library format (v0.6 / v0.7 headers), ``DATA ascii``,
  ``binary`` and ``binary_compressed`` (LZF, fields stored column by column). Points
  whose x, y or z is NaN (invalid points of organised clouds) are dropped.
* ``.ply``: through :func:`xpt.toolkit.meshes.ply.read_ply_points`.

Every malformed file raises :class:`PointFileError` with one line naming the file and
the problem; header counts are checked against the file size before anything is
allocated from them.
"""

from __future__ import annotations

import io
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from xpt.toolkit.meshes.ply import PlyError, read_ply_points

POINT_SUFFIXES: tuple[str, ...] = (".npy", ".txt", ".xyz", ".pcd", ".ply")

_PCD_HEADER_MAX = 64 * 1024
_PCD_DATA_KINDS = ("ascii", "binary", "binary_compressed")
_PCD_KEYS = "VERSION FIELDS SIZE TYPE COUNT WIDTH HEIGHT VIEWPOINT POINTS DATA".split()
_PCD_TYPES = {("F", 4), ("F", 8)} | {(kind, size) for kind in "IU" for size in (1, 2, 4, 8)}
_LZF_MAX_RATIO = 88  # a 3-byte back-reference expands to at most 264 bytes


class PointFileError(ValueError):
    """A point file that cannot be read; ``str`` is one line, ``"path: reason"``."""

    def __init__(self, path: str | os.PathLike, reason: str):
        reason = " ".join(reason.split())  # foreign messages may span lines
        super().__init__(path, reason)
        self.path = str(path)
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


def read_point_file(path: str | os.PathLike) -> np.ndarray:
    """The x, y, z of every point of one file: C-contiguous (N, 3) float32, N >= 1, finite.

    The format follows the lower-cased suffix (:data:`POINT_SUFFIXES`).
    """
    path = Path(path)
    if path.is_dir():
        raise PointFileError(path, "is a folder, not a point file")
    if not path.exists():
        raise PointFileError(path, "no such file")
    suffix = path.suffix.lower()
    readers = {
        ".npy": _read_npy,
        ".txt": _read_text,
        ".xyz": _read_text,
        ".pcd": _read_pcd,
        ".ply": _read_ply,
    }
    if suffix not in readers:
        found = f"suffix {suffix!r}" if suffix else "no suffix"
        raise PointFileError(
            path, f"unknown point file type ({found}); expected one of " + ", ".join(POINT_SUFFIXES)
        )
    try:
        size = path.stat().st_size
    except OSError as error:
        raise PointFileError(path, f"cannot read: {error.strerror or error}") from error
    if size == 0:
        raise PointFileError(path, "empty file (0 bytes)")
    return _finish(path, readers[suffix](path))


def _finish(path: Path, points: np.ndarray) -> np.ndarray:
    """(N, >=3) numbers -> C-contiguous (N, 3) float32, refusing N = 0 and non-finite rows."""
    if len(points) == 0:
        raise PointFileError(path, "no points")
    with np.errstate(over="ignore", invalid="ignore"):
        out = np.ascontiguousarray(points[:, :3], dtype=np.float32)
    bad = int((~np.isfinite(out).all(axis=1)).sum())
    if bad:
        raise PointFileError(
            path,
            f"{bad} of {len(out)} points have non-finite coordinates "
            "(NaN, inf, or beyond the float32 range)",
        )
    return out


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as error:
        raise PointFileError(path, f"cannot read: {error.strerror or error}") from error


def _read_ply(path: Path) -> np.ndarray:
    try:
        return read_ply_points(path)
    except PlyError as error:
        raise PointFileError(path, error.reason) from error


# ---- .npy ------------------------------------------------------------------------------


def _read_npy(path: Path) -> np.ndarray:
    """An (N, >=3) real array or an (N,) structured array with x, y, z, from a .npy file."""
    try:
        with open(path, "rb") as file:
            version = np.lib.format.read_magic(file)
            if version == (1, 0):
                shape, _, dtype = np.lib.format.read_array_header_1_0(file)
            else:
                shape, _, dtype = np.lib.format.read_array_header_2_0(file)
            data_bytes = os.fstat(file.fileno()).st_size - file.tell()
    except OSError as error:
        raise PointFileError(path, f"cannot read: {error.strerror or error}") from error
    except (ValueError, EOFError, SyntaxError) as error:
        raise PointFileError(path, f"not a valid .npy file: {error}") from error
    _check_npy_layout(path, shape, dtype)
    needed = int(np.prod(shape, dtype=object)) * dtype.itemsize
    if data_bytes < needed:
        raise PointFileError(
            path,
            f"truncated: header declares shape {shape} {dtype} ({needed} bytes of data), "
            f"the file holds {data_bytes}",
        )
    try:
        array = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as error:
        raise PointFileError(path, f"cannot load the array: {error}") from error
    if dtype.names is None:
        return array
    return np.stack([array[axis] for axis in "xyz"], axis=1)


def _check_npy_layout(path: Path, shape: tuple[int, ...], dtype: np.dtype) -> None:
    """Refuse, from the header alone, arrays that cannot hold (N, 3) points."""
    if dtype.hasobject:
        raise PointFileError(
            path, f"holds Python objects (dtype {dtype}); expected an array of numbers"
        )
    if dtype.names is not None:
        missing = [axis for axis in "xyz" if axis not in dtype.names]
        if missing:
            raise PointFileError(
                path,
                f"structured array has no field {'/'.join(missing)} "
                f"(fields: {', '.join(dtype.names)})",
            )
        bad = [axis for axis in "xyz" if dtype[axis].shape or dtype[axis].kind not in "fiu"]
        if bad:
            raise PointFileError(path, f"field {'/'.join(bad)} is not a scalar real number")
        if len(shape) != 1:
            raise PointFileError(path, f"structured array has shape {shape}; expected (N,)")
        return
    if dtype.kind not in "fiu":
        raise PointFileError(path, f"dtype {dtype} is not a real number type")
    if len(shape) != 2 or shape[1] < 3:
        raise PointFileError(
            path, f"array has shape {shape}; expected (N, 3) or (N, C) with C >= 3"
        )


# ---- .txt / .xyz -----------------------------------------------------------------------


def _read_text(path: Path) -> np.ndarray:
    """Rows of >= 3 numbers (x y z first), comma- or whitespace-separated."""
    data = _read_bytes(path)
    first = _first_data_line(data)
    if first is None:
        raise PointFileError(path, "no data rows (only blank or comment lines)")
    delimiter = "," if b"," in first else None
    table = _parse_table(path, data, delimiter, first_line=1)
    if table.shape[1] < 3:
        raise PointFileError(
            path, f"rows have {table.shape[1]} values; expected at least 3 (x y z)"
        )
    return table


def _first_data_line(data: bytes) -> bytes | None:
    """The first line with a value (comments cut), found without splitting the whole file."""
    position = 0
    while position < len(data):
        end = data.find(b"\n", position)
        end = len(data) if end < 0 else end
        content = data[position:end].split(b"#", 1)[0]
        if content.strip():
            return content
        position = end + 1
    return None


def _parse_table(
    path: Path,
    text: bytes,
    delimiter: str | None,
    first_line: int,
    max_rows: int | None = None,
) -> np.ndarray:
    """Rows of ``text`` as (rows, columns) float64 in one numpy call; on failure, the first
    bad line by number (``first_line`` is the file line number of ``text``'s first line)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "input contained no data"
            return np.loadtxt(
                io.BytesIO(text),
                dtype=np.float64,
                delimiter=delimiter,
                comments="#",
                ndmin=2,
                max_rows=max_rows,
                encoding="latin-1",
            )
    except ValueError as error:
        reason = _first_bad_row(text, delimiter, first_line) or f"unreadable rows: {error}"
        raise PointFileError(path, reason) from error


def _first_bad_row(text: bytes, delimiter: str | None, first_line: int) -> str | None:
    """Why ``text`` is not a table of numbers, naming the line (slow; only on errors)."""
    separator = None if delimiter is None else delimiter.encode()
    expected = None
    for number, line in enumerate(text.splitlines(), start=first_line):
        content = line.split(b"#", 1)[0]
        if not content.strip():
            continue
        values = content.split(separator)
        if expected is None:
            expected = len(values)
        elif len(values) != expected:
            return f"line {number}: {len(values)} values, expected {expected} as in the first row"
        for value in values:
            try:
                float(value)
            except ValueError:
                shown = value.strip().decode("latin-1")
                return f"line {number}: {shown!r} is not a number"
    return None


# ---- .pcd ------------------------------------------------------------------------------


@dataclass
class _PcdHeader:
    """A PCD header: per-field names, SIZE (bytes), TYPE (F/I/U), COUNT; the point count;
    the DATA kind; the offset of the body and the number of header lines."""

    fields: list[str]
    sizes: list[int]
    types: list[str]
    counts: list[int]
    points: int
    data: str
    offset: int
    lines: int

    def dtype(self, index: int) -> np.dtype:
        """The little-endian numpy type of one value of field ``index``."""
        kind = {"F": "f", "I": "i", "U": "u"}[self.types[index]]
        return np.dtype(f"<{kind}{self.sizes[index]}")

    def field_bytes(self, index: int) -> int:
        return self.sizes[index] * self.counts[index]


def _read_pcd(path: Path) -> np.ndarray:
    """x, y, z of a PCD file, points with a NaN coordinate dropped."""
    data = _read_bytes(path)
    header = _parse_pcd_header(path, data)
    body = data[header.offset :]
    if header.data == "ascii":
        points = _pcd_ascii(path, body, header)
    elif header.data == "binary":
        points = _pcd_binary(path, body, header)
    else:
        points = _pcd_compressed(path, body, header)
    valid = ~np.isnan(points).any(axis=1)
    if not valid.any():
        raise PointFileError(path, f"all {len(points)} points are invalid (NaN)")
    return points[valid]


def _parse_pcd_header(path: str | os.PathLike, data: bytes) -> _PcdHeader:
    """Parse and check the header of PCD ``data`` (``path`` is only for messages)."""
    values: dict[str, list[str]] = {}
    head = data[:_PCD_HEADER_MAX]
    position, number = 0, 0
    while "DATA" not in values:
        if position >= len(head):
            where = " within the first 64 KiB" if len(data) > len(head) else ""
            raise PointFileError(path, f"the header has no DATA line{where}")
        end = head.find(b"\n", position)
        end = len(head) if end < 0 else end
        line, position, number = head[position:end], end + 1, number + 1
        try:
            text = line.decode("ascii")
        except UnicodeDecodeError as error:
            raise PointFileError(path, f"header line {number} is not ASCII text") from error
        words = text.split()
        if not words or words[0].startswith("#"):
            continue
        key = words[0].upper()
        key = "FIELDS" if key == "COLUMNS" else key  # PCD v0.5
        if key not in _PCD_KEYS:
            raise PointFileError(path, f"header line {number}: unexpected {text.strip()!r}")
        values[key] = words[1:]
    return _pcd_header(path, values, min(position, len(data)), number)


def _pcd_header(
    path: str | os.PathLike, values: dict[str, list[str]], offset: int, lines: int
) -> _PcdHeader:
    """Check the header's values against each other (PCL's defaults for v0.6 files)."""
    fields = values.get("FIELDS")
    if not fields:
        raise PointFileError(path, "the header has no FIELDS line")
    sizes = _header_ints(path, values, "SIZE", [4] * len(fields))
    types = [word.upper() for word in values.get("TYPE", ["F"] * len(fields))]
    counts = _header_ints(path, values, "COUNT", [1] * len(fields))
    for key, listed in (("SIZE", sizes), ("TYPE", types), ("COUNT", counts)):
        if len(listed) != len(fields):
            raise PointFileError(path, f"{key} lists {len(listed)} values for {len(fields)} FIELDS")
    for name, size, kind, count in zip(fields, sizes, types, counts, strict=True):
        if (kind, size) not in _PCD_TYPES:
            raise PointFileError(path, f"field {name!r}: TYPE {kind} with SIZE {size} is invalid")
        if count < 1 and name != "_":  # PCL has written empty `_` padding fields
            raise PointFileError(path, f"field {name!r}: COUNT {count} must be at least 1")
    for axis in "xyz":
        if axis not in fields:
            raise PointFileError(path, f"no {axis} field (FIELDS {' '.join(fields)})")
        if counts[fields.index(axis)] != 1:
            raise PointFileError(
                path, f"field {axis} has COUNT {counts[fields.index(axis)]}; expected 1"
            )
    points = _pcd_point_count(path, values)
    data = values["DATA"][0].lower() if values["DATA"] else ""
    if data not in _PCD_DATA_KINDS:
        raise PointFileError(
            path, f"unknown DATA kind {data!r}; expected ascii, binary or binary_compressed"
        )
    return _PcdHeader(fields, sizes, types, counts, points, data, offset, lines)


def _header_ints(
    path: str | os.PathLike, values: dict[str, list[str]], key: str, default: list[int]
) -> list[int]:
    if key not in values:
        return default
    if not all(word.isdigit() for word in values[key]):
        raise PointFileError(
            path, f"{key} must list non-negative integers, got {' '.join(values[key])!r}"
        )
    return [int(word) for word in values[key]]


def _pcd_point_count(path: str | os.PathLike, values: dict[str, list[str]]) -> int:
    """POINTS, checked against WIDTH x HEIGHT; either may be missing (PCD v0.6)."""
    numbers = {}
    for key in ("WIDTH", "HEIGHT", "POINTS"):
        if key in values:
            ints = _header_ints(path, values, key, [])
            if len(ints) != 1:
                raise PointFileError(path, f"{key} must be one integer")
            numbers[key] = ints[0]
    if "POINTS" not in numbers and "WIDTH" not in numbers:
        raise PointFileError(path, "the header has neither POINTS nor WIDTH")
    width = numbers.get("WIDTH", numbers.get("POINTS"))
    height = numbers.get("HEIGHT", 1)
    points = numbers.get("POINTS", width * height)
    if width * height != points:
        raise PointFileError(path, f"WIDTH {width} x HEIGHT {height} != POINTS {points}")
    if points == 0:
        raise PointFileError(path, "no points (POINTS 0)")
    return points


def _pcd_ascii(path: Path, body: bytes, header: _PcdHeader) -> np.ndarray:
    """DATA ascii: one row of values per point, ``_`` padding values present or not."""
    if header.points > body.count(b"\n") + 1:
        raise PointFileError(
            path, f"truncated: header declares {header.points} points, the body has fewer lines"
        )
    table = _parse_table(path, body, None, header.lines + 1, max_rows=header.points)
    if len(table) < header.points:
        raise PointFileError(
            path, f"truncated: header declares {header.points} points, the file holds {len(table)}"
        )
    columns = _ascii_columns(path, header, table.shape[1])
    return table[:, columns]


def _ascii_columns(path: Path, header: _PcdHeader, width: int) -> list[int]:
    """Columns of x, y, z in rows of ``width`` values. PCL's reader expects COUNT values for
    every field, ``_`` padding included; rows without the ``_`` values are accepted too."""
    for skip_padding in (False, True):
        names = [
            name
            for name, count in zip(header.fields, header.counts, strict=True)
            for _ in range(count)
            if not (skip_padding and name == "_")
        ]
        if len(names) == width:
            return [names.index(axis) for axis in "xyz"]
    expected = sum(header.counts)
    raise PointFileError(path, f"data rows have {width} values; the header declares {expected}")


def _pcd_binary(path: Path, body: bytes, header: _PcdHeader) -> np.ndarray:
    """DATA binary: little-endian records, one per point, fields in header order."""
    offsets = np.cumsum([0] + [header.field_bytes(i) for i in range(len(header.fields))])
    record = int(offsets[-1])
    if len(body) < header.points * record:
        raise PointFileError(
            path,
            f"truncated: header declares {header.points} points of {record} bytes, "
            f"the body holds {len(body)} bytes ({len(body) // record} points)",
        )
    index = [header.fields.index(axis) for axis in "xyz"]
    dtype = np.dtype(
        {
            "names": list("xyz"),
            "formats": [header.dtype(i) for i in index],
            "offsets": [int(offsets[i]) for i in index],
            "itemsize": record,
        }
    )
    table = np.frombuffer(body, dtype=dtype, count=header.points)
    return np.stack([table[axis].astype(np.float64) for axis in "xyz"], axis=1)


def _pcd_compressed(path: Path, body: bytes, header: _PcdHeader) -> np.ndarray:
    """DATA binary_compressed: uint32 compressed size, uint32 size, then an LZF block with
    the fields one after another (all x, then all y, ...). PCL leaves ``_`` padding out."""
    if len(body) < 8:
        raise PointFileError(path, "truncated: no compressed block sizes after DATA")
    compressed, size = (int(v) for v in np.frombuffer(body, dtype="<u4", count=2))
    if compressed > len(body) - 8:
        raise PointFileError(
            path,
            f"truncated: compressed block size {compressed} > the {len(body) - 8} bytes "
            "after the sizes",
        )
    layout = _compressed_layout(path, header, size)
    if size > _LZF_MAX_RATIO * compressed:
        raise PointFileError(
            path, f"a compressed block of {compressed} bytes cannot hold {size} bytes"
        )
    try:
        block = lzf_decompress(body[8 : 8 + compressed], size)
    except ValueError as error:
        raise PointFileError(path, f"corrupt compressed block: {error}") from error
    columns = [
        np.frombuffer(block, dtype=header.dtype(field), count=header.points, offset=start)
        for field, start in layout
    ]
    return np.stack([column.astype(np.float64) for column in columns], axis=1)


def _compressed_layout(path: Path, header: _PcdHeader, size: int) -> list[tuple[int, int]]:
    """(field index, byte offset) of x, y, z in an uncompressed block of ``size`` bytes.
    PCL writes no ``_`` padding into the block; other writers may, so both are accepted."""
    sizes = []
    for keep_padding in (False, True):
        starts, total = {}, 0
        for index, name in enumerate(header.fields):
            if name != "_" or keep_padding:
                starts[index] = total
                total += header.field_bytes(index) * header.points
        if total == size:
            return [(i, starts[i]) for i in (header.fields.index(axis) for axis in "xyz")]
        sizes.append(total)
    expected = " or ".join(str(s) for s in sorted(set(sizes)))
    raise PointFileError(
        path,
        f"compressed block declares {size} bytes uncompressed; {header.points} points "
        f"of these fields take {expected}",
    )


def lzf_decompress(stream: bytes, size: int) -> bytes:
    """Decompress a liblzf block (as in PCD ``binary_compressed``) of exactly ``size`` bytes.

    A control byte c < 32 starts a literal run of c + 1 bytes; otherwise the top three
    bits give a length (7: add the next byte) and, with the next byte, a back-reference
    of length + 2 bytes starting (c & 31) * 256 + byte + 1 bytes back, which may overlap
    the bytes it writes. Raises ``ValueError`` on any out-of-bounds step.
    """
    out = bytearray()
    position, end = 0, len(stream)
    while position < end:
        control = stream[position]
        position += 1
        if control < 32:
            stop = position + control + 1
            if stop > end:
                raise ValueError(f"literal run at byte {position - 1} runs past the end")
            out += stream[position:stop]
            position = stop
        else:
            length = control >> 5
            extra = 2 if length == 7 else 1
            if position + extra > end:
                raise ValueError(f"back-reference at byte {position - 1} runs past the end")
            if length == 7:
                length += stream[position]
            distance = ((control & 0x1F) << 8) + stream[position + extra - 1] + 1
            position += extra
            start = len(out) - distance
            if start < 0:
                raise ValueError(
                    f"back-reference at byte {position - extra - 1} points {distance} bytes "
                    f"back, before the start of the output ({len(out)} bytes so far)"
                )
            length += 2
            pattern = out[start : start + length]  # overlap repeats the last `distance` bytes
            out += (pattern * (length // len(pattern) + 1))[:length]
        if len(out) > size:
            raise ValueError(f"decompresses to more than the declared {size} bytes")
    if len(out) != size:
        raise ValueError(f"decompresses to {len(out)} bytes, the header declares {size}")
    return bytes(out)
