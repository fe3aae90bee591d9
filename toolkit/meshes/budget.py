"""The face budget: memory per mesh bounded by the number of faces drawn.

Rendering costs about 1.36 KB per drawn face in a worker (corner-unrolled positions, normals
and colours, the GL buffers), so a 2 GiB STL (43 M faces) would need about 60 GB.
:func:`load_within_budget` bounds it: a file whose header declares more than
:data:`LOAD_FACTOR` times the budget is refused before it is parsed (loading and simplifying
cost about 0.58 KB per face of the file, so a larger file would cost more than twice what
drawing the budget does), and a loaded scene over the budget is simplified by quadric edge
collapse (``fast-simplification``) until it fits. Geometries are reduced by one common
fraction, small parts excepted (:func:`face_targets`); node transforms and materials are
kept, and UVs, vertex and face colours are carried through the collapses (UVs and vertex
colours averaged over the vertices merged into each kept one, face colours kept with the
faces that survive). Texture seams are borders the decimation does not move, so a textured
mesh shows no cracks along them. The simplifier keeps its working buffers (a few hundred bytes
per face of the largest mesh it simplified) until the process exits.

The record (``{"max_faces", "before", "after"}``, faces as drawn: a geometry placed by
several nodes counts once per node) goes into each object's json.
"""

from __future__ import annotations

import re
import struct
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # numpy and trimesh load lazily: the CLI imports the defaults at start-up
    import numpy as np
    import trimesh

    from xpt.toolkit.meshes.load import LoadedMesh
    from xpt.toolkit.meshes.objects import MeshObject

DEFAULT_MAX_FACES = 2_000_000
"""Default ``--max-faces``: with the largest file it accepts (10 M faces) a render worker peaks at
6.9 GB (measured, docs/PERFORMANCE.md), which fits a 24 GB machine at the default one worker,
or two (docs/MESHES.md)."""

LOAD_FACTOR = 5
"""Files declaring more than this many times the budget are refused before parsing."""

MIN_PART_FACES = 100
"""A part that the budget's common fraction would cut under this many faces stays whole."""

AGGRESSION = 7.0  # fast-simplification's default trade of speed against shape fidelity
_HEAD_BYTES = 1024 * 1024
_CHUNK_BYTES = 64 * 1024 * 1024
_PLY_FACES = re.compile(rb"^element[ \t]+face[ \t]+(\d+)", re.MULTILINE)
_PLY_FACE_LIST = re.compile(rb"^property[ \t]+list[ \t]+(\w+)[ \t]+(\w+)", re.MULTILINE)
_PLY_END = re.compile(rb"end_header[ \t]*\r?\n")
_SIZES = {"char": 1, "uchar": 1, "int8": 1, "uint8": 1, "short": 2, "ushort": 2, "int16": 2}
_SIZES |= {"uint16": 2, "int": 4, "uint": 4, "int32": 4, "uint32": 4}
_ASCII_FACE_BYTES = 7  # "3 a b c": four numbers and three separators at least


def check_max_faces(max_faces: int) -> int:
    """``max_faces`` if it is a budget (0 turns the budget off), else ``ValueError``."""
    if max_faces < 0:
        raise ValueError(f"max faces must be 0 (no budget) or positive, got {max_faces}")
    return max_faces


def drawn_faces(scene: trimesh.Scene) -> int:
    """Faces as the renderer draws them: each geometry once per node that places it."""
    total = 0
    for node in scene.graph.nodes_geometry:
        geometry = scene.geometry.get(scene.graph[node][1])
        total += len(getattr(geometry, "faces", ()))  # point clouds and paths have none
    return total


def declared_faces(path: Path) -> tuple[int, str] | None:
    """(face count, what says so) from a mesh file's header, read without parsing the file.

    Binary STL's triangle count, PLY's ``element face N``, OFF's count line, or the number
    of OBJ ``f`` lines; only a count the file is long enough to hold (a shorter file is
    truncated, which :func:`~xpt.toolkit.meshes.load.load_mesh` reports). None for other
    files (glTF, GLB: their size limit bounds them).
    """
    from xpt.toolkit.meshes.load import off_header

    size = path.stat().st_size
    with open(path, "rb") as handle:
        head = handle.read(_HEAD_BYTES)
    if head.startswith(b"ply"):
        return _ply_faces(head, size)
    _, magic, counts = off_header(head)
    if counts is not None and not magic.group(2):  # (binary OFF is refused by the loader)
        faces = int(counts.group(2))
        return (faces, "the OFF header declares") if size >= faces * _ASCII_FACE_BYTES else None
    if size >= 84:
        (triangles,) = struct.unpack_from("<I", head, 80)
        if size == 84 + 50 * triangles:
            return triangles, "the binary STL header declares"
    if path.suffix.lower() == ".obj" and not head.startswith(b"glTF"):
        return _obj_faces(path), "the OBJ file has"
    return None


def _ply_faces(head: bytes, size: int) -> tuple[int, str] | None:
    """The face count of a PLY header, if the body is long enough to hold those faces."""
    end, faces = _PLY_END.search(head), _PLY_FACES.search(head)
    if end is None or faces is None:
        return None
    count = int(faces.group(1))
    listed = _PLY_FACE_LIST.search(head, faces.end(), end.start())
    if b"format ascii" in head[: end.start()] or listed is None:
        per_face = _ASCII_FACE_BYTES
    else:
        count_type, index_type = (t.decode() for t in listed.groups())
        per_face = _SIZES.get(count_type, 1) + 3 * _SIZES.get(index_type, 1)
    return (count, "the PLY header declares") if size - end.end() >= count * per_face else None


def _obj_faces(path: Path) -> int:
    """How many lines of an OBJ file start with ``f`` (a polygon is at least one triangle)."""
    count, tail = 0, b"\n"
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK_BYTES):
            data = tail + chunk
            count += data.count(b"\nf ") + data.count(b"\nf\t")
            tail = data[-2:]  # a match across chunks starts in these two bytes
    return count


def check_declared_faces(path: Path, max_faces: int) -> None:
    """Raise :class:`MeshError` when the file declares too many faces to parse in memory.

    The limit is :data:`LOAD_FACTOR` times ``max_faces`` (0: no limit): loading and
    simplifying cost about 0.58 KB per face of the file against 1.36 KB per face drawn, so
    a larger file would need more than twice the memory the budget grants for drawing.
    """
    from xpt.toolkit.meshes.load import MeshError

    limit = LOAD_FACTOR * max_faces
    try:
        # every face takes at least 3 bytes in any format, so a smaller file needs no look
        if not max_faces or not path.is_file() or path.stat().st_size < 3 * limit:
            return
        found = declared_faces(path)
    except OSError:
        return  # the loader says what is wrong with the file
    if found is not None and found[0] > limit:
        count, source = found
        raise MeshError(
            path,
            f"{source} {count:,} faces, more than {LOAD_FACTOR} x --max-faces ({limit:,}) "
            "can load within memory; not read (simplify the file first, or raise --max-faces "
            "on a machine with more memory)",
        )


def fit_face_budget(scene: trimesh.Scene, max_faces: int) -> dict[str, int]:
    """Simplify ``scene`` in place until it draws at most ``max_faces`` faces (0: no budget).

    Geometries are reduced by one common fraction (:func:`face_targets`). Returns
    ``{"max_faces", "before", "after"}``; raises ``ValueError`` when the collapses stop
    over the budget.
    """
    before = drawn_faces(scene)
    record = {"max_faces": max_faces, "before": before, "after": before}
    if not max_faces or before <= max_faces:
        return record
    instances = Counter(scene.graph[node][1] for node in scene.graph.nodes_geometry)
    faces = {n: len(getattr(scene.geometry.get(n), "faces", ())) for n in instances}
    for name, target in face_targets(faces, instances, max_faces).items():
        if target < faces[name]:
            scene.geometry[name] = decimate_mesh(scene.geometry[name], target)
    record["after"] = drawn_faces(scene)
    if record["after"] > max_faces:
        raise ValueError(
            f"stopped at {record['after']:,} of {before:,} faces, over --max-faces "
            f"{max_faces:,} (the edges left would fold faces if collapsed: dense fans, "
            "tiny parts or open borders)"
        )
    return record


def face_targets(
    faces: dict[str, int], instances: dict[str, int], max_faces: int
) -> dict[str, int]:
    """Faces each geometry may keep so that all instances draw at most ``max_faces``.

    Every geometry keeps the same fraction of its faces, except parts that the fraction
    would cut under :data:`MIN_PART_FACES`: they stay whole (a 12-face box cut to 3 faces
    is no longer a box) and the larger geometries give up their faces instead, unless
    the parts kept whole would fill the budget on their own.
    """
    drawn = {name: faces[name] * instances[name] for name in faces}
    total = sum(drawn.values())
    whole: set[str] = set()
    share = max_faces / total
    while True:
        small = {n for n in faces if n not in whole and faces[n] * share < MIN_PART_FACES}
        fixed = sum(drawn[n] for n in whole | small)
        if not small or fixed >= max_faces:
            break
        whole |= small
        share = (max_faces - fixed) / (total - fixed)
    return {n: faces[n] if n in whole else max(1, int(faces[n] * share)) for n in faces}


def decimate_mesh(mesh: trimesh.Trimesh, target: int) -> trimesh.Trimesh:
    """``mesh`` reduced to at most ``target`` faces by quadric edge collapse, colours kept.

    Vertices at bit-identical positions are welded first (STL and faceted OBJ files repeat
    them for every face; the renderer recomputes normals), except where UVs differ: a texture
    seam stays a border, and a textured mesh's borders are not moved, so the two sides of a
    seam stay joined. A mesh with UVs or colours is simplified, then the collapses are
    replayed to learn which vertices merged (about 1.5x the memory of one pass): UVs and
    vertex colours are averaged over them, face colours stay with the faces that survive.
    """
    import fast_simplification
    import numpy as np
    import trimesh
    from trimesh.visual import ColorVisuals, TextureVisuals

    uv = _uv(mesh)
    kind = "uv" if uv is not None else getattr(mesh.visual, "kind", None)
    vertices, faces, first = _weld(np.asarray(mesh.vertices), np.asarray(mesh.faces), uv)
    options = {"target_count": target, "agg": AGGRESSION, "preserve_border": uv is not None}
    metadata = dict(mesh.metadata)
    if kind not in ("uv", "vertex", "face"):  # nothing per vertex or face to carry
        points, kept_faces = fast_simplification.simplify(vertices, faces, **options)
        result = trimesh.Trimesh(points, kept_faces, process=False, metadata=metadata)
        if isinstance(mesh.visual, TextureVisuals):  # a material without UVs
            result.visual = TextureVisuals(material=mesh.visual.material)
        return result
    *_, collapses = fast_simplification.simplify(vertices, faces, return_collapses=True, **options)
    points, _, mapping = fast_simplification.replay_simplification(vertices, faces, collapses)
    corners = mapping[faces]  # every face kept is an original face with merged corners
    kept = (
        (corners[:, 0] != corners[:, 1])
        & (corners[:, 1] != corners[:, 2])
        & (corners[:, 2] != corners[:, 0])
    )
    result = trimesh.Trimesh(points, corners[kept], process=False, metadata=metadata)
    if kind == "uv":
        carried = _cluster_mean(uv[first], mapping, len(points))
        result.visual = TextureVisuals(uv=carried, material=mesh.visual.material)
    elif kind == "vertex":
        colors = np.asarray(mesh.visual.vertex_colors, dtype=np.float64)[first]
        carried = np.rint(_cluster_mean(colors, mapping, len(points))).astype(np.uint8)
        result.visual = ColorVisuals(vertex_colors=carried)
    else:
        result.visual = ColorVisuals(face_colors=np.asarray(mesh.visual.face_colors)[kept])
    return result


def _uv(mesh: trimesh.Trimesh) -> np.ndarray | None:
    """(V, 2) float64: the per-vertex UVs of a textured mesh, or None."""
    import numpy as np
    from trimesh.visual import TextureVisuals

    uv = getattr(mesh.visual, "uv", None)
    if not isinstance(mesh.visual, TextureVisuals) or uv is None or len(uv) != len(mesh.vertices):
        return None
    return np.asarray(uv, dtype=np.float64)


def _weld(
    vertices: np.ndarray, faces: np.ndarray, uv: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Vertices with bit-identical positions (and UVs, when given) made one.

    Returns the welded vertices (V', 3) float64, the faces (F, 3) int64 indexing them, and
    (V',) int the first original vertex of each (to carry per-vertex attributes).
    """
    import numpy as np

    rows = np.ascontiguousarray(vertices if uv is None else np.column_stack([vertices, uv]))
    rows = rows.astype(np.float64, copy=False)
    keys = rows.view(np.dtype((np.void, rows.itemsize * rows.shape[1]))).ravel()
    _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    welded = np.asarray(vertices, dtype=np.float64)[first]
    return welded, inverse.reshape(-1)[np.asarray(faces, dtype=np.int64)], first


def _cluster_mean(values: np.ndarray, mapping: np.ndarray, count: int) -> np.ndarray:
    """(count, C) float64: the mean of ``values`` (V, C) over the vertices ``mapping`` (V,)
    merged into each decimated vertex (-1: a vertex no face uses)."""
    import numpy as np

    used = mapping >= 0
    index = mapping[used]
    weights = np.bincount(index, minlength=count).astype(np.float64)
    sums = [np.bincount(index, values[used, c], minlength=count) for c in range(values.shape[1])]
    return np.stack(sums, axis=1) / np.maximum(weights, 1.0)[:, None]


def load_within_budget(
    obj: MeshObject, *, max_faces: int, up_axis: str
) -> tuple[LoadedMesh, dict[str, int]]:
    """:func:`~xpt.toolkit.meshes.load.load_object` within the face budget: (mesh, record).

    Raises :class:`MeshError` for a file that declares too many faces (before reading it)
    and for a scene that cannot be simplified under the budget; a simplified scene gets a
    warning naming both counts.
    """
    from xpt.toolkit.meshes.load import MeshError, load_object

    if obj.path is not None:
        check_declared_faces(obj.path, max_faces)
    loaded = load_object(obj, up_axis=up_axis)
    try:
        record = fit_face_budget(loaded.scene, max_faces)
    except Exception as exc:  # the reason is one line; the object fails, the run goes on
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise MeshError(obj.where or obj.key, f"cannot simplify: {reason}") from None
    if record["after"] < record["before"]:
        loaded.warnings.append(
            f"simplified from {record['before']:,} to {record['after']:,} faces to fit "
            f"--max-faces {max_faces:,}"
        )
    return loaded, record


def same_faces_under(record: dict, max_faces: int) -> bool:
    """Whether an object whose face ``record`` says how it was drawn would be drawn with the
    same faces under ``max_faces`` (only objects over either budget differ); False for a
    record that cannot be read."""
    try:
        before, old = int(record["before"]), int(record["max_faces"])
    except (KeyError, TypeError, ValueError):
        return False
    return _allowed(before, old) == _allowed(before, max_faces)


def _allowed(faces: int, max_faces: int) -> int:
    """How many of ``faces`` a budget of ``max_faces`` lets through (0: all)."""
    return faces if not max_faces else min(faces, max_faces)
