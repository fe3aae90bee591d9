"""The ``xpt shard`` run: objects -> samples (points + views) -> verified shards.

Order and splits are reproducible: an object of a source's own ``test`` (or
``val``) split stays in it; any other object goes to ``val`` when
``stable_fraction("split", key) < val_fraction``, else to ``train`` (by default
``val_fraction`` is 0: every such object is in ``train``, as the published code pretrains
on every ShapeNet object). Each split is
written in a seeded shuffled order (train, val, then test). Points are sampled with a seed
derived from the run seed and the object key, so neither the worker count nor
the order changes them. Workers build and encode samples in parallel; the main
process writes them in order, so the shards are byte-identical for the same seed.

Resume: the manifest is rewritten after every completed shard with each shard's
``start``/``end`` positions in its split's order. A re-run with the same settings
keeps the shards on disk, and continues after the last one of each split. Ctrl-C or
SIGTERM finishes the objects in hand, closes the open shards (a resumed set then has a
shard boundary there) and stops with :class:`~xpt.toolkit.interrupts.Interrupted`; a second
signal stops at once, dropping the open shards. Workers ignore both signals and end with
the main process (even killed). A second run on the same output folder is refused while
one runs (:mod:`xpt.toolkit.locks`).
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import closing
from dataclasses import asdict, dataclass, field
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import trimesh
from rich.markup import escape

from xpt import __version__
from xpt.toolkit.failures import FAILURES_FILE, Failure, FailureLog, read_failures
from xpt.toolkit.fsio import TMP_PREFIX, atomic_write_text, make_folder
from xpt.toolkit.interrupts import (
    Interrupted,
    deferred_interrupts,
    interrupted_after,
    interrupts_ignored,
    start_worker,
)
from xpt.toolkit.locks import folder_lock
from xpt.toolkit.meshes.budget import DEFAULT_MAX_FACES
from xpt.toolkit.meshes.geometry import UP_AXES, as_mesh
from xpt.toolkit.meshes.objects import MeshObject
from xpt.toolkit.meshes.sampling import SAMPLERS, sample_surface
from xpt.toolkit.partition import part_of, select_part
from xpt.toolkit.seeding import derive_seed, rng, stable_fraction
from xpt.toolkit.shards.manifest import (
    ManifestError,
    make_manifest,
    manifest_shards,
    part_directory,
    read_manifest,
    write_manifest,
)
from xpt.toolkit.shards.schema import (
    IMAGE_FORMATS,
    META,
    POINTS_DTYPES,
    SPLITS,
    Sample,
    encode_sample,
)
from xpt.toolkit.shards.views import ALPHA_MODES, ViewError, ViewProvider, ViewSetupError
from xpt.toolkit.shards.writer import ShardInfo, ShardWriter

if TYPE_CHECKING:
    from xpt.toolkit.meshes.sources import Source, Unread

FORMATS = ("meshes", "crosspoint")
# Points may sit this far outside the unit sphere (float rounding, a renderer that
# normalised a slightly different vertex set) before the frame is called wrong.
FRAME_TOLERANCE = 1e-3


class ShardError(ValueError):
    """A run that cannot start (bad settings, an output folder from another run)."""


class SampleError(Exception):
    """One object that cannot become a sample, at a named stage."""

    def __init__(self, stage: str, reason: str):
        super().__init__(stage, reason)
        self.stage = stage
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.stage}: {self.reason}"


@dataclass
class ShardConfig:
    """Everything ``xpt shard`` needs; all but ``out`` and ``workers`` go in the manifest."""

    out: Path = Path("shards")
    source: str = "procedural"
    format: str = "meshes"
    renders: Path | None = None
    categories: list[str] | None = None
    split: str | None = None  # only this split of a source that has splits
    layout: str | None = None  # force a mesh folder's layout instead of detecting it
    per_category: int = 8
    limit: int | None = None
    num_points: int = 2048
    sampler: str = "uniform"
    oversample: int = 4
    normals: bool = True
    val_fraction: float = 0.0  # the paper pretrains on every object
    image_format: str = "png"
    quality: int = 90
    points_dtype: str = "float32"
    max_views: int | None = None
    max_shard_mb: float | None = 256.0
    max_samples: int | None = None
    part: tuple[int, int] = (0, 1)
    seed: int = 0
    source_seed: int = 0  # which procedural objects exist (as `xpt render --source-seed`)
    workers: int = 1
    render: dict[str, Any] = field(default_factory=dict)
    up_axis: str = "auto"  # the mesh files' up axis (auto: the source's default)
    max_faces: int = DEFAULT_MAX_FACES  # meshes over it are simplified (0: no budget)
    alpha: str = "white"  # crosspoint views: composite on white, or "drop" as the release

    def __post_init__(self) -> None:
        checks = [
            (self.format in FORMATS, f"format must be one of {FORMATS}, got {self.format!r}"),
            (self.num_points >= 1, f"points must be >= 1, got {self.num_points}"),
            (self.sampler in SAMPLERS, f"sampler must be one of {SAMPLERS}, got {self.sampler!r}"),
            (self.oversample >= 1, f"oversample must be >= 1, got {self.oversample}"),
            (
                0.0 <= self.val_fraction <= 1.0,
                f"val fraction must be in [0, 1], got {self.val_fraction}",
            ),
            (
                self.image_format in IMAGE_FORMATS,
                f"image format must be one of {tuple(IMAGE_FORMATS)}, got {self.image_format!r}",
            ),
            (1 <= self.quality <= 100, f"quality must be in [1, 100], got {self.quality}"),
            (
                self.points_dtype in POINTS_DTYPES,
                f"points dtype must be one of {POINTS_DTYPES}, got {self.points_dtype!r}",
            ),
            (self.max_views is None or self.max_views >= 1, "max views must be >= 1"),
            (
                self.max_shard_mb is None or self.max_shard_mb > 0,
                f"max shard size must be positive, got {self.max_shard_mb}",
            ),
            (self.max_samples is None or self.max_samples >= 1, "max samples must be >= 1"),
            (self.workers >= 1, f"workers must be >= 1, got {self.workers}"),
            (
                self.max_faces >= 0,
                f"max faces must be 0 (no budget) or positive, got {self.max_faces}",
            ),
            (self.limit is None or self.limit >= 1, f"limit must be >= 1, got {self.limit}"),
            (
                self.up_axis in ("auto", *UP_AXES),
                f"up axis must be one of auto, {', '.join(UP_AXES)}, got {self.up_axis!r}",
            ),
            (
                self.format == "meshes" or self.up_axis == "auto",
                "up axis applies to mesh sources only (not with format crosspoint)",
            ),
            (
                self.alpha in ALPHA_MODES,
                f"alpha must be one of {', '.join(ALPHA_MODES)}, got {self.alpha!r}",
            ),
            (
                self.format == "crosspoint" or self.alpha == "white",
                "alpha drop applies to the CrossPoint release's RGBA views (--format crosspoint)",
            ),
            (
                self.format == "meshes" or (self.split is None and self.layout is None),
                "split and layout select from mesh sources only (not with format crosspoint)",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise ShardError(message)
        if self.format == "crosspoint":
            self.normals = False  # the release's PLY files hold x, y, z only

    @property
    def max_bytes(self) -> int | None:
        return None if self.max_shard_mb is None else int(self.max_shard_mb * 2**20)

    @property
    def out_dir(self) -> Path:
        """The folder this run writes: ``out``, or ``out/part-III-of-NNN`` with ``--part``."""
        return part_directory(self.out, *self.part)

    def settings(self) -> dict[str, Any]:
        """The settings that determine the shards' content (recorded and compared on resume)."""
        settings = asdict(self)
        for name in ("out", "workers"):
            settings.pop(name)
        settings["source"] = str(self.source)
        settings["renders"] = None if self.renders is None else str(self.renders)
        settings["part"] = f"{self.part[0]}/{self.part[1]}"
        for name in ("split", "layout"):  # recorded when given (older sets still resume)
            if settings[name] is None:
                settings.pop(name)
        settings.pop("alpha")  # recorded by the crosspoint maker's description (views_from)
        if self.format != "meshes":
            settings.pop("max_faces")  # the release's point clouds are not meshes
        if self.renders is not None or self.format != "meshes":
            settings["render"] = None  # only on-the-fly rendering uses these
        return settings


class SampleMaker(Protocol):
    """Builds the (unencoded) sample of one object; raises SampleError on failure."""

    def __call__(self, obj: MeshObject) -> Sample: ...

    def describe(self) -> dict[str, Any]: ...


def base_meta(obj: MeshObject, seed: int) -> dict[str, Any]:
    """The metadata every sample carries from its object (DESIGN.md shard sample)."""
    return {
        **obj.identity(),
        "source_split": obj.split,
        "seed": int(seed),
        "xpt_version": __version__,
    }


def points_seed(seed: int, key: str) -> int:
    """The sampling seed of one object: independent of order and worker count."""
    return derive_seed(seed, "points", key)


@dataclass
class MeshSampleMaker:
    """Samples from meshes: load, get views, sample points in the views' normalised frame."""

    views: ViewProvider
    num_points: int = 2048
    sampler: str = "uniform"
    oversample: int = 4
    normals: bool = True
    seed: int = 0
    up_axis: str = "auto"
    max_faces: int = DEFAULT_MAX_FACES

    def __call__(self, obj: MeshObject) -> Sample:
        from xpt.toolkit.meshes.budget import load_within_budget
        from xpt.toolkit.meshes.load import MeshError

        try:
            loaded, faces = load_within_budget(obj, max_faces=self.max_faces, up_axis=self.up_axis)
        except MeshError as error:
            raise SampleError("load", error.reason) from error
        try:
            views = self.views(obj, loaded.scene)
        except ViewError as error:
            raise SampleError("views", str(error)) from error
        if views.source_up_axis not in (None, loaded.source_up_axis):
            raise SampleError(
                "views",
                f"the views were rendered from the mesh read {views.source_up_axis} up, "
                f"this run reads it {loaded.source_up_axis} up (give both the same --up-axis)",
            )
        rendered = None if views.faces is None else views.faces.get("after")
        if views.faces is not None and rendered != faces["after"]:
            shown = f"{rendered:,}" if isinstance(rendered, int) else repr(rendered)
            raise SampleError(
                "views",
                f"the views were rendered from the mesh with {shown} faces drawn, this run "
                f"draws {faces['after']:,} (give both the same --max-faces)",
            )
        mesh = as_mesh(loaded.scene)
        try:
            vertices = views.normalization.apply(mesh.vertices)
        except ValueError as error:
            raise SampleError("points", str(error)) from error
        radius = float(np.linalg.norm(vertices, axis=1).max()) if len(vertices) else 0.0
        if radius > 1.0 + FRAME_TOLERANCE:
            raise SampleError(
                "points",
                f"the views' normalisation does not fit this mesh (radius {radius:.4f} > 1)",
            )
        normalised = trimesh.Trimesh(vertices=vertices, faces=mesh.faces, process=False)
        seed = points_seed(self.seed, obj.key)
        try:
            points, normals = sample_surface(
                normalised, self.num_points, seed, self.sampler, self.oversample
            )
        except ValueError as error:
            raise SampleError("points", str(error)) from error
        meta = {
            **base_meta(obj, self.seed),
            "points_seed": seed,
            "sampler": self.sampler,
            "cameras": views.cameras,
            "normalization": views.normalization.to_json(),
            "up_axis": views.up_axis,
            "source_up_axis": loaded.source_up_axis,
            "warnings": list(loaded.warnings),
            "faces": faces,
        }
        return Sample(
            obj.key, points, views.images, meta, normals=normals if self.normals else None
        )

    def describe(self) -> dict[str, Any]:
        return self.views.describe()


# ---------------------------------------------------------------- order, split, workers


def split_of(key: str, val_fraction: float) -> str:
    """``"val"`` for a stable ``val_fraction`` share of keys, else ``"train"``."""
    return "val" if stable_fraction("split", key) < val_fraction else "train"


def shard_split(obj: MeshObject, val_fraction: float) -> str:
    """The shard split of ``obj``: its source's ``test``/``val`` split is kept, so a
    held-out shape never reaches ``train``; others (source ``train`` or no split) go
    by :func:`split_of`."""
    if obj.split in (None, "train"):
        return split_of(obj.key, val_fraction)
    if obj.split in SPLITS:
        return obj.split
    raise ShardError(f"{obj.display}: unknown source split {obj.split!r} (expected train/val/test)")


def ordered_splits(
    objects: Sequence[MeshObject], val_fraction: float, seed: int
) -> dict[str, list[MeshObject]]:
    """Split -> its objects in the seeded shuffled writing order (independent of input order)."""
    by_key = {obj.key: obj for obj in sorted(objects, key=lambda o: o.key)}
    result: dict[str, list[MeshObject]] = {}
    for split in SPLITS:
        members = [obj for obj in by_key.values() if shard_split(obj, val_fraction) == split]
        order = rng(seed, "shard-order", split).permutation(len(members))
        result[split] = [members[i] for i in order]
    return result


def order_digest(order: dict[str, list[MeshObject]]) -> str:
    """A fingerprint of the object order (a resumed run must see the same objects)."""
    digest = hashlib.sha256()
    for split in SPLITS:
        for obj in order[split]:
            digest.update(f"{split}\x1f{obj.key}\n".encode())
    return digest.hexdigest()


@dataclass(frozen=True)
class Task:
    """One object to build: its split and its position in that split's order."""

    split: str
    position: int
    obj: MeshObject


# Per-process state of worker processes (set by the pool initializer).
_WORKER: dict[str, Any] = {}


def _make_encoded(
    maker: SampleMaker, encoding: dict[str, Any], task: Task
) -> dict[str, bytes] | Failure:
    """One object -> its encoded sample, or the Failure saying why not."""
    obj = task.obj
    try:
        sample = maker(obj)
        sample.meta["split"] = task.split
        return encode_sample(sample, **encoding)
    except SampleError as error:
        return Failure(obj.key, obj.where, error.stage, error.reason)
    except ViewSetupError:
        raise
    except Exception as error:  # one bad object never stops the run
        reason = " ".join(f"{type(error).__name__}: {error}".split())
        return Failure(obj.key, obj.where, "shard", reason)


def _init_worker(maker: SampleMaker, encoding: dict[str, Any]) -> None:
    start_worker()  # the main process decides when to stop; its death ends the worker
    _WORKER["maker"] = maker
    _WORKER["encoding"] = encoding


def _work(task: Task) -> dict[str, bytes] | Failure:
    return _make_encoded(_WORKER["maker"], _WORKER["encoding"], task)


def run_tasks(
    tasks: Sequence[Task], maker: SampleMaker, encoding: dict[str, Any], workers: int
) -> Iterator[tuple[Task, dict[str, bytes] | Failure]]:
    """Results in task order; ``workers`` > 1 builds samples in spawned processes, at most
    2 x ``workers`` objects ahead. Closing the iterator early cancels the objects not
    started and waits for those being built."""
    if workers <= 1 or len(tasks) <= 1:
        for task in tasks:
            yield task, _make_encoded(maker, encoding, task)
        return
    context = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(
        workers, mp_context=context, initializer=_init_worker, initargs=(maker, encoding)
    )
    queue = iter(tasks)
    try:
        with interrupts_ignored():  # the first submits start the workers
            ahead = deque((task, pool.submit(_work, task)) for task in islice(queue, 2 * workers))
        while ahead:
            task, future = ahead.popleft()
            result = future.result()
            ahead.extend((more, pool.submit(_work, more)) for more in islice(queue, 1))
            yield task, result
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


# ---------------------------------------------------------------- the run


@dataclass
class BuildResult:
    """What a run did; ``manifest`` is the final manifest dict."""

    out: Path
    manifest: dict[str, Any]
    written: int = 0
    failed: int = 0
    unread: int = 0  # entries named like meshes the source cannot read (in failures too)
    resumed_shards: int = 0
    seconds: float = 0.0
    failures: list[Failure] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # "key: warning" of samples written now
    layout: str = ""
    note: str | None = None  # what layout detection wants the user to know

    @property
    def all_failed(self) -> bool:
        """True when the set holds no sample and objects failed: nothing usable was made."""
        return self.manifest["samples"] == 0 and len(self.failures) > self.unread

    @property
    def objects_per_second(self) -> float:
        done = self.written + self.failed
        return done / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> dict[str, Any]:
        splits = self.manifest["splits"]
        return {
            "out": str(self.out),
            "layout": self.layout,
            "samples": self.manifest["samples"],
            "train": splits["train"]["samples"],
            "val": splits["val"]["samples"],
            "test": splits["test"]["samples"],
            "shards": sum(len(s["shards"]) for s in splits.values()),
            "bytes": sum(sh["bytes"] for s in splits.values() for sh in s["shards"]),
            "categories": len(self.manifest["categories"]),
            "written_now": self.written,
            "resumed_shards": self.resumed_shards,
            "failed": self.manifest["failures"] - self.unread,  # objects, as render counts
            "unread": self.unread,
            "warnings": len(self.warnings),
            "seconds": round(self.seconds, 3),
            "objects_per_s": round(self.objects_per_second, 3),
        }


def _resume_state(out: Path, settings: dict[str, Any]) -> tuple[dict[str, list[ShardInfo]], bool]:
    """The shards kept from an earlier run in ``out`` and whether it was complete."""
    empty: dict[str, list[ShardInfo]] = {split: [] for split in SPLITS}
    try:
        manifest = read_manifest(out)
    except ManifestError:
        if (out / "manifest.json").exists():
            raise
        return empty, False
    old = manifest.get("settings") or {}
    if "max_faces" in settings and "max_faces" not in old:  # a set from before --max-faces:
        old = {**old, "max_faces": settings["max_faces"]}  # resumes (its meshes drawn whole)
    if old != settings:
        changed = sorted(k for k in set(old) | set(settings) if old.get(k) != settings.get(k))
        raise ShardError(
            f"{out} holds shards written with other settings ({', '.join(changed)}); "
            "use another --out or remove it"
        )
    kept = manifest_shards(manifest)
    for split in SPLITS:
        for i, info in enumerate(kept[split]):
            path = out / info.name
            if not path.is_file() or path.stat().st_size != info.bytes:
                kept[split] = kept[split][:i]  # redo from the first damaged shard on
                break
    complete = bool(manifest.get("complete")) and kept == manifest_shards(manifest)
    return kept, complete


def build_shards(
    objects: Sequence[MeshObject],
    config: ShardConfig,
    maker: SampleMaker,
    unread: Sequence[Unread] = (),
) -> BuildResult:
    """Write the shard set of ``objects`` (this config's part of them) to ``config.out_dir``.

    ``unread``: the source's entries named like meshes that it cannot read; they are
    recorded as failures (stage "source") by the part their id falls in.
    """
    from xpt.toolkit.console import RunProgress

    started = time.perf_counter()
    out = make_folder(config.out_dir)
    for leftover in out.glob(f"{TMP_PREFIX}*"):
        leftover.unlink()
    mine, duplicates = [], []
    seen: set[str] = set()
    for obj in select_part(objects, *config.part):
        (duplicates if obj.key in seen else mine).append(obj)
        seen.add(obj.key)
    order = ordered_splits(mine, config.val_fraction, config.seed)
    settings = {
        **config.settings(),
        "objects": len(mine),
        "objects_digest": order_digest(order),
        "views_from": maker.describe(),
    }
    kept, complete = _resume_state(out, settings)
    categories = {obj.category_id: (obj.category_name, obj.label) for obj in mine}
    shards = {split: list(kept[split]) for split in SPLITS}
    failures_path = out / FAILURES_FILE
    previous = {failure.id: failure for failure in read_failures(failures_path)}
    log = FailureLog(failures_path)
    index, count = config.part
    fresh = [
        Failure(obj.key, obj.where, "source", "duplicate object: same key as another object")
        for obj in duplicates
    ] + [entry.failure() for entry in unread if count == 1 or part_of(entry.id, count) == index]
    not_read = len(fresh) - len(duplicates)
    for failure in fresh:
        if failure.id not in previous:
            log.record(failure)
    written_keys: set[str] = set()
    warnings: list[str] = []

    def outstanding() -> list[Failure]:
        """Failures by id, less objects a later attempt wrote. Source-stage records
        (duplicates, unread entries) are this run's only: each run finds them anew."""
        earlier = {k: f for k, f in previous.items() if f.stage != "source"}
        merged = {**earlier, **{f.id: f for f in fresh}}
        kept_ids = [
            k for k in sorted(merged) if k not in written_keys or merged[k].stage == "source"
        ]
        return [merged[k] for k in kept_ids]

    def save_manifest(done: bool) -> None:
        manifest = make_manifest(
            shards, categories, settings, complete=done, failures=len(outstanding())
        )
        write_manifest(out, manifest)

    def on_shard(split: str) -> Callable[[ShardInfo], None]:
        def record(info: ShardInfo) -> None:
            shards[split].append(info)
            save_manifest(False)

        return record

    tasks = (
        []
        if complete
        else [
            Task(split, position, obj)
            for split in SPLITS
            for position, obj in enumerate(order[split])
            if position >= (shards[split][-1].end if shards[split] else 0)
        ]
    )
    writers = {
        split: ShardWriter(
            out,
            split,
            max_samples=config.max_samples,
            max_bytes=config.max_bytes,
            start_index=len(shards[split]),
            on_shard=on_shard(split),
        )
        for split in SPLITS
    }
    encoding = {
        "image_format": config.image_format,
        "quality": config.quality,
        "points_dtype": config.points_dtype,
    }
    if not complete:
        save_manifest(False)

    def saved() -> int:
        """Samples this run put in completed shards."""
        return sum(info.samples for writer in writers.values() for info in writer.shards)

    try:
        with (
            RunProgress("shard", total=len(tasks), unit="obj") as bar,
            deferred_interrupts() as stop,
            closing(run_tasks(tasks, maker, encoding, config.workers)) as results,
        ):
            for failure in fresh[len(duplicates) :]:
                bar.fail(f"{failure.path}: not read: {failure.reason}")
            for task, result in results:
                if isinstance(result, Failure):
                    if task.obj.key not in previous:
                        log.record(result)
                    fresh.append(result)
                    bar.fail(result.line())
                    bar.advance(ok=False)
                else:
                    meta_views = sum(1 for name in result if name.startswith("view_"))
                    writers[task.split].write(
                        result,
                        position=task.position,
                        category=task.obj.category_id,
                        views=meta_views,
                    )
                    written_keys.add(task.obj.key)
                    for warning in json.loads(result[META]).get("warnings", []):
                        warnings.append(f"{task.obj.key}: {warning}")
                        bar.note(f"[yellow]warning[/yellow] {escape(warnings[-1])}")
                    bar.advance()
                if stop:  # the open shard is closed below: nothing written is lost
                    break
        for writer in writers.values():
            writer.close()
    except Interrupted as again:  # a second signal: the open shard is dropped
        for writer in writers.values():
            writer.abort()
        raise interrupted_after(saved(), again.signum, str(again)) from None
    except BaseException:
        for writer in writers.values():
            writer.abort()
        raise
    if stop:
        raise interrupted_after(saved(), stop.signum)
    final_failures = outstanding()
    atomic_write_text(
        failures_path,
        "".join(json.dumps(asdict(f), sort_keys=True) + "\n" for f in final_failures),
    )
    save_manifest(True)
    return BuildResult(
        out=out,
        manifest=read_manifest(out),
        written=len(written_keys),
        failed=len(fresh),
        unread=not_read,
        resumed_shards=sum(len(kept[split]) for split in SPLITS),
        seconds=time.perf_counter() - started,
        failures=final_failures,
        warnings=warnings,
    )


def objects_and_maker(config: ShardConfig) -> tuple[Source, SampleMaker]:
    """The objects of ``config.source`` (with what it cannot read) and the sample maker."""
    from xpt.toolkit.meshes.sources import Source, scan_source

    if config.format == "crosspoint":
        from xpt.toolkit.crosspoint_import import CrossPointSampleMaker, crosspoint_objects

        objects = crosspoint_objects(
            config.source, categories=config.categories, limit=config.limit
        )
        maker: SampleMaker = CrossPointSampleMaker(
            config.num_points, config.sampler, config.seed, config.max_views, config.alpha
        )
        return Source(objects, "crosspoint"), maker
    from xpt.toolkit.meshes.load import check_source_up_axis
    from xpt.toolkit.shards.views import LiveRenderViews, RenderDirViews

    check_source_up_axis(config.source, config.up_axis)
    found = scan_source(
        config.source,
        categories=config.categories,
        split=config.split,
        limit=config.limit,
        per_category=config.per_category,
        seed=config.source_seed,
        layout=config.layout,
    )
    if config.renders is not None:
        if not Path(config.renders).is_dir():
            raise ShardError(f"{config.renders}: renders folder not found")
        views: ViewProvider = RenderDirViews(Path(config.renders), config.max_views)
    else:
        views = LiveRenderViews(dict(config.render))
    maker = MeshSampleMaker(
        views,
        config.num_points,
        config.sampler,
        config.oversample,
        config.normals,
        config.seed,
        config.up_axis,
        config.max_faces,
    )
    return found, maker


def run_shard(config: ShardConfig) -> BuildResult:
    """``xpt shard``: gather the objects, then :func:`build_shards`, holding the output
    folder's lock (:func:`~xpt.toolkit.locks.folder_lock`) throughout."""
    with folder_lock(config.out_dir, "xpt shard"):
        found, maker = objects_and_maker(config)
        result = build_shards(found.objects, config, maker, found.unread)
    result.layout, result.note = found.layout, found.note
    return result
