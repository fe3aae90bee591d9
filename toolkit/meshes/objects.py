"""Object identity: what every mesh source yields and every later stage keys on."""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

from xpt.toolkit.fsio import printable

_KEY_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")
HASH_CHARS = 8


def short_hash(text: str) -> str:
    """The first :data:`HASH_CHARS` hex digits of the sha1 of ``text`` (any file name)."""
    return hashlib.sha1(printable(text).encode("utf-8")).hexdigest()[:HASH_CHARS]


def make_key(text: str) -> str:
    """A WebDataset-safe key (``[A-Za-z0-9_-]``, no dots) that is unique per ``text``.

    ASCII text keeps the readable form keys have always had: each run of other
    characters becomes ``_``. Other text is transliterated where it can be (accents
    dropped, ``ü`` -> ``u``) and gets ``-`` plus a short hash of the original, because
    ``椅子`` and ``桌子`` (or ``ü`` and ``ä``) would otherwise both become ``_``.
    """
    if text.isascii():
        return _KEY_UNSAFE.sub("_", text)
    decomposed = unicodedata.normalize("NFKD", printable(text))
    readable = "".join(c for c in decomposed if not unicodedata.combining(c))
    return f"{_KEY_UNSAFE.sub('_', readable)}-{short_hash(text)}"


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
        return make_key(f"{self.source}_{self.category_id}_{self.model_id}")

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
        """The path as valid Unicode for records and messages (None for in-memory objects)."""
        return printable(self.path) if self.path is not None else None
