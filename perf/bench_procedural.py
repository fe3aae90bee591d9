"""Speed of the procedural shape library on one core (target: >= 50 objects/s).

Times, over the same objects (``per_category`` of every pretraining category):

1. ``generate``: parameters -> parts -> ``trimesh.Scene`` (what every in-memory
   consumer pays per object);
2. ``generate + export``: plus the OBJ/MTL bytes that ``xpt synth`` writes;
3. ``xpt synth``: the whole library written to a temporary folder (atomic folders);
4. baseline: a scene of the same number of parts and about the same triangle count
   built from ``trimesh.creation.cylinder`` (trimesh's own primitive path), to show
   how far from "free" the generator is.

Run: ``.venv/bin/python perf/bench_procedural.py [--per-category 20]``
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from _timing import best_of

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("XPT_NO_PROGRESS", "1")


def _pin_one_core() -> str:
    if hasattr(os, "sched_setaffinity"):
        core = min(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {core})
        return f"core {core}"
    return "unpinned"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-category", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    pinned = _pin_one_core()

    import numpy as np
    import trimesh

    from xpt.toolkit.procedural import generate, objects
    from xpt.toolkit.synth import SynthConfig, export_obj, synthesize

    items = objects(args.per_category, seed=0)
    n = len(items)
    scenes = [generate(o.category_name, o.seed) for o in items]
    parts = np.array([len(s.geometry) for s in scenes])
    tris = np.array([sum(len(g.faces) for g in s.geometry.values()) for s in scenes])

    def run_generate() -> None:
        for o in items:
            generate(o.category_name, o.seed)

    def run_export() -> None:
        for o in items:
            export_obj(generate(o.category_name, o.seed))

    def run_synth() -> None:
        with tempfile.TemporaryDirectory() as tmp:
            synthesize(SynthConfig(Path(tmp) / "lib", per_category=args.per_category))

    def run_baseline() -> None:
        material = trimesh.visual.material.SimpleMaterial(diffuse=(200, 100, 50, 255))
        for count, total in zip(parts, tris, strict=True):
            scene = trimesh.Scene()
            sections = max(3, int(total / (4 * count)))
            for k in range(count):
                mesh = trimesh.creation.cylinder(radius=0.1, height=0.5, sections=sections)
                mesh.visual = trimesh.visual.TextureVisuals(material=material)
                scene.add_geometry(mesh, node_name=f"part{k}")

    t_gen = best_of(run_generate, args.repeat)
    t_exp = best_of(run_export, args.repeat)
    t_syn = best_of(run_synth, args.repeat)
    t_base = best_of(run_baseline, args.repeat)
    print(f"objects: {n} ({args.per_category} per category), one CPU ({pinned})")
    print(f"mean parts {parts.mean():.1f}, mean triangles {tris.mean():.0f} (max {tris.max()})")
    print(f"generate           {n / t_gen:8.1f} objects/s")
    print(f"generate + export  {n / t_exp:8.1f} objects/s")
    print(f"xpt synth (disk)   {n / t_syn:8.1f} objects/s")
    print(f"baseline cylinders {n / t_base:8.1f} objects/s (same parts and triangles)")
    print(f"generate / baseline time ratio: {t_gen / t_base:.2f}")


if __name__ == "__main__":
    main()
