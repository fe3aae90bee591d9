"""Deterministic ``--part i/n`` partitioning of an object list for job arrays.

An object belongs to part ``stable_hash(key) mod n``, so the ``n`` parts cover every
object exactly once whatever order the source lists them in, and adding objects
never moves existing ones between parts.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

from xpt.toolkit.meshes.objects import MeshObject
from xpt.toolkit.seeding import derive_seed

_PART = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")


def parse_part(text: str | None) -> tuple[int, int]:
    """Parse ``"i/n"`` (0 <= i < n) into ``(i, n)``; None means the whole list, ``(0, 1)``."""
    if text is None:
        return 0, 1
    match = _PART.match(text)
    if not match:
        raise ValueError(f"--part must look like i/n (for example 0/4), got {text!r}")
    index, count = int(match[1]), int(match[2])
    if count < 1 or not 0 <= index < count:
        raise ValueError(f"--part {text!r}: need 0 <= i < n and n >= 1")
    return index, count


def part_of(key: str, count: int) -> int:
    """The part (0..count-1) that the object with this key belongs to."""
    return derive_seed(0, "part", key) % count


def select_part(objects: Iterable[MeshObject], index: int, count: int) -> Iterator[MeshObject]:
    """The objects of part ``index`` out of ``count``."""
    for obj in objects:
        if count == 1 or part_of(obj.key, count) == index:
            yield obj
