"""Point sampling on mesh surfaces: area-weighted uniform, or farthest-point subsampling.

Every function takes an explicit seed and draws from its own ``np.random.Generator``,
so the same mesh and seed always give the same points, in any process.
"""

from __future__ import annotations

import numpy as np
import trimesh

SAMPLERS = ("uniform", "fps")


def triangle_areas(triangles: np.ndarray) -> np.ndarray:
    """triangles : (m, 3, 3) float -> (m,) float64 areas."""
    t = np.asarray(triangles, dtype=np.float64)
    return 0.5 * np.linalg.norm(np.cross(t[:, 1] - t[:, 0], t[:, 2] - t[:, 0]), axis=1)


def _triangles(mesh: trimesh.Trimesh) -> np.ndarray:
    """The (m, 3, 3) float64 triangles of ``mesh``; ValueError when unusable for sampling."""
    vertices = np.asarray(mesh.vertices, dtype=np.float64)
    faces = np.asarray(mesh.faces, dtype=np.int64)
    if len(faces) == 0 or len(vertices) == 0:
        raise ValueError("mesh has no faces")
    if not np.isfinite(vertices).all():
        raise ValueError("mesh has non-finite vertex coordinates")
    if faces.min() < 0 or faces.max() >= len(vertices):
        raise ValueError("mesh faces index missing vertices")
    return vertices[faces]


def sample_uniform(
    triangles: np.ndarray, n: int, generator: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Area-weighted uniform samples on triangles.

    triangles : (m, 3, 3) float. Returns ``(points, normals)``, each (n, 3) float64;
    normals are the unit normals of the faces the points fell on (winding order).
    Raises ``ValueError`` when the total area is zero or not finite.
    """
    areas = triangle_areas(triangles)
    total = float(areas.sum())
    if not np.isfinite(total) or total <= 0.0:
        raise ValueError("mesh surface area is zero" if total == 0.0 else "non-finite area")
    cumulative = np.cumsum(areas)
    # Inverse-CDF face choice; zero-area faces have an empty interval and are never chosen.
    face = np.searchsorted(cumulative, generator.random(n) * cumulative[-1], side="right")
    face = np.minimum(face, np.flatnonzero(areas > 0.0)[-1])  # guards r * total rounding up
    u, v = generator.random((2, n))
    flip = u + v > 1.0  # reflect into the triangle: uniform over (a, b, c)
    u[flip], v[flip] = 1.0 - u[flip], 1.0 - v[flip]
    a, b, c = (triangles[face, i] for i in range(3))
    points = a + u[:, None] * (b - a) + v[:, None] * (c - a)
    cross = np.cross(b - a, c - a)
    normals = cross / np.linalg.norm(cross, axis=1, keepdims=True)
    return points, normals


def farthest_point_indices(
    points: np.ndarray, n: int, generator: np.random.Generator
) -> np.ndarray:
    """Greedy farthest-point subsampling from a random start: (n,) int64 indices into points.

    points : (m, 3) float with m >= n. O(n * m) time, O(m) memory.
    """
    points = np.asarray(points, dtype=np.float64)
    m = len(points)
    if n > m:
        raise ValueError(f"cannot choose {n} farthest points out of {m}")
    chosen = np.empty(n, dtype=np.int64)
    chosen[0] = generator.integers(m)
    distance = np.full(m, np.inf)
    for i in range(1, n):
        step = points - points[chosen[i - 1]]
        np.minimum(distance, np.einsum("ij,ij->i", step, step), out=distance)
        chosen[i] = int(np.argmax(distance))
    return chosen


def sample_surface(
    mesh: trimesh.Trimesh,
    n: int,
    seed: int,
    sampler: str = "uniform",
    oversample: int = 4,
) -> tuple[np.ndarray, np.ndarray]:
    """Sample ``n`` points on the surface of ``mesh``, in the mesh's own frame.

    ``sampler="uniform"`` draws area-weighted uniform points; ``"fps"`` draws
    ``n * oversample`` uniform points and keeps ``n`` of them by farthest-point
    subsampling (even coverage, as in point-cloud benchmarks). Returns
    ``(points, normals)``: (n, 3) float32 each, normals of unit length.
    Deterministic for a given mesh and ``seed``. Raises ``ValueError`` for a mesh
    without faces, with non-finite vertices or with zero surface area.
    """
    if n < 1:
        raise ValueError(f"number of points must be >= 1, got {n}")
    if sampler not in SAMPLERS:
        raise ValueError(f"sampler must be one of {SAMPLERS}, got {sampler!r}")
    if oversample < 1:
        raise ValueError(f"oversample must be >= 1, got {oversample}")
    generator = np.random.default_rng(seed)
    triangles = _triangles(mesh)
    if sampler == "uniform":
        points, normals = sample_uniform(triangles, n, generator)
    else:
        dense, dense_normals = sample_uniform(triangles, n * oversample, generator)
        keep = farthest_point_indices(dense, n, generator)
        points, normals = dense[keep], dense_normals[keep]
    return points.astype(np.float32), normals.astype(np.float32)


def subsample_points(points: np.ndarray, n: int, seed: int, sampler: str = "uniform") -> np.ndarray:
    """Exactly ``n`` rows of an existing cloud: (m, 3) -> (n, 3) float32.

    ``uniform`` takes a seeded random subset (with replacement only when m < n);
    ``fps`` takes farthest points (falling back to the uniform rule when m < n).
    """
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 3 or len(points) == 0:
        raise ValueError(f"expected a non-empty (m, 3) point array, got shape {points.shape}")
    if sampler not in SAMPLERS:
        raise ValueError(f"sampler must be one of {SAMPLERS}, got {sampler!r}")
    generator = np.random.default_rng(seed)
    m = len(points)
    if m < n:
        index = np.concatenate([generator.permutation(m), generator.integers(m, size=n - m)])
    elif sampler == "fps":
        index = farthest_point_indices(points, n, generator)
    else:
        index = np.sort(generator.choice(m, size=n, replace=False))
    return points[index].astype(np.float32)
