"""Robust mesh loading: one trimesh Scene per file, or a one-line reason why not.

:func:`load_mesh` keeps materials and textures (a ShapeNet OBJ with its MTL and
images loads as a Scene with one geometry per material) and turns every way a file
can be broken into a :class:`MeshError` naming the file: missing, empty, over the
size limit, garbage, truncated, a header that declares more data than the file can
hold, no faces, non-finite vertices. Declared element counts are checked against
the file size *before* parsing, so a header claiming 10^12 vertices never
allocates; together with the size limit this bounds both memory and time. A
missing texture or material library is not an error: the mesh loads with its
``Kd`` colour (or trimesh's default) and :attr:`LoadedMesh.warnings` names the file.

Geometry is loaded with ``process=False``: nothing is merged or silently removed,
so what is validated is what the file holds.
"""

from __future__ import annotations

import io
import logging
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import trimesh
from trimesh.resolvers import FilePathResolver

from xpt.toolkit.meshes.objects import MeshObject

MAX_BYTES = 2 * 1024**3
"""Default size limit for one mesh file (2 GiB)."""

MESH_SUFFIXES = (".obj", ".off", ".ply", ".stl", ".glb", ".gltf")
"""File types :func:`load_mesh` reads (lower case, with the dot)."""

PROCEDURAL_SOURCES = ("procedural", "procedural-eval")

_PLY_HEADER_MAX = 1024 * 1024
_PLY_SIZES = {
    "char": 1,
    "int8": 1,
    "uchar": 1,
    "uint8": 1,
    "short": 2,
    "int16": 2,
    "ushort": 2,
    "uint16": 2,
    "int": 4,
    "int32": 4,
    "uint": 4,
    "uint32": 4,
    "float": 4,
    "float32": 4,
    "double": 8,
    "float64": 8,
}
# a face needs at least three indices; other list properties may be empty
_PLY_FACE_LISTS = ("vertex_indices", "vertex_index")
_PLY_FORMATS = ("ascii", "binary_little_endian", "binary_big_endian")
_OFF_MAGIC = re.compile(rb"\s*((?:ST)?C?N?4?n?OFF)(\s*BINARY)?")
_MTLLIB = re.compile(rb"^[ \t]*mtllib[ \t]+(.+?)[ \t]*\r?$", re.MULTILINE)
_REASON_MAX = 240


class MeshError(Exception):
    """A mesh that cannot be used; ``str`` is ``"path: reason"`` on one line."""

    def __init__(self, path: str | Path, reason: str):
        super().__init__(path, reason)
        self.path = path
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


@dataclass
class LoadedMesh:
    """A loaded mesh: the trimesh Scene and what was wrong but not fatal."""

    scene: trimesh.Scene
    warnings: list[str] = field(default_factory=list)


class _AssetResolver(FilePathResolver):
    """Resolves MTL and texture names relative to the mesh's folder, within ``root``.

    trimesh's own resolver refuses names that leave the mesh's folder, which loses
    ShapeNet v2 textures (``models/model_normalized.mtl`` names ``../images/…``).
    """

    def __init__(self, mesh_path: Path, root: Path):
        super().__init__(str(mesh_path))
        self.root = root.resolve()

    def absolute(self, name: str) -> Path:
        path = (Path(self.parent) / name.strip()).resolve()
        if not path.is_relative_to(self.root):
            raise ValueError(f"'{name}' is outside {self.root}")
        return path


class _Capture(logging.Handler):
    """Collects trimesh's warning messages during one load."""

    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(_one_line(record.getMessage()))


def load_mesh(
    path: str | Path, *, max_bytes: int = MAX_BYTES, asset_root: str | Path | None = None
) -> LoadedMesh:
    """Load a mesh file as a trimesh Scene, or raise :class:`MeshError`.

    ``asset_root`` bounds where MTL files and textures may be read from (default:
    the folder above the mesh's folder, which covers ShapeNet's ``../images``).
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in MESH_SUFFIXES:
        raise MeshError(path, f"unsupported mesh type '{suffix}' (expected {_suffixes()})")
    if not path.exists():
        raise MeshError(path, "file not found")
    if not path.is_file():
        raise MeshError(path, "not a file")
    size = path.stat().st_size
    if size == 0:
        raise MeshError(path, "empty file (0 bytes)")
    if size > max_bytes:
        raise MeshError(path, f"file is {size:,} bytes, over the {max_bytes:,}-byte limit")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise MeshError(path, f"cannot read: {_one_line(str(exc))}") from exc

    warnings: list[str] = []
    if suffix in (".obj", ".off"):
        data = _as_utf8_text(path, data, warnings)
    _check_header(path, suffix, data)

    root = Path(asset_root) if asset_root is not None else path.parent.parent
    resolver = _AssetResolver(path, root)
    if suffix == ".obj":
        warnings.extend(_missing_obj_assets(data, resolver))

    capture = _Capture()
    logger = logging.getLogger("trimesh")
    logger.addHandler(capture)
    try:
        scene = trimesh.load(
            io.BytesIO(data),
            file_type=suffix[1:],
            resolver=resolver,
            force="scene",
            process=False,
        )
    except IndexError as exc:
        reason = f"a face references a vertex that does not exist ({_describe(exc)})"
        raise MeshError(path, f"cannot parse {suffix[1:].upper()}: {reason}") from exc
    except Exception as exc:
        raise MeshError(path, f"cannot parse {suffix[1:].upper()}: {_describe(exc)}") from exc
    finally:
        logger.removeHandler(capture)
    warnings.extend(m for m in capture.messages if m not in warnings)
    validate_scene(path, scene)
    return LoadedMesh(scene=scene, warnings=warnings)


def load_object(obj: MeshObject, *, max_bytes: int = MAX_BYTES) -> LoadedMesh:
    """Load one source object: its file, or the procedural generator for its seed."""
    if obj.source in PROCEDURAL_SOURCES:
        where = f"procedural:{obj.category_name}:{obj.seed}"
        if obj.seed is None:
            raise MeshError(where, "procedural object without a seed")
        from xpt.toolkit.procedural import generate

        try:
            scene = generate(obj.category_name, obj.seed, wide=obj.source == "procedural-eval")
        except Exception as exc:
            raise MeshError(where, f"generator failed: {_describe(exc)}") from exc
        validate_scene(where, scene)
        return LoadedMesh(scene=scene, warnings=[])
    if obj.path is None:
        raise MeshError(obj.key, f"object from source '{obj.source}' has no mesh path")
    return load_mesh(obj.path, max_bytes=max_bytes)


def validate_scene(path: str | Path, scene: trimesh.Scene) -> None:
    """Raise :class:`MeshError` unless ``scene`` has faces, finite vertices and valid indices."""
    meshes = [g for g in scene.geometry.values() if isinstance(g, trimesh.Trimesh)]
    if not any(len(m.faces) for m in meshes):
        kinds = sorted({type(g).__name__ for g in scene.geometry.values()})
        found = f" (only {', '.join(kinds)})" if kinds else ""
        raise MeshError(path, f"no faces{found}")
    for mesh in meshes:
        vertices = np.asarray(mesh.vertices)
        bad = int((~np.isfinite(vertices)).any(axis=1).sum())
        if bad:
            raise MeshError(
                path, f"non-finite vertex coordinates ({bad} of {len(vertices)} NaN or inf)"
            )
        faces = np.asarray(mesh.faces)
        if len(faces) and (faces.min() < 0 or faces.max() >= len(vertices)):
            raise MeshError(
                path, f"face index outside 0..{len(vertices) - 1} (mesh has {len(vertices)})"
            )
    for node in scene.graph.nodes_geometry:
        if not np.isfinite(scene.graph[node][0]).all():
            raise MeshError(path, f"non-finite transform on scene node '{node}'")


def _check_header(path: Path, suffix: str, data: bytes) -> None:
    if suffix == ".ply":
        _check_ply(path, data)
    elif suffix == ".off":
        _check_off(path, data)
    elif suffix == ".stl":
        _check_stl(path, data)
    elif suffix == ".glb":
        _check_glb(path, data)


def _check_ply(path: Path, data: bytes) -> None:
    """Validate the header and that the declared elements fit in the file."""
    if not data.startswith(b"ply"):
        raise MeshError(path, "not a PLY file (no 'ply' magic)")
    end = re.search(rb"end_header[ \t]*\r?\n", data[:_PLY_HEADER_MAX])
    if end is None:
        raise MeshError(path, "PLY header has no end_header line")
    header = data[: end.start()].decode("latin-1").splitlines()
    body = len(data) - end.end()
    fmt = None
    elements: list[tuple[str, int, int, int]] = []  # name, count, min bytes, min tokens
    for line in header[1:]:
        words = line.split()
        if not words or words[0] in ("comment", "obj_info"):
            continue
        if words[0] == "format":
            fmt = words[1] if len(words) > 1 else ""
            if fmt not in _PLY_FORMATS:
                raise MeshError(path, f"unknown PLY format '{fmt}'")
        elif words[0] == "element":
            if len(words) != 3 or not words[2].isdigit():
                raise MeshError(path, f"malformed PLY element line '{line.strip()}'")
            elements.append((words[1], int(words[2]), 0, 0))
        elif words[0] == "property":
            if not elements:
                raise MeshError(path, "PLY property before any element")
            name, count, nbytes, ntokens = elements[-1]
            if len(words) == 5 and words[1] == "list":
                count_type, item_type, prop = words[2:]
                for t in (count_type, item_type):
                    if t not in _PLY_SIZES:
                        raise MeshError(path, f"unknown PLY property type '{t}'")
                items = 3 if prop in _PLY_FACE_LISTS else 0
                nbytes += _PLY_SIZES[count_type] + items * _PLY_SIZES[item_type]
                ntokens += 1 + items
            elif len(words) == 3:
                if words[1] not in _PLY_SIZES:
                    raise MeshError(path, f"unknown PLY property type '{words[1]}'")
                nbytes += _PLY_SIZES[words[1]]
                ntokens += 1
            else:
                raise MeshError(path, f"malformed PLY property line '{line.strip()}'")
            elements[-1] = (name, count, nbytes, ntokens)
    if fmt is None:
        raise MeshError(path, "PLY header has no format line")
    if fmt == "ascii":
        # every value takes at least one character and one separator
        tokens = sum(count * ntokens for _, count, _, ntokens in elements)
        needed = 2 * tokens - 1
    else:
        needed = sum(count * nbytes for _, count, nbytes, _ in elements)
    if needed > body:
        declared = ", ".join(f"{name}: {count:,}" for name, count, _, _ in elements)
        raise MeshError(
            path,
            f"PLY header declares {declared} elements (at least {needed:,} bytes) "
            f"but only {body:,} bytes follow the header (truncated or corrupt)",
        )


def _check_off(path: Path, data: bytes) -> None:
    """Validate the OFF magic and that the declared counts fit in the file."""
    text = re.sub(rb"#[^\n]*", b"", data[:4096])
    magic = _OFF_MAGIC.match(text)
    if magic is None:
        raise MeshError(path, "not an OFF file (no 'OFF' magic)")
    if magic.group(2):
        raise MeshError(path, "binary OFF is not supported")
    # ModelNet has files whose counts follow the magic without a line break ("OFF490 518 0")
    counts = text[magic.end() :].split()[:2]
    if len(counts) < 2 or not all(c.isdigit() for c in counts):
        raise MeshError(path, "OFF file has no vertex/face count line")
    vertices, faces = (int(c) for c in counts)
    needed = 2 * (3 * vertices + 4 * faces) - 1
    if needed > len(data):
        raise MeshError(
            path,
            f"OFF header declares {vertices:,} vertices and {faces:,} faces "
            f"(at least {needed:,} bytes) but the file has {len(data):,} bytes",
        )


def _check_stl(path: Path, data: bytes) -> None:
    """A binary STL must be exactly 84 + 50 bytes per declared triangle."""
    head = data[:1024]
    if head.lstrip()[:5].lower() == b"solid" and b"\0" not in head:
        return  # ASCII STL: trimesh parses text, nothing to allocate up front
    if len(data) < 84:
        raise MeshError(path, f"binary STL shorter than its 84-byte header ({len(data)} bytes)")
    (triangles,) = struct.unpack_from("<I", data, 80)
    expected = 84 + 50 * triangles
    if expected != len(data):
        raise MeshError(
            path,
            f"binary STL header declares {triangles:,} triangles ({expected:,} bytes) "
            f"but the file has {len(data):,} bytes (truncated or corrupt)",
        )


def _check_glb(path: Path, data: bytes) -> None:
    """The GLB header's magic and total length must match the file."""
    if len(data) < 20 or data[:4] != b"glTF":
        raise MeshError(path, "not a GLB file (no 'glTF' magic)")
    _, length, chunk = struct.unpack_from("<III", data, 4)
    if length > len(data) or 20 + chunk > len(data):
        raise MeshError(
            path,
            f"GLB header declares {max(length, 20 + chunk):,} bytes "
            f"but the file has {len(data):,} bytes (truncated)",
        )


def _as_utf8_text(path: Path, data: bytes, warnings: list[str]) -> bytes:
    """Text formats: reject binary content; read non-UTF-8 text as Latin-1."""
    if b"\0" in data:
        raise MeshError(path, f"binary data in a text {path.suffix[1:].upper()} file")
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        warnings.append("not UTF-8 text; read as Latin-1")
        return data.decode("latin-1").encode("utf-8")
    return data


def _missing_obj_assets(data: bytes, resolver: _AssetResolver) -> list[str]:
    """Warnings for material libraries and ``map_Kd`` textures that cannot be read."""
    from PIL import Image

    match = _MTLLIB.search(data)  # trimesh reads the first material library only
    if match is None:
        return []
    name = match.group(1).decode("utf-8").strip()
    try:
        mtl = resolver.get(name)
    except (OSError, ValueError):
        return [f"material library '{name}' not found"]
    warnings = []
    for line in mtl.decode("utf-8", errors="replace").splitlines():
        words = line.split(maxsplit=1)
        if len(words) < 2 or words[0].lower() != "map_kd":
            continue
        texture = words[1].strip()
        try:
            image = resolver.get(texture)
        except (OSError, ValueError):
            warnings.append(f"texture '{texture}' (map_Kd in {name}) not found")
            continue
        try:
            Image.open(io.BytesIO(image))
        except Exception:
            warnings.append(f"texture '{texture}' (map_Kd in {name}) is not a readable image")
    return warnings


def _describe(exc: BaseException) -> str:
    message = _one_line(str(exc))
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def _one_line(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _REASON_MAX else text[: _REASON_MAX - 1] + "…"


def _suffixes() -> str:
    return ", ".join(MESH_SUFFIXES)
