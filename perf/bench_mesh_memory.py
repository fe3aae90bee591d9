"""Peak memory of one ``xpt render`` worker against a mesh's faces, with and without a budget.

    .venv/bin/python perf/bench_mesh_memory.py [--faces 100000 400000 1600000]
        [--budgets 0 400000] [--views 4] [--json report.json]

Each mesh is a UV sphere written as a binary STL (one record per triangle, as CAD tools and
scanners write it). For every (faces, ``--max-faces``) pair it runs

- ``xpt render SPHERE --workers 1 --views V --max-faces B`` under ``/usr/bin/time -f %M``:
  the largest resident set among the command's processes, which is the render worker;
- the same load and simplification without rendering (:func:`load_within_budget`) in a
  fresh process: what reading the file costs before anything is drawn.

Peak RSS includes the interpreter and its imports (about 0.2-0.3 GB), so the per-face cost is
the slope between rows, not a row divided by its faces.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import trimesh

LOAD_ONLY = """
import resource, sys
from pathlib import Path
from xpt.toolkit.meshes.budget import load_within_budget
from xpt.toolkit.meshes.objects import MeshObject
obj = MeshObject("folder", "x", "x", "sphere", path=Path(sys.argv[1]))
loaded, record = load_within_budget(obj, max_faces=int(sys.argv[2]), up_axis="+Y")
print(record["after"], resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def sphere_stl(path: Path, faces: int) -> int:
    """Write a UV sphere of at least ``faces`` triangles as a binary STL; its face count."""
    count = 4
    while 4 * count * (count - 2) < faces:  # trimesh's UV sphere of an even count
        count += 2
    mesh = trimesh.creation.uv_sphere(count=[count, count])
    mesh.export(path, file_type="stl")
    return len(mesh.faces)


def render_peak(mesh: Path, out: Path, budget: int, views: int) -> tuple[float, float]:
    """(peak RSS in GB, seconds) of ``xpt render`` on one mesh with one worker."""
    xpt = Path(sys.executable).with_name("xpt")
    command = ["/usr/bin/time", "-f", "%M", str(xpt), "render", str(mesh), "--out", str(out)]
    command += ["--workers", "1", "--views", str(views), "--max-faces", str(budget)]
    command += ["--time-limit", "3600", "--up-axis", "+Y", "--json", str(out) + ".json"]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"xpt render failed: {done.stderr.strip()[-2000:]}")
    seconds = time.perf_counter() - start
    if json.loads(Path(str(out) + ".json").read_text())["done"] != 1:
        raise SystemExit(f"xpt render did not render {mesh}: see {out}/failures.jsonl")
    return int(done.stderr.strip().splitlines()[-1]) / 1e6, seconds


def load_peak(mesh: Path, budget: int) -> tuple[int, float]:
    """(faces after, peak RSS in GB) of loading and simplifying ``mesh`` without rendering."""
    command = [sys.executable, "-c", LOAD_ONLY, str(mesh), str(budget)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"load failed: {done.stderr.strip().splitlines()[-1]}")
    after, kilobytes = done.stdout.split()
    return int(after), int(kilobytes) / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faces", type=int, nargs="+", default=[100_000, 400_000, 1_600_000])
    parser.add_argument("--budgets", type=int, nargs="+", default=[0, 400_000])
    parser.add_argument("--views", type=int, default=4)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    os.environ.setdefault("PYOPENGL_PLATFORM", "egl")
    os.environ.setdefault("XPT_NO_PROGRESS", "1")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for faces in args.faces:
            mesh = Path(tmp) / f"sphere{faces}.stl"
            actual = sphere_stl(mesh, faces)
            for budget in args.budgets:
                after, load_gb = load_peak(mesh, budget)
                out = Path(tmp) / f"out{faces}_{budget}"
                render_gb, seconds = render_peak(mesh, out, budget, args.views)
                row = {"faces": actual, "max_faces": budget, "drawn": after}
                row |= {"load_gb": round(load_gb, 3), "render_gb": round(render_gb, 3)}
                row["render_s"] = round(seconds, 1)
                rows.append(row)
                print(json.dumps(row), flush=True)
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
