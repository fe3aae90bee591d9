"""``xpt synth``: the ShapeNet-v2-like tree, taxonomy, colours, resume, --json, errors."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import trimesh
from typer.testing import CliRunner

from xpt.toolkit import procedural
from xpt.toolkit.cli import app
from xpt.toolkit.failures import read_failures
from xpt.toolkit.procedural import generate, objects
from xpt.toolkit.synth import SynthConfig, SynthError, export_obj, synthesize

runner = CliRunner()


def _synth(out, *args):
    return runner.invoke(
        app, ["synth", str(out), "--per-category", "2", "--categories", "chair,mug", *args]
    )


def _model(out, category, index):
    return out / f"proc-{category}" / f"{category}-{index:06d}" / "models"


@pytest.fixture
def library(tmp_path):
    out = tmp_path / "lib"
    result = _synth(out, "--json", str(tmp_path / "report.json"))
    assert result.exit_code == 0, result.output
    return out, json.loads((tmp_path / "report.json").read_text())


def test_tree_taxonomy_and_report(library):
    out, report = library
    assert sorted(p.name for p in out.iterdir()) == [
        "proc-chair",
        "proc-mug",
        "synth.json",
        "taxonomy.json",
    ]
    for category in ("chair", "mug"):
        models = sorted(p.name for p in (out / f"proc-{category}").iterdir())
        assert models == [f"{category}-000000", f"{category}-000001"]
        for index in range(2):
            files = sorted(p.name for p in _model(out, category, index).iterdir())
            assert files == ["model_normalized.mtl", "model_normalized.obj"]
    assert json.loads((out / "taxonomy.json").read_text()) == [
        {"synsetId": "proc-chair", "name": "chair", "children": [], "numInstances": 2},
        {"synsetId": "proc-mug", "name": "mug", "children": [], "numInstances": 2},
    ]
    settings = json.loads((out / "synth.json").read_text())
    assert settings["seed"] == 0 and settings["eval"] is False
    expected = {"chair": 0, "mug": 0}
    for obj in objects(2, 0, ["chair", "mug"]):
        scene = generate(obj.category_name, obj.seed)
        expected[obj.category_name] += sum(len(g.faces) for g in scene.geometry.values())
    assert report["written"] == 4 and report["skipped"] == 0 and report["failed"] == 0
    assert {r["category"]: r["triangles"] for r in report["categories"]} == expected
    assert report["triangles"] == sum(expected.values())
    assert report["seed"] == 0 and report["objects_per_s"] > 0


def test_obj_and_mtl_carry_the_part_colours(library):
    out, _ = library
    obj = objects(2, 0, ["chair"])[1]
    scene = generate("chair", obj.seed)
    models = _model(out, "chair", 1)
    obj_bytes = (models / "model_normalized.obj").read_bytes()
    mtl_text = (models / "model_normalized.mtl").read_text()
    assert obj_bytes.startswith(b"# xpt ") and f"seed {obj.seed}".encode() in obj_bytes
    assert (obj_bytes, mtl_text.encode()) == export_obj(scene, header=_header(obj_bytes))
    kd = [line for line in mtl_text.splitlines() if line.startswith("Kd ")]
    assert len(kd) == len(scene.geometry) >= 2
    loaded = trimesh.load(models / "model_normalized.obj", force="scene")
    assert set(loaded.geometry) == set(scene.geometry)
    for name, mesh in scene.geometry.items():
        got = np.asarray(loaded.geometry[name].visual.material.diffuse[:3], dtype=int)
        assert np.abs(got - mesh.visual.material.diffuse[:3]).max() <= 1


def _header(obj_bytes: bytes) -> str:
    lines = obj_bytes.decode().splitlines()
    return "\n".join(line[2:] for line in lines if line.startswith("# "))


def test_shapenet_reader_reads_the_tree(library):
    from xpt.toolkit.meshes.sources import detect_layout, open_source

    out, _ = library
    assert detect_layout(out) == "shapenet-v2"
    found = open_source(out)
    assert sorted((o.category_id, o.category_name, o.model_id) for o in found) == [
        ("proc-chair", "chair", "chair-000000"),
        ("proc-chair", "chair", "chair-000001"),
        ("proc-mug", "mug", "mug-000000"),
        ("proc-mug", "mug", "mug-000001"),
    ]


def test_resume_skips_existing_folders(library, tmp_path):
    out, _ = library
    kept = _model(out, "chair", 0) / "model_normalized.obj"
    kept_stat = kept.stat()
    removed = _model(out, "mug", 1)
    before = (removed / "model_normalized.obj").read_bytes()
    shutil.rmtree(removed.parent)
    result = _synth(out, "--json", "-")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert (report["written"], report["skipped"], report["failed"]) == (1, 3, 0)
    assert (removed / "model_normalized.obj").read_bytes() == before
    assert (
        kept.stat().st_mtime_ns == kept_stat.st_mtime_ns and kept.stat().st_ino == kept_stat.st_ino
    )
    # growing the library keeps what is there and extends the taxonomy
    more = runner.invoke(app, ["synth", str(out), "--per-category", "3", "--categories", "mug"])
    assert more.exit_code == 0, more.output
    taxonomy = {
        e["name"]: e["numInstances"] for e in json.loads((out / "taxonomy.json").read_text())
    }
    assert taxonomy == {"chair": 2, "mug": 3}


def test_bad_category_and_seed_clash_exit_1(library, tmp_path):
    out, _ = library
    bad = runner.invoke(app, ["synth", str(tmp_path / "x"), "--categories", "chair,spaceship"])
    assert bad.exit_code == 1
    assert "spaceship" in bad.output and "bookshelf" in bad.output
    assert not (tmp_path / "x").exists()
    clash = _synth(out, "--seed", "5")
    assert clash.exit_code == 1 and "seed" in clash.output
    # eval-only categories need --eval
    assert (
        runner.invoke(app, ["synth", str(tmp_path / "y"), "--categories", "stool"]).exit_code == 1
    )


def test_eval_set_is_wide_and_disjoint(tmp_path):
    out = tmp_path / "eval"
    result = runner.invoke(
        app, ["synth", str(out), "--eval", "--per-category", "1", "--categories", "stool,chair"]
    )
    assert result.exit_code == 0, result.output
    stool = out / "proc-stool" / "stool-eval-000000" / "models" / "model_normalized.obj"
    assert stool.is_file() and b" wide" in stool.read_bytes()[:200]
    pre = tmp_path / "pre"
    synthesize(SynthConfig(pre, per_category=1, categories=("chair",)))
    chair_eval = out / "proc-chair" / "chair-eval-000000" / "models" / "model_normalized.obj"
    chair_pre = pre / "proc-chair" / "chair-000000" / "models" / "model_normalized.obj"
    assert chair_eval.read_bytes() != chair_pre.read_bytes()
    with pytest.raises(SynthError, match="eval"):
        synthesize(SynthConfig(out, per_category=1, categories=("chair",)))


def test_a_failing_object_is_recorded_and_the_run_goes_on(tmp_path, monkeypatch):
    real = procedural.generate

    def flaky(category, seed, *, wide=False):
        if category == "mug" and seed == objects(2, 0, ["mug"])[1].seed:
            raise ValueError("broken on purpose")
        return real(category, seed, wide=wide)

    monkeypatch.setattr(procedural, "generate", flaky)
    result = synthesize(SynthConfig(tmp_path / "lib", per_category=2, categories=("chair", "mug")))
    assert (result.written, result.failed) == (3, 1)
    failures = read_failures(tmp_path / "lib" / "failures.jsonl")
    assert [(f.id, f.stage) for f in failures] == [("procedural_proc-mug_mug-000001", "synth")]
    assert failures[0].reason == "ValueError: broken on purpose"
    assert not _model(tmp_path / "lib", "mug", 1).parent.exists()
    assert not any(p.name.startswith(".tmp-") for p in (tmp_path / "lib" / "proc-mug").iterdir())
    monkeypatch.setattr(procedural, "generate", real)
    again = synthesize(SynthConfig(tmp_path / "lib", per_category=2, categories=("chair", "mug")))
    assert (again.written, again.skipped, again.failed) == (1, 3, 0)
    assert not (tmp_path / "lib" / "failures.jsonl").exists()
