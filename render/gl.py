"""OpenGL back-end choice: must happen before PyOpenGL is first imported in a process.

PyOpenGL binds its platform (EGL, OSMesa, GLX) once, at import, from the environment
variable ``PYOPENGL_PLATFORM``. :func:`open_offscreen` therefore sets it and only then
imports pyrender (through :mod:`xpt.render._offscreen`).
"""

from __future__ import annotations

import ctypes.util
import os
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from xpt.render._offscreen import Offscreen

LIBRARIES = {"egl": "EGL", "osmesa": "OSMesa"}
INSTALL_HINT = {
    "egl": "apt-get install libegl1 libgl1-mesa-dri (or a GPU driver with EGL)",
    "osmesa": "apt-get install libosmesa6",
}


class RenderError(RuntimeError):
    """The renderer itself cannot work (no GL library, no context): stops the whole run."""


def select_backend(backend: str) -> None:
    """Point PyOpenGL at ``backend`` ("egl" or "osmesa") for this process.

    Raises :class:`RenderError` when the library is missing or when OpenGL was already
    imported in this process for another platform.
    """
    if backend not in LIBRARIES:
        raise RenderError(f"unknown GL backend {backend!r}; use one of {', '.join(LIBRARIES)}")
    current = os.environ.get("PYOPENGL_PLATFORM")
    if "OpenGL" in sys.modules and current != backend:
        raise RenderError(
            f"backend {backend!r} requested but OpenGL was already loaded in this process for "
            f"{current or 'the default platform'!r}; set PYOPENGL_PLATFORM={backend} before start"
        )
    if ctypes.util.find_library(LIBRARIES[backend]) is None:
        raise RenderError(
            f"backend {backend!r}: lib{LIBRARIES[backend]} not found; {INSTALL_HINT[backend]}"
        )
    os.environ["PYOPENGL_PLATFORM"] = backend


def open_offscreen(size: int, backend: str, supersample: int = 2) -> Offscreen:
    """A current offscreen GL context of ``size`` x ``size`` pixels on ``backend``.

    ``supersample``: drawing resolution factor for anti-aliasing (1 = none, 2 = 2x2).
    """
    select_backend(backend)
    try:
        from xpt.render._offscreen import Offscreen

        return Offscreen(size, supersample)
    except RenderError:
        raise
    except Exception as exc:
        raise RenderError(
            f"could not create an OpenGL context with backend {backend!r}: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
