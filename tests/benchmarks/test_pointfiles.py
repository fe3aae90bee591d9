"""xpt.benchmarks.pointfiles on files as other tools write them: numpy, PointNet++'s txt,
Open3D (fixtures in tests/data/pointfiles, see its README), PCL (bytes built here as
pcl::PCDWriter lays them out), trimesh; and on malformed files, one clear line each."""

from __future__ import annotations

import io
import pickle
import re
from pathlib import Path

import numpy as np
import pytest

from xpt.benchmarks.pointfiles import (
    POINT_SUFFIXES,
    PointFileError,
    lzf_decompress,
    read_point_file,
)

FIXTURES = Path(__file__).parents[1] / "data" / "pointfiles"
PCL_COMMENT = "# .PCD v0.7 - Point Cloud Data file format"


def fixture_points() -> np.ndarray:
    """The 40 points of the Open3D fixtures (README there), (40, 3) float32, exact."""
    i = np.arange(40)
    points = (np.stack([i * 7 % 40, i * 13 % 40, i * 29 % 40], axis=1) - 20) / 8.0
    return points.astype(np.float32)


def check_points(points: np.ndarray, expected: np.ndarray) -> None:
    assert points.dtype == np.float32
    assert points.flags.c_contiguous
    assert points.shape == expected.shape
    np.testing.assert_array_equal(points, expected.astype(np.float32))


def assert_refused(path: Path, reason: str) -> PointFileError:
    """``read_point_file(path)`` raises PointFileError: one line, ``"<path>: <reason>"``."""
    with pytest.raises(PointFileError, match=re.escape(str(path)) + ": " + reason) as info:
        read_point_file(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ") and "\n" not in message
    return info.value


# ---- common ------------------------------------------------------------------------------


def test_suffixes() -> None:
    assert POINT_SUFFIXES == (".npy", ".txt", ".xyz", ".pcd", ".ply")


def test_missing_file_folder_and_unknown_suffix(tmp_path: Path) -> None:
    assert_refused(tmp_path / "nope.pcd", "no such file")
    folder = tmp_path / "chair.pcd"
    folder.mkdir()
    assert_refused(folder, "is a folder")
    las = tmp_path / "cloud.las"
    las.write_bytes(b"LASF")
    assert_refused(las, r"unknown point file type \(suffix '.las'\); expected one of .npy, ")
    bare = tmp_path / "cloud"
    bare.write_bytes(b"1 2 3\n")
    assert_refused(bare, r"unknown point file type \(no suffix\)")


@pytest.mark.parametrize("suffix", POINT_SUFFIXES)
def test_empty_file(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"empty{suffix}"
    path.write_bytes(b"")
    assert_refused(path, r"empty file \(0 bytes\)")


def test_suffix_case_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "CHAIR.XYZ"
    path.write_text("1 2 3\n4 5 6\n")
    check_points(read_point_file(path), np.array([[1, 2, 3], [4, 5, 6]]))


# ---- .npy --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "array",
    [
        np.arange(30, dtype=np.float32).reshape(10, 3) / 4,
        np.arange(60, dtype=np.float64).reshape(10, 6) / 8,  # x y z nx ny nz
        np.arange(30, dtype=np.int64).reshape(10, 3) - 15,
        np.arange(40, dtype=np.int16).reshape(10, 4),
        np.asfortranarray(np.arange(30, dtype=np.float64).reshape(10, 3)),
    ],
    ids=["f32", "f64_normals", "int64", "int16_4cols", "fortran"],
)
def test_npy_arrays(tmp_path: Path, array: np.ndarray) -> None:
    path = tmp_path / "cloud.npy"
    np.save(path, array)
    check_points(read_point_file(path), array[:, :3])


def test_npy_structured(tmp_path: Path) -> None:
    dtype = np.dtype([("intensity", "<f4"), ("x", "<f8"), ("y", "<f8"), ("z", "<i4")])
    table = np.zeros(5, dtype)
    table["x"], table["y"], table["z"] = np.arange(5) / 2, -np.arange(5), np.arange(5) * 3
    table["intensity"] = 7
    path = tmp_path / "cloud.npy"
    np.save(path, table)
    expected = np.stack([table["x"], table["y"], table["z"]], axis=1)
    check_points(read_point_file(path), expected)


def test_npy_object_array_is_refused_without_unpickling(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "objects.npy"
    array = np.empty((2, 3), dtype=object)
    array[:] = 1.0
    np.save(path, array, allow_pickle=True)

    def never(*args: object, **kwargs: object) -> None:
        raise AssertionError("the reader unpickled the file")

    monkeypatch.setattr(pickle, "load", never)
    monkeypatch.setattr(pickle, "loads", never)
    assert_refused(path, r"holds Python objects \(dtype object\)")


@pytest.mark.parametrize(
    ("array", "reason"),
    [
        (np.arange(10.0), r"array has shape \(10,\); expected \(N, 3\)"),
        (np.zeros((10, 2)), r"array has shape \(10, 2\); expected \(N, 3\)"),
        (np.zeros((2, 5, 3)), r"array has shape \(2, 5, 3\)"),
        (np.zeros((4, 3), np.complex64), "dtype complex64 is not a real number type"),
        (np.zeros((0, 3), np.float32), "no points"),
        (np.zeros(3, [("x", "f4"), ("y", "f4")]), "structured array has no field z"),
    ],
    ids=["1d", "2cols", "3d", "complex", "empty", "no_z"],
)
def test_npy_wrong_layouts(tmp_path: Path, array: np.ndarray, reason: str) -> None:
    path = tmp_path / "bad.npy"
    np.save(path, array)
    assert_refused(path, reason)


def test_npy_truncated(tmp_path: Path) -> None:
    path = tmp_path / "cut.npy"
    np.save(path, np.zeros((40, 3), np.float32))
    path.write_bytes(path.read_bytes()[:-100])
    assert_refused(path, r"truncated: header declares shape \(40, 3\) float32 \(480 bytes")


def test_npy_header_claiming_a_trillion_points(tmp_path: Path) -> None:
    """The count is checked against the file size before anything is allocated."""
    buffer = io.BytesIO()
    header = {"descr": "<f4", "fortran_order": False, "shape": (10**12, 3)}
    np.lib.format.write_array_header_1_0(buffer, header)
    path = tmp_path / "huge.npy"
    path.write_bytes(buffer.getvalue() + bytes(12))
    assert_refused(path, r"truncated: header declares shape \(1000000000000, 3\)")


def test_npy_garbage_and_cut_header(tmp_path: Path) -> None:
    path = tmp_path / "text.npy"
    path.write_text("1 2 3\n")
    assert_refused(path, "not a valid .npy file")
    np.save(path, np.zeros((4, 3)))
    path.write_bytes(path.read_bytes()[:20])
    assert_refused(path, "not a valid .npy file")


def test_npy_non_finite(tmp_path: Path) -> None:
    array = np.ones((10, 3))
    array[2, 1], array[7, 0] = np.nan, np.inf
    array[8, 2] = 1e39  # finite as float64, beyond float32
    path = tmp_path / "nan.npy"
    np.save(path, array)
    assert_refused(path, "3 of 10 points have non-finite coordinates")


# ---- .txt / .xyz -------------------------------------------------------------------------


def test_pointnet2_resampled_txt(tmp_path: Path) -> None:
    """modelnet40_normal_resampled: 10,000 rows of 6 comma-separated '%.6f' values."""
    rng = np.random.default_rng(0)
    table = rng.uniform(-1, 1, (10000, 6))
    path = tmp_path / "airplane_0001.txt"
    np.savetxt(path, table, fmt="%.6f", delimiter=",")
    assert path.read_text().splitlines()[0].count(",") == 5
    expected = [[float(v) for v in line.split(",")[:3]] for line in path.read_text().splitlines()]
    check_points(read_point_file(path), np.array(expected))


@pytest.mark.parametrize("columns", [3, 6])
def test_space_separated_xyz(tmp_path: Path, columns: int) -> None:
    table = np.arange(8 * columns).reshape(8, columns) / 16 - 1
    path = tmp_path / "cloud.xyz"
    path.write_text("".join(" ".join(f"{v:.4f}" for v in row) + "\n" for row in table))
    check_points(read_point_file(path), table[:, :3])


def test_open3d_xyz() -> None:
    check_points(read_point_file(FIXTURES / "open3d_xyz.xyz"), fixture_points())


def test_txt_comments_blank_lines_tabs_crlf(tmp_path: Path) -> None:
    path = tmp_path / "cloud.txt"
    path.write_bytes(b"# x y z\r\n\r\n1.5\t2 3\r\n  # note\r\n4 5 6e-1  \r\n\r\n")
    check_points(read_point_file(path), np.array([[1.5, 2, 3], [4, 5, 0.6]]))


def test_txt_comma_with_spaces(tmp_path: Path) -> None:
    path = tmp_path / "cloud.txt"
    path.write_text("1.0, 2.0, 3.0\n-4, -5, -6\n")
    check_points(read_point_file(path), np.array([[1, 2, 3], [-4, -5, -6]]))


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("1,2,3,4,5,6\n# c\n1,2,3,4,5,6\n1,2,3,4,5\n", "line 4: 5 values, expected 6"),
        ("1 2 3\n\n4 five 6\n", "line 3: 'five' is not a number"),
        ("1,2,3\n4,,6\n", "line 2: '' is not a number"),
        ("# only\n\n   # comments\n", r"no data rows \(only blank or comment lines\)"),
        ("1 2\n3 4\n", r"rows have 2 values; expected at least 3 \(x y z\)"),
        ("1 2 3\nnan 1 1\n1 inf 1\n", "2 of 3 points have non-finite coordinates"),
    ],
    ids=["ragged", "word", "empty_value", "only_comments", "two_columns", "nan"],
)
def test_txt_malformed(tmp_path: Path, text: str, reason: str) -> None:
    path = tmp_path / "bad.txt"
    path.write_text(text)
    assert_refused(path, reason)


# ---- .pcd written by Open3D --------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        f"open3d_{fields}_{kind}.pcd"
        for fields in ("xyz", "xyzn_rgb")
        for kind in ("ascii", "binary", "compressed")
    ],
)
def test_open3d_pcd(name: str) -> None:
    check_points(read_point_file(FIXTURES / name), fixture_points())


def test_open3d_pcd_nan_points_are_dropped() -> None:
    expected = np.delete(fixture_points(), [3, 10], axis=0)
    check_points(read_point_file(FIXTURES / "open3d_nan_binary.pcd"), expected)


def test_modelnet10_development_data(shared_modelnet10: Path) -> None:
    """Open3D-written DATA binary files, 1,024 float32 points each, body at the end."""
    files = sorted(shared_modelnet10.glob("*/train/*_0001.pcd"))[:3]
    assert len(files) == 3
    for path in files:
        expected = np.frombuffer(path.read_bytes()[-1024 * 12 :], "<f4").reshape(1024, 3)
        check_points(read_point_file(path), expected)


# ---- .pcd as pcl::PCDWriter writes it ----------------------------------------------------


def pcl_header(
    fields: str, sizes: str, types: str, counts: str, width: int, height: int, data: str
) -> bytes:
    """PCDWriter::generateHeader followed by the DATA line, byte for byte."""
    return (
        f"{PCL_COMMENT}\nVERSION 0.7\nFIELDS {fields}\nSIZE {sizes}\nTYPE {types}\n"
        f"COUNT {counts}\nWIDTH {width}\nHEIGHT {height}\nVIEWPOINT 0 0 0 1 0 0 0\n"
        f"POINTS {width * height}\nDATA {data}\n"
    ).encode()


def lzf_literals(data: bytes) -> bytes:
    """A valid LZF stream of literal runs only (at most 32 bytes each)."""
    out = bytearray()
    for start in range(0, len(data), 32):
        chunk = data[start : start + 32]
        out += bytes([len(chunk) - 1]) + chunk
    return bytes(out)


def compressed_body(columns: list[np.ndarray]) -> bytes:
    """binary_compressed body: sizes, then one LZF block of the columns one after another."""
    block = b"".join(column.tobytes() for column in columns)
    stream = lzf_literals(block)
    return np.array([len(stream), len(block)], "<u4").tobytes() + stream


def pcl_xyzrgb() -> np.ndarray:
    """pcl::PointXYZRGB as the templated writer packs it: x y z float, rgb uint32."""
    table = np.zeros(6, [("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("rgb", "<u4")])
    table["x"], table["y"], table["z"] = np.arange(6) * 0.25, -np.arange(6), 3.5
    table["rgb"] = 0xFF102030
    return table


def xyz_of(table: np.ndarray) -> np.ndarray:
    return np.stack([table["x"], table["y"], table["z"]], axis=1)


def test_pcl_xyzrgb_binary(tmp_path: Path) -> None:
    table = pcl_xyzrgb()
    path = tmp_path / "xyzrgb.pcd"
    path.write_bytes(
        pcl_header("x y z rgb", "4 4 4 4", "F F F U", "1 1 1 1", 6, 1, "binary") + table.tobytes()
    )
    check_points(read_point_file(path), xyz_of(table))


def test_pcl_xyzrgb_binary_compressed(tmp_path: Path) -> None:
    table = pcl_xyzrgb()
    header = pcl_header("x y z rgb", "4 4 4 4", "F F F U", "1 1 1 1", 6, 1, "binary_compressed")
    path = tmp_path / "xyzrgb.pcd"
    path.write_bytes(header + compressed_body([table[name] for name in ("x", "y", "z", "rgb")]))
    check_points(read_point_file(path), xyz_of(table))


def test_pcl_xyzi_ascii(tmp_path: Path) -> None:
    """writeASCII: precision 8 (%.8g, which need not round-trip float32), x y z intensity."""
    points = np.array([[0.1, -2.25, 3e-5], [1 / 3, 7, -0.5]], np.float32)
    rows = "".join(f"{x:.8g} {y:.8g} {z:.8g} 255\n" for x, y, z in points)
    path = tmp_path / "xyzi.pcd"
    header = pcl_header("x y z intensity", "4 4 4 4", "F F F F", "1 1 1 1", 2, 1, "ascii")
    path.write_bytes(header + rows.encode())
    expected = [[float(v) for v in row.split()[:3]] for row in rows.splitlines()]
    check_points(read_point_file(path), np.array(expected))


def pcl_xyzrgbnormal() -> np.ndarray:
    """pcl::PointXYZRGBNormal in memory: 48 bytes, x y z, 4 pad, normal, 4 pad, rgb,
    curvature, 8 pad (PCL_ADD_POINT4D / PCL_ADD_NORMAL4D alignment)."""
    dtype = np.dtype(
        {
            "names": ["x", "y", "z", "w", "nx", "ny", "nz", "rgb", "curvature"],
            "formats": ["<f4"] * 4 + ["<f4"] * 3 + ["<u4", "<f4"],
            "offsets": [0, 4, 8, 12, 16, 20, 24, 32, 36],
            "itemsize": 48,
        }
    )
    table = np.zeros(5, dtype)
    table["x"], table["y"], table["z"] = np.arange(5) / 4, np.arange(5) - 9.5, 2.0
    table["w"] = 1.0  # data[3] of PCL_ADD_POINT4D, stored in the `_` padding
    table["nx"], table["ny"], table["nz"], table["rgb"] = 0.0, 1.0, 0.0, 0xFF00FF00
    return table


PADDED_FIELDS = "x y z _ normal_x normal_y normal_z _ rgb curvature _"
PADDED_SIZES = "4 4 4 1 4 4 4 1 4 4 1"
PADDED_TYPES = "F F F U F F F U F F U"
PADDED_COUNTS = "1 1 1 4 1 1 1 4 1 1 8"


def test_pcl_padded_record_binary(tmp_path: Path) -> None:
    """PCLPointCloud2 writeBinary: the record as in memory, padding named `_` (U 1 COUNT n)."""
    table = pcl_xyzrgbnormal()
    header = pcl_header(PADDED_FIELDS, PADDED_SIZES, PADDED_TYPES, PADDED_COUNTS, 5, 1, "binary")
    path = tmp_path / "padded.pcd"
    path.write_bytes(header + table.tobytes())
    assert len(table.tobytes()) == 5 * 48
    check_points(read_point_file(path), xyz_of(table))


def test_pcl_padded_record_binary_compressed(tmp_path: Path) -> None:
    """writeBinaryCompressed leaves the `_` fields out of the column block."""
    table = pcl_xyzrgbnormal()
    names = ("x", "y", "z", "nx", "ny", "nz", "rgb", "curvature")
    header = pcl_header(
        PADDED_FIELDS, PADDED_SIZES, PADDED_TYPES, PADDED_COUNTS, 5, 1, "binary_compressed"
    )
    path = tmp_path / "padded.pcd"
    path.write_bytes(header + compressed_body([table[name] for name in names]))
    check_points(read_point_file(path), xyz_of(table))


@pytest.mark.parametrize("padding_values", [True, False])
def test_pcl_padded_record_ascii(tmp_path: Path, padding_values: bool) -> None:
    """PCL's ascii reader skips a `_` field's values; rows without them are accepted too."""
    pad = " 0 0 0 0" if padding_values else ""
    tail = " 0 0 0 0 0 0 0 0" if padding_values else ""
    rows = f"1 2 3{pad} 0 1 0{pad} 4278255360 0.5{tail}\n-1 -2 -3{pad} 0 1 0{pad} 0 0{tail}\n"
    header = pcl_header(PADDED_FIELDS, PADDED_SIZES, PADDED_TYPES, PADDED_COUNTS, 2, 1, "ascii")
    path = tmp_path / "padded.pcd"
    path.write_bytes(header + rows.encode())
    check_points(read_point_file(path), np.array([[1, 2, 3], [-1, -2, -3]]))


def organised_cloud() -> tuple[np.ndarray, np.ndarray]:
    """A 4 x 3 organised cloud (x y z float32) whose invalid pixels are NaN, and its
    valid points in row order."""
    points = np.arange(36, dtype=np.float32).reshape(12, 3) / 8
    invalid = [0, 5, 6, 11]
    points[invalid] = np.nan
    return points, np.delete(points, invalid, axis=0)


@pytest.mark.parametrize("data", ["ascii", "binary", "binary_compressed"])
def test_pcl_organised_cloud_drops_nan_points(tmp_path: Path, data: str) -> None:
    points, valid = organised_cloud()
    header = pcl_header("x y z", "4 4 4", "F F F", "1 1 1", 4, 3, data)
    if data == "ascii":
        body = "".join(" ".join(f"{v:.8g}" for v in row) + "\n" for row in points).encode()
    elif data == "binary":
        body = points.tobytes()
    else:
        body = compressed_body([points[:, 0], points[:, 1], points[:, 2]])
    path = tmp_path / "organised.pcd"
    path.write_bytes(header + body)
    if data == "ascii":
        assert b"nan nan nan" in path.read_bytes()
    check_points(read_point_file(path), valid)


def test_pcd_v06_header_without_points(tmp_path: Path) -> None:
    path = tmp_path / "old.pcd"
    path.write_bytes(
        b"# .PCD v.6 - Point Cloud Data file format\nVERSION .6\nFIELDS x y z\n"
        b"SIZE 4 4 4\nTYPE F F F\nCOUNT 1 1 1\nWIDTH 3\nHEIGHT 1\nDATA ascii\n"
        b"1 2 3\n4 5 6\n7 8 9\n"
    )
    check_points(read_point_file(path), np.arange(1, 10).reshape(3, 3))


def test_pcd_float64_xyz_not_first(tmp_path: Path) -> None:
    table = np.zeros(4, [("intensity", "<f4"), ("x", "<f8"), ("y", "<f8"), ("z", "<f8")])
    table["x"], table["y"], table["z"] = np.arange(4) + 0.5, -np.arange(4), 1e3
    header = pcl_header("intensity x y z", "4 8 8 8", "F F F F", "1 1 1 1", 4, 1, "binary")
    path = tmp_path / "f64.pcd"
    path.write_bytes(header + table.tobytes())
    check_points(read_point_file(path), xyz_of(table))


# ---- LZF -------------------------------------------------------------------------------


def test_lzf_back_references() -> None:
    """A hand-made stream: literals, an offset-1 run, a plain copy, a long overlapping copy
    (length code 7 + extra byte), a copy from 300 bytes back, a final literal."""
    prefix = bytes(range(256)) + bytes(range(44))  # 300 literal bytes, 10 runs
    stream = (
        bytes([2])
        + b"abc"  # "abc"
        + bytes([(5 - 2) << 5, 0])  # 5 bytes from 1 back: "ccccc"
        + bytes([(3 - 2) << 5, 7])  # 3 bytes from 8 back: "abc"
        + bytes([7 << 5, 19 - 9, 1])  # 19 bytes from 2 back: "bcbc...b"
        + lzf_literals(prefix)
        + bytes([(1 << 5) | (299 >> 8), 299 & 0xFF])  # 3 bytes from 300 back
        + bytes([0])
        + b"!"
    )
    expected = b"abc" + b"ccccc" + b"abc" + b"bc" * 9 + b"b" + prefix + prefix[:3] + b"!"
    assert lzf_decompress(stream, len(expected)) == expected


def test_lzf_literal_encoder_round_trip() -> None:
    data = np.random.default_rng(1).integers(0, 256, 1000, dtype=np.uint8).tobytes()
    assert lzf_decompress(lzf_literals(data), len(data)) == data


@pytest.mark.parametrize(
    ("stream", "size", "reason"),
    [
        (bytes([0x20, 5]), 3, "before the start of the output"),
        (bytes([5, 1, 2]), 6, "literal run at byte 0 runs past the end"),
        (bytes([0, 65, 0x20]), 4, "back-reference at byte 2 runs past the end"),
        (bytes([0, 65, 0xE0, 3]), 20, "back-reference at byte 2 runs past the end"),
        (bytes([3, 1, 2, 3, 4]), 3, "more than the declared 3 bytes"),
        (bytes([3, 1, 2, 3, 4]), 9, "decompresses to 4 bytes, the header declares 9"),
    ],
)
def test_lzf_corrupt_streams(stream: bytes, size: int, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        lzf_decompress(stream, size)


# ---- malformed .pcd ----------------------------------------------------------------------


def xyz_header(data: str = "binary", points: int = 4) -> bytes:
    return pcl_header("x y z", "4 4 4", "F F F", "1 1 1", points, 1, data)


def replace_line(header: bytes, key: bytes, line: bytes) -> bytes:
    return re.sub(rb"^" + key + rb" .*$", line, header, count=1, flags=re.MULTILINE)


BODY = np.arange(12, dtype=np.float32).tobytes()


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (xyz_header().replace(b"DATA binary\n", b""), "the header has no DATA line"),
        (replace_line(xyz_header(), b"SIZE", b"SIZE 4 4") + BODY, "SIZE lists 2 values for 3"),
        (replace_line(xyz_header(), b"TYPE", b"TYPE F F") + BODY, "TYPE lists 2 values for 3"),
        (xyz_header(points=5) + BODY, "truncated: header declares 5 points of 12 bytes"),
        (xyz_header(points=10**12) + BODY, "truncated: header declares 1000000000000 points"),
        (xyz_header("gzip") + BODY, "unknown DATA kind 'gzip'; expected ascii, binary or"),
        (
            pcl_header("y z w", "4 4 4", "F F F", "1 1 1", 4, 1, "binary") + BODY,
            r"no x field \(FIELDS y z w\)",
        ),
        (
            replace_line(xyz_header(), b"POINTS", b"POINTS 3") + BODY,
            "WIDTH 4 x HEIGHT 1 != POINTS 3",
        ),
        (
            replace_line(xyz_header(), b"SIZE", b"SIZE 4 4 2") + BODY,
            "field 'z': TYPE F with SIZE 2 is invalid",
        ),
        (
            replace_line(xyz_header(), b"WIDTH", b"WIDTH four") + BODY,
            "WIDTH must list non-negative",
        ),
        (xyz_header(points=0), r"no points \(POINTS 0\)"),
        (b"VERSION 0.7\nFIELDS x y z\nRESOLUTION 3\n", "header line 3: unexpected 'RESOLUTION 3'"),
        (b"\x89PNG\r\n\x1a\n\x00\x00", "header line 1 is not ASCII text"),
        (xyz_header("ascii") + b"1 2 3\n4 5 6\n", "truncated: header declares 4 points"),
        (xyz_header("ascii", 2) + b"1 2 3\n4 5\n", "line 13: 2 values, expected 3"),
        (xyz_header("ascii", 2) + b"1 2 3 4\n5 6 7 8\n", "data rows have 4 values; the header"),
        (
            xyz_header(points=4) + np.full(12, np.nan, np.float32).tobytes(),
            "all 4 points are invalid",
        ),
        (
            xyz_header(points=2) + np.array([1, 2, 3, np.inf, 0, 0], np.float32).tobytes(),
            "1 of 2 points have non-finite coordinates",
        ),
    ],
    ids=[
        "no_data",
        "size_count",
        "type_count",
        "truncated",
        "trillion",
        "unknown_data",
        "no_x",
        "points_mismatch",
        "bad_type",
        "bad_width",
        "zero_points",
        "unknown_key",
        "not_text",
        "ascii_truncated",
        "ascii_ragged",
        "ascii_columns",
        "all_nan",
        "inf",
    ],
)
def test_pcd_malformed(tmp_path: Path, content: bytes, reason: str) -> None:
    path = tmp_path / "bad.pcd"
    path.write_bytes(content)
    assert_refused(path, reason)


def compressed_xyz(sizes: tuple[int, int] | None = None, stream: bytes | None = None) -> bytes:
    block = np.arange(12, dtype=np.float32).tobytes()
    stream = lzf_literals(block) if stream is None else stream
    compressed, size = (len(stream), len(block)) if sizes is None else sizes
    body = np.array([compressed, size], "<u4").tobytes() + stream
    return xyz_header("binary_compressed") + body


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (compressed_xyz(), None),
        (xyz_header("binary_compressed") + b"\x05\x00", "truncated: no compressed block sizes"),
        (compressed_xyz(sizes=(10**6, 48)), r"truncated: compressed block size 1000000 > the 50"),
        (
            compressed_xyz(sizes=(50, 4000)),
            "compressed block declares 4000 bytes uncompressed; 4 points of these",
        ),
        (
            compressed_xyz(sizes=(50, 2**32 - 1)),
            "compressed block declares 4294967295 bytes uncompressed",
        ),
        (
            compressed_xyz(sizes=(0, 48)),
            "a compressed block of 0 bytes cannot hold 48 bytes",
        ),
        (
            compressed_xyz(stream=bytes([0x20, 5]) + lzf_literals(bytes(45))),
            "corrupt compressed block: back-reference at byte 0 points 6 bytes back, before",
        ),
        (
            compressed_xyz(sizes=(20, 48)),
            "corrupt compressed block: literal run at byte 0 runs past the end",
        ),
    ],
    ids=[
        "valid",
        "no_sizes",
        "compressed_lies",
        "size_lies",
        "size_huge",
        "ratio",
        "before",
        "cut_stream",
    ],
)
def test_pcd_compressed_sizes_and_streams(
    tmp_path: Path, content: bytes, reason: str | None
) -> None:
    path = tmp_path / "packed.pcd"
    path.write_bytes(content)
    if reason is None:
        check_points(read_point_file(path), np.arange(12).reshape(3, 4).T)
    else:
        assert_refused(path, reason)


# ---- .ply --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        f"open3d_{fields}_{kind}.ply"
        for fields in ("xyz", "xyzn_rgb")
        for kind in ("ascii", "binary")
    ],
)
def test_open3d_ply(name: str) -> None:
    check_points(read_point_file(FIXTURES / name), fixture_points())


@pytest.mark.parametrize("encoding", ["binary", "ascii"])
def test_trimesh_point_cloud_ply(tmp_path: Path, encoding: str) -> None:
    trimesh = pytest.importorskip("trimesh")
    points = fixture_points()
    colors = np.full((len(points), 4), 200, np.uint8)
    path = tmp_path / "cloud.ply"
    trimesh.PointCloud(points, colors=colors).export(path, encoding=encoding)
    check_points(read_point_file(path), points)


def test_ply_errors_become_point_file_errors(tmp_path: Path) -> None:
    trimesh = pytest.importorskip("trimesh")
    path = tmp_path / "cut.ply"
    trimesh.PointCloud(fixture_points()).export(path)
    path.write_bytes(path.read_bytes()[:-20])
    error = assert_refused(path, "truncated: header declares 40 vertices, the file holds 38")
    assert error.reason.startswith("truncated")
    path.write_bytes(b"solid cube\n")
    assert_refused(path, r"not a PLY file \(no 'ply' magic\)")
