"""Seed handling: every random choice derives from the run seed and a stable key.

Derived seeds use a hash of the parts, never Python's ``hash`` (salted per process)
and never global RNG state, so results do not depend on worker count or order.
"""

from __future__ import annotations

import hashlib

import numpy as np


def derive_seed(seed: int, *parts: object) -> int:
    """A 63-bit seed that depends only on ``seed`` and the string form of ``parts``."""
    text = "\x1f".join([str(int(seed)), *map(str, parts)])
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "little") >> 1


def rng(seed: int, *parts: object) -> np.random.Generator:
    """A numpy ``Generator`` seeded from ``derive_seed(seed, *parts)``."""
    return np.random.default_rng(derive_seed(seed, *parts))


def stable_fraction(*parts: object) -> float:
    """A number in [0, 1) that depends only on ``parts`` (e.g. for train/val splits)."""
    return derive_seed(0, *parts) / float(1 << 63)
