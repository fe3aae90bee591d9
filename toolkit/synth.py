"""Write the procedural shape library to disk as a ShapeNet-v2-like tree (``xpt synth``).

Layout (read back by the ShapeNet v2 reader in :mod:`xpt.toolkit.meshes.sources`)::

    OUT/<category_id>/<model_id>/models/model_normalized.obj   # one o/usemtl group per part
    OUT/<category_id>/<model_id>/models/model_normalized.mtl   # Kd colour per part
    OUT/taxonomy.json      # ShapeNet format: [{"synsetId", "name", "children", "numInstances"}]
    OUT/synth.json         # the settings (seed, eval, per_category, version)
    OUT/failures.jsonl     # only when an object failed

Each model folder is written atomically and skipped when it already exists, so an
interrupted run resumes where it stopped. Category ids (``proc-chair``) cannot
collide with ShapeNet synsets (8-digit numbers).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import trimesh

from xpt import __version__
from xpt.toolkit.failures import FAILURES_FILE, Failure, FailureLog
from xpt.toolkit.fsio import TMP_PREFIX, atomic_directory, atomic_write_json, make_folder
from xpt.toolkit.meshes.objects import MeshObject

OBJ_NAME = "model_normalized.obj"
MTL_NAME = "model_normalized.mtl"
TAXONOMY = "taxonomy.json"
SETTINGS = "synth.json"
STAGE = "synth"


class SynthError(ValueError):
    """A user error that stops ``xpt synth`` before any work (e.g. a seed clash)."""


@dataclass(frozen=True)
class SynthConfig:
    """Settings of one ``xpt synth`` run."""

    out: Path
    per_category: int = 8
    categories: tuple[str, ...] | None = None
    seed: int = 0
    eval: bool = False


@dataclass
class SynthResult:
    """Counts per category and totals of one run."""

    config: SynthConfig
    rows: list[dict] = field(default_factory=list)
    written: int = 0
    skipped: int = 0
    failed: int = 0
    triangles: int = 0
    seconds: float = 0.0
    failures: list[Failure] = field(default_factory=list)

    @property
    def objects_per_s(self) -> float:
        """Objects generated and written per second (skipped ones not counted)."""
        return self.written / self.seconds if self.seconds > 0 else 0.0

    def totals(self) -> dict:
        return {
            "objects": self.written + self.skipped,
            "written": self.written,
            "skipped": self.skipped,
            "failed": self.failed,
            "triangles": self.triangles,
            "seconds": round(self.seconds, 3),
            "objects_per_s": round(self.objects_per_s, 1),
        }

    def to_json(self) -> dict:
        return {
            "out": str(self.config.out),
            "seed": self.config.seed,
            "per_category": self.config.per_category,
            "eval": self.config.eval,
            "categories": self.rows,
            "written": self.written,
            "skipped": self.skipped,
            "failed": self.failed,
            "triangles": self.triangles,
            "seconds": self.seconds,
            "objects_per_s": self.objects_per_s,
            "failures": [asdict(f) for f in self.failures],
            "xpt_version": __version__,
        }


def _material_lines(name: str, material: object) -> str:
    """One ``newmtl`` block; a part without a colour material gets mid grey."""
    if hasattr(material, "to_simple"):
        material = material.to_simple()
    diffuse = getattr(material, "diffuse", None)
    rgb = np.asarray(diffuse if diffuse is not None else (128, 128, 128), dtype=np.float64)[:3]
    kd = rgb / 255.0
    glossiness = getattr(material, "glossiness", None)
    ns = float(glossiness) if isinstance(glossiness, (int, float)) else 10.0
    return (
        f"newmtl {name}\n"
        f"Ka {kd[0]:.6f} {kd[1]:.6f} {kd[2]:.6f}\n"
        f"Kd {kd[0]:.6f} {kd[1]:.6f} {kd[2]:.6f}\n"
        f"Ks 0.160000 0.160000 0.160000\n"
        f"Ns {ns:.6f}\nd 1.000000\nillum 2\n"
    )


def export_obj(scene: trimesh.Scene, header: str = "") -> tuple[bytes, bytes]:
    """OBJ and MTL bytes of ``scene``: one ``o``/``usemtl`` group per node, node transforms applied.

    Every node gets its own material (named after the node), so loading the OBJ
    back gives one geometry per part even when two parts share a colour. Vertices
    are written with 6 decimals; the output depends only on the scene's arrays.
    """
    comment = "".join(f"# {line}\n" for line in header.splitlines())
    obj, mtl = [comment, f"mtllib {MTL_NAME}\n"], [comment]
    offset = 0
    for node in scene.graph.nodes_geometry:
        matrix, geom_name = scene.graph[node]
        mesh = scene.geometry[geom_name]
        if not isinstance(mesh, trimesh.Trimesh) or len(mesh.faces) == 0:
            continue
        vertices = np.asarray(mesh.vertices, dtype=np.float64)
        if not np.allclose(matrix, np.eye(4)):
            vertices = trimesh.transform_points(vertices, matrix)
        faces = np.asarray(mesh.faces, dtype=np.int64) + (offset + 1)
        name = str(node).replace(" ", "_")
        obj.append(f"o {name}\nusemtl {name}\n")
        obj.append(("v %.6f %.6f %.6f\n" * len(vertices)) % tuple(vertices.ravel().tolist()))
        obj.append(("f %d %d %d\n" * len(faces)) % tuple(faces.ravel().tolist()))
        mtl.append(_material_lines(name, getattr(mesh.visual, "material", None)))
        offset += len(vertices)
    return "".join(obj).encode("utf-8"), "\n".join(mtl).encode("utf-8")


def model_dir(out: Path, obj: MeshObject) -> Path:
    """``OUT/<category_id>/<model_id>``."""
    return Path(out) / obj.category_id / obj.model_id


def check_scene(scene: trimesh.Scene) -> int:
    """Total triangles of ``scene``; ``ValueError`` if it has none or a non-finite vertex."""
    total = 0
    for name, mesh in scene.geometry.items():
        if not np.isfinite(mesh.vertices).all():
            raise ValueError(f"part {name}: non-finite vertex coordinates")
        total += len(mesh.faces)
    if total == 0:
        raise ValueError("no triangles")
    return total


def write_model(obj: MeshObject, out: Path) -> int:
    """Generate ``obj`` and write its model folder atomically; returns its triangle count."""
    from xpt.toolkit.procedural import EVAL_SOURCE, generate

    wide = obj.source == EVAL_SOURCE
    scene = generate(obj.category_name, obj.seed, wide=wide)
    triangles = check_scene(scene)
    header = (
        f"xpt {__version__} procedural shape library\n"
        f"category {obj.category_name} ({obj.category_id}) model {obj.model_id} "
        f"seed {obj.seed}{' wide' if wide else ''}"
    )
    obj_bytes, mtl_bytes = export_obj(scene, header)
    with atomic_directory(model_dir(out, obj)) as tmp:
        (tmp / "models").mkdir()
        (tmp / "models" / OBJ_NAME).write_bytes(obj_bytes)
        (tmp / "models" / MTL_NAME).write_bytes(mtl_bytes)
    return triangles


def existing_triangles(folder: Path) -> int:
    """Triangles of an already written model (its ``f`` lines)."""
    data = (folder / "models" / OBJ_NAME).read_bytes()
    return data.count(b"\nf ") + int(data.startswith(b"f "))


def write_taxonomy(out: Path) -> list[dict]:
    """Write ``OUT/taxonomy.json`` from the model folders present; returns its entries."""
    from xpt.toolkit.procedural import ALL_CATEGORIES, category_id

    entries = []
    for name in ALL_CATEGORIES:
        folder = Path(out) / category_id(name)
        if not folder.is_dir():
            continue
        count = sum(
            1
            for model in folder.iterdir()
            if not model.name.startswith((".", TMP_PREFIX))
            and (model / "models" / OBJ_NAME).is_file()
        )
        entries.append(
            {"synsetId": category_id(name), "name": name, "children": [], "numInstances": count}
        )
    atomic_write_json(Path(out) / TAXONOMY, entries)
    return entries


def print_summary(result: SynthResult) -> None:
    """The per-category table and the totals, on stdout."""
    from xpt.toolkit.console import print_table

    print_table("xpt synth", result.rows)
    print_table("total", result.totals())


def _check_settings(config: SynthConfig) -> None:
    """Refuse to mix seeds (or pretraining and evaluation sets) in one folder."""
    path = config.out / SETTINGS
    if not path.exists():
        return
    try:
        previous = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SynthError(f"{path}: unreadable settings of an earlier run: {exc}") from exc
    for key in ("seed", "eval"):
        if previous.get(key) != getattr(config, key):
            raise SynthError(
                f"{config.out} holds a library written with {key}={previous.get(key)!r}; "
                f"resuming with {key}={getattr(config, key)!r} would mix two libraries "
                "(use a new folder or the same setting)"
            )


def synthesize(config: SynthConfig) -> SynthResult:
    """Write ``config.per_category`` objects of each category under ``config.out``.

    Raises ``ValueError`` for an unknown category and :class:`SynthError` when
    ``config.out`` holds a library with another seed; per-object problems are
    recorded in ``failures.jsonl`` and the run goes on.
    """
    from xpt.toolkit.console import RunProgress
    from xpt.toolkit.procedural import objects

    items = objects(config.per_category, config.seed, config.categories, eval=config.eval)
    out = Path(config.out)
    config = replace(config, out=out)
    make_folder(out)
    _check_settings(config)
    (out / FAILURES_FILE).unlink(missing_ok=True)
    log = FailureLog(out / FAILURES_FILE)
    result = SynthResult(config)
    per_category: dict[str, dict] = {}
    start = time.perf_counter()
    with RunProgress("synth", total=len(items), unit="obj") as bar:
        for obj in items:
            row = per_category.setdefault(
                obj.category_name,
                {
                    "category": obj.category_name,
                    "objects": 0,
                    "written": 0,
                    "skipped": 0,
                    "failed": 0,
                    "triangles": 0,
                },
            )
            folder = model_dir(out, obj)
            try:
                if folder.is_dir():
                    triangles = existing_triangles(folder)
                    row["skipped"] += 1
                else:
                    triangles = write_model(obj, out)
                    row["written"] += 1
            except Exception as exc:  # one bad object never stops the run
                failure = Failure(obj.key, str(folder), STAGE, f"{type(exc).__name__}: {exc}")
                log.record(failure)
                result.failures.append(failure)
                row["failed"] += 1
                bar.fail(failure.line())
                bar.advance(ok=False)
                continue
            row["objects"] += 1
            row["triangles"] += triangles
            bar.advance()
    result.seconds = time.perf_counter() - start
    for row in per_category.values():
        row["mean_triangles"] = round(row["triangles"] / row["objects"]) if row["objects"] else 0
        result.rows.append(row)
        result.written += row["written"]
        result.skipped += row["skipped"]
        result.failed += row["failed"]
        result.triangles += row["triangles"]
    write_taxonomy(out)
    atomic_write_json(
        out / SETTINGS,
        {
            "source": "procedural-eval" if config.eval else "procedural",
            "seed": config.seed,
            "eval": config.eval,
            "per_category": config.per_category,
            "xpt_version": __version__,
        },
    )
    return result
