"""Speed of ``xpt shard`` (sampling + encoding + writing) with 1 and 2 workers.

Set-up (not timed): ``per_category`` procedural objects of every pretraining
category are rendered once with the default rig (3D-R2N2: 24 views of 137x137) into
a temporary ``xpt render`` folder. Then, over the same objects, it times:

1. ``xpt shard --renders`` with 1 worker and with 2 workers: load (generate) the
   mesh, read its views and cameras.json, sample 2048 points in the views' frame,
   encode PNG views + npy + JSON, write tar shards with sha256 and the manifest;
2. baseline: the same per-object work written as loose files, one folder per object
   (points.npy + PNG views + JSON: the layout the CrossPoint release reads), single
   process; ``shard / baseline`` time is the cost of packing into shards.

The renderer's RGB PNGs are stored as they are (checksums verified, not decoded and
re-encoded). Also printed: the time of each stage alone (1 worker), including what
PNG-encoding views would cost (the on-the-fly path and JPEG/WebP conversion pay it).

Run: ``.venv/bin/python perf/bench_shard.py [--per-category 4] [--repeat 2]``
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

from _timing import best_of

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("XPT_NO_PROGRESS", "1")
os.environ.setdefault("PYOPENGL_PLATFORM", "egl")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-category", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--points", type=int, default=2048)
    args = parser.parse_args()

    import json

    from xpt.render.config import RenderConfig
    from xpt.render.pool import render_objects
    from xpt.toolkit.meshes.geometry import as_mesh
    from xpt.toolkit.meshes.load import load_object
    from xpt.toolkit.meshes.sampling import sample_surface
    from xpt.toolkit.procedural import objects
    from xpt.toolkit.shards.build import (
        MeshSampleMaker,
        ShardConfig,
        Task,
        build_shards,
        run_tasks,
    )
    from xpt.toolkit.shards.schema import EncodedImage, decode_image, encode_image, encode_npy
    from xpt.toolkit.shards.views import RenderDirViews

    items = objects(args.per_category, seed=0)
    n = len(items)
    work = Path(tempfile.mkdtemp(prefix="bench-shard-"))
    try:
        renders = work / "renders"
        start = time.perf_counter()
        summary = render_objects(items, renders, RenderConfig(), workers=2, progress=False)
        render_seconds = time.perf_counter() - start
        if summary.failed:
            raise SystemExit(f"{summary.failed} objects failed to render")
        views = RenderDirViews(renders)
        maker = MeshSampleMaker(views, num_points=args.points)

        def run_shard(workers: int) -> None:
            out = work / f"shards-{workers}"
            shutil.rmtree(out, ignore_errors=True)
            config = ShardConfig(out=out, renders=renders, num_points=args.points, workers=workers)
            build_shards(items, config, maker)

        def run_loose() -> None:
            out = work / "loose"
            shutil.rmtree(out, ignore_errors=True)
            for obj in items:
                sample = maker(obj)
                folder = out / obj.category_id / obj.model_id
                (folder / "rendering").mkdir(parents=True)
                (folder / "points.npy").write_bytes(encode_npy(sample.points))
                (folder / "normals.npy").write_bytes(encode_npy(sample.normals.astype("float16")))
                for i, image in enumerate(sample.views):
                    data = image.data if isinstance(image, EncodedImage) else encode_image(image)
                    (folder / "rendering" / f"{i:02d}.png").write_bytes(data)
                (folder / "meta.json").write_text(json.dumps(sample.meta))

        scenes = [load_object(obj).scene for obj in items]
        loaded = [views(obj, scene) for obj, scene in zip(items, scenes, strict=True)]

        def stage_load() -> None:
            for obj in items:
                load_object(obj)

        def stage_views() -> None:
            for obj, scene in zip(items, scenes, strict=True):
                views(obj, scene)

        def stage_points() -> None:
            for scene, got in zip(scenes, loaded, strict=True):
                mesh = as_mesh(scene)
                mesh.vertices = got.normalization.apply(mesh.vertices)
                sample_surface(mesh, args.points, seed=0)

        pixels = [[decode_image(v.data) for v in got.images[:4]] for got in loaded]

        def stage_encode() -> None:  # what views cost when they must be (re-)encoded
            for images in pixels:
                for image in images:
                    encode_image(image)

        encoding = {"image_format": "png", "quality": 90, "points_dtype": "float32"}
        tasks = [Task("train", i, obj) for i, obj in enumerate(items)]

        def steady_state(workers: int) -> tuple[float, float]:
            """(seconds to the first sample: pool start-up, seconds for the rest)."""
            start = time.perf_counter()
            results = run_tasks(tasks, maker, encoding, workers)
            next(results)
            first = time.perf_counter() - start
            for _ in results:
                pass
            return first, time.perf_counter() - start - first

        def main_cpu() -> float:
            """CPU seconds of this process in a 2-worker run: the part that stays serial."""
            start = time.process_time()
            run_shard(2)
            return time.process_time() - start

        t1 = best_of(lambda: run_shard(1), args.repeat)
        cpu_main = main_cpu()
        t2 = best_of(lambda: run_shard(2), args.repeat)
        first2, rest2 = min(steady_state(2) for _ in range(args.repeat))
        t_base = best_of(run_loose, args.repeat)
        stages = {
            "load (generate mesh)": best_of(stage_load, args.repeat),
            "read views + cameras.json": best_of(stage_views, args.repeat),
            f"sample {args.points} points": best_of(stage_points, args.repeat),
            "PNG-encode 4 views": best_of(stage_encode, args.repeat),
        }
        size = sum(p.stat().st_size for p in (work / "shards-1").glob("*.tar"))
        views_per_object = len(loaded[0].images)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"objects: {n} ({args.per_category} per category), {views_per_object} views of 137 px")
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"cpus: {os.cpu_count()}, load average {load}; rendering set-up {render_seconds:.1f} s")
    print(f"shard bytes: {size / 2**20:.1f} MiB ({size / n / 1024:.0f} KiB per object)")
    print(f"xpt shard, 1 worker     {n / t1:8.2f} objects/s")
    print(f"xpt shard, 2 workers    {n / t2:8.2f} objects/s  (speed-up {t1 / t2:.2f}x)")
    print(
        f"  2 workers after start-up {(n - 1) / rest2:6.2f} objects/s "
        f"(worker start-up, spawn + imports: {first2:.2f} s)"
    )
    serial = cpu_main / n
    print(
        f"  serial part (main process: receive, tar, sha256) {1000 * serial:.1f} ms/object "
        f"of {1000 * t1 / n:.1f}; ceiling with free cores {1 / serial:.0f} objects/s"
    )
    print(f"baseline loose files    {n / t_base:8.2f} objects/s")
    print(f"shard (1 worker) / baseline time ratio: {t1 / t_base:.2f}")
    for name, seconds in stages.items():
        print(f"  stage {name:26s} {1000 * seconds / n:7.1f} ms/object")


if __name__ == "__main__":
    main()
