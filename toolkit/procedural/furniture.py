"""Furniture builders: chair, table, bench, bed, sofa, bookshelf, stool, cabinet.

The similar ones deliberately share parts: table, bench, bed and stool are a top on
legs (:func:`top_slab`, :func:`corner_legs`) and differ in proportions and extra
structure (bench slats and backrests, bed mattress and headboard, stool footrest);
bookshelf and cabinet share the panel carcass (:func:`carcass`). Each builder takes a
:class:`~xpt.toolkit.procedural.params.Draw` and returns parts in metres, +Y up,
front towards +Z, standing on y = 0.
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
    ellipsoid,
    prism,
    rotation,
    superellipse,
    torus,
    transform,
    tube,
)


def top_slab(shape: str, half_w: float, half_d: float, y0: float, y1: float, d: Draw) -> Piece:
    """A flat top between heights ``y0`` and ``y1``: ``rect``, ``rounded`` or ``round``."""
    if shape == "rect":
        return box((2 * half_w, y1 - y0, 2 * half_d), (0.0, 0.5 * (y0 + y1), 0.0))
    if shape == "round":
        return prism(circle(half_w, half_d, n=32), y0, y1)
    return prism(superellipse(half_w, half_d, d.uniform(4.0, 10.0), n=28), y0, y1)


def corner_legs(
    half_w: float,
    half_d: float,
    top_y: float,
    thick: float,
    sides: int,
    splay: float = 0.0,
    taper: float = 1.0,
    count_x: int = 2,
) -> Piece:
    """``count_x`` x 2 legs under a ``2*half_w`` by ``2*half_d`` top, splayed outward."""
    pieces = []
    for x in np.linspace(-half_w, half_w, count_x):
        for z in (-half_d, half_d):
            sx = np.sign(x) if abs(x) > 1e-9 else 0.0
            bottom = (x + sx * splay, 0.0, z + np.sign(z) * splay)
            pieces.append(column(bottom, (x, top_y, z), thick * taper, thick, sides=sides))
    return combine(pieces)


def star_base(d: Draw, top_y: float, reach: float) -> Piece:
    """An office-chair / pedestal-table base: a column on 4-5 spokes (3-6 if wide) with feet."""
    spokes = d.integer(4, 5, floor=3)
    col_r = d.uniform(0.025, 0.04)
    hub_y = d.uniform(0.06, 0.1)
    pieces = [column((0.0, hub_y * 0.5, 0.0), (0.0, top_y, 0.0), 2 * col_r, sides=12)]
    for k in range(spokes):
        a = 2 * np.pi * k / spokes
        tip = np.array([reach * np.cos(a), hub_y * 0.45, reach * np.sin(a)])
        path = np.array([[0.0, hub_y, 0.0], 0.5 * tip + [0.0, hub_y * 0.55, 0.0], tip])
        pieces.append(tube(path, col_r * 0.6, sides=6))
        pieces.append(
            column(tip * [1, 0, 1], tip * [1, 0, 1] + [0, hub_y * 0.4, 0], col_r, sides=8)
        )
    return combine(pieces)


def _back(d: Draw, width: float, height: float, thick: float, seat_y: float, z: float) -> Piece:
    """A chair or bench back standing on the seat at depth ``z``: panel, slats or rails."""
    style = d.choice(["panel", "slats", "rails"], [0.45, 0.3, 0.25])
    centre_y = seat_y + 0.5 * height
    if style == "panel":
        return box((width, height, thick), (0.0, centre_y, z))
    post = d.uniform(0.025, 0.045)
    pieces = [
        box((post, height, thick), (sx * 0.5 * (width - post), centre_y, z)) for sx in (-1, 1)
    ]
    rail_h = d.uniform(0.04, 0.09)
    inner = width - 2 * post
    if style == "slats":
        pieces.append(box((inner, rail_h, thick * 0.8), (0.0, seat_y + height - 0.5 * rail_h, z)))
        n = d.integer(2, 5)
        slat_w = inner / (2 * n + 1)
        for x in np.linspace(-0.5 * inner + 1.5 * slat_w, 0.5 * inner - 1.5 * slat_w, n):
            pieces.append(
                box((slat_w, height - rail_h, thick * 0.6), (x, centre_y - 0.5 * rail_h, z))
            )
    else:
        n = d.integer(2, 4)
        for y in np.linspace(seat_y + 0.35 * height, seat_y + height - 0.5 * rail_h, n):
            pieces.append(box((inner, rail_h, thick * 0.7), (0.0, y, z)))
    return combine(pieces)


def chair(d: Draw) -> list[Part]:
    """Seat, back (panel, slats or rails, tilted), four legs or a star base, optional arms."""
    w, dep, h = d.uniform(0.40, 0.56), d.uniform(0.38, 0.52), d.uniform(0.40, 0.50)
    t = d.uniform(0.03, 0.08)
    frame = d.colour(d.choice(["wood", "metal", "plastic"], [0.6, 0.25, 0.15]))
    seat_colour = d.colour("fabric") if d.chance(0.5) else frame
    parts = [
        Part(
            "seat",
            top_slab(d.choice(["rect", "rounded"]), w / 2, dep / 2, h - t, h, d),
            seat_colour,
        )
    ]
    if d.chance(0.2):
        parts.append(
            Part("base", star_base(d, h - t, 0.5 * max(w, dep) * d.uniform(1.0, 1.3)), frame)
        )
    else:
        thick = d.uniform(0.025, 0.05)
        inset = thick * d.uniform(0.5, 1.5)
        legs = corner_legs(
            w / 2 - inset,
            dep / 2 - inset,
            h - t,
            thick,
            d.choice([4, 10]),
            splay=d.uniform(0.0, 0.04),
            taper=d.uniform(0.6, 1.0),
        )
        parts.append(Part("legs", legs, frame))
    back_h, back_t = d.uniform(0.30, 0.55), d.uniform(0.02, 0.05)
    back = _back(d, w * d.uniform(0.85, 1.0), back_h, back_t, h, -dep / 2 + back_t / 2)
    tilt = rotation("x", -d.uniform(0.0, 0.25))
    parts.append(
        Part(
            "back",
            transform(back, tilt, pivot=(0.0, h, -dep / 2)),
            seat_colour if d.chance(0.5) else frame,
        )
    )
    if d.chance(0.3):
        arm_h, arm_w = d.uniform(0.18, 0.28), d.uniform(0.03, 0.07)
        pieces = []
        for sx in (-1, 1):
            x = sx * (w / 2 + arm_w / 2)
            pieces.append(box((arm_w, 0.025, dep * 0.9), (x, h + arm_h, -dep * 0.05)))
            pieces.append(
                column((x, h - t, dep * 0.35), (x, h + arm_h, dep * 0.35), arm_w * 0.7, sides=4)
            )
        parts.append(Part("arms", combine(pieces), frame))
    return parts


def table(d: Draw) -> list[Part]:
    """A top (rectangular, rounded or round) on corner legs, a pedestal or trestles."""
    w, h, t = d.uniform(0.8, 1.8), d.uniform(0.68, 0.78), d.uniform(0.025, 0.06)
    shape = d.choice(["rect", "rounded", "round"], [0.5, 0.3, 0.2])
    dep = w * (d.uniform(0.85, 1.0) if shape == "round" else d.uniform(0.45, 0.85))
    top_colour = d.colour(d.choice(["wood", "white", "dark"], [0.7, 0.2, 0.1]))
    frame = top_colour if d.chance(0.5) else d.colour(d.choice(["wood", "metal"]))
    parts = [Part("top", top_slab(shape, w / 2, dep / 2, h - t, h, d), top_colour)]
    support = d.choice(["legs", "pedestal", "trestle"], [0.7, 0.15, 0.15])
    if support == "pedestal":
        parts.append(
            Part("base", star_base(d, h - t, 0.3 * min(w, dep) * d.uniform(0.8, 1.2)), frame)
        )
        return parts
    if support == "trestle":
        panel_t = d.uniform(0.03, 0.07)
        x = w / 2 - d.uniform(0.08, 0.2)
        pieces = [
            box((panel_t, h - t, dep * d.uniform(0.5, 0.8)), (sx * x, (h - t) / 2, 0.0))
            for sx in (-1, 1)
        ]
        pieces += [box((2 * x, 0.05, 0.05), (0.0, d.uniform(0.1, 0.3), 0.0))]
        parts.append(Part("legs", combine(pieces), frame))
        return parts
    thick = d.uniform(0.035, 0.08)
    inset = d.uniform(0.03, 0.12) * (0.6 if shape == "round" else 1.0)
    hw, hd = (
        (w / 2 - inset) * (0.72 if shape == "round" else 1.0),
        (dep / 2 - inset) * (0.72 if shape == "round" else 1.0),
    )
    parts.append(
        Part(
            "legs",
            corner_legs(hw, hd, h - t, thick, d.choice([4, 10]), taper=d.uniform(0.6, 1.0)),
            frame,
        )
    )
    if d.chance(0.5):
        apron_h = d.uniform(0.05, 0.12)
        y = h - t - apron_h / 2
        apron = [box((2 * hw, apron_h, 0.02), (0.0, y, sz * hd)) for sz in (-1, 1)]
        apron += [box((0.02, apron_h, 2 * hd), (sx * hw, y, 0.0)) for sx in (-1, 1)]
        parts.append(Part("apron", combine(apron), frame))
    if d.chance(0.2):
        y = d.uniform(0.12, 0.3)
        parts.append(Part("shelf", box((2 * hw, 0.02, 2 * hd), (0.0, y, 0.0)), top_colour))
    return parts


def bench(d: Draw) -> list[Part]:
    """A long, low, narrow seat (solid or slatted) on legs or side panels, optional back."""
    w, dep, h = d.uniform(1.0, 1.8), d.uniform(0.30, 0.45), d.uniform(0.40, 0.48)
    t = d.uniform(0.03, 0.06)
    wood, frame = d.colour("wood"), d.colour(d.choice(["metal", "wood", "dark"]))
    if d.chance(0.5):
        seat = top_slab(d.choice(["rect", "rounded"]), w / 2, dep / 2, h - t, h, d)
    else:
        n = d.integer(3, 5, floor=2)
        gap = d.uniform(0.1, 0.3) * dep / n
        slat_d = (dep - gap * (n - 1)) / n
        zs = np.linspace(-dep / 2 + slat_d / 2, dep / 2 - slat_d / 2, n)
        seat = combine([box((w, t, slat_d), (0.0, h - t / 2, z)) for z in zs])
    parts = [Part("seat", seat, wood)]
    if d.chance(0.6):
        thick = d.uniform(0.035, 0.07)
        count_x = 3 if w > 1.45 and d.chance(0.6) else 2
        legs = corner_legs(
            w / 2 - d.uniform(0.05, 0.2),
            dep / 2 - thick,
            h - t,
            thick,
            d.choice([4, 10]),
            splay=d.uniform(0.0, 0.05),
            count_x=count_x,
        )
    else:
        panel_t = d.uniform(0.03, 0.08)
        x = w / 2 - d.uniform(0.0, 0.15)
        legs = combine(
            [
                box((panel_t, h - t, dep * d.uniform(0.8, 1.0)), (sx * x, (h - t) / 2, 0.0))
                for sx in (-1, 1)
            ]
        )
    parts.append(Part("legs", legs, frame))
    if d.chance(0.35):
        back_h = d.uniform(0.3, 0.5)
        back = _back(d, w * d.uniform(0.9, 1.0), back_h, d.uniform(0.025, 0.05), h, -dep / 2)
        tilt = rotation("x", -d.uniform(0.05, 0.3))
        parts.append(Part("back", transform(back, tilt, pivot=(0.0, h, -dep / 2)), wood))
    return parts


def bed(d: Draw) -> list[Part]:
    """A long, wide frame with a mattress, headboard, optional footboard, pillows and blanket."""
    w, length = d.uniform(0.95, 1.8), d.uniform(1.9, 2.15)
    leg_h, frame_t = d.uniform(0.0, 0.18), d.uniform(0.12, 0.25)
    frame_colour = d.colour(d.choice(["wood", "fabric", "white", "dark"]))
    parts = [
        Part("frame", box((w, frame_t, length), (0.0, leg_h + frame_t / 2, 0.0)), frame_colour)
    ]
    if leg_h > 0.03:
        thick = d.uniform(0.04, 0.08)
        legs = corner_legs(w / 2 - thick, length / 2 - thick, leg_h, thick, d.choice([4, 10]))
        parts.append(Part("legs", legs, frame_colour))
    top = leg_h + frame_t
    mat_t = d.uniform(0.14, 0.3)
    mattress = prism(
        superellipse(w / 2 * 0.97, length / 2 * 0.98, d.uniform(5.0, 12.0), n=28), top, top + mat_t
    )
    parts.append(Part("mattress", mattress, d.colour("white")))
    head_h = d.uniform(0.35, 0.9)
    head_t = d.uniform(0.04, 0.1)
    head_y = top + mat_t + head_h
    head_outline = superellipse(w / 2, (head_y) / 2, d.uniform(3.0, 12.0), n=28)
    head = prism(head_outline, -head_t / 2, head_t / 2)
    head = transform(
        head, rotation("x", np.pi / 2), move=(0.0, head_y / 2, -length / 2 - head_t / 2)
    )
    parts.append(Part("headboard", head, frame_colour))
    if d.chance(0.4):
        foot_y = top + mat_t * d.uniform(0.5, 1.6)
        parts.append(
            Part(
                "footboard",
                box((w, foot_y, head_t), (0.0, foot_y / 2, length / 2 + head_t / 2)),
                frame_colour,
            )
        )
    pillow_colour = d.colour("white")
    n_pillows = 2 if w > 1.3 else 1
    xs = [0.0] if n_pillows == 1 else [-w / 4, w / 4]
    pillow_r = (w / n_pillows * d.uniform(0.35, 0.45), d.uniform(0.05, 0.09), d.uniform(0.15, 0.25))
    pillows = [
        ellipsoid(pillow_r, (x, top + mat_t + pillow_r[1] * 0.7, -length / 2 + 0.3)) for x in xs
    ]
    parts.append(Part("pillows", combine(pillows), pillow_colour))
    if d.chance(0.6):
        cover = d.uniform(0.5, 0.75) * length
        blanket = box((w * 1.02, 0.03, cover), (0.0, top + mat_t + 0.01, length / 2 - cover / 2))
        parts.append(Part("blanket", blanket, d.colour("fabric")))
    return parts


def sofa(d: Draw) -> list[Part]:
    """A deep upholstered base with arms, a thick tilted back and one to three cushions."""
    w, dep, seat_h = d.uniform(1.4, 2.4), d.uniform(0.8, 1.0), d.uniform(0.38, 0.48)
    fabric = d.colour("fabric")
    cushion_colour = fabric if d.chance(0.6) else d.colour("fabric")
    leg_h = d.uniform(0.05, 0.15) if d.chance(0.6) else 0.0
    cushion_t = d.uniform(0.1, 0.18)
    base_top = seat_h - cushion_t
    parts = [
        Part("base", box((w, base_top - leg_h, dep), (0.0, (base_top + leg_h) / 2, 0.0)), fabric)
    ]
    if leg_h > 0:
        legs = corner_legs(
            w / 2 - 0.06, dep / 2 - 0.06, leg_h, d.uniform(0.03, 0.06), d.choice([4, 10]), taper=0.7
        )
        parts.append(Part("legs", legs, d.colour(d.choice(["wood", "metal", "dark"]))))
    back_t, back_top = d.uniform(0.15, 0.25), d.uniform(0.75, 0.95)
    back = box(
        (w, back_top - base_top, back_t), (0.0, (back_top + base_top) / 2, -dep / 2 + back_t / 2)
    )
    parts.append(
        Part(
            "back",
            transform(back, rotation("x", -d.uniform(0.0, 0.15)), pivot=(0.0, base_top, -dep / 2)),
            fabric,
        )
    )
    arm_w = d.uniform(0.1, 0.25) if d.chance(0.85) else 0.0
    if arm_w > 0:
        arm_h = seat_h + d.uniform(0.12, 0.25)
        arms = [
            box((arm_w, arm_h - leg_h, dep), (sx * (w / 2 - arm_w / 2), (arm_h + leg_h) / 2, 0.0))
            for sx in (-1, 1)
        ]
        parts.append(Part("arms", combine(arms), fabric))
    n = d.integer(1, 3)
    inner = w - 2 * arm_w
    cw = inner / n
    cushions = [
        prism(
            superellipse(cw / 2 * 0.96, (dep - back_t) / 2 * 0.96, 6.0, n=20),
            base_top,
            seat_h,
            (x, back_t / 2),
        )
        for x in np.linspace(-inner / 2 + cw / 2, inner / 2 - cw / 2, n)
    ]
    parts.append(Part("cushions", combine(cushions), cushion_colour))
    return parts


def carcass(d: Draw, w: float, h: float, dep: float, t: float, kick: float) -> Piece:
    """Two sides, top and bottom panels (the shared bookshelf/cabinet box), open front."""
    pieces = [box((t, h, dep), (sx * (w / 2 - t / 2), h / 2, 0.0)) for sx in (-1, 1)]
    pieces.append(box((w, t, dep), (0.0, h - t / 2, 0.0)))
    pieces.append(box((w - 2 * t, t, dep), (0.0, kick + t / 2, 0.0)))
    if kick > 0:
        pieces.append(box((w - 2 * t, kick, t), (0.0, kick / 2, dep / 2 - 2 * t)))
    return combine(pieces)


def bookshelf(d: Draw) -> list[Part]:
    """An open-front carcass with two to six shelves, an optional back and optional books."""
    w, h, dep = d.uniform(0.6, 1.2), d.uniform(0.9, 2.0), d.uniform(0.25, 0.4)
    t, kick = d.uniform(0.015, 0.035), d.uniform(0.0, 0.08)
    colour = d.colour(d.choice(["wood", "white", "dark"], [0.6, 0.25, 0.15]))
    parts = [Part("frame", carcass(d, w, h, dep, t, kick), colour)]
    n = d.integer(2, 6)
    levels = np.linspace(kick + t, h - t, n + 2)[1:-1]
    parts.append(
        Part(
            "shelves",
            combine([box((w - 2 * t, t, dep - t), (0.0, y, t / 2)) for y in levels]),
            colour,
        )
    )
    if d.chance(0.7):
        parts.append(
            Part(
                "back",
                box((w - 2 * t, h - kick - 2 * t, t / 2), (0.0, (h + kick) / 2, -dep / 2 + t / 4)),
                colour,
            )
        )
    if d.chance(0.6):
        books = []
        floors = np.concatenate([[kick + t], levels + t / 2])
        gap = floors[1] - floors[0] - t
        for y in floors:
            x = -w / 2 + t + d.uniform(0.0, 0.1)
            while x < w / 2 - t - 0.05 and d.rng.random() < 0.93:
                bw = d.rng.uniform(0.02, 0.05)
                bh = gap * d.rng.uniform(0.6, 0.9)
                books.append(box((bw, bh, dep * 0.7), (x + bw / 2, y + bh / 2, 0.0)))
                x += bw + (0.0 if d.rng.random() < 0.8 else d.rng.uniform(0.02, 0.15))
        if books:
            parts.append(Part("books", combine(books), d.colour("plastic")))
    return parts


def stool(d: Draw) -> list[Part]:
    """A backless round or square seat on three or four long legs, optional footrest ring."""
    h, r = d.uniform(0.45, 0.8), d.uniform(0.15, 0.22)
    t = d.uniform(0.025, 0.06)
    frame, seat_colour = (
        d.colour(d.choice(["wood", "metal"])),
        d.colour(d.choice(["wood", "fabric", "dark"])),
    )
    round_seat = d.chance(0.7)
    seat = prism(circle(r, n=32) if round_seat else superellipse(r, r, 6.0, n=24), h - t, h)
    parts = [Part("seat", seat, seat_colour)]
    n = d.integer(3, 4)
    thick = d.uniform(0.025, 0.045)
    spread = d.uniform(1.0, 1.35)
    legs = []
    for k in range(n):
        a = 2 * np.pi * (k + 0.5) / n
        top = (0.75 * r * np.cos(a), h - t, 0.75 * r * np.sin(a))
        legs.append(
            column(
                (top[0] * spread, 0.0, top[2] * spread),
                top,
                thick,
                sides=d.choice([4, 10]) if k == 0 else 10,
            )
        )
    parts.append(Part("legs", combine(legs), frame))
    if d.chance(0.6):
        y = h * d.uniform(0.25, 0.45)
        ring_r = 0.75 * r * (spread - (spread - 1.0) * y / h)
        parts.append(Part("footrest", torus(ring_r, thick * 0.35, y, sides=24, bands=6), frame))
    return parts


def cabinet(d: Draw) -> list[Part]:
    """A closed carcass with one to three doors (or drawers), handles, a plinth or legs."""
    w, h, dep = d.uniform(0.5, 1.4), d.uniform(0.6, 2.0), d.uniform(0.35, 0.6)
    t = d.uniform(0.015, 0.03)
    leg_h = d.uniform(0.08, 0.18) if d.chance(0.4) else 0.0
    body_colour = d.colour(d.choice(["wood", "white", "dark"]))
    door_colour = body_colour if d.chance(0.5) else d.colour(d.choice(["wood", "white", "paint"]))
    body = carcass(d, w, h - leg_h, dep, t, 0.0)
    body = combine(
        [body, box((w - 2 * t, h - leg_h - 2 * t, t), (0.0, (h - leg_h) / 2, -dep / 2 + t / 2))]
    )
    parts = [Part("body", transform(body, move=(0.0, leg_h, 0.0)), body_colour)]
    if leg_h > 0:
        parts.append(
            Part(
                "legs",
                corner_legs(w / 2 - 0.04, dep / 2 - 0.04, leg_h, 0.035, 4, taper=0.7),
                body_colour,
            )
        )
    n = d.integer(1, 3)
    drawers = d.integer(0, 3) if d.chance(0.4) else 0
    inner_h = h - leg_h - 2 * t
    drawer_h = min(0.18, inner_h / 6)
    door_h = inner_h - drawers * drawer_h
    dw = (w - 2 * t) / n
    fronts, handles = [], []
    z = dep / 2 + t / 2
    for i in range(n):
        x = -w / 2 + t + dw * (i + 0.5)
        fronts.append(box((dw - 0.004, door_h - 0.004, t), (x, leg_h + t + door_h / 2, z)))
        # doors hinge alternately, so the handles of a pair meet in the middle
        hx = x + (dw / 2 - 0.05) * (1 if i % 2 == 0 else -1)
        handles.append(
            box((0.015, min(0.15, door_h * 0.3), 0.02), (hx, leg_h + t + door_h * 0.55, z + 0.015))
        )
    for j in range(drawers):
        y = leg_h + t + door_h + drawer_h * (j + 0.5)
        fronts.append(box((w - 2 * t - 0.004, drawer_h - 0.004, t), (0.0, y, z)))
        handles.append(box((min(0.2, w * 0.3), 0.015, 0.02), (0.0, y, z + 0.015)))
    parts.append(Part("doors", combine(fronts), door_colour))
    parts.append(Part("handles", combine(handles), d.colour("metal")))
    return parts
