"""The normalised object frame shared by the renderer and the point sampler.

Bounding-box centre at the origin, scaled so that the bounding box's half-diagonal
is 1 (ShapeNet's unit-diagonal convention, doubled); every vertex then lies inside
the unit sphere. Up axis is +Y, as in ShapeNet.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import trimesh

UP_AXIS = "+Y"


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
