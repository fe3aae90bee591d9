"""Camera rigs, intrinsics, look-at poses and ShapeNetRendering's ``rendering_metadata.txt``.

Conventions (also written into every ``cameras.json``):

- World frame: the shared normalised object frame (:mod:`xpt.toolkit.meshes.geometry`), +Y up.
- A view is ``(azimuth, elevation, distance_ratio)`` in degrees / degrees / ratio, as in
  ShapeNetRendering. The camera sits at ``d * (cos(el) cos(az), sin(el), cos(el) sin(az))``
  with ``d = 3.5 * distance_ratio`` (R2N2 places it at ``1.75 * distance_ratio`` in ShapeNet's
  unit-diagonal frame, and our frame is twice that size) and looks at the origin with +Y up.
  This is the reading of ``rendering_metadata.txt`` used by DISN and Pixel2Mesh.
- ``cam_to_world`` (4x4) follows OpenGL: the camera looks down its -Z axis, +Y is up, +X right.
- ``K`` (3x3) is in pixels with OpenCV-style image axes: u to the right, v down, origin at the
  top-left *corner* of the image, so pixel (i, j) covers [i, i+1) x [j, j+1) and its centre is
  at (i + 0.5, j + 0.5); the principal point is the image centre (W/2, H/2). A point p in the
  camera frame projects to ``(u, v, 1) ~ K @ (p_x, -p_y, -p_z)`` (see :func:`project`).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from xpt.render.config import RenderConfig
from xpt.toolkit.seeding import rng

# R2N2's camera distance in ShapeNet's unit-diagonal frame is 1.75 * ratio; ours is 2x larger.
DISTANCE_SCALE = 3.5
# The fifth column of ShapeNetRendering's metadata: a constant the original files carry.
METADATA_FIFTH_COLUMN = 25
METADATA_FILE = "rendering_metadata.txt"
R2N2_AZIMUTH = (0.0, 360.0)
R2N2_ELEVATION = (25.0, 30.0)
R2N2_DISTANCE_RATIO = (0.65, 0.95)
_GOLDEN_ANGLE = math.degrees(math.pi * (3.0 - math.sqrt(5.0)))

CONVENTIONS = {
    "world": "the normalised object frame: bounding-box centre at the origin, half-diagonal 1",
    "cam_to_world": "OpenGL camera: looks down its -Z axis, +Y up, +X right; maps camera to world",
    "K": (
        "pixels; u right, v down, origin at the top-left corner of the image; pixel (i, j) "
        "covers [i, i+1) x [j, j+1) so its centre is (i + 0.5, j + 0.5); a camera-frame point p "
        "projects to (u, v, 1) ~ K @ (p_x, -p_y, -p_z)"
    ),
    "view": (
        "azimuth, elevation in degrees; camera at d * (cos(el) cos(az), sin(el), cos(el) sin(az)) "
        "with d = 3.5 * distance_ratio, looking at the origin, +Y up"
    ),
}


@dataclass(frozen=True)
class View:
    """One camera placement: azimuth and elevation in degrees, R2N2's distance ratio."""

    azimuth: float
    elevation: float
    distance_ratio: float

    @property
    def distance(self) -> float:
        """Camera distance from the origin in the normalised frame."""
        return DISTANCE_SCALE * self.distance_ratio

    def position(self) -> np.ndarray:
        """The camera centre, (3,) float64, in the normalised frame."""
        az, el = math.radians(self.azimuth), math.radians(self.elevation)
        return self.distance * np.array(
            [math.cos(el) * math.cos(az), math.sin(el), math.cos(el) * math.sin(az)]
        )

    def cam_to_world(self) -> np.ndarray:
        """The 4x4 OpenGL camera-to-world pose looking at the origin."""
        return look_at(self.position())


def r2n2_views(generator: np.random.Generator, count: int) -> list[View]:
    """R2N2's random views: azimuth U[0, 360), elevation U[25, 30], distance ratio U[0.65, 0.95]."""
    azimuth = generator.uniform(*R2N2_AZIMUTH, size=count)
    elevation = generator.uniform(*R2N2_ELEVATION, size=count)
    ratio = generator.uniform(*R2N2_DISTANCE_RATIO, size=count)
    triples = zip(azimuth, elevation, ratio, strict=True)
    return [View(float(a), float(e), float(r)) for a, e, r in triples]


def ring_views(count: int, elevation: float, distance_ratio: float) -> list[View]:
    """``count`` views at uniform azimuth (starting at 0), fixed elevation and distance."""
    return [View(360.0 * i / count, float(elevation), float(distance_ratio)) for i in range(count)]


def sphere_views(count: int, distance_ratio: float) -> list[View]:
    """``count`` views spread uniformly over the sphere (a Fibonacci lattice; no exact poles)."""
    views = []
    for i in range(count):
        y = 1.0 - (2.0 * i + 1.0) / count
        views.append(
            View((i * _GOLDEN_ANGLE) % 360.0, math.degrees(math.asin(y)), float(distance_ratio))
        )
    return views


def rig_views(config: RenderConfig, key: str) -> list[View]:
    """The views of object ``key``; random rigs draw from ``rng(config.seed, key)`` only.

    The views therefore do not depend on the worker count or the order of objects.
    """
    if config.rig == "r2n2":
        return r2n2_views(rng(config.seed, key), config.num_views)
    if config.rig == "ring":
        return ring_views(config.num_views, config.elevation, config.distance_ratio)
    return sphere_views(config.num_views, config.distance_ratio)


def look_at(
    position: np.ndarray, target: np.ndarray | None = None, up: np.ndarray | None = None
) -> np.ndarray:
    """4x4 OpenGL camera-to-world pose at ``position`` looking at ``target`` (default origin).

    ``up`` defaults to +Y; when the view direction is parallel to it, -Z is used instead.
    """
    position = np.asarray(position, dtype=np.float64)
    target = np.zeros(3) if target is None else np.asarray(target, dtype=np.float64)
    up = np.array([0.0, 1.0, 0.0]) if up is None else np.asarray(up, dtype=np.float64)
    z = position - target
    z /= np.linalg.norm(z)
    x = np.cross(up, z)
    if np.linalg.norm(x) < 1e-9:
        x = np.cross(np.array([0.0, 0.0, -1.0]), z)
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    pose = np.eye(4)
    pose[:3, 0], pose[:3, 1], pose[:3, 2], pose[:3, 3] = x, y, z, position
    return pose


def intrinsics(size: int, focal_ndc: float) -> np.ndarray:
    """3x3 K of a square ``size`` image: f = focal_ndc * size / 2, principal point at the centre."""
    f = focal_ndc * size / 2.0
    c = size / 2.0
    return np.array([[f, 0.0, c], [0.0, f, c], [0.0, 0.0, 1.0]])


def project(points: np.ndarray, K: np.ndarray, cam_to_world: np.ndarray) -> np.ndarray:
    """Pixel coordinates (n, 2) float64 of world points (n, 3) (conventions: module docstring)."""
    points = np.atleast_2d(np.asarray(points, dtype=np.float64))
    world_to_cam = np.linalg.inv(np.asarray(cam_to_world, dtype=np.float64))
    cam = points @ world_to_cam[:3, :3].T + world_to_cam[:3, 3]
    cv = cam * np.array([1.0, -1.0, -1.0])
    uvw = cv @ np.asarray(K, dtype=np.float64).T
    return uvw[:, :2] / uvw[:, 2:3]


def camera_record(view: View, K: np.ndarray, size: int) -> dict:
    """The per-view ``cameras.json`` entry (JSON-ready lists and floats)."""
    return {
        "K": np.asarray(K).tolist(),
        "cam_to_world": view.cam_to_world().tolist(),
        "width": int(size),
        "height": int(size),
        "azimuth": view.azimuth,
        "elevation": view.elevation,
        "distance_ratio": view.distance_ratio,
        "distance": view.distance,
    }


def format_metadata(views: list[View]) -> str:
    """ShapeNetRendering's metadata text: ``az el 0 distance_ratio 25``, one line per view.

    Floats are written with ``repr`` (shortest exact form), so reading them back gives the
    very same cameras.
    """
    lines = [
        f"{float(v.azimuth)!r} {float(v.elevation)!r} 0 {float(v.distance_ratio)!r} "
        f"{METADATA_FIFTH_COLUMN}"
        for v in views
    ]
    return "\n".join(lines) + "\n"


def read_metadata(path: str | os.PathLike) -> list[View]:
    """Views from a ``rendering_metadata.txt`` (ours or the original ShapeNetRendering's)."""
    path = Path(path)
    views = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        try:
            if len(fields) < 4:
                raise ValueError(f"expected 5 columns, got {len(fields)}")
            views.append(View(float(fields[0]), float(fields[1]), float(fields[3])))
        except ValueError as exc:
            raise ValueError(f"{path}:{number}: bad metadata line {line!r}: {exc}") from None
    return views
