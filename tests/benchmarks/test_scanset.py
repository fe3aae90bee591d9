"""procedural-scan: back-projection, partial cluttered scans, the two variants, the h5 layout."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import trimesh
from scipy.spatial import cKDTree
from typer.testing import CliRunner

from xpt.benchmarks.datasets import load_procedural_scan
from xpt.benchmarks.scanset import (
    ScanConfig,
    back_project,
    rotate_about_up,
    scan_points,
    write_scan_set,
)
from xpt.render.cameras import View, intrinsics, project
from xpt.toolkit.cli import app
from xpt.toolkit.meshes.geometry import as_mesh

CATEGORIES = ["mug", "table"]


@pytest.fixture(scope="module")
def scans(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("scan") / "procedural_scan"
    write_scan_set(out, per_category=4, seed=0, categories=CATEGORIES)
    return out


def test_back_projection_inverts_the_camera_projection() -> None:
    view = View(azimuth=40.0, elevation=28.0, distance_ratio=0.8)
    K, pose = intrinsics(64, 2.1875), view.cam_to_world()
    rows, cols = np.meshgrid(np.arange(20, 30), np.arange(30, 36), indexing="ij")
    depth = np.zeros((64, 64), dtype=np.float32)
    depth[rows, cols] = 2.0 + 0.01 * cols  # a slanted patch in front of the camera
    world = back_project(depth, K, pose)
    assert world.shape == (rows.size, 3)
    pixels = project(world, K, pose)
    expected = np.stack([cols.ravel() + 0.5, rows.ravel() + 0.5], axis=1)
    assert np.allclose(pixels, expected, atol=1e-6)
    camera_frame = (world - pose[:3, 3]) @ pose[:3, :3]  # world -> camera axes
    assert np.allclose(-camera_frame[:, 2], depth[rows, cols].ravel(), atol=1e-6)


def test_rotation_about_up_keeps_heights_and_radii() -> None:
    points = np.random.default_rng(0).normal(size=(100, 3))
    turned = rotate_about_up(points, 1.0)
    assert np.allclose(turned[:, 1], points[:, 1])
    assert np.allclose(
        np.linalg.norm(turned[:, [0, 2]], axis=1), np.linalg.norm(points[:, [0, 2]], axis=1)
    )
    assert np.allclose(rotate_about_up(points, 2 * math.pi), points)


def test_both_variants_in_the_h5_layout_rotated_about_up(scans: Path) -> None:
    upright = load_procedural_scan(scans, variant="upright")
    rotated = load_procedural_scan(scans, variant="rotated")
    assert upright.class_names == rotated.class_names == tuple(CATEGORIES)
    assert len(upright.train.labels) == 6 and len(upright.test.labels) == 2  # every 4th: test
    for split in ("train", "test"):
        a, b = getattr(upright, split), getattr(rotated, split)
        assert a.names == b.names and np.array_equal(a.labels, b.labels)
        assert a.points.shape[1:] == (2048, 3)
        assert np.allclose(a.points[..., 1], b.points[..., 1], atol=1e-6)  # same heights
        radii = np.linalg.norm(a.points[..., [0, 2]], axis=-1)
        assert np.allclose(radii, np.linalg.norm(b.points[..., [0, 2]], axis=-1), atol=1e-5)
        assert not np.allclose(a.points, b.points)  # but turned
        assert np.allclose(np.linalg.norm(a.points, axis=-1).max(axis=1), 1.0, atol=1e-5)
    record = json.loads((scans / "upright" / "eval_set.json").read_text())
    assert record["source"] == "procedural-scan" and record["scan"]["noise"] == ScanConfig().noise


def _scan_points(config: ScanConfig) -> tuple[np.ndarray, trimesh.Trimesh]:
    """Raw scan points of one chair and the chair's mesh, both in the object's frame."""
    from xpt.render.config import RenderConfig
    from xpt.render.renderer import ObjectRenderer
    from xpt.toolkit.procedural import build_parts, objects, to_scene

    obj = objects(1, 0, ["chair"], eval=True)[0]
    render = RenderConfig(views=1, size=config.size, depth=True, antialias=False)
    with ObjectRenderer(render) as renderer:
        points = scan_points(renderer, obj, config, np.random.default_rng(0))
    mesh = as_mesh(to_scene(build_parts("chair", obj.seed, wide=True)))
    return points, mesh


def test_a_scan_lies_on_the_surface_and_sees_one_side_only() -> None:
    points, mesh = _scan_points(ScanConfig(floor=False, clutter=(0, 0), noise=0.0, margin=0.0))
    assert len(points) > 1000
    dense, _ = trimesh.sample.sample_surface(mesh, 200_000, seed=0)
    on_surface = cKDTree(dense).query(points)[0]
    assert np.quantile(on_surface, 0.99) < 0.01  # back-projected pixels lie on the mesh
    gap = cKDTree(points).query(dense[:2000])[0]
    assert np.mean(gap > 0.05) > 0.2  # much of the chair was never seen: the back side


def test_a_scan_keeps_the_floor_under_the_object() -> None:
    points, mesh = _scan_points(ScanConfig(clutter=(0, 0), noise=0.0))
    floor = np.abs(points[:, 1]) < 1e-3
    assert floor.mean() > 0.1  # the floor the chair stands on, at y = 0
    lo, hi = mesh.bounds
    assert points[floor][:, 0].min() < lo[0] - 0.1 and points[floor][:, 0].max() > hi[0] + 0.1


def test_scans_are_deterministic_for_a_seed(scans: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    result = CliRunner().invoke(
        app,
        [
            "synth",
            str(again),
            "--eval",
            "--scan",
            "--per-category",
            "4",
            "--categories",
            ",".join(CATEGORIES),
        ],
    )
    assert result.exit_code == 0, result.output
    from PIL import Image

    assert Image.open(again / "preview.png").size[0] > 4 * 128  # 3 upright + 1 rotated
    for variant in ("upright", "rotated"):
        a = load_procedural_scan(scans, variant=variant)
        b = load_procedural_scan(again, variant=variant)
        assert np.array_equal(a.train.points, b.train.points) and a.fingerprint == b.fingerprint
    refused = CliRunner().invoke(app, ["synth", str(tmp_path / "x"), "--scan"])
    assert refused.exit_code == 1 and "add --eval" in refused.output
    too_few = ["synth", str(tmp_path / "y"), "--eval", "--scan", "--per-category", "1"]
    refused = CliRunner().invoke(app, too_few)
    assert refused.exit_code == 1 and "per_category must be >= 2" in refused.output
