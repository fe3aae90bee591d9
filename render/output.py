"""The render output on disk (ShapeNetRendering-compatible), written atomically.

    <out>/<category_id>/<model_id>/rendering/00.png ... NN.png
    <out>/<category_id>/<model_id>/rendering/rendering_metadata.txt
    <out>/<category_id>/<model_id>/rendering/cameras.json
    <out>/<category_id>/<model_id>/depth/00.png ...   (--depth: 16-bit, DEPTH_SCALE units)
    <out>/<category_id>/<model_id>/mask/00.png ...    (--mask: 8-bit, 255 = object)
    <out>/render_manifest.jsonl, <out>/failures.jsonl

An object folder is written under a temporary name and renamed when complete, so a folder
under its final name is always whole; :func:`is_complete` also checks that it was made
with the current settings, so changing e.g. ``--views`` re-renders instead of skipping.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from xpt import __version__
from xpt.render.cameras import CONVENTIONS, METADATA_FILE, format_metadata
from xpt.render.config import RenderConfig
from xpt.toolkit.fsio import atomic_directory, writing
from xpt.toolkit.meshes.budget import same_faces_under
from xpt.toolkit.meshes.geometry import UP_AXIS
from xpt.toolkit.meshes.objects import MeshObject

if TYPE_CHECKING:
    from xpt.render.renderer import RenderResult

CAMERAS_FILE = "cameras.json"
RENDER_MANIFEST = "render_manifest.jsonl"
FORMAT_VERSION = 1
# Depth PNG value = z * DEPTH_SCALE (z: camera-frame depth in normalised-frame units, where
# the object's bounding-box half-diagonal is 1): a step of 0.001, i.e. "millimetres" if the
# half-diagonal were a metre. 0 means background.
DEPTH_SCALE = 1000.0


def object_dir(out: str | os.PathLike, obj: MeshObject) -> Path:
    """``<out>/<category_id>/<model_id>``."""
    return Path(out) / obj.category_id / obj.model_id


def view_name(index: int) -> str:
    return f"{index:02d}.png"


def expected_files(config: RenderConfig) -> list[str]:
    """Every file (relative to the object folder) a complete object has."""
    names = [f"rendering/{view_name(i)}" for i in range(config.num_views)]
    names += [f"rendering/{METADATA_FILE}", f"rendering/{CAMERAS_FILE}"]
    if config.depth:
        names += [f"depth/{view_name(i)}" for i in range(config.num_views)]
    if config.mask:
        names += [f"mask/{view_name(i)}" for i in range(config.num_views)]
    return names


def is_complete(
    folder: str | os.PathLike, config: RenderConfig, source_up_axis: str | None = None
) -> bool:
    """True when ``folder`` holds every output of ``config`` (made with the same settings).

    ``source_up_axis``, when given, must be the axis the mesh was read with: a folder made
    while ``auto`` still read STL and OFF files +Y up is rendered again. So is an object
    whose recorded face count ``config.max_faces`` would change.
    """
    folder = Path(folder)
    try:
        record = json.loads((folder / "rendering" / CAMERAS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if not isinstance(record, dict) or record.get("settings") != config.output_settings():
        return False
    if source_up_axis not in (None, record.get("source_up_axis", UP_AXIS)):
        return False
    if "faces" in record and not same_faces_under(record["faces"], config.max_faces):
        return False
    return all((folder / name).is_file() for name in expected_files(config))


def encode_png(image: np.ndarray, compress_level: int) -> bytes:
    """PNG bytes of an (H, W), (H, W, 3) or (H, W, 4) uint8, or (H, W) uint16 array."""
    import io

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG", compress_level=compress_level)
    return buffer.getvalue()


def depth_png_array(depth: np.ndarray) -> np.ndarray:
    """(H, W) float32 depth -> (H, W) uint16 in DEPTH_SCALE units, clipped to 65535."""
    return np.clip(np.rint(depth * DEPTH_SCALE), 0, 65535).astype(np.uint16)


def cameras_document(
    obj: MeshObject,
    result: RenderResult,
    config: RenderConfig,
    source_up_axis: str = UP_AXIS,
    faces: dict | None = None,
) -> dict:
    """The content of ``cameras.json``.

    ``up_axis`` is the frame's (always +Y); ``source_up_axis`` the mesh file's, from which
    it was rotated to +Y before ``normalization`` was computed. ``faces`` is the face
    budget's record (``max_faces``, faces drawn ``before`` and ``after`` simplification).
    """
    views = [{"file": view_name(i), **camera} for i, camera in enumerate(result.cameras)]
    document = {
        "format_version": FORMAT_VERSION,
        "xpt_version": __version__,
        "key": obj.key,
        "source": obj.source,
        "category_id": obj.category_id,
        "category_name": obj.category_name,
        "model_id": obj.model_id,
        "split": obj.split,
        "seed": config.seed,
        "up_axis": UP_AXIS,
        "source_up_axis": source_up_axis,
        "conventions": CONVENTIONS,
        "normalization": result.normalization.to_json(),
        "settings": config.output_settings(),
        "views": views,
        "warnings": result.warnings,
    }
    if config.depth:
        document["depth"] = {
            "folder": "depth",
            "scale": DEPTH_SCALE,
            "meaning": "uint16 PNG; value / scale = camera-frame z distance in the normalised "
            "frame (half-diagonal 1); 0 = background",
        }
    if config.mask:
        document["mask"] = {"folder": "mask", "meaning": "uint8 PNG; 255 = object, 0 = background"}
    if faces is not None:
        document["faces"] = faces
    return document


def write_object(
    folder: str | os.PathLike,
    obj: MeshObject,
    result: RenderResult,
    config: RenderConfig,
    source_up_axis: str = UP_AXIS,
    faces: dict | None = None,
) -> None:
    """Write every output of one object into ``folder`` atomically (temp folder, rename).

    A failed write (a full disk) removes the temporary folder and raises
    :class:`~xpt.toolkit.fsio.WriteError` naming ``folder``.
    """
    level = config.png_compress_level
    with writing(folder, "the renders"), atomic_directory(folder) as tmp:
        rendering = tmp / "rendering"
        rendering.mkdir()
        for i, image in enumerate(result.color):
            (rendering / view_name(i)).write_bytes(encode_png(image, level))
        (rendering / METADATA_FILE).write_text(format_metadata(result.views), encoding="utf-8")
        if result.depth is not None:
            (tmp / "depth").mkdir()
            for i, depth in enumerate(result.depth):
                (tmp / "depth" / view_name(i)).write_bytes(
                    encode_png(depth_png_array(depth), level)
                )
        if result.mask is not None:
            (tmp / "mask").mkdir()
            for i, mask in enumerate(result.mask):
                image = mask.astype(np.uint8) * 255
                (tmp / "mask" / view_name(i)).write_bytes(encode_png(image, level))
        document = cameras_document(obj, result, config, source_up_axis, faces)
        text = json.dumps(document, indent=1, sort_keys=True) + "\n"
        (rendering / CAMERAS_FILE).write_text(text, encoding="utf-8")


def manifest_entry(obj: MeshObject, folder: Path, out: Path, views: int, seconds: float) -> dict:
    """One ``render_manifest.jsonl`` line: the object's identity and where its views are."""
    return {
        **obj.identity(),
        "split": obj.split,
        "path": obj.where,
        "seed": obj.seed,
        "folder": folder.relative_to(out).as_posix(),
        "views": views,
        "seconds": round(seconds, 4),
    }


def read_manifest_keys(out: str | os.PathLike) -> set[str]:
    """Keys already listed in ``<out>/render_manifest.jsonl`` (a torn last line is ignored)."""
    path = Path(out) / RENDER_MANIFEST
    if not path.exists():
        return set()
    keys = set()
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            keys.add(json.loads(line)["key"])
        except (ValueError, KeyError, TypeError):
            continue
    return keys


def append_manifest(out: str | os.PathLike, entry: dict) -> None:
    """Append one line to ``<out>/render_manifest.jsonl`` and flush it.

    A line torn by an earlier crash is closed first, so it cannot swallow this one. A failed
    write raises :class:`~xpt.toolkit.fsio.WriteError` naming the manifest.
    """
    path = Path(out) / RENDER_MANIFEST
    line = json.dumps(entry, sort_keys=True) + "\n"
    with writing(path, "the render manifest"), open(path, "a+b") as handle:
        if handle.tell() > 0:
            handle.seek(-1, os.SEEK_END)
            if handle.read(1) != b"\n":
                line = "\n" + line
        handle.write(line.encode("utf-8"))
        handle.flush()
