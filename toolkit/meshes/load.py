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

Where the extension lies (a PLY named ``.obj``, a GLB named ``.gltf``) the format is
read from the content (:func:`detect_format`) and a warning says what was found. Text
formats whose header declares counts (ASCII PLY, OFF) and ASCII STL are checked for
truncation against what the file actually holds. Text that is not UTF-8 (OBJ, OFF and
MTL) is read as UTF-16 or Latin-1 with a warning; an OBJ whose last face line is cut
gets a warning. Draco-compressed glTF primitives are decoded with DracoPy before
trimesh parses the file (:func:`_decode_draco`).

MTL files and textures are found as other tools find them (:class:`_AssetResolver`):
``map_Kd`` options skipped, Windows backslashes normalised, letter case ignored, and a
path that does not exist (absolute, or from the author's folder tree) tried by its base
name next to the mesh.

The scene is rotated from the source's up axis into xpt's +Y-up frame
(:func:`xpt.toolkit.meshes.geometry.up_rotation`); glTF is +Y up by its specification
and never rotated.
"""

from __future__ import annotations

import base64
import codecs
import io
import json
import logging
import os
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING
from urllib.parse import unquote

import numpy as np
import trimesh
from trimesh.resolvers import FilePathResolver

from xpt.toolkit.fsio import printable
from xpt.toolkit.meshes.geometry import (
    AUTO,
    UP_AXIS,
    check_up_axis,
    file_up_axis,
    up_rotation,
)
from xpt.toolkit.meshes.objects import MeshObject

if TYPE_CHECKING:
    from DracoPy import DracoMesh

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

FORMAT_NAMES = {
    "obj": "OBJ",
    "off": "OFF",
    "ply": "PLY",
    "stl": "STL",
    "glb": "GLB",
    "gltf": "glTF",
}
"""Display name of each format :func:`load_mesh` reads (keys: extensions without the dot)."""

_SNIFF_BYTES = 64 * 1024
_PLY_MAGIC = re.compile(rb"ply[ \t]*\r?\n")
_OBJ_STATEMENT = re.compile(rb"^[ \t]*(?:v|vt|vn|f|o|g|usemtl|mtllib)[ \t]", re.MULTILINE)
_STL_FACET = re.compile(rb"\bfacet\b", re.IGNORECASE)
_STL_ENDFACET = re.compile(rb"\bendfacet\b", re.IGNORECASE)
_OFF_COUNTS = re.compile(rb"[ \t]*\r?\n?\s*(\d+)\s+(\d+)[^\n]*(?:\n|$)")
# a line holding data: not blank and (in formats with comments) not a comment
_DATA_LINE = re.compile(rb"^[ \t\r]*[^\s]", re.MULTILINE)
_OFF_DATA_LINE = re.compile(rb"^[ \t\r]*[^\s#]", re.MULTILINE)
# MTL texture options and how many values each takes (-o, -s, -t: one to three numbers)
_MAP_OPTIONS = {
    "-blendu": 1,
    "-blendv": 1,
    "-bm": 1,
    "-boost": 1,
    "-cc": 1,
    "-clamp": 1,
    "-imfchan": 1,
    "-texres": 1,
    "-type": 1,
    "-mm": 2,
    "-o": 3,
    "-s": 3,
    "-t": 3,
}
_ABSOLUTE = re.compile(r"^(?:/|[A-Za-z]:/)")
_OBJ_FACE = re.compile(rb"^[ \t]*f[ \t]", re.MULTILINE)
_OBJ_POLYLINE = re.compile(rb"^[ \t]*l[ \t]", re.MULTILINE)
_OBJ_VERTEX = re.compile(rb"^[ \t]*v[ \t]", re.MULTILINE)
_OBJ_TAIL = 64 * 1024
_PLY_TEXTURE = re.compile(rb"^comment[ \t]+TextureFile[ \t]+([^\r\n]+?)[ \t]*\r?$", re.M | re.I)
_DRACO = "KHR_draco_mesh_compression"
_UNDRACO = "or decompress it first: gltf-transform copy in.glb out.glb"
_GLTF_COMPONENTS = {5120: "i1", 5121: "u1", 5122: "<i2", 5123: "<u2", 5125: "<u4", 5126: "<f4"}
# glTF extensions trimesh does not draw as written, and what is drawn instead
_GLTF_APPROXIMATED = {
    "KHR_materials_pbrSpecularGlossiness": "specular-glossiness materials are drawn with a base "
    "colour converted from their diffuse and specular values (approximate)",
    "KHR_texture_transform": "texture offsets, scales and rotations are not applied; textures "
    "are drawn untransformed",
}


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
    """A loaded mesh: the trimesh Scene (+Y up) and what was wrong but not fatal.

    ``source_up_axis`` is the up axis the file was read with; the scene has been rotated
    from it into the +Y-up frame.
    """

    scene: trimesh.Scene
    warnings: list[str] = field(default_factory=list)
    source_up_axis: str = UP_AXIS


class _AssetResolver(FilePathResolver):
    """Finds MTL files and textures as other tools do, never outside ``root``.

    A reference (``map_Kd -s 1 1 1 ..\\Textures\\Wood.PNG``) has its options skipped and
    its backslashes turned into slashes (:func:`asset_file_name`); then, stopping at the
    first file found, it is looked for: as written, relative to the mesh's folder (an
    absolute path as is); without its leading ``../`` parts inside the mesh's folder; by
    its base name in the mesh's folder. Each step ignores letter case where no file has
    the exact name. Unlike trimesh's own resolver, names may leave the mesh's folder
    (ShapeNet v2's ``models/model_normalized.mtl`` names ``../images/...``) as long as
    they stay within ``root``. MTL files are handed over as UTF-8: one that is not UTF-8
    (a 3ds Max export's ``newmtl Terraindæk``) is read as Latin-1, as the OBJ is, and
    :attr:`warnings` says so; trimesh would drop the whole library.
    """

    def __init__(self, mesh_path: Path, root: Path):
        super().__init__(str(mesh_path))
        # trimesh names the geometry after this; a name that is not UTF-8 cannot be hashed
        self.file_name = printable(self.file_name)
        self.folder = Path(self.parent)
        self.root = root.resolve()
        self.warnings: list[str] = []

    def get(self, name: str) -> bytes:
        path, _ = self.locate(name)
        if path is None:
            raise FileNotFoundError(name)
        data = path.read_bytes()
        if path.suffix.lower() != ".mtl":
            return data
        data, latin1 = _utf8_or_latin1(data)
        warning = f"material library '{name}' is not UTF-8 text; read as Latin-1"
        if latin1 and warning not in self.warnings:
            self.warnings.append(warning)
        return data

    def locate(self, reference: str) -> tuple[Path | None, list[str]]:
        """The file ``reference`` names (None if not found) and the names tried, in order."""
        name = asset_file_name(reference)
        if not name:
            return None, []
        parts = PurePosixPath(name).parts
        if _ABSOLUTE.match(name):
            steps = [(Path("/"), parts[1:])] if name.startswith("/") else []
        else:
            inner = tuple(p for p in parts if p not in ("..", "."))
            steps = [(self.folder, parts), (self.folder, inner)]
        steps.append((self.folder, parts[-1:]))
        tried: list[str] = []
        for base, relative in steps:
            shown = name if base == Path("/") else "/".join(relative)
            if not relative or shown in tried:
                continue
            tried.append(shown)
            path = _find_file(base, relative)
            if path is not None and path.resolve().is_relative_to(self.root):
                return path, tried
            if path is not None:
                tried[-1] += f" (outside {self.root})"
        return None, tried


def asset_file_name(reference: str) -> str:
    """The file name in an ``mtllib``/``map_*`` statement's arguments.

    MTL options are skipped, surrounding quotes removed and backslashes turned into
    slashes: ``-s 1 1 1 ..\\Tex\\a.png`` -> ``../Tex/a.png``. The name is the rest of
    the line, so it may contain spaces.
    """
    words = list(re.finditer(r"\S+", reference))
    if not words:
        return ""
    i, last = 0, len(words) - 1
    while i < last and words[i].group().lower() in _MAP_OPTIONS:
        values = _MAP_OPTIONS[words[i].group().lower()]
        i += 1
        if values == 3:  # u [v [w]]: as many numbers as follow, up to three
            for _ in range(3):
                if i < last and is_number(words[i].group()):
                    i += 1
        else:
            i = min(i + values, last)
    name = reference[words[i].start() :].strip()
    if len(name) >= 2 and name[0] == name[-1] == '"':
        name = name[1:-1]
    return name.replace("\\", "/")


def is_number(text: str) -> bool:
    """Whether ``text`` reads as a float (``"1e-3"``, ``"nan"``)."""
    try:
        float(text)
    except ValueError:
        return False
    return True


def _find_file(base: Path, parts: tuple[str, ...]) -> Path | None:
    """``base/parts...`` when it is a file, matching each part's letter case if one must."""
    path = base
    for part in parts:
        if part == "..":
            path = path.parent
            continue
        if part in ("", "."):
            continue
        exact = path / part
        if exact.exists():
            path = exact
            continue
        try:
            names = sorted(os.listdir(path))
        except OSError:
            return None
        match = next((n for n in names if n.lower() == part.lower()), None)
        if match is None:
            return None
        path = path / match
    return path if path.is_file() else None


class _Capture(logging.Handler):
    """Collects trimesh's warning messages during one load."""

    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(_one_line(record.getMessage()))


def load_mesh(
    path: str | Path,
    *,
    max_bytes: int = MAX_BYTES,
    asset_root: str | Path | None = None,
    up_axis: str = UP_AXIS,
) -> LoadedMesh:
    """Load a mesh file as a +Y-up trimesh Scene, or raise :class:`MeshError`.

    ``asset_root`` bounds where MTL files and textures may be read from (default:
    the folder above the mesh's folder, which covers ShapeNet's ``../images``).
    ``up_axis`` is the file's up axis (one of ``UP_AXES``); the scene is rotated from it
    to +Y. glTF files are +Y up by their specification and keep their orientation.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in MESH_SUFFIXES:
        raise MeshError(path, f"unsupported mesh type '{suffix}' (expected {_suffixes()})")
    up_axis = check_up_axis(up_axis, allow_auto=False)
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
    fmt = detect_format(data, suffix[1:])
    if fmt != suffix[1:]:
        name, told = FORMAT_NAMES[fmt], FORMAT_NAMES[suffix[1:]]
        warnings.append(f"content is {name}, not {told}; read as {name}")
    if fmt in ("obj", "off"):
        data = _as_utf8_text(path, fmt, data, warnings)
    _check_header(path, fmt, data)

    root = Path(asset_root) if asset_root is not None else path.parent.parent
    resolver = _AssetResolver(path, root)
    data, options = _before_parse(path, fmt, data, resolver, warnings)

    capture = _Capture()
    logger = logging.getLogger("trimesh")
    logger.addHandler(capture)
    try:
        scene = trimesh.load(
            io.BytesIO(data),
            file_type=fmt,
            resolver=resolver,
            force="scene",
            process=False,
            **options,
        )
    except Exception as exc:
        raise MeshError(path, _parse_failure(fmt, data, exc)) from exc
    finally:
        logger.removeHandler(capture)
    warnings.extend(m for m in [*resolver.warnings, *capture.messages] if m not in warnings)
    validate_scene(path, scene)
    source_up_axis = UP_AXIS if fmt in ("glb", "gltf") else up_axis
    if source_up_axis != UP_AXIS:
        scene.apply_transform(up_rotation(source_up_axis))
    return LoadedMesh(scene=scene, warnings=warnings, source_up_axis=source_up_axis)


def load_object(obj: MeshObject, *, max_bytes: int = MAX_BYTES, up_axis: str = AUTO) -> LoadedMesh:
    """Load one source object (+Y up): its file, or the procedural generator for its seed.

    ``up_axis`` is the up axis of the object's file, or ``auto`` for its format's convention
    (STL and OFF +Z), else its source's default (ModelNet +Z, the others +Y); see
    :func:`xpt.toolkit.meshes.geometry.file_up_axis`.
    """
    check_up_axis(up_axis)
    if obj.source in PROCEDURAL_SOURCES:
        where = f"procedural:{obj.category_name}:{obj.seed}"
        if up_axis not in (AUTO, UP_AXIS):
            raise MeshError(where, PROCEDURAL_UP_AXIS)
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
    axis = file_up_axis(obj.source, obj.path, up_axis)
    return load_mesh(obj.path, max_bytes=max_bytes, up_axis=axis)


PROCEDURAL_UP_AXIS = "the procedural library is generated +Y up; --up-axis applies to mesh files"


def check_source_up_axis(source: str | Path, up_axis: str) -> None:
    """Raise ``ValueError`` for an up axis that cannot apply to ``source`` (a run-start check).

    ``up_axis`` must be ``auto`` or one of ``UP_AXES``; the procedural library takes only
    ``auto`` or ``+Y``.
    """
    check_up_axis(up_axis)
    if str(source) in PROCEDURAL_SOURCES and up_axis not in (AUTO, UP_AXIS):
        raise ValueError(f"{source}: {PROCEDURAL_UP_AXIS}")


def validate_scene(path: str | Path, scene: trimesh.Scene) -> None:
    """Raise :class:`MeshError` unless ``scene`` has faces, finite vertices and valid indices."""
    meshes = [g for g in scene.geometry.values() if isinstance(g, trimesh.Trimesh)]
    if not any(len(m.faces) for m in meshes):
        raise MeshError(path, _no_faces(scene))
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


def _no_faces(scene: trimesh.Scene) -> str:
    """Why a scene without faces has none: nothing at all, a point cloud, or bare vertices."""
    geometry = list(scene.geometry.values())
    points = sum(len(getattr(g, "vertices", ())) for g in geometry)
    if not points:
        return "no faces (no vertices either)"
    if all(isinstance(g, trimesh.PointCloud) for g in geometry):
        return f"no faces: a point cloud of {points:,} points, not a mesh"
    return f"no faces ({points:,} vertices, no triangles)"


def detect_format(data: bytes, declared: str) -> str:
    """The format of ``data`` (a key of :data:`FORMAT_NAMES`).

    The content's signature wins over the extension ``declared`` (without the dot): PLY's
    ``ply`` line, GLB's ``glTF`` magic, the OFF header, a binary STL's exact size (84 +
    50 bytes per declared triangle) or an ASCII STL's ``solid ... facet``, a JSON object
    with glTF's ``asset``, OBJ statements. Content without one is taken as ``declared``,
    whose checks then say what is wrong.
    """
    head = data[:_SNIFF_BYTES]
    found = None
    if _PLY_MAGIC.match(head):
        found = "ply"
    elif head[:4] == b"glTF":
        found = "glb"
    elif _OFF_MAGIC.match(re.sub(rb"#[^\n]*", b"", head[:4096])):
        found = "off"
    elif len(data) >= 84 and 84 + 50 * struct.unpack_from("<I", data, 80)[0] == len(data):
        found = "stl"
    elif b"\0" not in head[:1024]:
        text = head.lstrip()
        if text[:5].lower() == b"solid" and _STL_FACET.search(head):
            found = "stl"
        elif text[:1] == b"{" and b'"asset"' in data:
            found = "gltf"
        elif _OBJ_STATEMENT.search(head):
            found = "obj"
    return found or declared


def _check_header(path: Path, fmt: str, data: bytes) -> None:
    """Format checks that need no parsing: magic, declared sizes, truncation."""
    check = {
        "obj": _check_obj,
        "ply": _check_ply,
        "off": _check_off,
        "stl": _check_stl,
        "glb": _check_glb,
        "gltf": _check_gltf,
    }.get(fmt)
    if check is not None:
        check(path, data)


def _check_obj(path: Path, data: bytes) -> None:
    """An OBJ of polylines only (``l`` lines, no ``f``) is a wireframe: say so, rather than
    let trimesh read it as a point cloud."""
    if _OBJ_FACE.search(data) is None and _OBJ_POLYLINE.search(data) is not None:
        lines, vertices = _count_lines(_OBJ_POLYLINE, data), _count_lines(_OBJ_VERTEX, data)
        raise MeshError(
            path,
            f"no faces: {lines:,} polylines ('l' lines) over {vertices:,} vertices but no 'f' "
            "lines: a wireframe, not a surface",
        )


def _obj_truncation(data: bytes) -> list[str]:
    """A warning when the OBJ's last line is a face cut short: fewer than three vertex
    indices, or no line end (its last index may be cut too). trimesh loads the faces
    before it without a word."""
    offset = max(len(data) - _OBJ_TAIL, 0)
    tail = data[offset:].rstrip()
    start = tail.rfind(b"\n") + 1
    words = tail[start:].split()
    if (start == 0 and offset) or not words or words[0] != b"f":
        return []
    line = data.count(b"\n", 0, offset + start) + 1
    shown = _one_line(tail[start:].decode("utf-8", errors="replace"))
    if len(words) < 4:
        return [
            f"looks truncated: its last line (line {line:,}, '{shown}') is a face with "
            f"{len(words) - 1} vertex indices"
        ]
    if not data.endswith((b"\n", b"\r")):
        return [f"looks truncated: it ends mid-line in its face list (line {line:,}, '{shown}')"]
    return []


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
    declared = ", ".join(f"{name}: {count:,}" for name, count, _, _ in elements)
    if fmt == "ascii":
        # every value takes at least one character and one separator
        tokens = sum(count * ntokens for _, count, _, ntokens in elements)
        needed = 2 * tokens - 1
    else:
        needed = sum(count * nbytes for _, count, nbytes, _ in elements)
    if needed > body:
        raise MeshError(
            path,
            f"PLY header declares {declared} elements (at least {needed:,} bytes) "
            f"but only {body:,} bytes follow the header (truncated or corrupt)",
        )
    if fmt == "ascii":  # one element a line
        lines = sum(count for _, count, _, _ in elements)
        found = _count_lines(_DATA_LINE, data, end.end())
        if found < lines:
            raise MeshError(
                path,
                f"truncated: the PLY header declares {declared} elements ({lines:,} lines) "
                f"but {found:,} lines follow it",
            )


def off_header(head: bytes) -> tuple[bytes, re.Match | None, re.Match | None]:
    """A file's first bytes with comments removed, and the OFF magic and count-line matches
    in them (each None where absent): the one reader of OFF headers (:func:`_check_off`, the
    face budget)."""
    text = re.sub(rb"#[^\n]*", b"", head[:4096])
    magic = _OFF_MAGIC.match(text)
    # ModelNet has files whose counts follow the magic without a line break ("OFF490 518 0")
    counts = None if magic is None else _OFF_COUNTS.match(text, magic.end())
    return text, magic, counts


def _check_off(path: Path, data: bytes) -> None:
    """Validate the OFF magic and that the declared vertex and face lines are all there."""
    text, magic, counts = off_header(data)
    if magic is None:
        raise MeshError(path, "not an OFF file (no 'OFF' magic)")
    if magic.group(2):
        raise MeshError(path, "binary OFF is not supported")
    if counts is None:
        raise MeshError(path, "OFF file has no vertex/face count line")
    vertices, faces = int(counts.group(1)), int(counts.group(2))
    needed = 2 * (3 * vertices + 4 * faces) - 1
    if needed > len(data):
        raise MeshError(
            path,
            f"OFF header declares {vertices:,} vertices and {faces:,} faces "
            f"(at least {needed:,} bytes) but the file has {len(data):,} bytes",
        )
    header_lines = _count_lines(_DATA_LINE, text[: counts.end()])
    found = _count_lines(_OFF_DATA_LINE, data) - header_lines
    if found < vertices + faces:
        raise MeshError(
            path,
            f"truncated: the OFF header declares {vertices:,} vertices and {faces:,} faces "
            f"({vertices + faces:,} lines) but {found:,} lines follow it",
        )
    last = data[-4096:].rstrip().rsplit(b"\n", 1)[-1].split(b"#", 1)[0].split()
    if faces and found == vertices + faces and last and last[0].isdigit():
        if len(last) < 1 + int(last[0]):
            raise MeshError(
                path,
                f"truncated: the last face line lists {len(last) - 1} of its "
                f"{int(last[0])} vertex indices",
            )


def _check_stl(path: Path, data: bytes) -> None:
    """A binary STL must be exactly 84 + 50 bytes per declared triangle; an ASCII STL
    must end every facet it begins."""
    head = data[:1024]
    if head.lstrip()[:5].lower() == b"solid" and b"\0" not in head:
        begun = _count_lines(_STL_FACET, data)
        ended = _count_lines(_STL_ENDFACET, data)
        if ended < begun:
            raise MeshError(
                path,
                f"truncated: the ASCII STL begins {begun:,} facets but ends {ended:,} ('endfacet')",
            )
        return
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


def _check_gltf(path: Path, data: bytes) -> None:
    """A glTF file must be one JSON document (a cut-off file is not)."""
    try:
        json.loads(data)
    except UnicodeDecodeError as exc:
        raise MeshError(path, f"glTF is not UTF-8 JSON ({_one_line(str(exc))})") from exc
    except json.JSONDecodeError as exc:
        raise MeshError(
            path,
            f"glTF JSON is not valid ({exc.msg} at byte {exc.pos:,} of {len(data):,}): "
            "truncated or corrupt",
        ) from exc


def _gltf_parts(path: Path, fmt: str, data: bytes) -> tuple[dict, memoryview | None]:
    """A glTF file's JSON document, and a GLB's BIN chunk (a view, not a copy; None without
    one, or for .gltf)."""
    length = struct.unpack_from("<I", data, 12)[0] if fmt == "glb" else len(data)
    try:  # a .gltf file's JSON was checked by _check_gltf
        tree = json.loads(data[20 : 20 + length] if fmt == "glb" else data)
    except ValueError as exc:
        raise MeshError(path, f"GLB JSON chunk is not valid ({_one_line(str(exc))})") from exc
    if not isinstance(tree, dict):
        raise MeshError(path, "the glTF JSON document is not an object")
    if fmt == "gltf" or data[24 + length : 28 + length] != b"BIN\0":
        return tree, None
    (size,) = struct.unpack_from("<I", data, 20 + length)
    return tree, memoryview(data)[28 + length : 28 + length + size]


def _decode_draco(
    path: Path,
    fmt: str,
    data: bytes,
    tree: dict,
    binary: memoryview | None,
    resolver: _AssetResolver,
) -> bytes:
    """``data`` with its Draco-compressed primitives (KHR_draco_mesh_compression) decoded
    into plain accessors, so that any trimesh reads them with their nodes and materials;
    ``data`` itself when no primitive is compressed."""
    primitives = [
        (f"mesh {m} primitive {p}", primitive)
        for m, mesh in enumerate(tree.get("meshes", []))
        for p, primitive in enumerate(mesh.get("primitives", []))
        if _DRACO in primitive.get("extensions", {})
    ]
    if not primitives:
        return data
    try:
        import DracoPy
    except ImportError as exc:
        raise MeshError(
            path, f"uses {_DRACO}, which needs DracoPy (pip install DracoPy), " + _UNDRACO
        ) from exc
    extra = bytearray()
    for where, primitive in primitives:
        draco = primitive["extensions"].pop(_DRACO)
        try:
            decoded = DracoPy.decode(_view_bytes(tree, draco["bufferView"], binary, resolver))
            arrays = _draco_arrays(primitive, draco, decoded)
        except Exception as exc:
            raise MeshError(
                path,
                f"{where}: its {_DRACO} data does not decode ({_describe(exc)}): "
                "corrupt or truncated",
            ) from exc
        for accessor, array in arrays.items():
            _store_accessor(tree, accessor, array, extra)
    for key in ("extensionsUsed", "extensionsRequired"):
        if _DRACO in tree.get(key, ()):
            tree[key].remove(_DRACO)
    return _with_buffer(fmt, tree, binary, bytes(extra))


def _draco_arrays(primitive: dict, draco: dict, decoded: DracoMesh) -> dict[int, np.ndarray]:
    """The decoded arrays of one primitive by accessor index: the indices (flattened) and
    each attribute the extension maps to a Draco attribute id."""
    arrays = {}
    if "indices" in primitive:
        arrays[primitive["indices"]] = np.asarray(decoded.faces).reshape(-1)
    for name, ident in draco.get("attributes", {}).items():
        attribute = decoded.get_attribute_by_unique_id(ident)
        if attribute is None:
            raise ValueError(f"no Draco attribute {ident} for {name}")
        if name in primitive.get("attributes", {}):
            arrays[primitive["attributes"][name]] = np.asarray(attribute["data"])
    return arrays


def _view_bytes(
    tree: dict, index: int, binary: memoryview | None, resolver: _AssetResolver
) -> bytes:
    """The bytes of bufferView ``index``: from the GLB's BIN chunk, a data URI or a file."""
    view = tree["bufferViews"][index]
    uri = tree["buffers"][view.get("buffer", 0)].get("uri")
    if uri is None:
        data = binary or b""
    elif uri.startswith("data:"):
        data = base64.b64decode(uri.split(",", 1)[1])
    else:
        data = resolver.get(unquote(uri))
    start = view.get("byteOffset", 0)
    return bytes(data[start : start + view["byteLength"]])


def _store_accessor(tree: dict, index: int, array: np.ndarray, extra: bytearray) -> None:
    """Append ``array`` (as the accessor's componentType) to ``extra`` in a new bufferView
    of the buffer :func:`_with_buffer` adds, and point accessor ``index`` at it."""
    accessor = tree["accessors"][index]
    raw = np.ascontiguousarray(array, dtype=_GLTF_COMPONENTS[accessor["componentType"]])
    extra += b"\0" * (-len(extra) % 4)
    views = tree.setdefault("bufferViews", [])
    views.append({"buffer": -1, "byteOffset": len(extra), "byteLength": raw.nbytes})
    extra += raw.tobytes()
    accessor.update(bufferView=len(views) - 1, byteOffset=0, count=len(array))
    accessor.pop("sparse", None)


def _with_buffer(fmt: str, tree: dict, binary: memoryview | None, extra: bytes) -> bytes:
    """The file with ``extra`` as its data for the new bufferViews (``"buffer": -1``):
    appended to a GLB's BIN chunk, else a buffer of its own with a data URI."""
    views = [v for v in tree["bufferViews"] if v["buffer"] == -1]
    if binary is not None:
        base = len(binary) + (-len(binary) % 4)
        binary = bytes(binary) + b"\0" * (base - len(binary)) + extra
        tree["buffers"][0]["byteLength"] = len(binary)
        for view in views:
            view.update(buffer=0, byteOffset=base + view["byteOffset"])
    else:
        uri = "data:application/octet-stream;base64," + base64.b64encode(extra).decode()
        tree.setdefault("buffers", []).append({"byteLength": len(extra), "uri": uri})
        for view in views:
            view["buffer"] = len(tree["buffers"]) - 1
    text = json.dumps(tree).encode()
    if fmt == "gltf":
        return text
    text += b" " * (-len(text) % 4)
    chunks = struct.pack("<I4s", len(text), b"JSON") + text
    if binary is not None:
        binary += b"\0" * (-len(binary) % 4)
        chunks += struct.pack("<I4s", len(binary), b"BIN\0") + binary
    return struct.pack("<4sII", b"glTF", 2, 12 + len(chunks)) + chunks


def _count_lines(pattern: re.Pattern, data: bytes, start: int = 0) -> int:
    """How many times ``pattern`` matches in ``data[start:]``, without building a list."""
    return sum(1 for _ in pattern.finditer(data, start))


def _parse_failure(fmt: str, data: bytes, exc: Exception) -> str:
    """The reason for a file the format's reader rejected."""
    name = FORMAT_NAMES[fmt]
    if isinstance(exc, IndexError):
        what = "a face references a vertex that does not exist"
        reason = f"cannot parse {name}: {what} ({_describe(exc)})"
    elif fmt == "ply" and "unexpected length" in str(exc):
        return "truncated or corrupt: the binary PLY body is not the size its header declares"
    else:
        reason = f"cannot parse {name}: {_describe(exc)}"
    if fmt == "obj" and not data.endswith(b"\n"):
        reason += " (the file ends mid-line: truncated?)"
    return reason


def _before_parse(
    path: Path, fmt: str, data: bytes, resolver: _AssetResolver, warnings: list[str]
) -> tuple[bytes, dict]:
    """Per-format work before trimesh parses: warnings about assets and content trimesh
    would pass over, Draco decoding; returns the data and extra :func:`trimesh.load` options."""
    if fmt == "obj":
        warnings.extend(_obj_truncation(data))
        warnings.extend(_missing_obj_assets(data, resolver))
    elif fmt == "ply":
        missing = _missing_ply_texture(data, resolver)
        warnings.extend(missing)
        if missing:  # load untextured; trimesh would only log "unable to load image!"
            return data, {"skip_materials": True}
    elif fmt in ("glb", "gltf"):
        try:
            tree, binary = _gltf_parts(path, fmt, data)
            used = {*tree.get("extensionsUsed", ()), *tree.get("extensionsRequired", ())}
            warnings += [f"uses {n}: {what}" for n, what in _GLTF_APPROXIMATED.items() if n in used]
            data = _decode_draco(path, fmt, data, tree, binary, resolver)
        except (AttributeError, LookupError, TypeError) as exc:
            raise MeshError(path, f"malformed glTF document ({_describe(exc)})") from exc
    return data, {}


def _as_utf8_text(path: Path, fmt: str, data: bytes, warnings: list[str]) -> bytes:
    """Text formats as UTF-8: UTF-16 decoded, other non-UTF-8 text read as Latin-1, binary
    content rejected."""
    encoding = _utf16_encoding(data)
    if encoding is not None:
        try:
            text = data.decode(encoding)
        except UnicodeDecodeError as exc:
            raise MeshError(
                path, f"UTF-16 text that does not decode ({exc.reason}); save it as UTF-8"
            ) from exc
        warnings.append("UTF-16 text, not UTF-8; read as UTF-16")
        return text.encode("utf-8")
    if b"\0" in data:
        raise MeshError(path, f"binary data in a text {FORMAT_NAMES[fmt]} file")
    data, latin1 = _utf8_or_latin1(data)
    if latin1:
        warnings.append("not UTF-8 text; read as Latin-1")
    return data


def _utf16_encoding(data: bytes) -> str | None:
    """The codec of UTF-16 text (what Notepad's "Unicode" and PowerShell 5's ``>`` write):
    a byte-order mark, or ASCII with every other byte NUL; None for anything else."""
    if data[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE):
        return "utf-16"
    head = data[: min(len(data), 4096) // 2 * 2]
    if len(data) % 2 or not head:
        return None
    if not any(head[1::2]) and all(head[0::2]):
        return "utf-16-le"
    if not any(head[0::2]) and all(head[1::2]):
        return "utf-16-be"
    return None


def _utf8_or_latin1(data: bytes) -> tuple[bytes, bool]:
    """``data`` as UTF-8, and whether it was not UTF-8 and so was read as Latin-1 (every
    byte a character: the 8-bit text of older Windows exporters)."""
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1").encode("utf-8"), True
    return data, False


def _missing_obj_assets(data: bytes, resolver: _AssetResolver) -> list[str]:
    """Warnings for material libraries and ``map_Kd`` textures that cannot be read."""
    match = _MTLLIB.search(data)  # trimesh reads the first material library only
    if match is None:
        return []
    name = match.group(1).decode("utf-8").strip()
    mtl, tried = resolver.locate(name)
    if mtl is None:
        return [f"material library '{name}' not found{_tried(tried)}"]
    warnings = []
    for line in _utf8_or_latin1(mtl.read_bytes())[0].decode("utf-8").splitlines():
        words = line.split(maxsplit=1)
        if len(words) == 2 and words[0].lower() == "map_kd":
            warnings += _texture_warning(words[1].strip(), f"map_Kd in {name}", resolver)
    return warnings


def _missing_ply_texture(data: bytes, resolver: _AssetResolver) -> list[str]:
    """A warning when the image a PLY header names (``comment TextureFile a.png``, as
    MeshLab writes) cannot be read."""
    end = data.find(b"end_header", 0, _PLY_HEADER_MAX)
    match = _PLY_TEXTURE.search(data, 0, max(end, 0))
    if match is None:
        return []
    texture = match.group(1).decode("utf-8", errors="replace")
    return _texture_warning(texture, "TextureFile in the PLY header", resolver)


def _texture_warning(texture: str, where: str, resolver: _AssetResolver) -> list[str]:
    """A warning when the image ``texture`` names is not found or cannot be read."""
    from PIL import Image

    image, tried = resolver.locate(texture)
    if image is None:
        return [f"texture '{texture}' ({where}) not found{_tried(tried)}"]
    try:
        with Image.open(image) as opened:
            opened.verify()
    except Exception:
        return [f"texture '{texture}' ({where}) is not a readable image"]
    return []


def _tried(names: list[str]) -> str:
    """`` (tried a, b from the mesh's folder, any letter case)`` for a not-found warning."""
    return f" (tried {', '.join(names)} from the mesh's folder, any letter case)" if names else ""


def _describe(exc: BaseException) -> str:
    message = _one_line(str(exc))
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def _one_line(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _REASON_MAX else text[: _REASON_MAX - 1] + "…"


def _suffixes() -> str:
    return ", ".join(MESH_SUFFIXES)
