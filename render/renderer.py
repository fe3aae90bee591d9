"""ObjectRenderer: one GL context per process, every view of an object from one scene.

Each object's geometry is uploaded once; its views are rendered by moving the camera node
(the lights are children of the camera node and move with it). Only RGBA is read back per
view, plus depth when depth maps are asked for.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import trimesh

from xpt.render.cameras import View, camera_record, intrinsics, rig_views
from xpt.render.config import RenderConfig
from xpt.render.gl import open_offscreen
from xpt.render.scene import AMBIENT, light_rig, pyrender_mesh, scene_parts
from xpt.toolkit.meshes.geometry import Normalization

# Anti-aliasing: draw at 2x the size in each direction, average 2x2 blocks (4 samples/pixel).
SUPERSAMPLE = 2
# Alpha at or above this (of 255) counts as object in masks: half-covered edge pixels.
MASK_THRESHOLD = 128
# Near/far planes leave this margin around the unit sphere that holds the object.
_CLIP_MARGIN = 1.1
# The sRGB level of each opaque background the object is composited over ("transparent"
# keeps alpha). Mid grey keeps white and light objects apart from the background.
BACKGROUND_LEVELS = {"white": 255, "grey": 128}


@dataclass
class RenderResult:
    """Every view of one object.

    color : list of (H, W, 3) uint8 (white or grey background) or (H, W, 4) uint8
    (transparent, straight alpha); depth : list of (H, W) float32 camera-frame z in
    normalised-frame units (0 = background) or None; mask : list of (H, W) bool or None;
    cameras : the per-view ``cameras.json`` entries; normalization : the source ->
    normalised-frame map.
    """

    key: str
    color: list[np.ndarray]
    depth: list[np.ndarray] | None
    mask: list[np.ndarray] | None
    cameras: list[dict]
    views: list[View]
    normalization: Normalization
    seconds: float
    warnings: list[str] = field(default_factory=list)


def compose(rgba: np.ndarray, background: str) -> np.ndarray:
    """Premultiplied RGBA (H, W, 4) uint8 from GL -> the output image.

    "white", "grey": (H, W, 3) uint8 composited over that level (:data:`BACKGROUND_LEVELS`);
    "transparent": (H, W, 4) uint8 with straight (un-premultiplied) alpha, as PNG expects.
    """
    rgb = rgba[..., :3].astype(np.uint16)
    alpha = rgba[..., 3:4].astype(np.uint16)
    if background in BACKGROUND_LEVELS:
        over = rgb + ((255 - alpha) * BACKGROUND_LEVELS[background] + 127) // 255
        return np.minimum(over, 255).astype(np.uint8)
    straight = np.where(alpha > 0, (rgb * 255 + alpha // 2) // np.maximum(alpha, 1), 0)
    return np.concatenate([np.minimum(straight, 255), alpha], axis=-1).astype(np.uint8)


class ObjectRenderer:
    """Renders trimesh scenes with one reused offscreen GL context.

    >>> with ObjectRenderer(RenderConfig(views=4, size=64)) as renderer:
    ...     result = renderer.render(scene, key="my_object")

    ``gl_renderer`` is the GL_RENDERER string of the context (the GPU's name, or e.g.
    "llvmpipe" for Mesa's software rasteriser).
    """

    def __init__(self, config: RenderConfig):
        self.config = config
        supersample = SUPERSAMPLE if config.antialias else 1
        self._offscreen = open_offscreen(config.size, config.backend, supersample)
        self.gl_renderer = self._offscreen.gl_renderer
        self.K = intrinsics(config.size, config.focal_ndc)

    def __enter__(self) -> ObjectRenderer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Free the GL context (the renderer cannot be used afterwards)."""
        if self._offscreen is not None:
            self._offscreen.delete()
            self._offscreen = None

    def render(self, scene: trimesh.Scene | trimesh.Trimesh, key: str) -> RenderResult:
        """Render every view of ``scene``; the views depend only on the config and ``key``.

        Raises :class:`xpt.render.scene.GeometryError` for a scene without usable geometry
        (no faces, non-finite vertices, zero size).
        """
        import pyrender

        if self._offscreen is None:
            raise RuntimeError("renderer is closed")
        start = time.perf_counter()
        config = self.config
        parts, norm = scene_parts(scene)
        views = rig_views(config, key)
        distances = [v.distance for v in views]
        pscene = pyrender.Scene(bg_color=np.zeros(4), ambient_light=np.full(3, AMBIENT))
        # Named in order: ties in the renderer's draw order are broken by name (reproducible).
        for index, part in enumerate(parts):
            pscene.add(pyrender_mesh(part), name=f"part{index:05d}")
        # pyrender draws at ``scale`` x the output size: the same K in the larger pixel grid.
        scale = self._offscreen.scale
        camera = pyrender.IntrinsicsCamera(
            fx=self.K[0, 0] * scale,
            fy=self.K[1, 1] * scale,
            cx=self.K[0, 2] * scale,
            cy=self.K[1, 2] * scale,
            znear=max(0.01, min(distances) - _CLIP_MARGIN),
            zfar=max(distances) + _CLIP_MARGIN,
        )
        camera_node = pscene.add(camera, pose=np.eye(4))
        light_rig(pscene, camera_node)
        colors, depths, masks = [], [], []
        try:
            for view in views:
                pscene.set_pose(camera_node, view.cam_to_world())
                rgba, depth = self._offscreen.draw(pscene, read_depth=config.depth)
                colors.append(compose(rgba, config.background))
                if config.mask:
                    masks.append(rgba[..., 3] >= MASK_THRESHOLD)
                if config.depth:
                    depths.append(depth)
        finally:
            self._offscreen.release()
        return RenderResult(
            key=key,
            color=colors,
            depth=depths if config.depth else None,
            mask=masks if config.mask else None,
            cameras=[camera_record(v, self.K, config.size) for v in views],
            views=views,
            normalization=norm,
            seconds=time.perf_counter() - start,
            warnings=[w for p in parts for w in p.warnings],
        )
