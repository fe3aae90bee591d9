"""Vehicle builders: airplane and car, both lofted along their length (+Z is the nose).

Metres (the airplane at model scale, about 1 m long), +Y up, resting on y = 0.
"""

from __future__ import annotations

import numpy as np

from xpt.toolkit.procedural.params import Draw
from xpt.toolkit.procedural.parts import (
    Part,
    Piece,
    box,
    circle,
    column,
    combine,
    loft,
    mirror_x,
    rotation,
    superellipse,
    transform,
)


def wing(
    span: float,
    root_chord: float,
    taper: float,
    sweep: float,
    dihedral: float,
    thickness: float,
    root: tuple[float, float, float],
) -> Piece:
    """A right half-wing (+X) from ``root``: lens-shaped sections lofted from root to tip.

    ``sweep`` and ``dihedral`` are angles in radians; ``thickness`` is relative to chord.
    """
    section = superellipse(0.5, 0.5 * thickness, 2.0, n=10)
    rings = np.zeros((2, len(section), 3))
    tip_chord = root_chord * taper
    for row, (x, chord) in enumerate(((0.0, root_chord), (span, tip_chord))):
        rings[row, :, 0] = x
        rings[row, :, 2] = chord * section[:, 0] - x * np.tan(sweep)
        rings[row, :, 1] = chord * section[:, 1] + x * np.tan(dihedral)
    return transform(loft(rings), move=root)


def _pair(half: Piece) -> Piece:
    return combine([half, mirror_x(half)])


def airplane(d: Draw) -> list[Part]:
    """A lofted fuselage with swept wings, a tailplane, a fin and 0, 2 or 4 engines."""
    length = 1.0
    radius = length * d.uniform(0.04, 0.07)
    z = np.linspace(-0.5, 0.5, 14) * length
    u = (z - z[0]) / length
    nose = d.uniform(0.08, 0.18)
    tail = d.uniform(0.2, 0.35)
    r = np.ones_like(u)
    r = np.where(u > 1 - nose, np.sqrt(np.clip((1 - u) / nose, 0.02, 1.0)), r)
    r = np.where(u < tail, 0.3 + 0.7 * np.clip(u / tail, 0.0, 1.0) ** 0.7, r)
    lift = np.where(u < tail, radius * d.uniform(0.3, 0.8) * (1 - u / tail), 0.0)
    ring = circle(1.0, 1.0 * d.uniform(1.0, 1.15), n=14)
    rings = np.empty((len(z), len(ring), 3))
    rings[:, :, 0] = radius * r[:, None] * ring[None, :, 0]
    rings[:, :, 1] = radius * r[:, None] * ring[None, :, 1] + lift[:, None]
    rings[:, :, 2] = z[:, None]
    body_colour = d.colour(d.choice(["white", "metal", "paint"], [0.5, 0.3, 0.2]))
    trim = d.colour(d.choice(["paint", "metal", "dark"]))
    parts = [Part("fuselage", loft(rings, sharp=False), body_colour)]
    span = length * d.uniform(0.4, 0.6)
    chord = length * d.uniform(0.12, 0.22)
    sweep, dihedral = d.uniform(0.0, 0.6), d.uniform(0.0, 0.12)
    wing_y = radius * d.uniform(-0.6, 0.6)
    wing_z = length * d.uniform(-0.05, 0.12)
    taper = d.uniform(0.25, 0.55)
    half = wing(span, chord, taper, sweep, dihedral, d.uniform(0.08, 0.14), (0.0, wing_y, wing_z))
    parts.append(Part("wings", _pair(half), body_colour))
    tail_z = -0.5 * length + chord * 0.45
    tail_y = lift[0] + radius * 0.2
    stab = wing(
        span * d.uniform(0.3, 0.45),
        chord * 0.5,
        0.5,
        sweep * 1.1,
        dihedral,
        0.1,
        (0.0, tail_y, tail_z),
    )
    fin = wing(
        span * d.uniform(0.22, 0.35),
        chord * 0.7,
        0.45,
        sweep * 1.2 + 0.2,
        0.0,
        0.1,
        (0.0, 0.0, 0.0),
    )
    fin = transform(fin, rotation("z", 0.5 * np.pi), move=(0.0, tail_y, tail_z + chord * 0.1))
    parts.append(Part("tail", combine([_pair(stab), fin]), trim))
    engines = d.choice([0, 2, 4], [0.2, 0.6, 0.2])
    if engines:
        pods = []
        eng_r = radius * d.uniform(0.35, 0.6)
        for k in range(engines // 2):
            x = span * (0.3 + 0.3 * k)
            zc = wing_z - x * np.tan(sweep) + chord * 0.35
            y = wing_y + x * np.tan(dihedral) - eng_r * 1.2
            pod = column((x, 0.0, 0.0), (x, eng_r * 5, 0.0), 2 * eng_r, 1.6 * eng_r, sides=12)
            pods.append(transform(pod, rotation("x", 0.5 * np.pi), move=(0.0, y, zc - eng_r * 2.5)))
        parts.append(Part("engines", _pair(combine(pods)), trim))
    return parts


def car(d: Draw) -> list[Part]:
    """A lofted body (hood, cabin base, trunk), a glass cabin, four wheels, optional spoiler."""
    length = 1.0
    width = length * d.uniform(0.38, 0.48)
    wheel_r = length * d.uniform(0.065, 0.095)
    clearance = wheel_r * d.uniform(0.35, 0.6)
    belt = clearance + length * d.uniform(0.13, 0.2)
    hood_drop = d.uniform(0.0, 0.4) * (belt - clearance)
    trunk_drop = d.uniform(0.0, 0.4) * (belt - clearance)
    z = np.linspace(-0.5, 0.5, 10) * length
    u = (z - z[0]) / length
    top = (
        belt
        - hood_drop * np.clip((u - 0.7) / 0.3, 0, 1)
        - trunk_drop * np.clip((0.25 - u) / 0.25, 0, 1)
    )
    top[[0, -1]] -= 0.3 * (belt - clearance)
    bottom = np.full_like(z, clearance)
    bottom[[0, -1]] += 0.25 * (belt - clearance)
    section = superellipse(0.5 * width, 0.5, d.uniform(4.0, 8.0), n=16)
    rings = np.empty((len(z), len(section), 3))
    rings[:, :, 0] = section[None, :, 0]
    rings[:, :, 1] = 0.5 * (top + bottom)[:, None] + (top - bottom)[:, None] * section[None, :, 1]
    rings[:, :, 2] = z[:, None]
    paint = d.colour("paint")
    parts = [Part("body", loft(rings, sharp=False), paint)]
    cabin_len = length * d.uniform(0.35, 0.55)
    cabin_z = length * d.uniform(-0.12, 0.05)
    roof = belt + length * d.uniform(0.1, 0.16)
    rake_f, rake_r = cabin_len * d.uniform(0.2, 0.35), cabin_len * d.uniform(0.05, 0.35)
    zb, zf = cabin_z - cabin_len / 2, cabin_z + cabin_len / 2
    side = np.array([[zb, belt], [zf, belt], [zf - rake_f, roof], [zb + rake_r, roof]])
    half = 0.5 * width * 0.92
    cabin = np.empty((2, 4, 3))
    for row, sx in enumerate((-1.0, 1.0)):
        cabin[row, :, 0] = sx * half * np.array([1.0, 1.0, 0.82, 0.82])
        cabin[row, :, 1] = side[:, 1] - 0.005 * np.array([1, 1, 0, 0])
        cabin[row, :, 2] = side[:, 0]
    parts.append(Part("cabin", loft(cabin), d.colour("screen")))
    tyre_w = width * d.uniform(0.16, 0.22)
    axle = 0.5 * length - length * d.uniform(0.15, 0.22)
    tyres, hubs = [], []
    for zc in (-axle, axle):
        for sx in (-1.0, 1.0):
            x = sx * (0.5 * width - 0.45 * tyre_w)
            tyre = column(
                (0.0, -0.5 * tyre_w, 0.0), (0.0, 0.5 * tyre_w, 0.0), 2 * wheel_r, sides=18
            )
            tyres.append(transform(tyre, rotation("z", 0.5 * np.pi), move=(x, wheel_r, zc)))
            hub = column((0.0, 0.0, 0.0), (0.0, 0.01, 0.0), 1.2 * wheel_r, sides=12)
            hub_x = x + sx * 0.5 * tyre_w
            hubs.append(transform(hub, rotation("z", -sx * 0.5 * np.pi), move=(hub_x, wheel_r, zc)))
    parts.append(Part("wheels", combine(tyres), d.colour("dark")))
    parts.append(Part("hubs", combine(hubs), d.colour("metal")))
    if d.chance(0.15):
        parts.append(
            Part(
                "spoiler",
                box((width * 0.8, 0.01, length * 0.06), (0.0, belt + 0.05, -0.47 * length)),
                paint,
            )
        )
    return parts
