"""The shard sample schema: the one definition used by writer, reader, verify and inspect.

A sample is one object. In the tar file its entries are members named
``<key>.<entry>`` (WebDataset convention: the key is everything before the first dot):

=================  ==========================================================
``points.npy``     float32 (or float16) (N, 3), the shared normalised frame
``normals.npy``    optional float16 (N, 3), unit normals
``view_00.png``    RGB uint8 views ``view_00`` ... ``view_{V-1}``, png/jpg/webp
``json``           metadata, the fields in :data:`META_FIELDS`
=================  ==========================================================

Decoding never unpickles: decoders are a dict keyed by extension, ``.npy`` is read
with ``allow_pickle=False``, and pickle-bearing entries (``.pyd``, ``.pickle``,
``.pth`` ...) are rejected with :class:`SchemaError`.
"""

from __future__ import annotations

import io
import json
import re
import tarfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

FORMAT_VERSION = 1
# "test" holds a source's own test split (ModelNet); train and val never hold its objects.
SPLITS = ("train", "val", "test")
POINTS = "points.npy"
NORMALS = "normals.npy"
META = "json"
IMAGE_FORMATS = {"png": "PNG", "jpg": "JPEG", "webp": "WEBP"}
POINTS_DTYPES = ("float32", "float16")
NORMALS_DTYPE = "float16"
PICKLE_EXTENSIONS = frozenset({"pyd", "pickle", "pkl", "pth", "pt"})
VIEW_ENTRY = re.compile(r"^view_(\d{2,})\.(png|jpg|webp)$")
SHARD_NAME = re.compile(r"^(train|val|test)-(\d{6})\.tar$")

# Required metadata fields and the JSON types they must have.
META_FIELDS: dict[str, tuple[type, ...]] = {
    "source": (str,),
    "category_id": (str,),
    "category_name": (str,),
    "model_id": (str,),
    "label": (int, type(None)),
    "split": (str,),
    "num_views": (int,),
    "num_points": (int,),
    "cameras": (list,),
    "normalization": (dict,),
    "seed": (int,),
    "xpt_version": (str,),
    "format_version": (int,),
}


class SchemaError(ValueError):
    """A sample or entry that does not follow the shard schema."""


@dataclass(frozen=True)
class EncodedImage:
    """An already encoded RGB view (e.g. a rendered PNG), stored as is when its format
    is the shard's image format, so views are not decoded and re-encoded for nothing."""

    data: bytes
    format: str


@dataclass
class Sample:
    """One object before encoding.

    points : (N, 3) float, normalised frame. views : list of (H, W, 3) uint8 RGB arrays
    or :class:`EncodedImage`. normals : optional (N, 3) float. meta : the metadata fields
    of :data:`META_FIELDS` except ``num_views``, ``num_points`` and ``format_version``,
    which encoding fills in.
    """

    key: str
    points: np.ndarray
    views: list[np.ndarray | EncodedImage]
    meta: dict
    normals: np.ndarray | None = None


def shard_name(split: str, index: int) -> str:
    """``train-000003.tar`` style names."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    return f"{split}-{index:06d}.tar"


def view_entry(index: int, image_format: str = "png") -> str:
    return f"view_{index:02d}.{image_format}"


def split_member(name: str) -> tuple[str, str]:
    """``"<key>.<entry>"`` -> ``(key, entry)``, as WebDataset splits member names."""
    base = name.rsplit("/", 1)[-1]
    if "." not in base:
        raise SchemaError(f"member {name!r} has no extension")
    prefix = name[: len(name) - len(base)]
    key, entry = base.split(".", 1)
    return prefix + key, entry


# ---------------------------------------------------------------- encoding


def encode_npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
    return buffer.getvalue()


def encode_image(image: np.ndarray, image_format: str = "png", quality: int = 90) -> bytes:
    """(H, W, 3) uint8 RGB -> image bytes. Deterministic: no timestamps or metadata."""
    from PIL import Image

    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise SchemaError(f"views must be (H, W, 3) uint8, got {image.shape} {image.dtype}")
    if image_format not in IMAGE_FORMATS:
        raise SchemaError(f"image format must be one of {tuple(IMAGE_FORMATS)}")
    buffer = io.BytesIO()
    options: dict[str, Any] = {"compress_level": 6} if image_format == "png" else {}
    if image_format in ("jpg", "webp"):
        options["quality"] = int(quality)
    Image.fromarray(image, "RGB").save(buffer, format=IMAGE_FORMATS[image_format], **options)
    return buffer.getvalue()


def encode_json(data: Mapping[str, Any]) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()


def encode_sample(
    sample: Sample,
    *,
    image_format: str = "png",
    quality: int = 90,
    points_dtype: str = "float32",
) -> dict[str, bytes]:
    """A :class:`Sample` -> ``{entry: bytes}`` plus ``"__key__"`` (str), entries sorted.

    Fills ``num_views``, ``num_points`` and ``format_version`` in the metadata and
    checks the result against the schema, so a bad sample fails here, not in a reader.
    """
    if "." in sample.key or "/" in sample.key or not sample.key:
        raise SchemaError(f"sample key {sample.key!r} must be non-empty, without dots or '/'")
    if points_dtype not in POINTS_DTYPES:
        raise SchemaError(f"points dtype must be one of {POINTS_DTYPES}, got {points_dtype!r}")
    points = _check_points(np.asarray(sample.points), POINTS)
    if not sample.views:
        raise SchemaError("a sample needs at least one view")
    meta = {
        **sample.meta,
        "num_views": len(sample.views),
        "num_points": len(points),
        "format_version": FORMAT_VERSION,
    }
    _check_meta(meta)
    entries: dict[str, Any] = {
        POINTS: encode_npy(points.astype(points_dtype)),
        META: encode_json(meta),
    }
    if sample.normals is not None:
        normals = _check_points(np.asarray(sample.normals), NORMALS)
        if normals.shape != points.shape:
            raise SchemaError(f"normals shape {normals.shape} != points shape {points.shape}")
        entries[NORMALS] = encode_npy(normals.astype(NORMALS_DTYPE))
    for index, view in enumerate(sample.views):
        if isinstance(view, EncodedImage) and view.format == image_format:
            data = view.data
        elif isinstance(view, EncodedImage):
            data = encode_image(decode_image(view.data), image_format, quality)
        else:
            data = encode_image(view, image_format, quality)
        entries[view_entry(index, image_format)] = data
    return {"__key__": sample.key, **dict(sorted(entries.items()))}


# ---------------------------------------------------------------- decoding


def decode_npy(data: bytes) -> np.ndarray:
    return np.load(io.BytesIO(data), allow_pickle=False)


def open_image(data: bytes) -> Any:
    """Image bytes -> a decoded ``PIL.Image`` in the stored mode (read whole, so a truncated
    or corrupt file fails here)."""
    from PIL import Image

    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def decode_image(data: bytes) -> np.ndarray:
    """Image bytes -> (H, W, C) uint8 array in the stored mode (views are RGB)."""
    with open_image(data) as image:
        return np.asarray(image)


def decode_json(data: bytes) -> Any:
    return json.loads(data.decode("utf-8"))


DECODERS: dict[str, Callable[[bytes], Any]] = {
    "npy": decode_npy,
    "png": decode_image,
    "jpg": decode_image,
    "webp": decode_image,
    "json": decode_json,
}


def entry_extension(entry: str) -> str:
    return entry.rsplit(".", 1)[-1].lower()


def reject_pickles(raw: Mapping[str, Any]) -> None:
    """Raise :class:`SchemaError` if any entry would need unpickling to decode."""
    for entry in raw:
        if entry_extension(entry) in PICKLE_EXTENSIONS:
            key = raw.get("__key__", "?")
            raise SchemaError(f"sample {key}: entry {entry!r} is a pickle; refusing to decode it")


def decode_entry(entry: str, data: bytes) -> Any:
    """Decode one entry by its extension; pickle and unknown extensions raise SchemaError."""
    extension = entry_extension(entry)
    if extension in PICKLE_EXTENSIONS:
        raise SchemaError(f"entry {entry!r} is a pickle; refusing to decode it")
    decoder = DECODERS.get(extension)
    if decoder is None:
        raise SchemaError(f"entry {entry!r} has no decoder in the shard schema")
    return decoder(data)


def view_entries(raw: Mapping[str, Any]) -> list[str]:
    """The view entry names of a raw sample, in view order."""
    views = [entry for entry in raw if VIEW_ENTRY.match(entry)]
    return sorted(views, key=lambda entry: int(VIEW_ENTRY.match(entry)[1]))


def decode_sample(raw: Mapping[str, Any], *, views: bool | Sequence[int] = True) -> dict[str, Any]:
    """A raw sample (``{"__key__", entry: bytes}``, e.g. from WebDataset) -> decoded dict.

    Returns ``{"__key__", "points", "json", "views"}`` and ``"normals"`` when present;
    ``views`` is a list of (H, W, 3) uint8 arrays: all of them, none (``views=False``)
    or those at the given indices, so readers decode only what they need.
    Entries starting with ``__`` (``__url__`` ...) are passed through untouched.
    """
    reject_pickles(raw)
    key = raw.get("__key__")
    missing = [entry for entry in (POINTS, META) if entry not in raw]
    if missing:
        raise SchemaError(f"sample {key}: missing entries {missing}")
    names = view_entries(raw)
    if views is True:
        chosen = names
    elif views is False:
        chosen = []
    else:
        chosen = [names[i] for i in views]
    sample: dict[str, Any] = {k: v for k, v in raw.items() if k.startswith("__")}
    sample["points"] = decode_entry(POINTS, raw[POINTS])
    sample["json"] = decode_entry(META, raw[META])
    if NORMALS in raw:
        sample["normals"] = decode_entry(NORMALS, raw[NORMALS])
    sample["views"] = [decode_entry(name, raw[name]) for name in chosen]
    return sample


# ---------------------------------------------------------------- checking


def _check_points(points: np.ndarray, entry: str) -> np.ndarray:
    if points.ndim != 2 or points.shape[1] != 3 or len(points) == 0:
        raise SchemaError(f"{entry} must have shape (N, 3) with N >= 1, got {points.shape}")
    if points.dtype.kind != "f" or not np.isfinite(points).all():
        raise SchemaError(f"{entry} must hold finite floats, got {points.dtype}")
    return points


def _check_meta(meta: Mapping[str, Any]) -> None:
    for field, types in META_FIELDS.items():
        if field not in meta:
            raise SchemaError(f"metadata is missing {field!r}")
        value = meta[field]
        if isinstance(value, bool) or not isinstance(value, types):
            names = "/".join(t.__name__ for t in types)
            raise SchemaError(f"metadata field {field!r} must be {names}, got {value!r:.60}")
    if meta["split"] not in SPLITS:
        raise SchemaError(f"metadata split must be one of {SPLITS}, got {meta['split']!r}")
    norm = meta["normalization"]
    if not isinstance(norm.get("centre"), list) or len(norm["centre"]) != 3:
        raise SchemaError("metadata normalization needs a 3-element 'centre'")
    if not isinstance(norm.get("scale"), (int, float)):
        raise SchemaError("metadata normalization needs a numeric 'scale'")
    if len(meta["cameras"]) != meta["num_views"]:
        raise SchemaError(f"{len(meta['cameras'])} cameras for {meta['num_views']} views")


def check_sample(raw: Mapping[str, Any]) -> list[str]:
    """Every schema problem of a raw sample (decodes all entries); empty when valid."""
    problems: list[str] = []
    entries = [entry for entry in raw if not entry.startswith("__")]
    pickles = [entry for entry in entries if entry_extension(entry) in PICKLE_EXTENSIONS]
    if pickles:
        problems.append(f"pickle entries {pickles} (never decoded)")
    known = {POINTS, NORMALS, META}
    unexpected = [e for e in entries if e not in known and not VIEW_ENTRY.match(e)]
    unexpected = [e for e in unexpected if e not in pickles]
    if unexpected:
        problems.append(f"unexpected entries {unexpected}")
    for entry in (POINTS, META):
        if entry not in raw:
            problems.append(f"missing entry {entry!r}")
    if problems:
        return problems
    try:
        sample = decode_sample(raw)
    except Exception as error:  # any decoder failure is a schema problem to report
        return [f"cannot decode: {error}"]
    points, meta = sample["points"], sample["json"]
    for check in (
        lambda: _check_meta(meta),
        lambda: _check_points(points, POINTS),
    ):
        try:
            check()
        except SchemaError as error:
            problems.append(str(error))
    if problems:
        return problems
    if points.dtype.name not in POINTS_DTYPES:
        problems.append(f"points dtype {points.dtype} not in {POINTS_DTYPES}")
    if meta["num_points"] != len(points):
        problems.append(f"num_points {meta['num_points']} but {len(points)} points")
    if len(points) and float(np.linalg.norm(points.astype(np.float64), axis=1).max()) > 1.01:
        problems.append("points lie outside the unit sphere (not in the normalised frame)")
    if "normals" in sample and sample["normals"].shape != points.shape:
        problems.append(f"normals shape {sample['normals'].shape} != points {points.shape}")
    if meta["num_views"] != len(sample["views"]):
        problems.append(f"num_views {meta['num_views']} but {len(sample['views'])} views")
    expected = [f"view_{i:02d}" for i in range(len(sample["views"]))]
    if [entry.split(".")[0] for entry in view_entries(raw)] != expected:
        problems.append("view entries are not numbered view_00 .. view_{V-1}")
    for name, view in zip(view_entries(raw), sample["views"], strict=True):
        if view.dtype != np.uint8 or view.ndim != 3 or view.shape[2] != 3:
            problems.append(f"{name}: not an RGB uint8 image ({view.shape} {view.dtype})")
    if meta.get("format_version") != FORMAT_VERSION:
        problems.append(f"format_version {meta.get('format_version')} != {FORMAT_VERSION}")
    return problems


# ---------------------------------------------------------------- tar reading


def iter_tar_samples(path: str | Path) -> Iterator[dict[str, Any]]:
    """Raw samples of one shard, grouped as WebDataset groups them (consecutive same key).

    Yields ``{"__key__", "__url__", entry: bytes}``. Raises ``tarfile.TarError`` (or
    ``EOFError``/``OSError``) for a damaged tar and :class:`SchemaError` when a key
    appears in two separate groups or twice with the same entry.
    """
    seen: set[str] = set()
    current: dict[str, Any] | None = None
    with tarfile.open(path, mode="r:") as tar:
        for member in tar:
            if not member.isfile():
                continue
            key, entry = split_member(member.name)
            if current is None or current["__key__"] != key:
                if current is not None:
                    yield current
                if key in seen:
                    raise SchemaError(f"key {key!r} appears in two separate groups")
                seen.add(key)
                current = {"__key__": key, "__url__": str(path)}
            if entry in current:
                raise SchemaError(f"sample {key}: entry {entry!r} appears twice")
            handle = tar.extractfile(member)
            assert handle is not None
            current[entry] = handle.read()
    if current is not None:
        yield current
