"""Render tests run headless: EGL (Mesa's llvmpipe on a CPU-only machine)."""

from __future__ import annotations

import os

os.environ.setdefault("PYOPENGL_PLATFORM", "egl")
os.environ.setdefault("XPT_NO_PROGRESS", "1")
