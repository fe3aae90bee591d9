"""Object identity: what every mesh source yields and every later stage keys on."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

_KEY_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")


@dataclass(frozen=True)
class MeshObject:
    """One 3D object from a source (DESIGN.md, "Data contracts").

    ``path`` points at the mesh file for on-disk sources; procedural objects carry no
    path and are generated in memory from ``(category_name, seed)`` by
    :func:`xpt.toolkit.meshes.load.load_object`. The object is plain data, so it pickles
    cheaply to worker processes.
    """

    source: str
    category_id: str
    category_name: str
    model_id: str
    label: int | None = None
    path: Path | None = None
    split: str | None = None
    seed: int | None = None
    extra: dict = field(default_factory=dict, compare=False, hash=False)

    @property
    def key(self) -> str:
        """The WebDataset ``__key__``: stable across runs, no dots, unique per object."""
        return _KEY_UNSAFE.sub("_", f"{self.source}_{self.category_id}_{self.model_id}")

    @property
    def display(self) -> str:
        """A short human name: ``category/model_id``."""
        return f"{self.category_name}/{self.model_id}"

    def identity(self) -> dict:
        """The identity fields every output records for this object (DESIGN.md)."""
        return {
            "key": self.key,
            "source": self.source,
            "category_id": self.category_id,
            "category_name": self.category_name,
            "model_id": self.model_id,
            "label": None if self.label is None else int(self.label),
        }

    @property
    def where(self) -> str | None:
        """The path as a string for failure records (None for in-memory objects)."""
        return str(self.path) if self.path is not None else None
