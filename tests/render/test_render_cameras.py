"""Camera rigs, intrinsics, projection, metadata round trip and crease normals (no GL)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import trimesh

from xpt.render.cameras import (
    View,
    camera_record,
    format_metadata,
    intrinsics,
    look_at,
    project,
    read_metadata,
    rig_views,
)
from xpt.render.config import RenderConfig
from xpt.render.scene import corner_normals


def test_r2n2_views_follow_the_published_ranges_and_depend_only_on_seed_and_key() -> None:
    config = RenderConfig()
    views = rig_views(config, "procedural_chair_0001")
    assert len(views) == 24
    azimuth = np.array([v.azimuth for v in views])
    elevation = np.array([v.elevation for v in views])
    ratio = np.array([v.distance_ratio for v in views])
    assert ((azimuth >= 0) & (azimuth < 360)).all() and np.ptp(azimuth) > 180
    assert ((elevation >= 25) & (elevation <= 30)).all()
    assert ((ratio >= 0.65) & (ratio <= 0.95)).all()
    assert rig_views(config, "procedural_chair_0001") == views
    assert rig_views(config, "procedural_chair_0002") != views
    assert rig_views(RenderConfig(seed=1), "procedural_chair_0001") != views
    assert math.isclose(views[0].distance, 3.5 * views[0].distance_ratio)


def test_ring_and_sphere_rigs() -> None:
    ring = rig_views(RenderConfig(rig="ring", views=8, elevation=20.0, distance_ratio=0.9), "k")
    assert [v.azimuth for v in ring] == [45.0 * i for i in range(8)]
    assert {v.elevation for v in ring} == {20.0} and {v.distance_ratio for v in ring} == {0.9}
    sphere = rig_views(RenderConfig(rig="sphere", views=200), "k")
    directions = np.array([v.position() / v.distance for v in sphere])
    assert np.allclose(np.linalg.norm(directions, axis=1), 1.0)
    # Uniform on the sphere: the mean direction is ~0 and each octant gets ~1/8 of the views.
    assert np.linalg.norm(directions.mean(axis=0)) < 0.05
    octants = np.unique((directions > 0) @ np.array([1, 2, 4]), return_counts=True)[1]
    assert len(octants) == 8 and octants.min() >= 18 and octants.max() <= 32


def test_intrinsics_match_r2n2_focal_length_and_fov() -> None:
    config = RenderConfig()
    K = intrinsics(config.size, config.focal_ndc)
    assert K[0, 0] == K[1, 1] == pytest.approx(2.1875 * 137 / 2)
    assert (K[0, 2], K[1, 2]) == (68.5, 68.5)
    assert config.fov_degrees == pytest.approx(49.134, abs=1e-3)
    assert RenderConfig(fov=60.0).focal_ndc == pytest.approx(1 / math.tan(math.radians(30)))


def test_look_at_pose_is_an_opengl_camera_looking_at_the_origin() -> None:
    view = View(azimuth=30.0, elevation=27.0, distance_ratio=0.8)
    pose = view.cam_to_world()
    rotation = pose[:3, :3]
    assert np.allclose(rotation.T @ rotation, np.eye(3)) and np.isclose(np.linalg.det(rotation), 1)
    assert np.allclose(pose[:3, 3], view.position())
    # The camera looks down its -Z axis, towards the origin; +Y leans towards world up.
    assert np.allclose(-pose[:3, 2], -view.position() / view.distance)
    assert pose[1, 1] > 0.8
    az, el = math.radians(30.0), math.radians(27.0)
    expected = 2.8 * np.array(
        [math.cos(el) * math.cos(az), math.sin(el), math.cos(el) * math.sin(az)]
    )
    assert np.allclose(view.position(), expected)
    straight_down = look_at(np.array([0.0, 3.0, 0.0]))
    assert np.isfinite(straight_down).all() and np.allclose(straight_down[:3, 2], [0, 1, 0])


def test_projection_of_known_points() -> None:
    config = RenderConfig()
    K = intrinsics(config.size, config.focal_ndc)
    pose = View(0.0, 0.0, 1.0).cam_to_world()  # camera on +X at distance 3.5, facing -X
    centre = project(np.zeros(3), K, pose)[0]
    assert np.allclose(centre, [68.5, 68.5])
    # Up in the world is up in the image (smaller v); the camera's right is world -Z.
    up, right = project(np.array([[0.0, 0.5, 0.0], [0.0, 0.0, -0.5]]), K, pose)
    f = K[0, 0]
    assert np.allclose(up, [68.5, 68.5 - f * 0.5 / 3.5])
    assert np.allclose(right, [68.5 + f * 0.5 / 3.5, 68.5])


def test_metadata_round_trips_to_the_same_cameras(tmp_path: Path) -> None:
    config = RenderConfig()
    views = rig_views(config, "shapenet-v2_03001627_abc")
    path = tmp_path / "rendering_metadata.txt"
    path.write_text(format_metadata(views))
    lines = path.read_text().splitlines()
    assert len(lines) == 24
    fields = lines[0].split()
    assert len(fields) == 5 and fields[2] == "0" and fields[4] == "25"
    back = read_metadata(path)
    assert back == views
    K = intrinsics(config.size, config.focal_ndc)
    for a, b in zip(views, back, strict=True):
        assert camera_record(a, K, 137) == camera_record(b, K, 137)
    # The original ShapeNetRendering files parse too.
    original = tmp_path / "original.txt"
    original.write_text("290.8201029227777 28.78312452826698 0 0.7973363053043351 25\n")
    assert read_metadata(original) == [
        View(290.8201029227777, 28.78312452826698, 0.7973363053043351)
    ]
    original.write_text("12.0 25.0 0\n")
    with pytest.raises(ValueError, match="original.txt:1"):
        read_metadata(original)


def test_corner_normals_keep_box_edges_sharp_and_smooth_a_sphere() -> None:
    box = trimesh.creation.box()
    normals = corner_normals(box.vertices, box.faces)
    assert np.allclose(normals, np.repeat(box.face_normals[:, None, :], 3, axis=1), atol=1e-6)
    sphere = trimesh.creation.icosphere(subdivisions=3)
    normals = corner_normals(sphere.vertices, sphere.faces)
    radial = (
        sphere.vertices[sphere.faces]
        / np.linalg.norm(sphere.vertices[sphere.faces], axis=2)[..., None]
    )
    assert np.degrees(np.arccos(np.clip((normals * radial).sum(axis=2), -1, 1))).max() < 1.0
    # Vertices duplicated at a seam (as OBJ loaders do at UV seams) are smoothed across.
    unmerged = trimesh.Trimesh(
        sphere.vertices[sphere.faces].reshape(-1, 3),
        np.arange(len(sphere.faces) * 3).reshape(-1, 3),
        process=False,
    )
    assert np.allclose(corner_normals(unmerged.vertices, unmerged.faces), normals, atol=1e-5)
