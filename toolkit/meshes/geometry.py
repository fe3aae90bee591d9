"""The normalised object frame shared by the renderer and the point sampler.

Bounding-box centre at the origin, scaled so that the bounding box's half-diagonal
is 1 (ShapeNet's unit-diagonal convention, doubled); every vertex then lies inside
the unit sphere. Up axis is +Y, as in ShapeNet.

Sources whose up axis is another one (ModelNet's OFF files, most STL files and scans are
+Z up) are rotated into the +Y-up frame when loaded, before anything is normalised, so
views and points are made from the same upright geometry (:func:`file_up_axis` says which
axis a file is read with: ``auto`` follows its format's convention). :func:`up_rotation` is that
rotation: the proper rotation (no mirroring) that takes the source's up axis to +Y about
the X axis for +-Z and -Y and about the Z axis for +-X, e.g. +Z up:
``(x, y, z) -> (x, z, -y)``, which also turns a Z-up file's front (-Y) to +Z, glTF's front.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import trimesh

UP_AXIS = "+Y"
"""The up axis of the normalised frame every output refers to."""

AUTO = "auto"
"""``--up-axis auto``: the file's format convention (:data:`FORMAT_UP_AXES`), else the
default of the object's source (:data:`SOURCE_UP_AXES`)."""

# Rows of the 3x3 rotation that takes each source up axis to +Y.
_TO_Y_UP = {
    "+Y": ((1, 0, 0), (0, 1, 0), (0, 0, 1)),
    "-Y": ((1, 0, 0), (0, -1, 0), (0, 0, -1)),
    "+Z": ((1, 0, 0), (0, 0, 1), (0, -1, 0)),
    "-Z": ((1, 0, 0), (0, 0, -1), (0, 1, 0)),
    "+X": ((0, -1, 0), (1, 0, 0), (0, 0, 1)),
    "-X": ((0, 1, 0), (-1, 0, 0), (0, 0, 1)),
}
UP_AXES = tuple(_TO_Y_UP)
"""Up axes a source may have: ``+Y``, ``-Y``, ``+Z``, ``-Z``, ``+X``, ``-X``."""

SOURCE_UP_AXES = {
    "shapenet-v2": "+Y",
    "shapenet-v1": "+Y",
    "modelnet": "+Z",
    "folder": "+Y",
    "procedural": "+Y",
    "procedural-eval": "+Y",
}
"""The up axis ``auto`` means for each source's files whose format has none (a source not
listed: +Y)."""

FORMAT_UP_AXES = {".stl": "+Z", ".off": "+Z", ".glb": "+Y", ".gltf": "+Y"}
"""The up axis of each format that has one, by extension: glTF is +Y up by its specification
(whatever ``--up-axis`` says); STL (CAD, 3-D printing) and OFF (ModelNet) are +Z up by
convention, which ``auto`` follows. OBJ and PLY have none: their source's default."""


def check_up_axis(value: str, *, allow_auto: bool = True) -> str:
    """``value`` if it names an up axis (or ``auto``), else ``ValueError`` listing the choices."""
    choices = (AUTO, *UP_AXES) if allow_auto else UP_AXES
    if value not in choices:
        raise ValueError(f"up axis must be one of {', '.join(choices)}, got {value!r}")
    return value


def default_up_axis(source: str) -> str:
    """The up axis of ``source``'s files when the user gives none (:data:`SOURCE_UP_AXES`)."""
    return SOURCE_UP_AXES.get(source, UP_AXIS)


def file_up_axis(source: str, path: str | Path | None, up_axis: str) -> str:
    """The up axis a file of ``source`` is read with when the user gives ``up_axis``.

    glTF keeps +Y (its specification); ``auto`` takes the format's convention
    (:data:`FORMAT_UP_AXES`, by the extension, so it is known before the file is read),
    else the source's default. ``path`` None (an in-memory object) has no format.
    """
    suffix = Path(path).suffix.lower() if path is not None else ""
    if FORMAT_UP_AXES.get(suffix) == UP_AXIS:
        return UP_AXIS
    if up_axis == AUTO:
        return FORMAT_UP_AXES.get(suffix, default_up_axis(source))
    return up_axis


def up_rotation(axis: str) -> np.ndarray:
    """The 4x4 rotation that takes a source whose up axis is ``axis`` into the +Y-up frame.

    A proper rotation (determinant +1): nothing is mirrored, face winding is kept.
    """
    matrix = np.eye(4)
    matrix[:3, :3] = _TO_Y_UP[check_up_axis(axis, allow_auto=False)]
    return matrix


@dataclass(frozen=True)
class Normalization:
    """``x_normalised = (x - centre) * scale`` for points in the source frame."""

    centre: tuple[float, float, float]
    scale: float

    def apply(self, points: np.ndarray) -> np.ndarray:
        """points : (n, 3) float, source frame -> (n, 3) float64, normalised frame."""
        return (np.asarray(points, dtype=np.float64) - np.asarray(self.centre)) * self.scale

    def matrix(self) -> np.ndarray:
        """The same map as a 4x4 homogeneous transform."""
        m = np.eye(4) * self.scale
        m[3, 3] = 1.0
        m[:3, 3] = -np.asarray(self.centre) * self.scale
        return m

    def to_json(self) -> dict:
        return {"centre": list(self.centre), "scale": self.scale}


def as_mesh(geometry: trimesh.Scene | trimesh.Trimesh) -> trimesh.Trimesh:
    """All triangles of a scene (node transforms applied) as one mesh; meshes pass through."""
    if isinstance(geometry, trimesh.Trimesh):
        return geometry
    meshes = [g for g in geometry.dump() if isinstance(g, trimesh.Trimesh) and len(g.faces)]
    if not meshes:
        return trimesh.Trimesh()
    return trimesh.util.concatenate(meshes)


def normalization(geometry: trimesh.Scene | trimesh.Trimesh) -> Normalization:
    """The normalisation of ``geometry``'s vertices (transforms applied).

    Raises ``ValueError`` when there is no vertex, a non-finite one, or a zero-size box.
    """
    vertices = as_mesh(geometry).vertices
    if len(vertices) == 0:
        raise ValueError("no geometry")
    if not np.isfinite(vertices).all():
        raise ValueError("non-finite vertex coordinates")
    lo, hi = vertices.min(axis=0), vertices.max(axis=0)
    half_diagonal = 0.5 * float(np.linalg.norm(hi - lo))
    if half_diagonal <= 0:
        raise ValueError("zero-size bounding box")
    centre = 0.5 * (lo + hi)
    return Normalization(tuple(float(c) for c in centre), 1.0 / half_diagonal)
