"""View providers: where the views, cameras and normalisation of an object come from.

The shard builder never imports the renderer at module level (dependencies point
``toolkit`` <- ``render``). It takes a provider, a picklable callable
``provider(obj, scene) -> ObjectViews``:

- :class:`RenderDirViews` reads an existing ``xpt render`` output folder
  (``<renders>/<category_id>/<model_id>/rendering/NN.png`` + ``cameras.json``), and for an
  object without views the reason render recorded in its ``failures*.jsonl``;
- :class:`LiveRenderViews` renders on the fly, importing ``xpt.render`` lazily and
  opening one GL context per process on first use.
"""

from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import trimesh

from xpt.toolkit.failures import FAILURES_FILE, read_failures
from xpt.toolkit.meshes.geometry import Normalization
from xpt.toolkit.meshes.objects import MeshObject
from xpt.toolkit.shards.schema import EncodedImage


class ViewError(ValueError):
    """The views of an object are missing or unusable."""


class ViewSetupError(RuntimeError):
    """The provider cannot work at all (e.g. no GL context): stops the run, not one object."""


@dataclass
class ObjectViews:
    """The views of one object.

    images: (H, W, 3) uint8 RGB arrays or encoded RGB images, one per view; cameras:
    one JSON-ready dict per view; normalization: the map from the mesh's frame to the
    frame the cameras refer to; source_up_axis: the up axis the mesh was read with when
    the views were made (None: the views were rendered from the scene given, so it fits);
    faces: the face budget's record of the rendered mesh (None: the scene given, or
    renders older than the budget).
    """

    images: list[np.ndarray | EncodedImage]
    cameras: list[dict]
    normalization: Normalization
    up_axis: str = "+Y"
    source_up_axis: str | None = None
    faces: dict | None = None


class ViewProvider(Protocol):
    def __call__(self, obj: MeshObject, scene: trimesh.Scene) -> ObjectViews: ...

    def describe(self) -> dict[str, Any]:
        """Settings recorded in the manifest (same settings -> same views)."""
        ...


def composite_on_white(image: np.ndarray) -> np.ndarray:
    """(H, W, 4) RGBA or (H, W) grey or (H, W, 3) RGB uint8 -> (H, W, 3) uint8 RGB.

    Alpha is composited over a white background (3D-R2N2 renderings are RGBA with a
    transparent background).
    """
    image = np.asarray(image)
    if image.ndim == 2:
        return np.repeat(image[:, :, None], 3, axis=2).astype(np.uint8)
    if image.ndim != 3 or image.shape[2] not in (3, 4):
        raise ViewError(f"expected an RGB or RGBA image, got shape {image.shape}")
    if image.shape[2] == 3:
        return image.astype(np.uint8)
    rgb = image[:, :, :3].astype(np.float32)
    alpha = image[:, :, 3:].astype(np.float32) / 255.0
    return np.rint(rgb * alpha + 255.0 * (1.0 - alpha)).astype(np.uint8)


def read_view(path: str | os.PathLike) -> np.ndarray | EncodedImage:
    """A rendered view: an RGB 8-bit PNG is passed through as :class:`EncodedImage`
    (its chunk checksums verified), anything else is decoded by :func:`read_rgb`."""
    from PIL import Image

    try:
        data = Path(path).read_bytes()
        with Image.open(io.BytesIO(data)) as image:
            # IHDR bit depth 8 and colour type 2: plain 8-bit RGB, what every reader expects
            passthrough = image.format == "PNG" and data[24:26] == b"\x08\x02"
            if passthrough:
                image.verify()
    except (OSError, SyntaxError, ValueError) as error:
        raise ViewError(f"{path}: unreadable image: {error}") from error
    return EncodedImage(data, "png") if passthrough else read_rgb(path)


ALPHA_MODES = ("white", "drop")


def read_rgb(path: str | os.PathLike, alpha: str = "white") -> np.ndarray:
    """An image file -> (H, W, 3) uint8 RGB.

    ``alpha`` "white" composites transparent pixels onto white; "drop" is the published
    CrossPoint loader's ``Image.open(p).convert("RGB")``, which keeps whatever colour lies
    under transparent pixels.
    """
    from PIL import Image

    try:
        with Image.open(path) as image:
            if alpha == "drop":
                return np.asarray(image.convert("RGB"))
            if image.mode in ("RGBA", "LA", "P", "PA"):
                image = image.convert("RGBA")
            elif image.mode != "RGB":
                image = image.convert("RGB")
            return composite_on_white(np.asarray(image))
    except (OSError, SyntaxError, ValueError) as error:
        raise ViewError(f"{path}: unreadable image: {error}") from error


def _jsonable(value: Any) -> Any:
    if isinstance(value, Enum):
        return _jsonable(value.value)
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def camera_json(camera: dict) -> dict:
    """A camera dict (numpy arrays allowed) -> plain JSON types."""
    return _jsonable(camera)


@dataclass
class RenderDirViews:
    """Views from an ``xpt render`` output folder (DESIGN.md render layout).

    ``max_views`` keeps only the first views (None keeps all).
    """

    root: Path
    max_views: int | None = None
    _render_failures: dict[str, str] | None = field(
        default=None, init=False, repr=False, compare=False
    )

    def folder(self, obj: MeshObject) -> Path:
        return Path(self.root) / obj.category_id / obj.model_id / "rendering"

    def not_rendered(self, obj: MeshObject, cameras_path: Path) -> ViewError:
        """Why ``obj`` has no views: the reason render recorded, when it recorded one."""
        if self._render_failures is None:
            self._render_failures = render_failures(Path(self.root))
        recorded = self._render_failures.get(obj.key)
        if recorded is None:
            return ViewError(f"{cameras_path}: no cameras.json (object not rendered?)")
        return ViewError(f"not rendered: {recorded}")

    def __call__(self, obj: MeshObject, scene: trimesh.Scene | None = None) -> ObjectViews:
        folder = self.folder(obj)
        cameras_path = folder / "cameras.json"
        if not cameras_path.is_file():
            raise self.not_rendered(obj, cameras_path)
        try:
            record = json.loads(cameras_path.read_text(encoding="utf-8"))
            norm = record["normalization"]
            normalization = Normalization(
                tuple(float(c) for c in norm["centre"]), float(norm["scale"])
            )
            cameras = list(record["views"])
        except (KeyError, TypeError, ValueError) as error:
            raise ViewError(f"{cameras_path}: malformed cameras.json: {error}") from error
        images = sorted(folder.glob("[0-9][0-9]*.png"), key=lambda p: int(p.stem))
        if not images:
            raise ViewError(f"{folder}: no rendered views")
        if len(images) != len(cameras):
            raise ViewError(f"{folder}: {len(images)} images but {len(cameras)} cameras")
        keep = len(images) if self.max_views is None else min(self.max_views, len(images))
        return ObjectViews(
            images=[read_view(path) for path in images[:keep]],
            cameras=cameras[:keep],
            normalization=normalization,
            up_axis=str(record.get("up_axis", "+Y")),
            source_up_axis=str(record.get("source_up_axis", "+Y")),  # older renders: unrotated
            faces=record.get("faces"),
        )

    def describe(self) -> dict[str, Any]:
        return {"views": "renders", "renders": str(self.root), "max_views": self.max_views}


def render_failures(root: Path) -> dict[str, str]:
    """Object key -> ``"<reason> (render's <file>)"`` from the failure records of the render
    output ``root`` (``failures.jsonl``, and ``failures-part-*.jsonl`` of a job array); a
    record that cannot be read gives no reasons (the object then says it has no views)."""
    reasons = {}
    for path in [root / FAILURES_FILE, *sorted(root.glob("failures-part-*.jsonl"))]:
        try:
            failures = read_failures(path)
        except OSError:
            continue
        reasons.update((f.id, f"{f.reason} (render's {path.name})") for f in failures)
    return reasons


@dataclass
class LiveRenderViews:
    """Renders each object on the fly with ``xpt.render`` (one GL context per process).

    ``config`` holds keyword arguments for ``xpt.render.config.RenderConfig``
    (empty: the default rig). The provider pickles without its renderer, so each
    worker process opens its own context on first use.
    """

    config: dict[str, Any] = field(default_factory=dict)
    _renderer: Any = field(default=None, init=False, repr=False, compare=False)

    def _get_renderer(self) -> Any:
        if self._renderer is None:
            from xpt.render.config import RenderConfig
            from xpt.render.renderer import ObjectRenderer

            try:
                self._renderer = ObjectRenderer(RenderConfig(**self.config))
            except ValueError:
                raise
            except Exception as error:
                raise ViewSetupError(f"cannot render on the fly: {error}") from error
        return self._renderer

    def __call__(self, obj: MeshObject, scene: trimesh.Scene) -> ObjectViews:
        try:
            result = self._get_renderer().render(scene, obj.key)
        except ValueError as error:
            raise ViewError(f"render failed: {error}") from error
        return ObjectViews(
            images=[composite_on_white(image) for image in result.color],
            cameras=[camera_json(c) for c in result.cameras],
            normalization=result.normalization,
        )

    def describe(self) -> dict[str, Any]:
        from xpt.render.config import RenderConfig

        settings = RenderConfig(**self.config).output_settings()
        settings.pop("up_axis")  # the sample maker orients the mesh before it is rendered
        return {"views": "live", "render": _jsonable(settings)}

    def __getstate__(self) -> dict[str, Any]:
        return {"config": self.config}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.config = state["config"]
        self._renderer = None

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None
