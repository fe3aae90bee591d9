"""Revolved-profile builders: bottle, vase, lamp, mug, bowl, cup, plant.

They share the lathe parts: bottle, vase and a table lamp's base are revolved
profiles with a belly, a shoulder and a neck (:func:`smooth_profile`), and differ in
proportions and structure (a bottle is solid and capped, a vase is hollow and open,
a lamp adds a stem and an open shade); bowl, mug and cup are thick-walled open
vessels (:func:`~xpt.toolkit.procedural.parts.vessel`) told apart by height, taper,
handle and saucer. Metres, +Y up, standing on y = 0.
"""

from __future__ import annotations

import numpy as np

from xpt.toolkit.procedural.params import Draw
from xpt.toolkit.procedural.parts import (
    Part,
    Piece,
    column,
    combine,
    ellipsoid,
    lathe,
    lathe_loop,
    rotation,
    transform,
    tube,
    vessel,
)


def smooth_profile(heights: list[float], radii: list[float], n: int = 14) -> np.ndarray:
    """A profile (n, 2) of ``(radius, height)`` through control points, cosine-eased between them.

    ``heights`` must increase; the result is smooth enough to shade well at modest ``n``.
    """
    heights, radii = np.asarray(heights, dtype=np.float64), np.asarray(radii, dtype=np.float64)
    y = np.linspace(heights[0], heights[-1], n)
    seg = np.clip(np.searchsorted(heights, y, side="right") - 1, 0, len(heights) - 2)
    u = (y - heights[seg]) / (heights[seg + 1] - heights[seg])
    ease = 0.5 - 0.5 * np.cos(np.pi * u)
    r = radii[seg] + (radii[seg + 1] - radii[seg]) * ease
    return np.stack([r, y], -1)


def handle(r: float, y_low: float, y_high: float, reach: float, thick: float) -> Piece:
    """A D-shaped handle on the +X side of a vessel wall at radius ``r``."""
    t = np.linspace(0.5 * np.pi, -0.5 * np.pi, 12)
    cy, ry = 0.5 * (y_high + y_low), 0.5 * (y_high - y_low)
    path = np.stack(
        [r - thick + (reach + thick) * np.cos(t), cy + ry * np.sin(t), np.zeros_like(t)], -1
    )
    return tube(path, thick, sides=8)


def mug(d: Draw) -> list[Part]:
    """A tall, nearly cylindrical thick-walled vessel with a large D handle."""
    r, taper = d.uniform(0.035, 0.05), d.uniform(0.85, 1.05)
    h = 2 * r * d.uniform(0.9, 1.4)
    y = np.linspace(0.0, h, 6)
    radii = r * (taper + (1.0 - taper) * y / h)
    profile = np.concatenate(
        [[[radii[0] * 0.92, 0.0]], np.stack([radii, y + [0.006, 0, 0, 0, 0, 0]], -1)]
    )
    body_colour = d.colour(d.choice(["ceramic", "plastic", "white"]))
    parts = [Part("body", vessel(profile, d.uniform(0.003, 0.006), sides=28), body_colour)]
    thick = d.uniform(0.004, 0.008)
    grip = handle(
        r * 0.97,
        h * d.uniform(0.15, 0.3),
        h * d.uniform(0.7, 0.85),
        r * d.uniform(0.45, 0.8),
        thick,
    )
    parts.append(Part("handle", grip, body_colour if d.chance(0.7) else d.colour("ceramic")))
    if d.chance(0.3):
        parts.append(
            Part(
                "band",
                column((0, h * 0.45, 0), (0, h * 0.6, 0), 2 * r * 1.01, sides=28),
                d.colour("paint"),
            )
        )
    return parts


def bowl(d: Draw) -> list[Part]:
    """A wide, shallow thick-walled vessel on a small foot ring."""
    r = d.uniform(0.07, 0.14)
    h = r * d.uniform(0.35, 0.65)
    foot_r, foot_h = r * d.uniform(0.35, 0.55), h * d.uniform(0.05, 0.12)
    u = np.linspace(0.0, 1.0, 9)
    radii = foot_r + (r - foot_r) * np.sin(0.5 * np.pi * u) ** d.uniform(0.6, 1.2)
    profile = np.stack([radii, foot_h + (h - foot_h) * u], -1)
    colour = d.colour(d.choice(["ceramic", "wood", "plastic"], [0.6, 0.2, 0.2]))
    parts = [Part("body", vessel(profile, d.uniform(0.004, 0.01), sides=32), colour)]
    foot = column((0.0, 0.0, 0.0), (0.0, foot_h, 0.0), 2 * foot_r * d.uniform(0.9, 1.0), sides=32)
    parts.append(Part("foot", foot, colour if d.chance(0.5) else d.colour("ceramic")))
    return parts


def cup(d: Draw) -> list[Part]:
    """A small, strongly tapered teacup with a small handle, usually on a saucer."""
    r = d.uniform(0.04, 0.055)
    h = r * d.uniform(0.9, 1.4)
    base = d.uniform(0.008, 0.014) if d.chance(0.7) else 0.0
    bottom = r * d.uniform(0.45, 0.65)
    u = np.linspace(0.0, 1.0, 8)
    radii = bottom + (r - bottom) * u ** d.uniform(0.45, 0.8)
    profile = np.stack([radii, base + h * u], -1)
    colour = d.colour(d.choice(["ceramic", "white"]))
    parts = [Part("body", vessel(profile, d.uniform(0.0025, 0.004), sides=28), colour)]
    grip = handle(
        r * 0.8, base + h * 0.3, base + h * 0.8, r * d.uniform(0.3, 0.5), d.uniform(0.003, 0.005)
    )
    parts.append(Part("handle", grip, colour))
    if base > 0:
        rs = r * d.uniform(1.4, 1.8)
        saucer = lathe(
            [
                [rs * 0.5, 0.0],
                [rs * 0.55, base * 0.3],
                [rs * 0.95, base * 0.8],
                [rs, base],
                [rs * 0.9, base * 1.05],
                [rs * 0.5, base],
            ],
            sides=32,
        )
        parts.append(Part("saucer", saucer, colour if d.chance(0.6) else d.colour("ceramic")))
    return parts


def bottle(d: Draw) -> list[Part]:
    """A tall solid revolved body with shoulder and narrow neck, a cap and an optional label."""
    r = d.uniform(0.03, 0.05)
    h = r * d.uniform(5.0, 8.0)
    cap_h = h * d.uniform(0.03, 0.07)
    shoulder, neck_r = h * d.uniform(0.5, 0.72), r * d.uniform(0.25, 0.45)
    neck_y = min(shoulder + h * d.uniform(0.1, 0.2), h - cap_h - 0.02 * h)
    waist = r * d.uniform(0.9, 1.0)
    profile = smooth_profile(
        [0.0, 0.4 * shoulder, shoulder, neck_y, h - cap_h],
        [r, waist, r, neck_r, neck_r * d.uniform(0.95, 1.15)],
        n=16,
    )
    profile = np.concatenate([[[r * 0.9, 0.0]], profile[1:]])
    parts = [
        Part("body", lathe(profile, sides=24), d.colour(d.choice(["glass", "plastic"], [0.6, 0.4])))
    ]
    cap = column((0, h - cap_h - 0.002, 0), (0, h, 0), 2 * neck_r * d.uniform(1.05, 1.3), sides=20)
    parts.append(Part("cap", cap, d.colour(d.choice(["metal", "plastic", "dark"]))))
    if d.chance(0.6):
        y0 = shoulder * d.uniform(0.15, 0.4)
        label = column(
            (0, y0, 0), (0, y0 + shoulder * d.uniform(0.25, 0.5), 0), 2 * r * 1.01, sides=24
        )
        parts.append(Part("label", label, d.colour(d.choice(["white", "paint"]))))
    return parts


def vase(d: Draw) -> list[Part]:
    """A hollow, open revolved body with a wide belly, a neck and a flared lip, on a foot."""
    h = d.uniform(0.2, 0.45)
    belly_r, belly_y = h * d.uniform(0.2, 0.4), h * d.uniform(0.25, 0.6)
    neck_r = belly_r * d.uniform(0.35, 0.8)
    neck_y = belly_y + (h - belly_y) * d.uniform(0.55, 0.85)
    foot_r, foot_h = belly_r * d.uniform(0.45, 0.8), h * d.uniform(0.0, 0.06)
    profile = smooth_profile(
        [foot_h, belly_y, neck_y, h], [foot_r, belly_r, neck_r, neck_r * d.uniform(1.0, 1.6)], n=16
    )
    colour = d.colour(d.choice(["ceramic", "glass", "paint"]))
    parts = [Part("body", vessel(profile, d.uniform(0.004, 0.008), sides=28), colour)]
    foot = column(
        (0.0, 0.0, 0.0), (0.0, foot_h + 0.004, 0.0), 2 * foot_r * d.uniform(1.0, 1.15), sides=28
    )
    parts.append(Part("foot", foot, colour if d.chance(0.5) else d.colour("ceramic")))
    if d.chance(0.2):
        ys = (neck_y, belly_y + 0.3 * (neck_y - belly_y))
        grips = [handle(neck_r * 0.95, ys[1], ys[0], belly_r - neck_r + 0.02, 0.006)]
        grips.append(transform(grips[0], rotation("y", np.pi)))
        parts.append(Part("handles", combine(grips), colour))
    return parts


def _shade(r_bottom: float, r_top: float, height: float, wall: float) -> Piece:
    """An open frustum shell (torus topology), base at y = 0."""
    return lathe_loop(
        [[r_bottom, 0.0], [r_top, height], [r_top - wall, height], [r_bottom - wall, 0.0]], sides=28
    )


def lamp(d: Draw) -> list[Part]:
    """A base, a stem (or a jointed arm) and an open shade: table, floor or desk lamp."""
    kind = d.choice(["table", "floor", "desk"], [0.5, 0.25, 0.25])
    metal, shade_colour = (
        d.colour(d.choice(["metal", "dark"])),
        d.colour(d.choice(["white", "fabric", "paint"])),
    )
    if kind == "desk":
        base_r, base_h = d.uniform(0.06, 0.1), d.uniform(0.015, 0.03)
        elbow = np.array([0.0, base_h + d.uniform(0.25, 0.4), -d.uniform(0.05, 0.15)])
        head = elbow + [0.0, d.uniform(-0.05, 0.1), d.uniform(0.2, 0.35)]
        path = np.array([[0.0, base_h, 0.0], 0.5 * elbow, elbow, 0.5 * (elbow + head), head])
        parts = [
            Part("base", column((0, 0, 0), (0, base_h, 0), 2 * base_r, sides=24), metal),
            Part("stem", tube(path, d.uniform(0.006, 0.012), sides=8), metal),
        ]
        r = d.uniform(0.05, 0.09)
        shade = transform(
            _shade(r, r * d.uniform(0.2, 0.45), r * d.uniform(0.8, 1.4), 0.003),
            move=head - [0.0, r * 1.1, 0.0],
        )
        parts.append(Part("shade", shade, shade_colour))
        return parts
    if kind == "floor":
        base_r, stem_h = d.uniform(0.12, 0.18), d.uniform(1.2, 1.7)
        base = column((0, 0, 0), (0, d.uniform(0.02, 0.04), 0), 2 * base_r, sides=28)
    else:
        base_r, stem_h = d.uniform(0.06, 0.12), d.uniform(0.25, 0.45)
        base_h = stem_h * d.uniform(0.2, 0.6)
        base = lathe(
            smooth_profile([0.0, base_h * 0.4, base_h], [base_r * 0.8, base_r, base_r * 0.3], n=10),
            sides=24,
        )
    parts = [
        Part(
            "base",
            base,
            metal if kind == "floor" else d.colour(d.choice(["ceramic", "glass", "metal"])),
        ),
        Part(
            "stem", column((0, 0.01, 0), (0, stem_h, 0), d.uniform(0.012, 0.025), sides=10), metal
        ),
    ]
    r_bottom = d.uniform(0.12, 0.22) * (1.0 if kind == "floor" else 0.8)
    shade_h = r_bottom * d.uniform(0.8, 1.3)
    shade = _shade(r_bottom, r_bottom * d.uniform(0.5, 0.9), shade_h, 0.004)
    parts.append(
        Part(
            "shade",
            transform(shade, move=(0.0, stem_h - shade_h * d.uniform(0.3, 0.6), 0.0)),
            shade_colour,
        )
    )
    if d.chance(0.5):
        parts.append(
            Part(
                "bulb", ellipsoid((0.03, 0.04, 0.03), (0.0, stem_h + 0.03, 0.0)), d.colour("white")
            )
        )
    return parts


def plant(d: Draw) -> list[Part]:
    """A tapered pot with soil and curved stems ending in leaves (or a leafy bush)."""
    r, h = d.uniform(0.07, 0.14), d.uniform(0.12, 0.25)
    bottom = r * d.uniform(0.6, 0.85)
    profile = np.stack([np.linspace(bottom, r, 5), np.linspace(0.0, h, 5)], -1)
    parts = [
        Part(
            "pot",
            vessel(profile, d.uniform(0.006, 0.012), sides=24),
            d.colour(d.choice(["ceramic", "paint", "wood"])),
        )
    ]
    soil_y = h * d.uniform(0.75, 0.92)
    soil_r = bottom + (r - bottom) * soil_y / h - 0.008
    parts.append(
        Part(
            "soil",
            column((0, soil_y - 0.02, 0), (0, soil_y, 0), 2 * soil_r, sides=24),
            d.colour("soil"),
        )
    )
    leaf = d.colour("leaf")
    if d.chance(0.3):
        n = d.integer(4, 8)
        blobs = [
            ellipsoid(
                tuple(r * d.uniform(0.5, 0.9) for _ in range(3)),
                (d.uniform(-r, r) * 0.6, soil_y + r * d.uniform(0.5, 1.6), d.uniform(-r, r) * 0.6),
            )
            for _ in range(n)
        ]
        parts.append(Part("foliage", combine(blobs), leaf))
        return parts
    n = d.integer(3, 8)
    tall = h * d.uniform(1.0, 2.5)
    stems, leaves = [], []
    for k in range(n):
        a = 2 * np.pi * (k + d.uniform(0.0, 0.5)) / n
        out = np.array([np.cos(a), 0.0, np.sin(a)])
        s = np.linspace(0.0, 1.0, 6)[:, None]
        reach, height = tall * d.uniform(0.2, 0.5), tall * d.uniform(0.5, 1.0)
        path = out * (0.3 * soil_r + reach * s**2) + [0.0, 1.0, 0.0] * (soil_y + height * s)
        stems.append(tube(path, 0.004, sides=5))
        size = tall * d.uniform(0.12, 0.22)
        blade = ellipsoid((size * 0.35, size * 0.04, size), sides=8, bands=5)
        pitch = rotation("x", -d.uniform(0.2, 0.8))
        blade = transform(
            blade, rotation("y", 0.5 * np.pi - a) @ pitch, move=path[-1] + out * size * 0.8
        )
        leaves.append(blade)
    parts.append(Part("stems", combine(stems), leaf))
    parts.append(Part("leaves", combine(leaves), d.colour("leaf")))
    return parts
