"""The OSMesa fallback back-end renders the same images as EGL (both are Mesa's llvmpipe here).

Compared without anti-aliasing: the 2x2 supersampling blit filters edges differently on the
two back-ends, so anti-aliased edges may differ by a few levels.
"""

from __future__ import annotations

import ctypes.util
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from xpt.render.config import RenderConfig
from xpt.render.pool import run_render

pytestmark = pytest.mark.skipif(
    ctypes.util.find_library("OSMesa") is None, reason="libOSMesa not installed"
)


def _views(out: Path) -> list[np.ndarray]:
    return [np.asarray(Image.open(p), dtype=np.int16) for p in sorted(out.rglob("rendering/*.png"))]


def test_osmesa_renders_like_egl(tmp_path: Path) -> None:
    images = {}
    for backend in ("egl", "osmesa"):
        config = RenderConfig(views=2, size=48, backend=backend, antialias=False, time_limit=60.0)
        summary = run_render(
            "procedural",
            tmp_path / backend,
            config,
            categories="chair",
            per_category=1,
            progress=False,
        )
        assert summary.failed == 0 and summary.done == 1
        images[backend] = _views(tmp_path / backend)
    assert len(images["osmesa"]) == 2
    for egl, osmesa in zip(images["egl"], images["osmesa"], strict=True):
        assert (egl < 250).mean() > 0.02  # the object is there
        diff = np.abs(egl - osmesa)
        assert diff.max() <= 2 and diff.mean() < 0.01  # same rasteriser: rounding at most
