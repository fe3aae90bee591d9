"""``--preview``: a contact sheet of a few rendered objects and their views."""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path

from PIL import Image

from xpt.render.config import RenderConfig
from xpt.render.output import is_complete, object_dir, view_name
from xpt.toolkit.contact_sheet import contact_sheet
from xpt.toolkit.fsio import atomic_write_bytes
from xpt.toolkit.meshes.objects import MeshObject

PREVIEW_OBJECTS = 8
PREVIEW_VIEWS = 8


def write_preview(
    path: str | os.PathLike,
    out: str | os.PathLike,
    objects: Sequence[MeshObject],
    config: RenderConfig,
    *,
    max_objects: int = PREVIEW_OBJECTS,
    max_views: int = PREVIEW_VIEWS,
    cell: int = 96,
) -> int:
    """Write a contact sheet of up to ``max_objects`` complete objects (one per category
    first, so the sheet shows variety) x their first ``max_views`` views; returns the row
    count (0 writes nothing)."""
    complete = [o for o in objects if is_complete(object_dir(out, o), config)]
    chosen: list[MeshObject] = []
    for obj in complete:
        if len(chosen) < max_objects and obj.category_id not in {c.category_id for c in chosen}:
            chosen.append(obj)
    for obj in complete:
        if len(chosen) < max_objects and obj not in chosen:
            chosen.append(obj)
    rows, labels = [], []
    for obj in chosen:
        rendering = object_dir(out, obj) / "rendering"
        count = min(max_views, config.num_views)
        rows.append([Image.open(rendering / view_name(i)) for i in range(count)])
        labels.append(obj.display)
    if not rows:
        return 0
    buffer = io.BytesIO()
    contact_sheet(rows, labels, cell=cell).save(buffer, format="PNG")
    atomic_write_bytes(Path(path), buffer.getvalue(), "the preview")
    return len(rows)
