"""Speed harness: every fast path of xpt against the baseline it replaces, in one run.

    python -m xpt.benchmarks.speed [--quick] [--stages loader linear_eval ...] [--json PATH]

For each stage it prints our figure, the baseline's figure measured in the same process,
and the ratio; ``--json`` writes ``{stage: {"ours", "baseline", "ratio", "unit", ...}}``.
The ratio is always oriented so that > 1 means xpt is better: baseline / ours for times
and memory, ours / baseline for rates. Ours and the baseline run interleaved (ours,
baseline, ours, baseline, ...) after one untimed warm-up each, and each figure is the
median of its repeats: on a shared, noisy machine the two see the same conditions.

Stages (the baselines are what the CrossPoint release, or a first script, does):

- ``edgeconv_train`` / ``edgeconv_eval``: DGCNN forward + backward (train mode) and
  forward (eval, no_grad), ``edgeconv="fast"`` against ``"plain"`` (the release's
  formulation), the same weights; ms per batch.
- ``peak_memory``: one DGCNN training step, fast against plain; MiB. On CUDA the peak
  allocated memory; on CPU the tensors autograd saves for backward (the activations, which
  are what the EdgeConv formulation changes), counted once per storage.
- ``pretrain_step``: augment + forward + backward + Adam on one in-memory batch (DGCNN +
  ResNet, the CrossPoint loss): xpt's defaults (fast EdgeConv; on CUDA also bf16 autocast
  and channels_last) against the release's (plain EdgeConv, float32); ms per step.
- ``loader``: objects/s to augmented training batches from the same synthetic objects:
  one epoch of xpt's ``ShardLoader`` as ``xpt pretrain`` runs it on CPU from local shards
  (full reshuffle, augmentation in its DataLoader workers, as many as pretraining's default
  starts here; the sample index built once before, as a run does: its time is
  ``setup_s``), against a release-style loader over the loose files (glob the object's
  views, PIL-decode one, read the PLY, augment each sample on its own, stack) in the main
  process (no workers).
- ``render``: views/s of :class:`~xpt.render.renderer.ObjectRenderer` (one GL context,
  meshes uploaded once) against stock pyrender with a new renderer and scene per view.
- ``linear_eval``: one linear SVM fit + predict (the ``crosspoint`` card, C=0.1) on a
  BLAS Gram matrix against ``SVC(kernel="linear")``; seconds.
- ``feature_extraction``: objects/s of :func:`~xpt.benchmarks.features.extract_features`
  against the plain ``no_grad`` loop (DGCNN).

A stage that cannot run here (no EGL for rendering, a DGCNN without ``edgeconv``) is
reported with ``null`` figures and a ``note`` saying why, never with made-up numbers.
"""

from __future__ import annotations

import argparse
import io
import itertools
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

STAGES = (
    "edgeconv_train",
    "edgeconv_eval",
    "pretrain_step",
    "peak_memory",
    "loader",
    "render",
    "linear_eval",
    "feature_extraction",
)
# Units where less is better (the ratio is baseline / ours); the others are rates.
LOWER_IS_BETTER = {"ms/batch", "ms/step", "MiB", "s"}


@dataclass(frozen=True)
class SpeedConfig:
    """Problem sizes. ``quick`` (under a minute on 2 CPU cores) or the full sizes."""

    quick: bool = False
    repeats: int = 5
    seed: int = 0
    batch: int = 8
    points: int = 1024
    k: int = 20
    emb_dims: int = 1024
    image_size: int = 224
    image_encoder: str = "resnet50"
    loader_objects: int = 256  # enough that worker start-up is not most of an epoch
    view_size: int = 137
    render_objects: int = 4
    render_size: int = 137
    render_baseline_views: int = 8
    linear_train: int = 4000
    linear_dims: int = 1024
    feature_objects: int = 64

    @classmethod
    def quick_config(cls, repeats: int = 3, seed: int = 0) -> SpeedConfig:
        return cls(
            quick=True,
            repeats=repeats,
            seed=seed,
            batch=2,
            points=256,
            k=10,
            emb_dims=128,
            image_size=32,
            image_encoder="resnet18",
            loader_objects=64,
            view_size=64,
            render_objects=1,
            render_size=64,
            render_baseline_views=4,
            linear_train=1200,
            linear_dims=256,
            feature_objects=16,
        )


class Unavailable(RuntimeError):
    """A stage that cannot be measured on this machine or this version of the code."""


def result(ours: float, baseline: float, unit: str, **extra: Any) -> dict[str, Any]:
    """One stage's record; ``ratio`` > 1 means xpt is better whatever the unit."""
    ratio = baseline / ours if unit in LOWER_IS_BETTER else ours / baseline
    return {"ours": ours, "baseline": baseline, "ratio": ratio, "unit": unit, **extra}


def interleaved(
    ours: Callable[[], object], baseline: Callable[[], object], repeats: int
) -> tuple[float, float]:
    """Median seconds of ``ours`` and ``baseline``, run alternately after one warm-up each."""
    ours(), baseline()
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(repeats):
        for fn, sink in ((ours, times[0]), (baseline, times[1])):
            start = time.perf_counter()
            fn()
            sink.append(time.perf_counter() - start)
    return statistics.median(times[0]), statistics.median(times[1])


# ------------------------------------------------------------------------------ models


def _dgcnn_pair(config: SpeedConfig):
    """DGCNN ``edgeconv="fast"`` and ``"plain"`` with the same weights."""
    import inspect

    import torch

    from xpt.train.models import DGCNN

    if "edgeconv" not in inspect.signature(DGCNN).parameters:
        raise Unavailable("this DGCNN has no edgeconv= argument (fast vs plain) yet")
    torch.manual_seed(config.seed)
    fast = DGCNN(k=config.k, emb_dims=config.emb_dims, edgeconv="fast")
    plain = DGCNN(k=config.k, emb_dims=config.emb_dims, edgeconv="plain")
    plain.load_state_dict(fast.state_dict())
    return fast, plain


def _clouds(config: SpeedConfig, count: int):
    import torch

    generator = torch.Generator().manual_seed(config.seed)
    points = torch.randn(count, config.points, 3, generator=generator)
    return points / points.norm(dim=2, keepdim=True).amax(dim=1, keepdim=True)


def _device():
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()


def stage_edgeconv(config: SpeedConfig, train: bool) -> dict[str, Any]:
    import torch

    device = _device()
    fast, plain = (m.to(device) for m in _dgcnn_pair(config))
    points = _clouds(config, config.batch).to(device)

    def step(model):
        def run():
            if train:
                model.train()
                model.zero_grad(set_to_none=True)
                model(points)[1].square().mean().backward()
            else:
                model.eval()
                with torch.no_grad():
                    model.forward_features(points)
            _sync(device)

        return run

    ours, baseline = interleaved(step(fast), step(plain), config.repeats)
    return result(1000 * ours, 1000 * baseline, "ms/batch", device=device.type)


def _saved_bytes(fn: Callable[[], Any]) -> int:
    """Bytes of the distinct storages autograd saves for backward while ``fn`` runs."""
    import torch

    storages: dict[int, int] = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        fn()
    return sum(storages.values())


def stage_peak_memory(config: SpeedConfig) -> dict[str, Any]:
    import torch

    device = _device()
    fast, plain = (m.to(device).train() for m in _dgcnn_pair(config))
    points = _clouds(config, config.batch).to(device)

    def measure(model) -> float:
        model.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
            model(points)[1].square().mean().backward()
            torch.cuda.synchronize()
            return (torch.cuda.max_memory_allocated() - base) / 2**20
        holder: list[Any] = []
        used = _saved_bytes(lambda: holder.append(model(points)[1].square().mean()))
        holder[0].backward()
        return used / 2**20

    what = "peak allocated" if device.type == "cuda" else "saved for backward"
    return result(measure(fast), measure(plain), "MiB", device=device.type, measures=what)


def stage_pretrain_step(config: SpeedConfig) -> dict[str, Any]:
    import torch

    from xpt.train.augment import ImageAugmentConfig, augment_images, augment_points
    from xpt.train.crosspoint import POINT_AUGMENT
    from xpt.train.losses import crosspoint_loss
    from xpt.train.models import build_image_encoder

    device = _device()
    fast, plain = (m.to(device) for m in _dgcnn_pair(config))
    torch.manual_seed(config.seed)
    image = build_image_encoder(config.image_encoder).to(device)
    generator = torch.Generator().manual_seed(config.seed)
    points = _clouds(config, config.batch)
    images = torch.randint(0, 256, (config.batch, config.view_size, config.view_size, 3))
    images = images.to(torch.uint8)
    cuda = device.type == "cuda"
    amp = torch.bfloat16 if cuda and torch.cuda.is_bf16_supported() else None

    def step(model, ours: bool):
        optimizer = torch.optim.Adam([*model.parameters(), *image.parameters()], lr=1e-4)

        def run():
            pair = torch.cat([augment_points(points, generator, POINT_AUGMENT) for _ in "ab"])
            views = augment_images(images, generator, ImageAugmentConfig(size=config.image_size))
            pair, views = pair.to(device), views.to(device)
            if ours and cuda:
                image.to(memory_format=torch.channels_last)
                views = views.contiguous(memory_format=torch.channels_last)
            elif cuda:
                image.to(memory_format=torch.contiguous_format)
            dtype = amp if ours else None
            autocast = torch.autocast(device.type, dtype=dtype) if dtype else nullcontext()
            with autocast:
                z_points = model(pair)[1].float()
                z_image = image(views)[1].float()
            b = config.batch
            loss = crosspoint_loss(
                z_points[:b], z_points[b:], z_image, mode="both", temperature=0.1
            )["loss"]
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            _sync(device)

        return run

    ours, baseline = interleaved(step(fast, True), step(plain, False), config.repeats)
    settings = "fast EdgeConv" + (", bf16 autocast, channels_last" if cuda else "")
    return result(1000 * ours, 1000 * baseline, "ms/step", device=device.type, ours_is=settings)


# ------------------------------------------------------------------------------ data


def write_objects(root: Path, objects: int, view_size: int, seed: int = 0) -> None:
    """The same synthetic objects twice: as 2 shards with a manifest (``root/shards``, as
    ``xpt shard`` writes them) and as loose files (``root/files/<key>/points.ply`` and
    ``rendering/NN.png``, the ShapeNetRendering layout the release reads)."""
    import numpy as np
    import trimesh
    import webdataset as wds
    from PIL import Image

    rng = np.random.default_rng(seed)
    shards, files = root / "shards", root / "files"
    shards.mkdir(parents=True)
    per_shard = (objects + 1) // 2
    entries = []
    yy, xx = np.mgrid[0:view_size, 0:view_size]
    for index in range(2):
        name = f"train-{index:06d}.tar"
        count = min(per_shard, objects - index * per_shard)
        with wds.TarWriter(str(shards / name), mtime=0) as sink:
            for i in range(count):
                key = f"speed_c{index}_m{i:05d}"
                points = rng.normal(size=(2048, 3)).astype(np.float32)
                points /= np.linalg.norm(points, axis=1, keepdims=True) * rng.uniform(1, 2, 3)
                buffer = io.BytesIO()
                np.save(buffer, points)
                sample = {"__key__": key, "points.npy": buffer.getvalue()}
                sample["json"] = json.dumps({"model_id": key, "num_views": 24}).encode()
                folder = files / key / "rendering"
                folder.mkdir(parents=True)
                trimesh.PointCloud(points).export(files / key / "points.ply")
                for v in range(24):  # smooth shaded blobs: they compress like renders
                    shade = np.clip(255 - ((xx - 40 - v) ** 2 + (yy - 50) ** 2) // 8, 0, 255)
                    picture = np.stack([shade, shade * 0.8, shade * 0.5], -1).astype(np.uint8)
                    buffer = io.BytesIO()
                    Image.fromarray(picture).save(buffer, format="PNG")
                    sample[f"view_{v:02d}.png"] = buffer.getvalue()
                    (folder / f"{v:02d}.png").write_bytes(buffer.getvalue())
                sink.write(sample)
        size = (shards / name).stat().st_size
        entries.append({"name": name, "samples": count, "bytes": size, "sha256": ""})
    manifest = {
        "format_version": 1,
        "splits": {"train": {"samples": objects, "shards": entries}},
        "categories": {},
        "settings": {},
    }
    (shards / "manifest.json").write_text(json.dumps(manifest))


def stage_loader(config: SpeedConfig) -> dict[str, Any]:
    import random

    import numpy as np
    import torch
    import trimesh
    from PIL import Image

    from xpt.train.augment import ImageAugmentConfig, augment_images, augment_points
    from xpt.train.config import PretrainConfig
    from xpt.train.crosspoint import POINT_AUGMENT
    from xpt.train.data import LoaderConfig, ShardLoader, loader_workers, resolve_shards

    image_config = ImageAugmentConfig(size=config.image_size)
    # what `xpt pretrain` receives on CPU from local shards: a full reshuffle, augmented
    # in the loader's workers (per-object generators)
    workers = loader_workers(PretrainConfig.workers, None)[0]
    loader_config = LoaderConfig(
        batch_size=config.batch,
        points=config.points,
        image_size=config.image_size,
        seed=config.seed,
        shuffle="full",
        workers=workers,
        augment=True,
    )
    with tempfile.TemporaryDirectory(prefix="xpt-speed-") as tmp:
        root = Path(tmp)
        write_objects(root, config.loader_objects, config.view_size, config.seed)
        generator = torch.Generator().manual_seed(config.seed)
        folders = sorted((root / "files").iterdir())
        rng = random.Random(config.seed)
        start = time.perf_counter()
        loader = ShardLoader(resolve_shards(root / "shards"), loader_config, None, None)
        setup = time.perf_counter() - start
        epochs = itertools.count()

        def ours():
            for _ in loader.epoch(next(epochs)):
                pass

        def baseline():
            order = folders[:]
            rng.shuffle(order)
            for start in range(0, len(order), config.batch):
                samples = []
                for folder in order[start : start + config.batch]:
                    view = rng.choice(sorted((folder / "rendering").glob("*.png")))
                    picture = Image.open(view).convert("RGB")
                    picture = picture.resize((config.image_size,) * 2, Image.BILINEAR)
                    cloud = np.asarray(trimesh.load(folder / "points.ply").vertices, np.float32)
                    cloud = cloud[rng.sample(range(len(cloud)), config.points)]
                    cloud = torch.from_numpy(cloud)[None]
                    picture = torch.from_numpy(np.array(picture))[None]
                    samples.append(
                        (
                            augment_points(cloud, generator, POINT_AUGMENT)[0],
                            augment_points(cloud, generator, POINT_AUGMENT)[0],
                            augment_images(picture, generator, image_config)[0],
                        )
                    )
                [torch.stack(part) for part in zip(*samples, strict=True)]

        ours_s, base_s = interleaved(ours, baseline, config.repeats)
    n = config.loader_objects
    return result(n / ours_s, n / base_s, "objects/s", workers=workers, setup_s=setup)


# ------------------------------------------------------------------------------ render


def naive_render_view(scene: Any, view: Any, render_config: Any) -> None:
    """One view the way a first pyrender script renders it: a new scene, a new offscreen
    renderer, ``Mesh.from_trimesh`` per part, colour and depth read back (the baseline of
    this harness and of ``perf/bench_render.py``)."""
    import pyrender  # after ObjectRenderer, which has chosen the GL platform

    from xpt.render.cameras import intrinsics
    from xpt.toolkit.meshes.geometry import normalization

    K = intrinsics(render_config.size, render_config.focal_ndc)
    to_frame = normalization(scene).matrix()
    pscene = pyrender.Scene(bg_color=[1.0] * 4, ambient_light=[0.3] * 3)
    for node in scene.graph.nodes_geometry:
        transform, name = scene.graph[node]
        pscene.add(pyrender.Mesh.from_trimesh(scene.geometry[name]), pose=to_frame @ transform)
    camera = pyrender.IntrinsicsCamera(K[0, 0], K[1, 1], K[0, 2], K[1, 2])
    camera_node = pscene.add(camera, pose=view.cam_to_world())
    pscene.add(pyrender.DirectionalLight(intensity=3.0), parent_node=camera_node)
    offscreen = pyrender.OffscreenRenderer(render_config.size, render_config.size)
    offscreen.render(pscene)
    offscreen.delete()


def stage_render(config: SpeedConfig) -> dict[str, Any]:
    from xpt.render.cameras import rig_views
    from xpt.render.config import RenderConfig
    from xpt.render.gl import RenderError
    from xpt.render.renderer import ObjectRenderer
    from xpt.toolkit.meshes.load import load_object
    from xpt.toolkit.meshes.sources import open_source

    objects = open_source("procedural", categories=["chair", "table"], per_category=1)
    scenes = [load_object(obj).scene for obj in objects[: config.render_objects]]
    render_config = RenderConfig(size=config.render_size)
    counts = {}

    def ours():  # the render command's path: one context, every view of every object
        with ObjectRenderer(render_config) as renderer:
            counts["ours"] = sum(
                len(renderer.render(scene, f"speed-{i}").color) for i, scene in enumerate(scenes)
            )

    def baseline():  # stock pyrender: a new renderer and scene for every view
        counts["baseline"] = 0
        for index, scene in enumerate(scenes):
            views = rig_views(render_config, f"naive-{index}")[: config.render_baseline_views]
            for view in views:
                naive_render_view(scene, view, render_config)
                counts["baseline"] += 1

    try:
        ours_s, base_s = interleaved(ours, baseline, max(1, config.repeats - 1))
    except RenderError as error:
        raise Unavailable(str(error)) from error
    except Exception as error:  # noqa: BLE001 - a GL failure of either side: say which
        raise Unavailable(f"rendering failed: {type(error).__name__}: {error}") from error
    return result(
        counts["ours"] / ours_s,
        counts["baseline"] / base_s,
        "views/s",
        size=config.render_size,
        ours_includes="GL context creation",
    )


# ------------------------------------------------------------------------------ evaluation


def stage_linear_eval(config: SpeedConfig) -> dict[str, Any]:
    import numpy as np
    from sklearn.svm import SVC

    from xpt.benchmarks.linear import evaluate_linear
    from xpt.benchmarks.protocols import CROSSPOINT

    rng = np.random.default_rng(config.seed)
    classes, n, d = 40, config.linear_train, config.linear_dims
    centres = rng.normal(size=(classes, d)).astype(np.float32)
    train_y, test_y = rng.integers(0, classes, n), rng.integers(0, classes, n // 4)
    train_x = centres[train_y] + 4.0 * rng.normal(size=(n, d)).astype(np.float32)
    test_x = centres[test_y] + 4.0 * rng.normal(size=(n // 4, d)).astype(np.float32)
    answers: dict[str, float] = {}

    def ours():
        answers["ours"] = evaluate_linear(
            train_x, train_y, test_x, test_y, CROSSPOINT.linear, num_classes=classes
        ).accuracy

    def baseline():
        svm = SVC(kernel="linear", C=CROSSPOINT.linear.C).fit(train_x, train_y)
        answers["baseline"] = float(np.mean(svm.predict(test_x) == test_y))

    ours_s, base_s = interleaved(ours, baseline, config.repeats)
    return result(ours_s, base_s, "s", same_accuracy=answers["ours"] == answers["baseline"])


def stage_feature_extraction(config: SpeedConfig) -> dict[str, Any]:
    import numpy as np
    import torch

    from xpt.benchmarks.features import extract_features, random_point_encoder

    model, _ = random_point_encoder("dgcnn", k=config.k, emb_dims=config.emb_dims)
    points = _clouds(config, config.feature_objects).numpy()
    device = torch.device("cpu")

    def ours():
        extract_features(model, points, batch_size=config.batch * 4, device=device)

    def baseline():
        model.eval()
        with torch.no_grad():
            np.concatenate(
                [
                    model.forward_features(torch.from_numpy(points[i : i + config.batch * 4]))
                    for i in range(0, len(points), config.batch * 4)
                ]
            )

    ours_s, base_s = interleaved(ours, baseline, config.repeats)
    n = config.feature_objects
    return result(n / ours_s, n / base_s, "objects/s", device="cpu")


STAGE_FUNCTIONS: dict[str, Callable[[SpeedConfig], dict[str, Any]]] = {
    "edgeconv_train": lambda c: stage_edgeconv(c, train=True),
    "edgeconv_eval": lambda c: stage_edgeconv(c, train=False),
    "pretrain_step": stage_pretrain_step,
    "peak_memory": stage_peak_memory,
    "loader": stage_loader,
    "render": stage_render,
    "linear_eval": stage_linear_eval,
    "feature_extraction": stage_feature_extraction,
}
UNITS = {
    "edgeconv_train": "ms/batch",
    "edgeconv_eval": "ms/batch",
    "pretrain_step": "ms/step",
    "peak_memory": "MiB",
    "loader": "objects/s",
    "render": "views/s",
    "linear_eval": "s",
    "feature_extraction": "objects/s",
}


def run_stages(config: SpeedConfig, stages: tuple[str, ...] = STAGES) -> dict[str, dict]:
    """``{stage: record}`` in ``stages`` order; a stage that cannot run gets null figures
    and a ``note``."""
    unknown = [s for s in stages if s not in STAGE_FUNCTIONS]
    if unknown:
        raise ValueError(f"unknown stage(s) {', '.join(unknown)}; valid: {', '.join(STAGES)}")
    os.environ.setdefault("XPT_NO_PROGRESS", "1")
    records = {}
    for stage in stages:
        started = time.perf_counter()
        try:
            record = STAGE_FUNCTIONS[stage](config)
        except Unavailable as error:
            record = {"ours": None, "baseline": None, "ratio": None, "unit": UNITS[stage]}
            record["note"] = f"unavailable: {error}"
        record["seconds"] = time.perf_counter() - started
        records[stage] = record
    return records


def machine() -> str:
    import torch

    where = torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU"
    return (
        f"{platform.machine()} {os.cpu_count()} cores, {where}, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), python {platform.python_version()}"
    )


def format_table(records: dict[str, dict]) -> list[str]:
    lines = [f"{'stage':<20}{'ours':>12}{'baseline':>12}{'ratio':>8}  unit"]
    for stage, r in records.items():
        if r["ratio"] is None:
            lines.append(f"{stage:<20}{'-':>12}{'-':>12}{'-':>8}  {r['unit']}  ({r['note']})")
        else:
            figures = f"{r['ours']:>12.4g}{r['baseline']:>12.4g}{r['ratio']:>7.2f}x"
            lines.append(f"{stage:<20}{figures}  {r['unit']}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m xpt.benchmarks.speed", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="small sizes: under a minute")
    parser.add_argument("--stages", nargs="+", default=list(STAGES), choices=STAGES)
    parser.add_argument("--repeats", type=int, default=None, help="timed repeats per side")
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None, help="write the records here")
    args = parser.parse_args(argv)
    os.environ.setdefault("XPT_NO_PROGRESS", "1")
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.quick:
        config = SpeedConfig.quick_config(repeats=args.repeats or 3, seed=args.seed)
    else:
        config = SpeedConfig(repeats=args.repeats or 5, seed=args.seed)
    command = "python -m xpt.benchmarks.speed " + " ".join(
        argv if argv is not None else sys.argv[1:]
    )
    print(f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; {machine()}")
    print(f"command: {command.strip()}; ratio > 1: xpt better")
    records = run_stages(config, tuple(args.stages))
    for line in format_table(records):
        print(line)
    if args.json is not None:
        args.json.write_text(json.dumps(records, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
