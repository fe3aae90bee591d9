"""Per-instance parameter draws and part colours for the procedural library.

A :class:`Draw` wraps one object's ``np.random.Generator``. Category builders ask it
for every continuous proportion, count, optional part and colour, giving the
*normal* range; with ``wide=True`` the same call draws from a wider range around the
same centre (the evaluation set's domain shift, as ModelNet40 is to ShapeNet).
"""

from __future__ import annotations

import colorsys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

T = TypeVar("T")

#: Half-width multiplier of every continuous range under ``wide=True``.
WIDEN = 1.8

#: Colour families: (hue range, saturation range, value range, glossiness).
#: Hue ``None`` means any hue.
PALETTES: dict[
    str, tuple[tuple[float, float] | None, tuple[float, float], tuple[float, float], float]
] = {
    "wood": ((0.05, 0.11), (0.35, 0.70), (0.30, 0.85), 20.0),
    "metal": ((0.55, 0.65), (0.00, 0.08), (0.45, 0.85), 200.0),
    "dark": ((0.55, 0.65), (0.00, 0.15), (0.05, 0.22), 60.0),
    "fabric": (None, (0.10, 0.60), (0.30, 0.85), 4.0),
    "plastic": (None, (0.40, 0.90), (0.50, 0.95), 80.0),
    "ceramic": (None, (0.00, 0.35), (0.70, 0.97), 120.0),
    "glass": ((0.08, 0.45), (0.25, 0.75), (0.25, 0.75), 250.0),
    "paint": (None, (0.50, 0.95), (0.35, 0.90), 150.0),
    "white": ((0.55, 0.65), (0.00, 0.06), (0.85, 0.98), 60.0),
    "screen": ((0.55, 0.70), (0.10, 0.40), (0.03, 0.15), 300.0),
    "leaf": ((0.22, 0.40), (0.40, 0.80), (0.25, 0.65), 10.0),
    "soil": ((0.06, 0.10), (0.40, 0.60), (0.15, 0.35), 2.0),
}


@dataclass(frozen=True)
class Colour:
    """A part's material: RGBA uint8 diffuse colour and Phong glossiness (MTL ``Ns``)."""

    rgba: tuple[int, int, int, int]
    glossiness: float


class Draw:
    """Parameter draws for one object from its own generator.

    ``wide`` widens every continuous range by :data:`WIDEN` about its centre (ranges
    with a non-negative low end stay above half that low end), widens integer ranges
    by half their width (at least one) on both sides, pulls probabilities halfway
    towards 1/2 and mixes choice weights halfway towards uniform; colours are drawn
    from any hue a third of the time.
    """

    def __init__(self, rng: np.random.Generator, wide: bool = False):
        self.rng = rng
        self.wide = wide

    def uniform(self, lo: float, hi: float) -> float:
        """A float in [lo, hi] (wider under ``wide``)."""
        if self.wide:
            centre, half = 0.5 * (lo + hi), 0.5 * (hi - lo) * WIDEN
            new_lo, new_hi = centre - half, centre + half
            if lo >= 0:
                new_lo = max(new_lo, 0.5 * lo)
            lo, hi = new_lo, new_hi
        return float(self.rng.uniform(lo, hi))

    def integer(self, lo: int, hi: int, floor: int | None = None) -> int:
        """An int in [lo, hi] inclusive; if ``wide``, never below ``floor`` (default min(lo, 1))."""
        if self.wide:
            extra = max(1, (hi - lo) // 2)
            floor = min(lo, 1) if floor is None else floor
            lo, hi = max(lo - extra, floor), hi + extra
        return int(self.rng.integers(lo, hi + 1))

    def chance(self, p: float) -> bool:
        """True with probability ``p`` (pulled towards 1/2 under ``wide``)."""
        if self.wide:
            p = 0.5 + 0.5 * (p - 0.5)
        return bool(self.rng.random() < p)

    def choice(self, options: Sequence[T], weights: Sequence[float] | None = None) -> T:
        """One of ``options`` (weights, if given, need not sum to one)."""
        w = [1.0] * len(options) if weights is None else [float(x) for x in weights]
        total = sum(w)
        w = [x / total for x in w]
        if self.wide:
            w = [0.5 * x + 0.5 / len(options) for x in w]
        u, acc = float(self.rng.random()), 0.0
        for option, weight in zip(options, w, strict=True):
            acc += weight
            if u < acc:
                return option
        return options[-1]

    def colour(self, family: str) -> Colour:
        """A colour from a :data:`PALETTES` family (any hue a third of the time if ``wide``)."""
        hues, sats, vals, glossiness = PALETTES[family]
        if self.wide and self.rng.random() < 1.0 / 3.0:
            hues, sats, vals = None, (0.0, 1.0), (0.1, 1.0)
        h = self.rng.random() if hues is None else self.rng.uniform(*hues)
        rgb = colorsys.hsv_to_rgb(h, self.rng.uniform(*sats), self.rng.uniform(*vals))
        return Colour((*(int(round(255 * c)) for c in rgb), 255), glossiness)
