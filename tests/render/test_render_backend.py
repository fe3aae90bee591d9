"""GL back-end selection: clear errors instead of a crash deep inside PyOpenGL."""

from __future__ import annotations

import ctypes.util
import os
import sys

import pytest

from xpt.render.gl import RenderError, select_backend


def test_missing_library_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ctypes.util, "find_library", lambda name: None)
    monkeypatch.delitem(sys.modules, "OpenGL", raising=False)
    monkeypatch.setenv("PYOPENGL_PLATFORM", "osmesa")
    with pytest.raises(RenderError, match="libOSMesa not found.*libosmesa6"):
        select_backend("osmesa")


def test_backend_cannot_change_once_opengl_is_loaded(monkeypatch: pytest.MonkeyPatch) -> None:
    import OpenGL  # noqa: F401  (loaded, as after any render in this process)

    monkeypatch.setenv("PYOPENGL_PLATFORM", "egl")
    with pytest.raises(RenderError, match="already loaded"):
        select_backend("osmesa")
    with pytest.raises(RenderError, match="unknown GL backend"):
        select_backend("vulkan")
    select_backend("egl")
    assert os.environ["PYOPENGL_PLATFORM"] == "egl"
