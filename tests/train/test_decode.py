"""The fast view and point decoders give exactly what the schema's decoders gave before:
the same arrays, bit for bit, and the same one-line errors, on files written by PIL and
``np.save``."""

from __future__ import annotations

import io
import pickle
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from xpt.toolkit.shards.schema import POINTS, decode_entry
from xpt.train.data import DecodeError, decode_points, decode_view

SIZE = 224


def _reference_view(entry: str, data: bytes, size: int | None) -> np.ndarray:
    """The decoding before the fast path: the schema decoder's array in the stored mode,
    alpha dropped, then (when asked) back to PIL for the BILINEAR resize."""
    image = decode_entry(entry, data)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] not in (3, 4):
        raise DecodeError(f"{entry}: not an RGB uint8 image ({image.dtype} {image.shape})")
    rgb = np.array(image[..., :3])
    if size is None or rgb.shape[:2] == (size, size):
        return rgb
    return np.array(Image.fromarray(rgb).resize((size, size), Image.Resampling.BILINEAR))


def _reference_points(data: bytes) -> np.ndarray:
    """The points decoding before the fast path: ``np.load`` without pickles."""
    points = decode_entry(POINTS, data)
    assert points.ndim == 2 and points.shape[1] == 3 and np.isfinite(points).all()
    return np.ascontiguousarray(points, dtype=np.float32)


def _encoded(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def _npy(array: np.ndarray, **options) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, **options)
    return buffer.getvalue()


def _render(size: int, channels: int, seed: int = 0) -> np.ndarray:
    """A smooth shaded blob plus noise: like a render, with every value range exercised."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    shade = np.clip(255 - ((xx - size / 3) ** 2 + (yy - size / 2) ** 2) / 8, 0, 255)
    bands = [shade * f for f in (1.0, 0.8, 0.5, 0.9)[:channels]]
    noise = rng.integers(-40, 40, (size, size, channels))
    return np.clip(np.stack(bands, -1) + noise, 0, 255).astype(np.uint8)


def _views() -> list[tuple[str, bytes]]:
    """(entry, bytes) views in every mode and format a shard may hold."""
    rgb = Image.fromarray(_render(137, 3))
    rgba_array = _render(137, 4, seed=1)
    rgba_array[::3, :, 3] = 0  # colour kept under fully transparent pixels
    rgba = Image.fromarray(rgba_array)
    return [
        ("view_00.png", _encoded(rgb, "PNG")),
        ("view_01.png", _encoded(rgba, "PNG")),
        ("view_02.png", _encoded(Image.fromarray(_render(SIZE, 3)), "PNG")),  # already 224
        ("view_03.png", _encoded(Image.fromarray(_render(64, 3).transpose(1, 0, 2)[:40]), "PNG")),
        ("view_04.jpg", _encoded(rgb, "JPEG", quality=90)),
        ("view_05.webp", _encoded(rgb, "WEBP", quality=90)),
        ("view_06.webp", _encoded(rgba, "WEBP", lossless=True)),
        ("VIEW_07.PNG", _encoded(rgb, "PNG")),  # the extension is matched case-blind
        ("view_08.jpg", _encoded(rgb.convert("CMYK"), "JPEG")),  # 4 bands, not RGBA
    ]


@pytest.mark.parametrize("size", [None, SIZE, 137])
def test_views_match_the_reference_bit_for_bit(size: int | None) -> None:
    for entry, data in _views():
        expected = _reference_view(entry, data, size)
        decoded = decode_view(entry, data, size)
        assert decoded.dtype == np.uint8 and decoded.flags.writeable, entry
        assert decoded.shape == expected.shape and np.array_equal(decoded, expected), entry


def test_rgba_keeps_the_colour_under_transparent_pixels() -> None:
    rgba = _render(32, 4)
    rgba[..., 3] = 0
    data = _encoded(Image.fromarray(rgba), "PNG")
    assert np.array_equal(decode_view("view_00.png", data), rgba[..., :3])
    bilinear = Image.Resampling.BILINEAR
    expected = np.array(Image.fromarray(rgba).convert("RGB").resize((SIZE, SIZE), bilinear))
    assert np.array_equal(decode_view("view_00.png", data, SIZE), expected)


@pytest.mark.parametrize("mode", ["L", "P", "LA", "I;16"])
def test_grey_and_palette_views_are_refused_as_before(mode: str) -> None:
    rgb = Image.fromarray(_render(20, 3))
    image = rgb.convert("P") if mode == "P" else rgb.convert("L").convert(mode)
    data = _encoded(image, "PNG")
    with pytest.raises(DecodeError) as expected:
        _reference_view("view_00.png", data, SIZE)
    with pytest.raises(DecodeError) as error:
        decode_view("view_00.png", data, SIZE)
    assert str(error.value) == str(expected.value)
    assert str(error.value).startswith("view_00.png: not an RGB uint8 image (")


@pytest.mark.parametrize(
    ("entry", "data", "message"),
    [
        ("view_00.png", b"garbage", "view_00.png: not a readable image"),
        ("view_00.pickle", pickle.dumps([1]), "entry 'view_00.pickle' is a pickle"),
        ("view_00.bmp", b"BM", "entry 'view_00.bmp' has no decoder"),
    ],
)
def test_unreadable_views_give_one_line_errors(entry: str, data: bytes, message: str) -> None:
    with pytest.raises(DecodeError) as error:
        decode_view(entry, data, SIZE)
    assert str(error.value).startswith(message) and "\n" not in str(error.value)


def test_truncated_view_names_the_entry() -> None:
    data = _encoded(Image.fromarray(_render(137, 3)), "PNG")
    with pytest.raises(DecodeError) as error:
        decode_view("view_03.png", data[: len(data) // 2], SIZE)
    message = str(error.value)
    assert message.startswith("view_03.png: ") and "\n" not in message


def _clouds() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    cloud = rng.normal(size=(2048, 3))
    return [
        cloud.astype(np.float32),
        cloud.astype(np.float16),
        cloud,  # float64
        cloud.astype(">f4"),  # big-endian
        np.asfortranarray(cloud.astype(np.float32)),
        np.asfortranarray(cloud[:5].astype(np.float16)),
        cloud[:1].astype(np.float32),
    ]


def test_points_match_np_load_bit_for_bit() -> None:
    for cloud in _clouds():
        data = _npy(cloud)
        decoded = decode_points(data)
        assert decoded.dtype == np.float32 and decoded.flags.c_contiguous
        assert decoded.flags.writeable and decoded.flags.owndata
        assert np.array_equal(decoded, _reference_points(data))
        assert np.array_equal(decoded, cloud.astype(np.float32))


def test_npy_format_2_header_is_read() -> None:
    cloud = np.random.default_rng(1).normal(size=(7, 3)).astype(np.float32)
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, cloud, version=(2, 0))
    assert np.array_equal(decode_points(buffer.getvalue()), cloud)


def _refusal(data: bytes) -> str:
    """The DecodeError message of the reference path (np.load + the shape checks)."""
    try:
        points = decode_entry(POINTS, data)
    except Exception as exc:
        return f"{POINTS}: {type(exc).__name__}: {exc}"
    if points.ndim != 2 or points.shape[1] != 3 or len(points) == 0 or points.dtype.kind != "f":
        return f"{POINTS}: points must be float (N, 3), got {points.dtype} {points.shape}"
    return f"{POINTS}: non-finite point coordinates"


def test_bad_points_are_refused_with_the_same_message(tmp_path: Path) -> None:
    good = _npy(np.ones((16, 3), np.float32))
    cases = {
        "truncated data": good[:-5],
        "truncated header": good[:40],
        "no magic": b"\x00" * 200,
        "int points": _npy(np.ones((4, 3), np.int32)),
        "wrong shape": _npy(np.ones((4, 2), np.float32)),
        "no points": _npy(np.ones((0, 3), np.float32)),
        "a scalar": _npy(np.float32(1)),
        "nan": _npy(np.array([[0, np.nan, 0]], np.float16)),
        "inf": _npy(np.array([[0, 0, np.inf]], np.float32)),
        "structured": _npy(np.zeros(4, dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4")])),
        "bad header": good.replace(b"'descr'", b"'dexcr'"),
        "negative shape": good.replace(b"(16, 3)", b"(-16,3)"),
        "newer version": good[:6] + b"\x09" + good[7:],
        "empty": b"",
    }
    for name, data in cases.items():
        with pytest.raises(DecodeError) as error:
            decode_points(data)
        assert str(error.value) == _refusal(data), name
        assert "\n" not in str(error.value)


class _Touch:
    """Unpickling this creates ``path``: proof that something was unpickled."""

    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self):
        return (open, (str(self.path), "w"))


def test_pickled_object_arrays_are_refused_never_unpickled(tmp_path: Path) -> None:
    marker = tmp_path / "unpickled"
    data = _npy(np.array([[_Touch(marker)] * 3], dtype=object), allow_pickle=True)
    with pytest.raises(DecodeError) as error:
        decode_points(data)
    assert str(error.value) == _refusal(data) and "allow_pickle" in str(error.value)
    assert not marker.exists()
