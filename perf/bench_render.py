"""Rendering throughput: xpt's renderer against a naive pyrender loop, in one run.

    PYOPENGL_PLATFORM=egl .venv/bin/python perf/bench_render.py [--sizes 137 224]
        [--workers 1 2] [--per-category 2] [--heavy-objects 4] [--sets procedural heavy]
        [--json report.json]

Measured on the procedural set (``per_category`` objects per category, 24 R2N2 views each)
and on heavy meshes (a procedural object subdivided to >= 100k triangles, as PLY files):

- ``naive``: a new OffscreenRenderer and a new scene for every view (stock pyrender:
  ``Mesh.from_trimesh`` per part, colour and depth read back), the way a first script
  usually does it; timed on a sample of views.
- ``in-process``: one :class:`ObjectRenderer` (one context; each mesh uploaded once, all
  views from that scene, RGBA-only read-back); rendering only, no PNG, no disk.
- ``xpt render, N workers``: the whole command path (:func:`render_objects`: worker start-up,
  mesh loading, rendering, PNG encoding, atomic writes), wall clock.

The machine is shared and noisy: compare the ratios to the naive baseline measured in the
same run rather than absolute numbers across runs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("PYOPENGL_PLATFORM", "egl")
os.environ.setdefault("XPT_NO_PROGRESS", "1")

import numpy as np  # noqa: E402
import trimesh  # noqa: E402

from xpt.render.config import RenderConfig  # noqa: E402
from xpt.render.pool import render_objects  # noqa: E402
from xpt.toolkit.meshes.geometry import as_mesh  # noqa: E402
from xpt.toolkit.meshes.load import load_object  # noqa: E402
from xpt.toolkit.meshes.sources import open_source  # noqa: E402

HEAVY_FACES = 100_000


def naive_views_per_second(scenes: list[trimesh.Scene], config: RenderConfig, views: int) -> float:
    """Stock pyrender, a new renderer and scene per view (colour + depth read back)."""
    from xpt.benchmarks.speed import naive_render_view
    from xpt.render.cameras import rig_views

    count, start = 0, time.perf_counter()
    while count < views:
        for index, scene in enumerate(scenes):
            if count >= views:
                break
            naive_render_view(
                scene, rig_views(config, f"naive-{index}")[count % config.num_views], config
            )
            count += 1
    return count / (time.perf_counter() - start)


def in_process_views_per_second(scenes: list[trimesh.Scene], config: RenderConfig) -> float:
    """One ObjectRenderer: every view of every scene, rendering only."""
    from xpt.render.renderer import ObjectRenderer

    with ObjectRenderer(config) as renderer:
        renderer.render(scenes[0], "warm-up")
        views, start = 0, time.perf_counter()
        for index, scene in enumerate(scenes):
            views += len(renderer.render(scene, f"bench-{index}").color)
        return views / (time.perf_counter() - start)


def pipeline_views_per_second(objects: list, config: RenderConfig, workers: int) -> dict:
    """The ``xpt render`` path into a fresh temporary folder; wall clock incl. start-up.

    Also the CPU time of the worker processes per view (user + sys, every thread): on a
    shared machine this says what the work costs whatever else is running.
    """
    out = Path(tempfile.mkdtemp(prefix="xpt-bench-render-"))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    try:
        summary = render_objects(objects, out, config, workers=workers, progress=False)
    finally:
        shutil.rmtree(out, ignore_errors=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if summary.failed:
        raise RuntimeError(f"{summary.failed} objects failed: {summary.failures[:3]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {
        "views_per_second": summary.views_per_second,
        "cpu_ms_per_view": 1000.0 * cpu / summary.views,
        "gl_renderer": summary.gl_renderer,
    }


def heavy_objects(folder: Path, count: int) -> list:
    """``count`` PLY meshes of just over HEAVY_FACES triangles: procedural objects whose
    largest faces are subdivided (each split adds 3 faces) until the count is reached."""
    category = folder / "heavy"
    category.mkdir(parents=True, exist_ok=True)
    names = ("chair", "car", "lamp", "sofa", "table", "bed")
    sources = open_source("procedural", categories=list(names), per_category=1)
    for index, obj in enumerate(sources[:count]):
        mesh = as_mesh(load_object(obj).scene)
        while len(mesh.faces) < HEAVY_FACES:
            split = min(len(mesh.faces), -(-(HEAVY_FACES - len(mesh.faces)) // 3))
            mesh = mesh.subdivide(face_index=np.argsort(mesh.area_faces)[-split:])
        mesh.export(category / f"heavy-{index}.ply")
    return open_source(folder)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[137, 224])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--per-category", type=int, default=2)
    parser.add_argument("--heavy-objects", type=int, default=4)
    parser.add_argument("--sets", nargs="+", choices=["procedural", "heavy"], default=None)
    parser.add_argument("--naive-views", type=int, default=48)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)

    rows = []
    started = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="xpt-bench-heavy-") as tmp:
        chosen = args.sets or ["procedural", "heavy"]
        sets = {}
        if "procedural" in chosen:
            sets["procedural"] = open_source("procedural", per_category=args.per_category)
        if "heavy" in chosen:
            sets["heavy (>= 100k triangles)"] = heavy_objects(Path(tmp), args.heavy_objects)
        for name, objects in sets.items():
            scenes = [load_object(o).scene for o in objects]
            faces = int(np.mean([len(as_mesh(s).faces) for s in scenes]))
            for size in args.sizes:
                config = RenderConfig(size=size)
                naive_views = args.naive_views if name == "procedural" else 8
                naive = naive_views_per_second(scenes, config, naive_views)
                row = {"set": name, "objects": len(objects), "mean_triangles": faces}
                row |= {"size": size, "naive": naive}
                row["in_process"] = in_process_views_per_second(scenes, config)
                for workers in args.workers:
                    result = pipeline_views_per_second(objects, config, workers)
                    row[f"workers_{workers}"] = result["views_per_second"]
                    row[f"workers_{workers}_cpu_ms_per_view"] = result["cpu_ms_per_view"]
                    row["gl_renderer"] = result["gl_renderer"]
                row["load_average"] = os.getloadavg()[0]
                rows.append(row)
                print(_format(row), flush=True)
    report = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "load_average_start_end": [started, os.getloadavg()[0]],
        "rows": rows,
    }
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


def _format(row: dict) -> str:
    speeds = {
        k: v
        for k, v in row.items()
        if k == "in_process" or (k.startswith("workers_") and not k.endswith("per_view"))
    }
    ratios = ", ".join(f"{k} {v:.1f} views/s ({v / row['naive']:.1f}x)" for k, v in speeds.items())
    cpu = ", ".join(
        f"{k.split('_cpu')[0]} {v:.1f} ms" for k, v in row.items() if k.endswith("cpu_ms_per_view")
    )
    return (
        f"{row['set']} @ {row['size']} px: naive {row['naive']:.1f} views/s; {ratios}; "
        f"worker CPU per view: {cpu}; load average {row['load_average']:.1f}"
    )


if __name__ == "__main__":
    main()
