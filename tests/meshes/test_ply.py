"""The PLY point reader: ASCII and binary (both byte orders), and clear errors."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from xpt.toolkit.meshes.ply import PlyError, read_ply_points

POINTS = np.array([[0.5, -1.25, 2.0], [3.0, 0.0, -0.125], [1e-3, 7.5, 4.0]], dtype=np.float32)


def _header(fmt: str, count: int, properties: str = "xyz", extra: str = "") -> bytes:
    lines = ["ply", f"format {fmt} 1.0", "comment made by hand", f"element vertex {count}"]
    lines += [f"property float {name}" for name in properties]
    return ("\n".join(lines) + "\n" + extra + "end_header\n").encode()


def _binary(order: str, points: np.ndarray = POINTS) -> bytes:
    fmt = "binary_little_endian" if order == "<" else "binary_big_endian"
    body = b"".join(struct.pack(order + "3f", *row) for row in points.tolist())
    return _header(fmt, len(points)) + body


@pytest.mark.parametrize("order", ["<", ">"])
def test_binary_ply_both_byte_orders(tmp_path: Path, order: str) -> None:
    path = tmp_path / "cloud.ply"
    path.write_bytes(_binary(order))
    points = read_ply_points(path)
    assert points.dtype == np.float32 and np.array_equal(points, POINTS)


def test_ascii_ply(tmp_path: Path) -> None:
    path = tmp_path / "cloud.ply"
    body = "".join(" ".join(repr(float(v)) for v in row) + "\n" for row in POINTS.tolist())
    path.write_bytes(_header("ascii", 3) + body.encode())
    assert np.array_equal(read_ply_points(path), POINTS)


def test_extra_vertex_properties_and_later_elements_are_ignored(tmp_path: Path) -> None:
    extra = "element face 1\nproperty list uchar int vertex_indices\n"
    header = _header("binary_little_endian", 3, properties="xnyz", extra=extra)
    body = b"".join(struct.pack("<4f", r[0], 9.0, r[1], r[2]) for r in POINTS.tolist())
    path = tmp_path / "cloud.ply"
    path.write_bytes(header + body + struct.pack("<B3i", 3, 0, 1, 2))
    assert np.array_equal(read_ply_points(path), POINTS)
    ascii_rows = "".join(f"{r[0]} 9 {r[1]} {r[2]}\n" for r in POINTS.tolist()) + "3 0 1 2\n"
    path.write_bytes(_header("ascii", 3, properties="xnyz", extra=extra) + ascii_rows.encode())
    assert np.array_equal(read_ply_points(path), POINTS)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"solid not a ply\n", "no 'ply' magic"),
        (b"ply\nformat ascii 1.0\nelement vertex 2\nproperty float x\n", "no 'end_header'"),
        (_header("binary_middle_endian", 3), "unknown format"),
        (_header("ascii", 3, properties="xy"), "no z property"),
        (_binary("<")[:-5], "truncated: header declares 3 vertices, the file holds 2"),
        (_header("ascii", 3) + b"1 2 3\n4 5 6\n", "truncated"),
        (_header("ascii", 2) + b"1 2 3\n4 five 6\n", "bad vertex line"),
        (_header("ascii", 1) + b"1 nan 3\n", "non-finite"),
        (_header("ascii", 0), "no vertices"),
        (b"ply\nformat ascii 1.0\nelement face 1\nend_header\n", "first element must be"),
    ],
)
def test_malformed_files_raise_ply_error_naming_the_file(
    tmp_path: Path, data: bytes, reason: str
) -> None:
    path = tmp_path / "bad.ply"
    path.write_bytes(data)
    with pytest.raises(PlyError) as info:
        read_ply_points(path)
    assert reason in str(info.value) and str(info.value).startswith(str(path))
    assert "\n" not in str(info.value)


def test_missing_file_is_a_ply_error(tmp_path: Path) -> None:
    with pytest.raises(PlyError, match="cannot read"):
        read_ply_points(tmp_path / "absent.ply")


def test_ascii_ply_with_blank_lines_between_vertices(tmp_path: Path) -> None:
    path = tmp_path / "cloud.ply"
    rows = [" ".join(repr(float(v)) for v in row) for row in POINTS.tolist()]
    body = "\n" + rows[0] + "\n\n  \n" + rows[1] + "\r\n\n" + rows[2] + "\n"
    path.write_bytes(_header("ascii", 3) + body.encode())
    assert np.array_equal(read_ply_points(path), POINTS)
