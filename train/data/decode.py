"""Shard members -> arrays: ``points.npy`` -> float32 (N, 3), ``view_NN.{png,jpg,webp}``
-> uint8 (H, W, 3) RGB, and clouds resampled to a fixed point count.

Decoders come from the shard schema (``xpt.toolkit.shards.schema``); nothing is unpickled,
and any failure is a one-line :class:`DecodeError` naming the entry.
"""

from __future__ import annotations

import contextlib
import functools
import io
import math
from collections.abc import Iterator
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from xpt.toolkit.shards.schema import (
    DECODERS,
    POINTS,
    SchemaError,
    decode_entry,
    decode_image,
    entry_extension,
    open_image,
)


class DecodeError(ValueError):
    """An entry that cannot be decoded; the message names the entry and the reason."""


@contextlib.contextmanager
def _decode_errors(entry: str) -> Iterator[None]:
    """Turn any failure inside the block into a one-line DecodeError naming ``entry``."""
    try:
        yield
    except UnidentifiedImageError:
        raise DecodeError(f"{entry}: not a readable image") from None
    except SchemaError as exc:
        raise DecodeError(str(exc)) from None
    except Exception as exc:
        raise DecodeError(f"{entry}: {type(exc).__name__}: {exc}") from None


def _decoded(entry: str, data: bytes) -> Any:
    """``schema.decode_entry`` (the shard schema's decoder dict, keyed by extension; it
    refuses pickles) with every failure turned into a one-line DecodeError."""
    with _decode_errors(entry):
        return decode_entry(entry, data)


_NPY_MAGIC = b"\x93NUMPY"


@functools.lru_cache(maxsize=64)
def _npy_header(version: bytes, header: bytes) -> tuple[tuple[int, ...], bool, np.dtype]:
    """(shape, fortran_order, dtype) of a .npy header (``header``: from the length field
    after the version bytes), parsed and checked by numpy; cached, as the clouds of a
    shard set share a few headers."""
    read = np.lib.format.read_array_header_1_0
    if version == b"\x02\x00":
        read = np.lib.format.read_array_header_2_0
    return read(io.BytesIO(header))


def _npy_floats(data: bytes) -> np.ndarray | None:
    """A float array stored as ``.npy`` (format 1.0 or 2.0), as a read-only view of
    ``data``; None for anything else (other dtypes, other versions, damaged bytes), which
    ``np.load`` then decodes or refuses with its own message. Nothing is unpickled."""
    if data[:6] != _NPY_MAGIC:
        return None
    version = bytes(data[6:8])
    if version not in (b"\x01\x00", b"\x02\x00"):
        return None
    start = 10 if version == b"\x01\x00" else 12
    end = start + int.from_bytes(data[8:start], "little")
    if len(data) < end:
        return None
    try:
        shape, fortran_order, dtype = _npy_header(version, bytes(data[8:end]))
    except (ValueError, TypeError):
        return None
    count = math.prod(shape)
    if dtype.kind != "f" or min(shape, default=0) < 0 or len(data) - end < count * dtype.itemsize:
        return None
    array = np.frombuffer(data, dtype, count, end)
    return array.reshape(shape[::-1]).T if fortran_order else array.reshape(shape)


def decode_points(data: bytes) -> np.ndarray:
    """``points.npy`` bytes (float32 or float16, never unpickled) -> float32 (N, 3), finite,
    a fresh writable array."""
    points = _npy_floats(data)
    if points is None:
        points = _decoded(POINTS, data)
    if points.ndim != 2 or points.shape[1] != 3 or len(points) == 0 or points.dtype.kind != "f":
        raise DecodeError(
            f"{POINTS}: points must be float (N, 3), got {points.dtype} {points.shape}"
        )
    if not np.isfinite(points).all():
        raise DecodeError(f"{POINTS}: non-finite point coordinates")
    points = np.ascontiguousarray(points, dtype=np.float32)
    return points if points.flags.writeable else points.copy()


def _resized(image: Image.Image, size: int | None) -> Image.Image:
    """``image`` resized to (size, size) with PIL BILINEAR; unchanged when ``size`` is None
    or already the image's size."""
    if size is None or image.size == (size, size):
        return image
    return image.resize((size, size), Image.Resampling.BILINEAR)


def decode_view(entry: str, data: bytes, size: int | None = None) -> np.ndarray:
    """A ``view_NN.{png,jpg,webp}`` entry -> uint8 (H, W, 3) RGB, resized to (size, size)
    with PIL BILINEAR when ``size`` is given; a fresh writable array.

    An alpha channel is dropped, as the release's ``Image.convert("RGB")`` does. RGB and
    RGBA images stay PIL images until the one copy into NumPy; other modes are read as
    ``schema.decode_image`` returns them (so grey and palette images are refused).
    """
    if DECODERS.get(entry_extension(entry)) is decode_image:
        with _decode_errors(entry):
            image = open_image(data)
        if image.mode == "RGBA":
            image = image.convert("RGB")
        if image.mode == "RGB":
            return np.array(_resized(image, size))
        with _decode_errors(entry):
            array = np.asarray(image)
    else:
        array = _decoded(entry, data)
    if array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] not in (3, 4):
        raise DecodeError(f"{entry}: not an RGB uint8 image ({array.dtype} {array.shape})")
    rgb = np.array(array[..., :3])  # a writable copy, without any alpha
    return rgb if size is None else np.array(_resized(Image.fromarray(rgb), size))


def resample_points(points: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """points : (M, 3) float -> (n, 3): a random subset when M > n, all M plus random
    repeats when M < n, unchanged when M == n."""
    m = len(points)
    if m == n:
        return points
    if m > n:
        return points[rng.choice(m, n, replace=False)]
    return np.concatenate([points, points[rng.integers(0, m, n - m)]])
