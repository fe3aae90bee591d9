"""The render settings: one typed config, saved with every rendered object."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from xpt.toolkit.meshes.budget import DEFAULT_MAX_FACES, check_max_faces

RIGS = ("r2n2", "ring", "sphere")
BACKGROUNDS = ("white", "grey", "transparent")
BACKENDS = ("egl", "osmesa")

# 3D-R2N2's ShapeNetRendering: Blender's default 35 mm lens on a 32 mm sensor, i.e. a focal
# length of 2.1875 in normalised device coordinates (1 / tan(fov / 2), fov about 49.13 deg).
R2N2_FOCAL_NDC = 2.1875
R2N2_VIEWS = 24
R2N2_SIZE = 137
# Preset view counts of the other rigs.
PRESET_VIEWS = {"r2n2": R2N2_VIEWS, "ring": 12, "sphere": 20}


@dataclass(frozen=True)
class RenderConfig:
    """How to render every object of a run.

    ``views``/``fov`` None take the rig's preset (24 views for r2n2, 12 for ring, 20 for
    sphere; the R2N2 focal length for every rig). ``elevation`` (degrees) and
    ``distance_ratio`` apply to the ``ring`` rig (``distance_ratio`` also to ``sphere``);
    the camera distance in the normalised frame is ``3.5 * distance_ratio``, R2N2's
    convention. ``antialias`` draws at twice the size and averages 2x2 blocks (4 samples
    per pixel; on a software rasteriser about 1.6x the cost of no anti-aliasing).
    ``time_limit`` is the wall-clock budget per object in seconds. ``up_axis`` is the up
    axis of the source's mesh files (``auto``: the source's default, ModelNet +Z, others
    +Y); meshes are rotated from it to +Y before anything is normalised. ``max_faces``
    bounds the faces drawn per object (meshes over it are simplified; 0: no bound), and
    with them a worker's memory (:mod:`xpt.toolkit.meshes.budget`).
    """

    rig: str = "r2n2"
    views: int | None = None
    size: int = R2N2_SIZE
    fov: float | None = None
    background: str = "white"
    depth: bool = False
    mask: bool = False
    antialias: bool = True
    seed: int = 0
    backend: str = "egl"
    time_limit: float = 120.0
    elevation: float = 30.0
    distance_ratio: float = 0.8
    png_compress_level: int = 1
    up_axis: str = "auto"
    max_faces: int = DEFAULT_MAX_FACES

    def __post_init__(self) -> None:
        from xpt.toolkit.meshes.geometry import check_up_axis

        check_up_axis(self.up_axis)
        check_max_faces(self.max_faces)
        if self.rig not in RIGS:
            raise ValueError(f"rig must be one of {', '.join(RIGS)}, got {self.rig!r}")
        if self.background not in BACKGROUNDS:
            raise ValueError(
                f"background must be one of {', '.join(BACKGROUNDS)}, got {self.background!r}"
            )
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {self.backend!r}")
        if self.views is not None and not 1 <= self.views <= 1000:
            raise ValueError(f"views must be in [1, 1000], got {self.views}")
        if not 8 <= self.size <= 4096:
            raise ValueError(f"size must be in [8, 4096] pixels, got {self.size}")
        if self.fov is not None and not 1.0 <= self.fov <= 170.0:
            raise ValueError(f"fov must be in [1, 170] degrees, got {self.fov}")
        if not self.time_limit > 0:
            raise ValueError(f"time_limit must be positive, got {self.time_limit}")
        if not -90.0 < self.elevation < 90.0:
            raise ValueError(f"elevation must be in (-90, 90) degrees, got {self.elevation}")
        if not self.distance_ratio > 0:
            raise ValueError(f"distance_ratio must be positive, got {self.distance_ratio}")
        if not 0 <= self.png_compress_level <= 9:
            raise ValueError(f"png_compress_level must be in [0, 9], got {self.png_compress_level}")

    @property
    def num_views(self) -> int:
        """The number of views per object (the preset when ``views`` is None)."""
        return self.views if self.views is not None else PRESET_VIEWS[self.rig]

    @property
    def focal_ndc(self) -> float:
        """Focal length in normalised device coordinates, ``1 / tan(fov / 2)``."""
        if self.fov is None:
            return R2N2_FOCAL_NDC
        return 1.0 / math.tan(math.radians(self.fov) / 2.0)

    @property
    def fov_degrees(self) -> float:
        """The full field of view in degrees (about 49.13 for the R2N2 preset)."""
        return math.degrees(2.0 * math.atan(1.0 / self.focal_ndc))

    def output_settings(self) -> dict:
        """The settings that determine an object's output files (the resume fingerprint).

        Run-time settings (backend, time limit, PNG compression) and parameters the rig
        does not use are left out: changing them does not make finished objects stale.
        ``max_faces`` is left out too: it changes only the objects over it, which
        :func:`xpt.render.output.is_complete` finds by their recorded face counts.
        """
        settings = asdict(self)
        for name in ("backend", "time_limit", "png_compress_level", "max_faces"):
            settings.pop(name)
        if self.rig != "ring":
            settings.pop("elevation")
        if self.rig == "r2n2":
            settings.pop("distance_ratio")
        settings["views"] = self.num_views
        settings["fov"] = self.fov_degrees
        return settings

    def to_json(self) -> dict:
        return asdict(self)
