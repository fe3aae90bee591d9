"""The render run: worker processes, output layout, failures, resume, time limit, crashes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from xpt.render.cameras import read_metadata
from xpt.render.config import RenderConfig
from xpt.render.output import RENDER_MANIFEST, is_complete, object_dir
from xpt.render.pool import render_objects, run_render
from xpt.toolkit.failures import read_failures
from xpt.toolkit.meshes.objects import MeshObject
from xpt.toolkit.meshes.sources import open_source

SYNSET = "03001627"
BOX_OBJ = """mtllib model_normalized.mtl
v -0.5 -0.3 -0.4
v 0.5 -0.3 -0.4
v 0.5 0.3 -0.4
v -0.5 0.3 -0.4
v -0.5 -0.3 0.4
v 0.5 -0.3 0.4
v 0.5 0.3 0.4
v -0.5 0.3 0.4
vt 0 0
vt 1 0
vt 1 1
vt 0 1
usemtl surface
f 1/1 4/4 3/3 2/2
f 5/1 6/2 7/3 8/4
f 1/1 2/2 6/3 5/4
f 4/4 8/1 7/2 3/3
f 1/1 5/2 8/3 4/4
f 2/1 3/2 7/3 6/4
"""


def _shapenet_model(root: Path, model: str, obj_text: str, mtl_text: str | None) -> Path:
    folder = root / SYNSET / model / "models"
    folder.mkdir(parents=True)
    (folder / "model_normalized.obj").write_text(obj_text)
    if mtl_text is not None:
        (folder / "model_normalized.mtl").write_text(mtl_text)
    return folder


@pytest.fixture
def shapenet(tmp_path: Path) -> Path:
    """A ShapeNet v2 tree: two good models (textured; texture missing), three broken ones."""
    root = tmp_path / "ShapeNetCore.v2"
    textured = _shapenet_model(
        root, "textured", BOX_OBJ, "newmtl surface\nKd 1 1 1\nmap_Kd ../images/blue.png\n"
    )
    (textured.parent / "images").mkdir()
    Image.new("RGB", (8, 8), (30, 60, 220)).save(textured.parent / "images" / "blue.png")
    _shapenet_model(
        root, "notexture", BOX_OBJ, "newmtl surface\nKd 0.8 0.1 0.1\nmap_Kd ../images/gone.png\n"
    )
    _shapenet_model(root, "corrupt", "", None).joinpath("model_normalized.obj").write_bytes(
        bytes(range(256)) * 8
    )
    _shapenet_model(root, "empty", "", None)
    nan = "v nan 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n"
    _shapenet_model(root, "nan", nan, None)
    return root


def _dominant_channel(png: Path) -> int:
    image = np.asarray(Image.open(png).convert("RGB")).astype(int)
    object_pixels = image[image.sum(axis=2) < 700]
    return int(np.argmax(object_pixels.mean(axis=0)))


def test_run_writes_the_layout_and_records_failures(shapenet: Path, tmp_path: Path) -> None:
    objects = open_source(shapenet)
    assert len(objects) == 5
    out = tmp_path / "renders"
    config = RenderConfig(views=3, size=48, depth=True, mask=True)
    summary = render_objects(objects, out, config, workers=2)
    assert (summary.done, summary.failed, summary.skipped, summary.views) == (2, 3, 0, 6)
    assert summary.gl_renderer and summary.workers == 2 and summary.views_per_second > 0

    failures = {f.id.split("_")[-1]: f for f in read_failures(out / "failures.jsonl")}
    assert set(failures) == {"corrupt", "empty", "nan"}
    assert all(f.stage == "load" and f.path.endswith(".obj") for f in failures.values())
    assert "empty" in failures["empty"].reason
    assert "non-finite" in failures["nan"].reason
    assert "binary data" in failures["corrupt"].reason

    textured = object_dir(out, objects[[o.model_id for o in objects].index("textured")])
    assert textured == out / SYNSET / "textured"
    rendering = textured / "rendering"
    names = sorted(p.name for p in rendering.iterdir())
    assert names == ["00.png", "01.png", "02.png", "cameras.json", "rendering_metadata.txt"]
    assert Image.open(rendering / "00.png").size == (48, 48)
    assert Image.open(rendering / "00.png").mode == "RGB"
    cameras = json.loads((rendering / "cameras.json").read_text())
    assert cameras["up_axis"] == "+Y" and cameras["seed"] == 0 and len(cameras["views"]) == 3
    assert set(cameras["normalization"]) == {"centre", "scale"}
    assert cameras["normalization"]["scale"] == pytest.approx(1 / np.sqrt(0.5**2 + 0.3**2 + 0.4**2))
    views = read_metadata(rendering / "rendering_metadata.txt")
    assert [v.cam_to_world().tolist() for v in views] == [
        c["cam_to_world"] for c in cameras["views"]
    ]
    assert _dominant_channel(rendering / "00.png") == 2  # the blue texture
    # Depth: 16-bit, camera-frame z x 1000 (the box lies within 1 of the origin); mask: 0/255.
    depth = np.asarray(Image.open(textured / "depth" / "00.png"))
    mask = np.asarray(Image.open(textured / "mask" / "00.png"))
    assert depth.dtype == np.uint16 and cameras["depth"]["scale"] == 1000.0
    distance = cameras["views"][0]["distance"]
    assert (depth[depth > 0] / 1000.0 > distance - 1.0).all()
    assert (depth[depth > 0] / 1000.0 < distance + 1.0).all()
    assert set(np.unique(mask)) == {0, 255}
    colour = np.asarray(Image.open(rendering / "00.png").convert("RGB")).astype(int)
    assert ((depth > 0) == (mask == 255)).mean() > 0.97
    assert ((colour.sum(axis=2) < 760) == (mask == 255)).mean() > 0.97

    missing = out / SYNSET / "notexture" / "rendering"
    assert _dominant_channel(missing / "00.png") == 0  # falls back to the red Kd colour
    warnings = json.loads((missing / "cameras.json").read_text())["warnings"]
    assert any("gone.png" in w for w in warnings)

    manifest = [json.loads(line) for line in (out / RENDER_MANIFEST).read_text().splitlines()]
    assert sorted(m["model_id"] for m in manifest) == ["notexture", "textured"]
    assert {m["folder"] for m in manifest} == {f"{SYNSET}/notexture", f"{SYNSET}/textured"}


def test_resume_skips_complete_objects_and_redoes_half_written_ones(tmp_path: Path) -> None:
    objects = open_source("procedural", categories=["chair", "mug", "bowl"], per_category=1)
    out = tmp_path / "renders"
    config = RenderConfig(views=2, size=32)
    first = render_objects(objects, out, config)
    assert (first.done, first.skipped) == (3, 0)
    kept, damaged, interrupted = (object_dir(out, o) for o in objects)
    stamp = (kept / "rendering" / "00.png").stat().st_mtime_ns
    (damaged / "rendering" / "01.png").unlink()
    # An interrupted write leaves only the temporary folder, never a partial final one.
    partial = interrupted.parent / f".tmp-{interrupted.name}"
    interrupted.rename(partial)
    (partial / "rendering" / "00.png").unlink()

    second = render_objects(objects, out, config)
    assert (second.done, second.skipped, second.failed) == (2, 1, 0)
    assert (kept / "rendering" / "00.png").stat().st_mtime_ns == stamp
    assert (damaged / "rendering" / "01.png").is_file()
    assert (interrupted / "rendering" / "00.png").is_file() and not partial.exists()
    third = render_objects(objects, out, config)
    assert (third.done, third.skipped) == (0, 3) and third.gl_renderer.startswith("not started")
    manifest = (out / RENDER_MANIFEST).read_text().splitlines()
    assert len(manifest) == 5  # 3 first, 2 redone; skipped objects are not listed twice
    # Outputs made with other settings are stale, not complete.
    assert is_complete(kept, config)
    assert not is_complete(kept, RenderConfig(views=3, size=32))
    assert not is_complete(kept, RenderConfig(views=2, size=32, depth=True))
    assert is_complete(kept, RenderConfig(views=2, size=32, time_limit=5.0, backend="osmesa"))


HANG_JOB = """
import os
import time

from xpt.render.pool import render_job


def job(renderer, obj, out, config):
    if obj.model_id == "hang":
        time.sleep(120)
    if obj.model_id == "crash":
        os._exit(3)
    return render_job(renderer, obj, out, config)
"""


def test_time_limit_and_crashes_fail_one_object_each_and_the_run_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "xpt_test_hang_job.py").write_text(HANG_JOB)
    monkeypatch.syspath_prepend(str(tmp_path))
    good = open_source("procedural", categories=["chair", "table", "mug"], per_category=1)
    chair = good[0]
    bad = [
        MeshObject(chair.source, chair.category_id, chair.category_name, name, seed=1)
        for name in ("hang", "crash")
    ]
    out = tmp_path / "renders"
    config = RenderConfig(views=2, size=32, time_limit=3.0)
    summary = render_objects(bad + good, out, config, workers=2, job="xpt_test_hang_job:job")
    assert (summary.done, summary.failed) == (3, 2)
    reasons = {f.id.split("_")[-1]: f.reason for f in read_failures(out / "failures.jsonl")}
    assert reasons == {
        "hang": "time limit: not done after 3 s",
        "crash": "worker crashed (exit code 3)",
    }
    assert all((object_dir(out, o) / "rendering" / "01.png").is_file() for o in good)
    assert not any(object_dir(out, o).exists() for o in bad)
    # The killed and the crashed worker left no temporary folders behind.
    assert not [p for p in (out / chair.category_id).iterdir() if p.name.startswith(".tmp-")]


def test_a_rerun_does_not_record_the_same_failure_twice(tmp_path: Path) -> None:
    root = tmp_path / "ShapeNetCore.v2"
    _shapenet_model(root, "empty", "", None)
    objects = open_source(root)
    out = tmp_path / "renders"
    for _ in range(2):
        summary = render_objects(objects, out, RenderConfig(views=1, size=16), progress=False)
        assert summary.failed == 1
    assert len(read_failures(out / "failures.jsonl")) == 1


def test_a_mesh_without_surface_area_is_a_failure_not_blank_images(tmp_path: Path) -> None:
    root = tmp_path / "ShapeNetCore.v2"
    collinear = "v 0 0 0\nv 1 0 0\nv 2 0 0\nv 3 0 0\nf 1 2 3\nf 2 3 4\n"
    _shapenet_model(root, "flat", collinear, None)
    out = tmp_path / "renders"
    summary = render_objects(open_source(root), out, RenderConfig(views=1, size=16))
    assert (summary.done, summary.failed) == (0, 1)
    (failure,) = read_failures(out / "failures.jsonl")
    assert failure.stage == "load" and failure.reason == "no surface (all faces have zero area)"
    assert not (out / SYNSET / "flat").exists()


def test_failures_list_only_the_objects_failed_now(tmp_path: Path) -> None:
    root = tmp_path / "ShapeNetCore.v2"
    fixed = _shapenet_model(root, "fixed", "", None) / "model_normalized.obj"
    _shapenet_model(root, "empty", "", None)
    objects = open_source(root)
    out = tmp_path / "renders"
    config = RenderConfig(views=1, size=16)
    assert render_objects(objects, out, config, progress=False).failed == 2
    fixed.write_text(BOX_OBJ.replace("mtllib model_normalized.mtl\n", ""))
    summary = render_objects(objects, out, config, progress=False)
    assert (summary.done, summary.failed) == (1, 1)
    failures = read_failures(out / "failures.jsonl")
    assert [f.id.split("_")[-1] for f in failures] == ["empty"]
    # A later run that only skips the repaired object keeps the still-failing one, once.
    render_objects(objects, out, config, progress=False)
    assert [f.id.split("_")[-1] for f in read_failures(out / "failures.jsonl")] == ["empty"]


def test_parts_of_a_job_array_keep_separate_failure_records(tmp_path: Path) -> None:
    root = tmp_path / "ShapeNetCore.v2"
    for name in ("empty0", "empty1", "empty2", "empty3"):
        _shapenet_model(root, name, "", None)
    out = tmp_path / "renders"
    config = RenderConfig(views=1, size=16)
    failed = {}
    for index in range(2):
        summary = run_render(root, out, config, part=f"{index}/2", progress=False)
        failed[index] = {f["id"] for f in summary.failures}
    assert not (out / "failures.jsonl").exists()
    for index in range(2):
        record = read_failures(out / f"failures-part-{index:03d}-of-002.jsonl")
        assert {f.id for f in record} == failed[index]
    assert len(failed[0] | failed[1]) == 4 and not failed[0] & failed[1]
