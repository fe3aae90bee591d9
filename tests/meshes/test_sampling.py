"""Surface sampling: on the surface, area-weighted, deterministic, FPS, degenerate meshes."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh

from xpt.toolkit.meshes.sampling import farthest_point_indices, sample_surface, subsample_points


def _box() -> trimesh.Trimesh:
    return trimesh.creation.box(extents=(2.0, 1.0, 0.5))


def test_uniform_points_lie_on_the_box_surface_with_face_normals() -> None:
    points, normals = sample_surface(_box(), 500, seed=3)
    assert points.shape == (500, 3) and points.dtype == np.float32
    assert normals.shape == (500, 3) and normals.dtype == np.float32
    half = np.array([1.0, 0.5, 0.25])
    # every point is inside the box and on one of its faces
    assert np.all(np.abs(points) <= half + 1e-6)
    on_face = np.isclose(np.abs(points), half, atol=1e-6)
    assert on_face.any(axis=1).all()
    assert np.allclose(np.linalg.norm(normals, axis=1), 1.0, atol=1e-6)
    # box normals are axis-aligned and point outwards from the face the point is on
    axis = np.abs(normals).argmax(axis=1)
    rows = np.arange(len(points))
    assert np.allclose(np.abs(normals[rows, axis]), 1.0, atol=1e-6)
    assert np.allclose(np.abs(points[rows, axis]), half[axis], atol=1e-6)
    assert np.all(np.sign(normals[rows, axis]) == np.sign(points[rows, axis]))


def test_sampling_is_area_weighted() -> None:
    # two disjoint triangles, areas 1 and 3 -> a quarter of the points on the first
    vertices = [[0, 0, 0], [1, 0, 0], [0, 2, 0], [5, 0, 0], [8, 0, 0], [5, 2, 0]]
    mesh = trimesh.Trimesh(vertices=vertices, faces=[[0, 1, 2], [3, 4, 5]], process=False)
    points, _ = sample_surface(mesh, 8000, seed=0)
    share = float(np.mean(points[:, 0] < 2.5))
    assert abs(share - 0.25) < 0.02
    # and uniform inside a triangle: the mean is the centroid
    first = points[points[:, 0] < 2.5]
    assert np.allclose(first.mean(axis=0), [1 / 3, 2 / 3, 0], atol=0.03)


def test_sampling_is_deterministic_per_seed() -> None:
    a = sample_surface(_box(), 64, seed=11)
    b = sample_surface(_box(), 64, seed=11)
    c = sample_surface(_box(), 64, seed=12)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])


def _naive_fps(points: np.ndarray, n: int, start: int) -> list[int]:
    chosen = [start]
    for _ in range(n - 1):
        d = [min(np.sum((p - points[c]) ** 2) for c in chosen) for p in points]
        chosen.append(int(np.argmax(d)))
    return chosen


def test_farthest_point_indices_match_a_naive_reference() -> None:
    points = np.random.default_rng(0).random((60, 3))
    index = farthest_point_indices(points, 12, np.random.default_rng(5))
    start = int(np.random.default_rng(5).integers(60))
    assert index.tolist() == _naive_fps(points, 12, start)


def test_fps_spreads_points_more_evenly_than_uniform() -> None:
    sphere = trimesh.creation.icosphere(subdivisions=2)
    uniform, _ = sample_surface(sphere, 128, seed=1)
    fps, fps_normals = sample_surface(sphere, 128, seed=1, sampler="fps", oversample=4)

    def min_spacing(p: np.ndarray) -> float:
        d = np.linalg.norm(p[:, None] - p[None], axis=2)
        return float(d[~np.eye(len(p), dtype=bool)].min())

    assert min_spacing(fps) > 2 * min_spacing(uniform)
    assert np.allclose(np.linalg.norm(fps, axis=1), 1.0, atol=0.05)
    assert np.allclose(np.linalg.norm(fps_normals, axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize(
    ("vertices", "faces", "match"),
    [
        ([[0, 0, 0], [1, 0, 0], [2, 0, 0]], [[0, 1, 2]], "area is zero"),
        ([[0, 0, np.inf], [1, 0, 0], [0, 1, 0]], [[0, 1, 2]], "non-finite"),
        ([[0, 0, 0], [1, 0, 0], [0, 1, 0]], np.zeros((0, 3), int), "no faces"),
    ],
)
def test_degenerate_meshes_raise_value_error(vertices, faces, match) -> None:
    mesh = trimesh.Trimesh(vertices=vertices, faces=faces, process=False)
    with pytest.raises(ValueError, match=match):
        sample_surface(mesh, 10, seed=0)


def test_zero_area_faces_are_never_chosen() -> None:
    vertices = [[0, 0, 0], [1, 0, 0], [0, 1, 0], [5, 5, 5], [6, 6, 6], [7, 7, 7]]
    mesh = trimesh.Trimesh(vertices=vertices, faces=[[3, 4, 5], [0, 1, 2]], process=False)
    points, normals = sample_surface(mesh, 200, seed=2)
    assert np.all(points[:, 2] == 0) and np.isfinite(normals).all()


def test_subsample_points_takes_existing_rows() -> None:
    cloud = np.random.default_rng(1).random((50, 3))
    picked = subsample_points(cloud, 20, seed=4)
    assert picked.shape == (20, 3) and picked.dtype == np.float32
    rows = {tuple(r) for r in cloud.astype(np.float32)}
    assert all(tuple(r) in rows for r in picked) and len({tuple(r) for r in picked}) == 20
    padded = subsample_points(cloud, 80, seed=4)
    assert len({tuple(r) for r in padded}) == 50  # every row kept, then repeats
    assert np.array_equal(
        subsample_points(cloud, 20, 4, "fps"), subsample_points(cloud, 20, 4, "fps")
    )
