"""Object builders that are neither furniture, vessels nor vehicles: monitor and guitar.

Metres, +Y up, front (the screen, the guitar's top) towards +Z, standing on y = 0.
"""

from __future__ import annotations

import numpy as np

from xpt.toolkit.procedural.furniture import top_slab
from xpt.toolkit.procedural.params import Draw
from xpt.toolkit.procedural.parts import (
    Part,
    box,
    column,
    combine,
    loft,
    rectangle,
    rotation,
    superellipse,
    transform,
)
from xpt.toolkit.procedural.vessels import smooth_profile


def monitor(d: Draw) -> list[Part]:
    """A thin panel with a dark display, on a neck and a flat base; sometimes a deep back."""
    w = d.uniform(0.45, 0.8)
    h = w / d.choice([16 / 9, 16 / 10, 4 / 3, 21 / 9], [0.5, 0.2, 0.15, 0.15])
    t, bezel = d.uniform(0.015, 0.05), d.uniform(0.005, 0.03)
    neck_h, base_t = d.uniform(0.06, 0.2), d.uniform(0.01, 0.025)
    centre_y = base_t + neck_h + h / 2
    casing = d.colour(d.choice(["dark", "white", "metal"], [0.6, 0.2, 0.2]))
    panel = [box((w, h, t), (0.0, centre_y, 0.0))]
    back_depth = 0.0
    if d.chance(0.2):
        back_depth = w * d.uniform(0.15, 0.5)
        outline = rectangle(1.0, 1.0)
        rings = np.zeros((2, 4, 3))
        for row, (z, frac) in enumerate(
            ((-t / 2, 0.8), (-t / 2 - back_depth, d.uniform(0.3, 0.6)))
        ):
            rings[row, :, 0] = outline[:, 0] * frac * w / 2
            rings[row, :, 1] = outline[:, 1] * frac * h / 2 + centre_y
            rings[row, :, 2] = z
        panel.append(loft(rings))
    parts = [Part("panel", combine(panel), casing)]
    display = box((w - 2 * bezel, h - 2 * bezel, 0.004), (0.0, centre_y, t / 2))
    parts.append(Part("display", display, d.colour("screen")))
    neck_w, neck_t = w * d.uniform(0.06, 0.15), d.uniform(0.015, 0.04)
    neck_z = -t / 2 - back_depth * 0.5 - neck_t / 2
    neck = box((neck_w, neck_h + h / 2, neck_t), (0.0, base_t + (neck_h + h / 2) / 2, neck_z))
    base_w = w * d.uniform(0.3, 0.6)
    base = top_slab(
        d.choice(["rect", "rounded", "round"]),
        base_w / 2,
        base_w * d.uniform(0.3, 0.5),
        0.0,
        base_t,
        d,
    )
    parts.append(Part("stand", combine([neck, transform(base, move=(0.0, 0.0, neck_z))]), casing))
    return parts


def guitar(d: Draw) -> list[Part]:
    """A standing guitar: a waisted body lofted along +Y, neck and headstock, bridge, sound hole."""
    length = d.uniform(0.45, 0.55)
    lower = d.uniform(0.17, 0.21)
    upper, electric = lower * d.uniform(0.7, 0.85), d.chance(0.3)
    waist = upper * d.uniform(0.7, 0.9)
    depth = d.uniform(0.035, 0.05) if electric else d.uniform(0.08, 0.12)
    profile = smooth_profile(
        [0.0, 0.25 * length, 0.55 * length, 0.8 * length, length],
        [0.3 * lower, lower, waist, upper, 0.3 * upper],
        n=16,
    )
    section = superellipse(1.0, 1.0, d.uniform(3.0, 8.0), n=12)
    rings = np.empty((len(profile), len(section), 3))
    rings[:, :, 0] = profile[:, 0, None] * section[None, :, 0]
    rings[:, :, 1] = profile[:, 1, None]
    rings[:, :, 2] = 0.5 * depth * section[None, :, 1]
    wood = d.colour(d.choice(["wood", "paint", "dark"], [0.6, 0.3, 0.1]))
    parts = [Part("body", loft(rings, sharp=False), wood)]
    neck_w, neck_len = d.uniform(0.045, 0.056), length * d.uniform(0.8, 1.0)
    neck_z = depth / 2 - 0.012
    neck = box((neck_w, neck_len, 0.024), (0.0, length * 0.9 + neck_len / 2, neck_z))
    head_len = d.uniform(0.15, 0.2)
    head = box((neck_w * 1.5, head_len, 0.018), (0.0, head_len / 2, 0.0))
    tilt = rotation("x", -d.uniform(0.0, 0.25))
    head = transform(head, tilt, move=(0.0, length * 0.9 + neck_len, neck_z))
    parts.append(Part("neck", combine([neck, head]), d.colour(d.choice(["wood", "dark"]))))
    hardware = [box((lower * 0.6, 0.025, 0.01), (0.0, 0.25 * length, depth / 2))]
    if not electric:
        hole = column(
            (0.0, -0.003, 0.0), (0.0, 0.003, 0.0), 2 * waist * d.uniform(0.35, 0.5), sides=24
        )
        hardware.append(
            transform(hole, rotation("x", 0.5 * np.pi), move=(0.0, 0.62 * length, depth / 2))
        )
    parts.append(Part("hardware", combine(hardware), d.colour("dark")))
    return parts
