"""Primitive mesh builders for the procedural library: plain functions over numpy arrays.

Every builder returns a :class:`Piece`, a closed triangle mesh with outward-facing
winding: ``vertices`` (n, 3) float64 and ``faces`` (m, 3) int64. Nearly everything is
a *loft*: a stack of closed rings (k, s, 3) joined by quads and closed by two fans.
Boxes, prisms, tapered legs, swept tubes, lathe (revolved) profiles and ellipsoids are
all lofts with different rings, which keeps the code small and fast (no trimesh
boolean ops, no per-object Python loops over faces).

Axes: +Y up, +Z front, +X to the object's left when seen from the front; lengths in
metres before :func:`xpt.toolkit.procedural.generate` rescales the whole object.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import NamedTuple

import numpy as np

from xpt.toolkit.procedural.params import Colour


class Piece(NamedTuple):
    """A closed triangle mesh: vertices (n, 3) float64, faces (m, 3) int64."""

    vertices: np.ndarray
    faces: np.ndarray


@dataclass(frozen=True)
class Part:
    """One named, single-coloured part of an object (one scene node after generation)."""

    name: str
    piece: Piece
    colour: Colour


def rotation(axis: str, angle: float) -> np.ndarray:
    """A 3x3 right-handed rotation by ``angle`` radians about the ``"x"``/``"y"``/``"z"`` axis."""
    c, s = np.cos(angle), np.sin(angle)
    if axis == "x":
        return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])
    if axis == "y":
        return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])
    if axis == "z":
        return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    raise ValueError(f"axis must be x, y or z, got {axis!r}")


def transform(
    piece: Piece,
    rotate: np.ndarray | None = None,
    move: tuple[float, float, float] | np.ndarray = (0.0, 0.0, 0.0),
    pivot: tuple[float, float, float] | np.ndarray = (0.0, 0.0, 0.0),
    scale: float | tuple[float, float, float] = 1.0,
) -> Piece:
    """Scale, then rotate about ``pivot``, then translate by ``move``.

    A mirroring ``scale`` (odd number of negative factors) flips the faces so the
    winding stays outward.
    """
    pivot = np.asarray(pivot, dtype=np.float64)
    scale = np.asarray(scale, dtype=np.float64)
    vertices = (piece.vertices - pivot) * scale
    if rotate is not None:
        vertices = vertices @ np.asarray(rotate).T
    vertices = vertices + (pivot + np.asarray(move, dtype=np.float64))
    faces = piece.faces
    if (scale < 0).any() and (np.broadcast_to(scale, (3,)) < 0).sum() % 2 == 1:
        faces = faces[:, ::-1]
    return Piece(vertices, faces)


def mirror_x(piece: Piece) -> Piece:
    """The mirror image of ``piece`` across the x = 0 plane (winding kept outward)."""
    return transform(piece, scale=(-1.0, 1.0, 1.0))


def combine(pieces: list[Piece]) -> Piece:
    """Concatenate pieces into one (face indices offset)."""
    pieces = [p for p in pieces if len(p.faces)]
    if len(pieces) == 1:
        return pieces[0]
    offsets = np.cumsum([0] + [len(p.vertices) for p in pieces[:-1]])
    vertices = np.concatenate([p.vertices for p in pieces])
    faces = np.concatenate([p.faces + o for p, o in zip(pieces, offsets, strict=True)])
    return Piece(vertices, faces)


@lru_cache(maxsize=256)
def _loft_faces(k: int, s: int, sharp: bool) -> np.ndarray:
    """Face indices of a capped loft with ``k`` rings of ``s`` points (layout in :func:`loft`)."""
    i, j = np.meshgrid(np.arange(k - 1), np.arange(s), indexing="ij")
    a = i * s + j
    b = i * s + (j + 1) % s
    c = b + s
    d = a + s
    sides = np.concatenate(
        [np.stack([a, b, c], -1).reshape(-1, 3), np.stack([a, c, d], -1).reshape(-1, 3)]
    )
    n = k * s
    j = np.arange(s)
    if sharp:
        first, last = n + j, n + s + 1 + j
        first_centre, last_centre = n + s, n + 2 * s + 1
    else:
        first, last = j, (k - 1) * s + j
        first_centre, last_centre = n, n + 1
    nxt = np.roll(np.arange(s), -1)
    cap0 = np.stack([np.full(s, first_centre), first[nxt], first], -1)
    cap1 = np.stack([np.full(s, last_centre), last, last[nxt]], -1)
    faces = np.concatenate([sides, cap0, cap1]).astype(np.int64)
    faces.setflags(write=False)
    return faces


def _cross(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cross product of (n, 3) arrays (``np.cross`` is slow on small inputs)."""
    out = np.empty(np.broadcast_shapes(a.shape, b.shape))
    out[..., 0] = a[..., 1] * b[..., 2] - a[..., 2] * b[..., 1]
    out[..., 1] = a[..., 2] * b[..., 0] - a[..., 0] * b[..., 2]
    out[..., 2] = a[..., 0] * b[..., 1] - a[..., 1] * b[..., 0]
    return out


def _orient(vertices: np.ndarray, faces: np.ndarray) -> Piece:
    """Flip the winding when the signed volume is negative, so normals point outward."""
    volume = (vertices[faces[:, 0]] * _cross(vertices[faces[:, 1]], vertices[faces[:, 2]])).sum()
    return Piece(vertices, faces[:, ::-1] if volume < 0 else faces)


def loft(
    rings: np.ndarray,
    sharp: bool = True,
    start: np.ndarray | None = None,
    end: np.ndarray | None = None,
) -> Piece:
    """A closed mesh through ``rings`` (k, s, 3): quads between rings, fans over both ends.

    Vertex layout: the k*s ring points; then, when ``sharp``, a copy of the first ring
    and its fan centre and a copy of the last ring and its centre (so the end caps
    shade with hard edges); otherwise just the two centres. Fan centres default to the
    ring centroids (``start``/``end`` override, e.g. the poles of an ellipsoid).
    """
    rings = np.asarray(rings, dtype=np.float64)
    k, s, _ = rings.shape
    c0 = rings[0].mean(axis=0) if start is None else np.asarray(start, dtype=np.float64)
    c1 = rings[-1].mean(axis=0) if end is None else np.asarray(end, dtype=np.float64)
    flat = rings.reshape(-1, 3)
    if sharp:
        vertices = np.concatenate([flat, rings[0], c0[None], rings[-1], c1[None]])
    else:
        vertices = np.concatenate([flat, c0[None], c1[None]])
    return _orient(vertices, _loft_faces(k, s, sharp))


@lru_cache(maxsize=64)
def _unit_circle(n: int) -> np.ndarray:
    t = np.linspace(0.0, 2.0 * np.pi, n, endpoint=False)
    out = np.stack([np.cos(t), np.sin(t)], -1)
    out.setflags(write=False)
    return out


def circle(rx: float, rz: float | None = None, n: int = 16) -> np.ndarray:
    """An ellipse outline (n, 2) with semi-axes ``rx``, ``rz`` in the xz plane."""
    return _unit_circle(n) * (rx, rx if rz is None else rz)


def superellipse(a: float, b: float, exponent: float, n: int = 24) -> np.ndarray:
    """A rounded-rectangle outline (n, 2): ``|x/a|^e + |z/b|^e = 1`` (e=2 ellipse, big e box)."""
    t = np.linspace(0.0, 2.0 * np.pi, n, endpoint=False) + np.pi / n
    c, s = np.cos(t), np.sin(t)
    p = 2.0 / exponent
    return np.stack([a * np.sign(c) * np.abs(c) ** p, b * np.sign(s) * np.abs(s) ** p], -1)


def rectangle(a: float, b: float) -> np.ndarray:
    """A rectangle outline (4, 2) with half-sizes ``a`` (x) and ``b`` (z)."""
    return np.array([[a, b], [-a, b], [-a, -b], [a, -b]], dtype=np.float64)


def box(size: tuple[float, float, float], centre: tuple[float, float, float] = (0, 0, 0)) -> Piece:
    """An axis-aligned box (24 vertices so every face shades flat, 12 triangles)."""
    half = 0.5 * np.asarray(size, dtype=np.float64)
    corners = np.array(
        [[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], dtype=np.float64
    )
    quads = np.array(
        [[0, 1, 3, 2], [4, 6, 7, 5], [0, 4, 5, 1], [2, 3, 7, 6], [0, 2, 6, 4], [1, 5, 7, 3]]
    )
    vertices = (corners[quads.reshape(-1)] * half) + np.asarray(centre, dtype=np.float64)
    q = np.arange(24).reshape(6, 4)
    faces = np.concatenate([q[:, [0, 1, 2]], q[:, [0, 2, 3]]])
    return Piece(vertices, faces)


def prism(
    outline: np.ndarray, y0: float, y1: float, centre: tuple[float, float] = (0.0, 0.0)
) -> Piece:
    """Extrude an xz ``outline`` (s, 2) from height ``y0`` to ``y1`` (a table top, a seat)."""
    outline = np.asarray(outline, dtype=np.float64) + np.asarray(centre, dtype=np.float64)
    rings = np.empty((2, len(outline), 3))
    rings[:, :, 0] = outline[:, 0]
    rings[:, :, 2] = outline[:, 1]
    rings[0, :, 1], rings[1, :, 1] = y0, y1
    return loft(rings)


def column(
    bottom: tuple[float, float, float],
    top: tuple[float, float, float],
    size_bottom: float,
    size_top: float | None = None,
    sides: int = 12,
) -> Piece:
    """A (possibly tapered, possibly slanted) leg with horizontal ends.

    ``sides=4`` gives a square leg of width ``size``; otherwise a round one of
    diameter ``size``. Horizontal ends sit flush on the floor and under a top.
    """
    size_top = size_bottom if size_top is None else size_top
    if sides == 4:
        unit = rectangle(0.5, 0.5)
    else:
        unit = circle(0.5, n=sides)
    rings = np.empty((2, len(unit), 3))
    for row, (point, size) in enumerate(((bottom, size_bottom), (top, size_top))):
        rings[row, :, 0] = point[0] + size * unit[:, 0]
        rings[row, :, 1] = point[1]
        rings[row, :, 2] = point[2] + size * unit[:, 1]
    return loft(rings)


def _frames(path: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rotation-minimising normal and binormal (k, 3) along a polyline (k, 3)."""
    tangents = np.gradient(path, axis=0)
    tangents /= np.sqrt((tangents**2).sum(axis=1, keepdims=True))
    helper = np.eye(3)[np.argmin(np.abs(tangents[0]))]
    nx, ny, nz = _cross(tangents[0], helper).tolist()
    normals = []
    for tx, ty, tz in tangents.tolist():
        dot = nx * tx + ny * ty + nz * tz
        nx, ny, nz = nx - dot * tx, ny - dot * ty, nz - dot * tz
        length = math.sqrt(nx * nx + ny * ny + nz * nz)
        nx, ny, nz = nx / length, ny / length, nz / length
        normals.append((nx, ny, nz))
    normals = np.array(normals)
    return normals, _cross(tangents, normals)


def tube(path: np.ndarray, radius: float | np.ndarray, sides: int = 10) -> Piece:
    """Sweep a circle of ``radius`` (scalar or (k,)) along a polyline ``path`` (k, 3)."""
    path = np.asarray(path, dtype=np.float64)
    radius = np.broadcast_to(np.asarray(radius, dtype=np.float64), (len(path),))
    normals, binormals = _frames(path)
    unit = circle(1.0, n=sides)
    rings = (
        path[:, None, :]
        + radius[:, None, None] * unit[None, :, 0, None] * normals[:, None, :]
        + radius[:, None, None] * unit[None, :, 1, None] * binormals[:, None, :]
    )
    return loft(rings)


def arc(
    centre: tuple[float, float, float],
    radius: float,
    start: float,
    stop: float,
    n: int = 10,
    plane: str = "xy",
) -> np.ndarray:
    """Points (n, 3) on a circular arc in the ``"xy"``, ``"yz"`` or ``"xz"`` plane."""
    t = np.linspace(start, stop, n)
    points = np.zeros((n, 3)) + np.asarray(centre, dtype=np.float64)
    a, b = {"xy": (0, 1), "yz": (2, 1), "xz": (0, 2)}[plane]
    points[:, a] += radius * np.cos(t)
    points[:, b] += radius * np.sin(t)
    return points


def _revolve(profile: np.ndarray, sides: int) -> np.ndarray:
    """Rings (k, sides, 3) sweeping each (radius, y) row of ``profile`` (k, 2) about +Y."""
    unit = circle(1.0, n=sides)
    rings = np.empty((len(profile), sides, 3))
    rings[:, :, 0] = profile[:, 0, None] * unit[None, :, 0]
    rings[:, :, 1] = profile[:, 1, None]
    rings[:, :, 2] = profile[:, 0, None] * unit[None, :, 1]
    return rings


def lathe(profile: np.ndarray, sides: int = 24, sharp: bool = True) -> Piece:
    """Revolve a profile (k, 2) of ``(radius, height)`` pairs about the +Y axis.

    Both ends are closed by fans to the axis, so a profile that runs up the outside
    of a vessel and back down the inside gives a solid, thick-walled vessel.
    """
    profile = np.asarray(profile, dtype=np.float64)
    rings = _revolve(profile, sides)
    start = np.array([0.0, profile[0, 1], 0.0])
    end = np.array([0.0, profile[-1, 1], 0.0])
    return loft(rings, sharp=sharp, start=start, end=end)


@lru_cache(maxsize=64)
def _loop_faces(k: int, s: int) -> np.ndarray:
    """Face indices of ``k`` rings of ``s`` points joined in a closed loop (torus topology)."""
    i, j = np.meshgrid(np.arange(k), np.arange(s), indexing="ij")
    a = i * s + j
    b = i * s + (j + 1) % s
    c = ((i + 1) % k) * s + (j + 1) % s
    d = ((i + 1) % k) * s + j
    faces = np.concatenate(
        [np.stack([a, b, c], -1).reshape(-1, 3), np.stack([a, c, d], -1).reshape(-1, 3)]
    ).astype(np.int64)
    faces.setflags(write=False)
    return faces


def lathe_loop(profile: np.ndarray, sides: int = 24) -> Piece:
    """Revolve a closed profile loop (k, 2) of ``(radius, height)`` about +Y.

    The result has torus topology: a lamp shade open at both ends, a ring, a rim.
    """
    profile = np.asarray(profile, dtype=np.float64)
    rings = _revolve(profile, sides)
    return _orient(rings.reshape(-1, 3), _loop_faces(len(profile), sides))


def torus(
    radius: float, thickness: float, y: float = 0.0, sides: int = 24, bands: int = 8
) -> Piece:
    """A horizontal ring of centre-line ``radius`` and tube radius ``thickness`` at height ``y``."""
    t = np.linspace(0.0, 2.0 * np.pi, bands, endpoint=False)
    profile = np.stack([radius + thickness * np.cos(t), y + thickness * np.sin(t)], -1)
    return lathe_loop(profile, sides=sides)


def vessel(outer: np.ndarray, wall: float, sides: int = 24) -> Piece:
    """A thick-walled open vessel from its outer profile (k, 2) of ``(radius, height)``.

    ``outer`` runs from the bottom (smallest height) to the rim; the inner wall is
    the outer one moved inward by ``wall`` and the floor raised by ``wall``.
    """
    outer = np.asarray(outer, dtype=np.float64)
    inner = outer[::-1].copy()
    inner[:, 0] = np.maximum(inner[:, 0] - wall, 0.25 * inner[:, 0])
    inner[:, 1] = np.maximum(inner[:, 1], outer[0, 1] + wall)
    inner[0, 1] = outer[-1, 1]
    return lathe(np.concatenate([outer, inner]), sides=sides)


def ellipsoid(
    radii: tuple[float, float, float],
    centre: tuple[float, float, float] = (0, 0, 0),
    sides: int = 12,
    bands: int = 7,
) -> Piece:
    """An ellipsoid with semi-axes ``radii`` (x, y, z), smooth shaded (no hard caps)."""
    phi = np.linspace(0.0, np.pi, bands + 2)[1:-1]
    profile = np.stack([np.sin(phi), -np.cos(phi)], -1)
    unit = lathe(profile, sides=sides, sharp=False)
    rings = unit.vertices.copy()
    rings[-2:, 1] = [-1.0, 1.0]
    return transform(Piece(rings, unit.faces), scale=radii, move=centre)
