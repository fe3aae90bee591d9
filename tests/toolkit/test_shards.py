"""Shard building: WebDataset read-back, the normalised frame, determinism, resume, failures."""

from __future__ import annotations

import io
import json
import os
import pickle
import tarfile
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest
import trimesh
import webdataset as wds
from PIL import Image

from xpt.toolkit.failures import read_failures
from xpt.toolkit.meshes.geometry import as_mesh, normalization
from xpt.toolkit.meshes.objects import MeshObject
from xpt.toolkit.seeding import stable_fraction
from xpt.toolkit.shards.build import (
    MeshSampleMaker,
    ShardConfig,
    build_shards,
    objects_and_maker,
    run_shard,
)
from xpt.toolkit.shards.manifest import read_manifest, shard_paths
from xpt.toolkit.shards.schema import (
    SPLITS,
    SchemaError,
    check_sample,
    decode_sample,
    iter_tar_samples,
)
from xpt.toolkit.shards.verify import verify_shards

POINTS = 256
VIEWS = 2
SIZE = 32


def _meshes() -> dict[tuple[str, str], trimesh.Trimesh]:
    meshes = {}
    for i in range(3):
        box = trimesh.creation.box(extents=(1.0 + 0.3 * i, 2.0, 0.5))
        box.apply_translation((i, 2.0, -1.0))
        meshes["box", f"b{i}"] = box
        ball = trimesh.creation.icosphere(subdivisions=1, radius=0.5 + i)
        ball.apply_translation((-3.0, i, 0.5))
        meshes["ball", f"s{i}"] = ball
    return meshes


def view_image(category: str, model: str, view: int) -> np.ndarray:
    """A distinct RGB test image per (object, view)."""
    y, x = np.mgrid[0:SIZE, 0:SIZE]
    base = sum(map(ord, category + model)) + 37 * view
    return np.stack([(x * 7 + base) % 256, (y * 5 + base) % 256, (x + y + base) % 256], -1).astype(
        np.uint8
    )


def write_renders(renders: Path, category: str, model: str, mesh: trimesh.Trimesh) -> None:
    """The DESIGN.md render layout for one object (what `xpt render` writes)."""
    folder = renders / category / model / "rendering"
    folder.mkdir(parents=True, exist_ok=True)
    for view in range(VIEWS):
        Image.fromarray(view_image(category, model, view)).save(folder / f"{view:02d}.png")
    cameras = [
        {
            "K": [[40.0, 0, 16], [0, 40.0, 16], [0, 0, 1]],
            "cam_to_world": np.eye(4).tolist(),
            "width": SIZE,
            "height": SIZE,
            "azimuth": 90.0 * view,
            "elevation": 20.0,
            "distance_ratio": 0.8,
        }
        for view in range(VIEWS)
    ]
    record = {
        "normalization": normalization(trimesh.Scene([mesh])).to_json(),
        "up_axis": "+Y",
        "views": cameras,
    }
    (folder / "cameras.json").write_text(json.dumps(record))


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("data")
    for (category, model), mesh in _meshes().items():
        path = root / "meshes" / category / f"{model}.obj"
        path.parent.mkdir(parents=True, exist_ok=True)
        mesh.export(path)
        write_renders(root / "renders", category, model, mesh)
    return root / "meshes", root / "renders"


def _config(data: tuple[Path, Path], out: Path, **changes) -> ShardConfig:
    settings = dict(
        out=out,
        source=str(data[0]),
        renders=data[1],
        num_points=POINTS,
        max_samples=2,
        val_fraction=0.3,
    )
    return ShardConfig(**{**settings, **changes})


@pytest.fixture(scope="module")
def shard_set(data: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("shards") / "set"
    run_shard(_config(data, out))
    return out


def _surface_distance(triangles: np.ndarray, points: np.ndarray) -> np.ndarray:
    """(n,) distance from each point to the nearest of the (m, 3, 3) triangles."""
    points = np.asarray(points, dtype=np.float64)
    pairs_t = np.repeat(triangles[None], len(points), axis=0).reshape(-1, 3, 3)
    pairs_p = np.repeat(points, len(triangles), axis=0)
    closest = trimesh.triangles.closest_point(pairs_t, pairs_p)
    return np.linalg.norm(closest - pairs_p, axis=1).reshape(len(points), -1).min(axis=1)


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def _read_with_webdataset(folder: Path) -> list[dict]:
    urls = [str(p) for split in SPLITS for p in shard_paths(folder, split)]
    pipeline = wds.DataPipeline(
        wds.SimpleShardList(urls), wds.tarfile_to_samples(), wds.map(decode_sample)
    )
    return list(pipeline)


def test_webdataset_yields_exactly_the_manifest_samples(shard_set: Path) -> None:
    manifest = read_manifest(shard_set)
    samples = _read_with_webdataset(shard_set)
    keys = sorted(s["__key__"] for s in samples)
    expected = sorted(f"folder_{c}_{m}" for c, m in _meshes())
    assert keys == expected and manifest["samples"] == len(expected) == 6
    assert manifest["complete"] and manifest["failures"] == 0
    assert {c: row["samples"] for c, row in manifest["categories"].items()} == {
        "ball": 3,
        "box": 3,
    }
    by_split = {split: manifest["splits"][split]["samples"] for split in ("train", "val")}
    assert sum(by_split.values()) == 6
    for sample in samples:
        meta = sample["json"]
        assert sample["points"].dtype == np.float32 and sample["points"].shape == (POINTS, 3)
        assert sample["normals"].dtype == np.float16 and sample["normals"].shape == (POINTS, 3)
        assert len(sample["views"]) == VIEWS == meta["num_views"] == len(meta["cameras"])
        assert meta["num_points"] == POINTS and meta["format_version"] == 1
        assert meta["source"] == "folder" and meta["key"] == sample["__key__"]
        assert meta["category_id"] == meta["category_name"] in ("box", "ball")
        assert meta["label"] == {"ball": 0, "box": 1}[meta["category_id"]]
        for view, image in enumerate(sample["views"]):  # PNG views are stored losslessly
            expected_image = view_image(meta["category_id"], meta["model_id"], view)
            assert image.dtype == np.uint8 and np.array_equal(image, expected_image)
        assert meta["cameras"][1]["azimuth"] == 90.0
    # the split of every object is the stable hash of its key
    for split in ("train", "val"):
        for path in shard_paths(shard_set, split):
            for raw in iter_tar_samples(path):
                assert (stable_fraction("split", raw["__key__"]) < 0.3) == (split == "val")
                assert json.loads(raw["json"])["split"] == split


def test_points_lie_on_the_normalised_mesh_inside_the_unit_sphere(shard_set: Path) -> None:
    meshes = _meshes()
    for sample in _read_with_webdataset(shard_set):
        meta = sample["json"]
        mesh = meshes[meta["category_id"], meta["model_id"]]
        norm = normalization(trimesh.Scene([mesh]))
        assert np.allclose(meta["normalization"]["centre"], norm.centre, atol=1e-6)
        assert np.isclose(meta["normalization"]["scale"], norm.scale, rtol=1e-6)
        triangles = norm.apply(mesh.triangles.reshape(-1, 3)).reshape(-1, 3, 3)
        points = sample["points"].astype(np.float64)
        assert np.linalg.norm(points, axis=1).max() <= 1.0 + 1e-6
        assert _surface_distance(triangles, points).max() < 1e-5
        normals = sample["normals"].astype(np.float64)
        assert np.allclose(np.linalg.norm(normals, axis=1), 1.0, atol=2e-3)


def test_same_seed_gives_byte_identical_shards(data, shard_set: Path, tmp_path: Path) -> None:
    run_shard(_config(data, tmp_path / "again"))
    assert _files(tmp_path / "again") == _files(shard_set)
    run_shard(_config(data, tmp_path / "other", seed=1))
    other = _files(tmp_path / "other")
    first = {k: v for k, v in _files(shard_set).items() if k.endswith(".tar")}
    assert any(other.get(name) != blob for name, blob in first.items())
    keys = sorted(s["__key__"] for s in _read_with_webdataset(tmp_path / "other"))
    assert keys == sorted(s["__key__"] for s in _read_with_webdataset(shard_set))


def test_two_workers_give_the_same_bytes(data, shard_set: Path, tmp_path: Path) -> None:
    run_shard(_config(data, tmp_path / "w2", workers=2))
    assert _files(tmp_path / "w2") == _files(shard_set)


@dataclass
class _Interrupting:
    """A maker that is interrupted (Ctrl-C) when asked for its n-th object."""

    inner: MeshSampleMaker
    after: int
    calls: int = 0

    def __call__(self, obj: MeshObject):
        self.calls += 1
        if self.calls > self.after:
            raise KeyboardInterrupt
        return self.inner(obj)

    def describe(self) -> dict:
        return self.inner.describe()


def test_resume_after_interruption_equals_an_uninterrupted_run(
    data, shard_set: Path, tmp_path: Path
) -> None:
    config = _config(data, tmp_path / "resumed")
    found, maker = objects_and_maker(config)
    objects = found.objects
    with pytest.raises(KeyboardInterrupt):
        build_shards(objects, config, _Interrupting(maker, after=3))
    partial = read_manifest(tmp_path / "resumed")
    assert not partial["complete"] and partial["samples"] >= 2
    assert not [p for p in (tmp_path / "resumed").iterdir() if p.name.startswith(".tmp-")]
    result = build_shards(objects, config, maker)
    assert result.resumed_shards >= 1 and result.written < 6
    assert _files(tmp_path / "resumed") == _files(shard_set)
    assert verify_shards(tmp_path / "resumed").ok
    again = build_shards(objects, config, maker)  # a complete set: nothing to do
    assert again.written == 0 and _files(tmp_path / "resumed") == _files(shard_set)


def test_other_settings_in_the_same_folder_are_refused(data, shard_set: Path) -> None:
    with pytest.raises(ValueError, match="num_points"):
        run_shard(_config(data, shard_set, num_points=128))


def test_shards_respect_the_size_limit(data, tmp_path: Path) -> None:
    limit_mb = 0.03
    result = run_shard(_config(data, tmp_path / "small", max_samples=None, max_shard_mb=limit_mb))
    shards = [s for split in result.manifest["splits"].values() for s in split["shards"]]
    assert sum(s["samples"] for s in shards) == 6 and len(shards) >= 3
    for shard in shards:
        size = (tmp_path / "small" / shard["name"]).stat().st_size
        assert size == shard["bytes"] <= limit_mb * 2**20


def test_jpeg_views_and_float16_points(data, tmp_path: Path) -> None:
    run_shard(
        _config(data, tmp_path / "jpg", image_format="jpg", quality=80, points_dtype="float16")
    )
    samples = _read_with_webdataset(tmp_path / "jpg")
    assert len(samples) == 6
    for sample in samples:
        assert sample["points"].dtype == np.float16 and sample["points"].shape == (POINTS, 3)
        assert all(v.shape == (SIZE, SIZE, 3) and v.dtype == np.uint8 for v in sample["views"])
    raw = next(iter_tar_samples(shard_paths(tmp_path / "jpg", "train")[0]))
    assert sorted(n for n in raw if n.startswith("view_")) == ["view_00.jpg", "view_01.jpg"]
    assert verify_shards(tmp_path / "jpg").ok


def test_bad_objects_are_recorded_and_the_rest_is_written(data, tmp_path: Path) -> None:
    meshes, renders = tmp_path / "meshes", tmp_path / "renders"
    good = _meshes()["box", "b0"]
    for name in ("ok", "norender", "wrongframe"):
        (meshes / "box").mkdir(parents=True, exist_ok=True)
        good.export(meshes / "box" / f"{name}.obj")
    write_renders(renders, "box", "ok", good)
    moved = good.copy()
    moved.apply_translation((10.0, 0.0, 0.0))
    write_renders(renders, "box", "wrongframe", moved)
    (meshes / "box" / "broken.obj").write_text("v 0 0 0\nv 1 0 0\nthis is not obj\n")
    write_renders(renders, "box", "broken", good)
    result = run_shard(
        ShardConfig(out=tmp_path / "out", source=str(meshes), renders=renders, num_points=64)
    )
    assert result.manifest["samples"] == 1 and result.manifest["failures"] == 3
    failures = {f.id: f for f in read_failures(tmp_path / "out" / "failures.jsonl")}
    assert {k: f.stage for k, f in failures.items()} == {
        "folder_box_broken": "load",
        "folder_box_norender": "views",
        "folder_box_wrongframe": "points",
    }
    assert "cameras.json" in failures["folder_box_norender"].reason
    assert failures["folder_box_broken"].path.endswith("broken.obj")
    assert verify_shards(tmp_path / "out").ok


class _Boom:
    """Unpickling this creates a file: proof that something was unpickled."""

    def __init__(self, sentinel: Path):
        self.sentinel = sentinel

    def __reduce__(self):
        return (os.mkdir, (str(self.sentinel),))


def test_pickle_entries_are_rejected_never_decoded(shard_set: Path, tmp_path: Path) -> None:
    sentinel = tmp_path / "unpickled"
    raw = list(iter_tar_samples(shard_paths(shard_set, "train")[0]))[-1]
    evil = {**raw, "extra.pyd": pickle.dumps(_Boom(sentinel))}
    with pytest.raises(SchemaError, match="pickle"):
        decode_sample(evil)
    assert any("pickle" in problem for problem in check_sample(evil))
    # a shard holding such an entry: WebDataset + our decoders refuse, verify names it
    folder = tmp_path / "set"
    folder.mkdir()
    for item in shard_set.iterdir():
        (folder / item.name).write_bytes(item.read_bytes())
    name = shard_paths(shard_set, "train")[0].name
    with tarfile.open(folder / name, "a") as tar:
        info = tarfile.TarInfo(f"{raw['__key__']}.pickle")
        payload = pickle.dumps(_Boom(sentinel))
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))  # joins the shard's last sample
    with pytest.raises(SchemaError):
        _read_with_webdataset(folder)
    report = verify_shards(folder)
    assert any(p.name == name and "pickle" in p.reason for p in report.problems)
    assert not sentinel.exists()


def test_on_the_fly_rendering_shares_the_frame_with_the_points(tmp_path: Path) -> None:
    from xpt.toolkit.meshes.load import load_object
    from xpt.toolkit.procedural import objects

    config = ShardConfig(
        out=tmp_path / "live",
        categories=["chair", "mug"],
        per_category=1,
        num_points=128,
        val_fraction=0.0,
        render={"views": 2, "size": 32},
    )
    result = run_shard(config)
    assert result.manifest["samples"] == 2 and result.manifest["failures"] == 0
    assert result.manifest["settings"]["views_from"]["render"]["views"] == 2
    by_key = {o.key: o for o in objects(1, seed=0, categories=["chair", "mug"])}
    for sample in _read_with_webdataset(tmp_path / "live"):
        meta = sample["json"]
        assert len(sample["views"]) == 2 and sample["views"][0].shape == (32, 32, 3)
        assert np.asarray(meta["cameras"][0]["K"]).shape == (3, 3)
        assert np.asarray(meta["cameras"][0]["cam_to_world"]).shape == (4, 4)
        scene = load_object(by_key[sample["__key__"]]).scene
        norm = normalization(scene)
        assert np.allclose(meta["normalization"]["centre"], norm.centre)
        assert np.isclose(meta["normalization"]["scale"], norm.scale)
        mesh = as_mesh(scene)
        triangles = norm.apply(mesh.triangles.reshape(-1, 3)).reshape(-1, 3, 3)
        assert _surface_distance(triangles, sample["points"][:16]).max() < 1e-5
        # an object view is not blank: the object covers part of the white background
        assert (sample["views"][0] < 250).any(axis=2).mean() > 0.05
    # `xpt render` output read back with --renders gives the same views and points
    from xpt.render.config import RenderConfig
    from xpt.render.pool import render_objects

    render_objects(list(by_key.values()), tmp_path / "renders", RenderConfig(views=2, size=32))
    from_renders = run_shard(replace(config, out=tmp_path / "read", renders=tmp_path / "renders"))
    assert from_renders.manifest["samples"] == 2
    live = {s["__key__"]: s for s in _read_with_webdataset(tmp_path / "live")}
    for sample in _read_with_webdataset(tmp_path / "read"):
        twin = live[sample["__key__"]]
        assert np.array_equal(sample["points"], twin["points"])
        assert all(
            np.array_equal(a, b) for a, b in zip(sample["views"], twin["views"], strict=True)
        )
        assert sample["json"]["normalization"] == twin["json"]["normalization"]


def test_shard_command_with_parts(data, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from xpt.toolkit.cli import app

    meshes, renders = data
    keys = []
    for part in ("0/2", "1/2"):
        args = ["shard", str(meshes), "--renders", str(renders), "--out", str(tmp_path)]
        args += ["--points", "64", "--part", part, "--json", str(tmp_path / "report.json")]
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, result.output
        folder = tmp_path / f"part-00{part[0]}-of-002"
        report = json.loads((tmp_path / "report.json").read_text())
        assert report["out"] == str(folder) and report["manifest"]["settings"]["part"] == part
        assert verify_shards(folder).ok
        keys += [s["__key__"] for s in _read_with_webdataset(folder)]
    assert sorted(keys) == sorted(f"folder_{c}_{m}" for c, m in _meshes())
    bad = CliRunner().invoke(app, ["shard", str(meshes), "--out", str(tmp_path), "--part", "2/2"])
    assert bad.exit_code == 1 and "--part" in bad.output


def test_no_gl_context_stops_the_run_instead_of_failing_every_object(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    import xpt.render.renderer
    from xpt.toolkit.cli import app

    def no_context(config):
        raise RuntimeError("no EGL display")

    monkeypatch.setattr(xpt.render.renderer, "ObjectRenderer", no_context)
    args = ["shard", "--out", str(tmp_path), "--categories", "mug", "--per-category", "2"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1 and "no EGL display" in result.output
    assert read_failures(tmp_path / "failures.jsonl") == []


def test_duplicate_objects_are_recorded_not_dropped(data, tmp_path: Path) -> None:
    config = _config(data, tmp_path / "dup")
    found, maker = objects_and_maker(config)
    objects = found.objects
    result = build_shards([*objects, objects[0]], config, maker)
    assert result.manifest["samples"] == 6 and result.manifest["failures"] == 1
    (failure,) = read_failures(tmp_path / "dup" / "failures.jsonl")
    assert failure.id == objects[0].key and failure.stage == "source"
    assert verify_shards(tmp_path / "dup").ok


def test_rendered_rgb_pngs_pass_through_and_rgba_is_composited(tmp_path: Path) -> None:
    from xpt.toolkit.shards.schema import EncodedImage
    from xpt.toolkit.shards.views import ViewError, read_view

    rgb = view_image("box", "b0", 0)
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    view = read_view(tmp_path / "rgb.png")
    assert isinstance(view, EncodedImage) and view.data == (tmp_path / "rgb.png").read_bytes()
    rgba = np.zeros((SIZE, SIZE, 4), np.uint8)
    rgba[:8] = (10, 20, 30, 255)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    composited = read_view(tmp_path / "rgba.png")
    assert isinstance(composited, np.ndarray) and composited.shape == (SIZE, SIZE, 3)
    assert tuple(composited[0, 0]) == (10, 20, 30) and tuple(composited[-1, -1]) == (255,) * 3
    broken = (tmp_path / "rgb.png").read_bytes()
    (tmp_path / "bad.png").write_bytes(broken[:40] + bytes([broken[40] ^ 1]) + broken[41:])
    with pytest.raises(ViewError, match="bad.png"):
        read_view(tmp_path / "bad.png")


def test_shard_seed_does_not_change_which_procedural_objects_exist(tmp_path: Path) -> None:
    # `xpt render` draws the procedural objects with --source-seed (default 0), not --seed; a
    # `xpt shard --renders R --seed S` must see the same objects, or no view frame fits them.
    from typer.testing import CliRunner

    from xpt.render.config import RenderConfig
    from xpt.render.pool import render_objects
    from xpt.toolkit.cli import app
    from xpt.toolkit.procedural import objects

    procedural = objects(1, seed=0, categories=["chair"])
    render_objects(procedural, tmp_path / "renders", RenderConfig(views=1, size=16))
    args = ["shard", "--categories", "chair", "--per-category", "1", "--points", "32"]
    args += ["--renders", str(tmp_path / "renders"), "--out", str(tmp_path / "out")]
    result = CliRunner().invoke(app, [*args, "--seed", "3"])
    assert result.exit_code == 0, result.output
    manifest = read_manifest(tmp_path / "out")
    assert manifest["samples"] == 1 and manifest["failures"] == 0
    other = CliRunner().invoke(app, [*args, "--seed", "3", "--source-seed", "1"])
    assert other.exit_code == 1 and "other settings" in other.output


def _modelnet_with_renders(root: Path) -> tuple[Path, Path]:
    """ModelNet's layout (class/{train,test}/name.off), 4 train + 2 test shapes a class,
    and their renders. The shapes are centred on the origin, so their normalisation is
    the same in ModelNet's +Z-up frame and in the +Y-up frame."""
    meshes, renders = root / "ModelNet10", root / "renders"
    for cls in ("box", "ball"):
        for i in range(6):
            split, name = ("train" if i < 4 else "test"), f"{cls}_{i:04d}"
            if cls == "box":
                mesh = trimesh.creation.box(extents=(1.0 + 0.2 * i, 2.0, 0.5))
            else:
                mesh = trimesh.creation.icosphere(subdivisions=1, radius=0.5 + i)
            path = meshes / cls / split / f"{name}.off"
            path.parent.mkdir(parents=True, exist_ok=True)
            mesh.export(path)
            write_renders(renders, cls, name, mesh)
            cameras = renders / cls / name / "rendering" / "cameras.json"
            record = json.loads(cameras.read_text())
            cameras.write_text(json.dumps({**record, "source_up_axis": "+Z"}))  # ModelNet's
    return meshes, renders


def _metas(folder: Path, split: str) -> list[dict]:
    return [
        json.loads(raw["json"])
        for path in shard_paths(folder, split)
        for raw in iter_tar_samples(path)
    ]


def test_a_source_test_split_stays_out_of_train(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from xpt.toolkit.cli import app

    meshes, renders = _modelnet_with_renders(tmp_path)
    config = ShardConfig(
        out=tmp_path / "all", source=str(meshes), renders=renders, num_points=64, val_fraction=0.5
    )
    result = run_shard(config)
    splits = result.manifest["splits"]
    assert splits["test"]["samples"] == 4 and splits["train"]["samples"] > 0
    assert splits["train"]["samples"] + splits["val"]["samples"] == 8
    assert {c: row["test"] for c, row in result.manifest["categories"].items()} == {
        "ball": 2,
        "box": 2,
    }
    assert sorted(m["model_id"] for m in _metas(tmp_path / "all", "test")) == [
        "ball_0004",
        "ball_0005",
        "box_0004",
        "box_0005",
    ]
    assert {(m["split"], m["source_split"]) for m in _metas(tmp_path / "all", "test")} == {
        ("test", "test")
    }
    for split in ("train", "val"):
        assert {m["source_split"] for m in _metas(tmp_path / "all", split)} == {"train"}
    assert result.summary()["test"] == 4 and verify_shards(tmp_path / "all").ok
    assert "split" not in result.manifest["settings"]  # recorded only when given
    # --split takes one split of the source, through the command line too
    out = tmp_path / "test-only"
    args = ["shard", str(meshes), "--renders", str(renders), "--out", str(out), "--points", "64"]
    cli = CliRunner().invoke(app, [*args, "--split", "test", "--json", str(tmp_path / "r.json")])
    assert cli.exit_code == 0, cli.output
    report = json.loads((tmp_path / "r.json").read_text())
    assert (report["train"], report["val"], report["test"]) == (0, 0, 4)
    assert report["manifest"]["settings"]["split"] == "test"
    bad = CliRunner().invoke(app, [*args, "--split", "val"])
    assert bad.exit_code == 1 and "no split 'val' (available: test, train)" in bad.output


def test_the_split_survives_render_then_shard(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from xpt.toolkit.cli import app

    meshes, _ = _modelnet_with_renders(tmp_path)
    renders = tmp_path / "rendered"
    args = ["render", str(meshes), "--out", str(renders), "--views", "1", "--size", "16"]
    rendered = CliRunner().invoke(app, [*args, "--categories", "box"])
    assert rendered.exit_code == 0, rendered.output
    cameras = json.loads((renders / "box" / "box_0005" / "rendering" / "cameras.json").read_text())
    assert cameras["split"] == "test"
    lines = (renders / "render_manifest.jsonl").read_text().splitlines()
    assert sorted(json.loads(line)["split"] for line in lines) == ["test"] * 2 + ["train"] * 4
    out = tmp_path / "shards"
    args = ["shard", str(meshes), "--renders", str(renders), "--out", str(out), "--points", "64"]
    sharded = CliRunner().invoke(app, [*args, "--categories", "box", "--val-fraction", "0"])
    assert sharded.exit_code == 0, sharded.output
    assert sorted(m["model_id"] for m in _metas(out, "test")) == ["box_0004", "box_0005"]
    assert len(_metas(out, "train")) == 4


def test_nothing_made_is_an_error_and_unread_entries_are_recorded(data, tmp_path: Path) -> None:
    import shutil

    from typer.testing import CliRunner

    from xpt.toolkit.cli import app

    meshes, renders = data
    wrong = tmp_path / "wrong"
    wrong.mkdir()
    out = tmp_path / "empty-set"
    args = ["shard", str(meshes), "--points", "64"]
    result = CliRunner().invoke(app, [*args, "--renders", str(wrong), "--out", str(out)])
    assert result.exit_code == 1 and "every object failed" in result.output
    assert len(read_failures(out / "failures.jsonl")) == 6
    verify = CliRunner().invoke(app, ["verify", str(out)])
    assert verify.exit_code == 1 and "empty" in verify.output
    # a folder with a broken link, a folder named like a mesh and a broken mesh
    mine = tmp_path / "mine"
    shutil.copytree(meshes, mine)
    (mine / "box" / "gone.obj").symlink_to(tmp_path / "nowhere.obj")
    (mine / "box" / "x.obj").mkdir()
    (mine / "ball" / "s9.obj").write_text("v 0 0 0\nf 1 2 9\n")
    args = ["shard", str(mine), "--renders", str(renders), "--points", "64"]
    relaxed = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "a"), "--json", "-"])
    assert relaxed.exit_code == 0, relaxed.output
    report = json.loads(relaxed.stdout)
    assert (report["samples"], report["failed"], report["unread"]) == (6, 1, 2)
    failures = {Path(f.path).name: f for f in read_failures(tmp_path / "a" / "failures.jsonl")}
    assert sorted(failures) == ["gone.obj", "s9.obj", "x.obj"]
    assert failures["gone.obj"].stage == "source" and "broken symbolic link" in (
        failures["gone.obj"].reason
    )
    assert failures["x.obj"].reason == "a folder named like a mesh file, not a mesh file"
    assert "gone.obj" in relaxed.stderr and "x.obj" in relaxed.stderr
    assert verify_shards(tmp_path / "a").ok
    strict = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "b"), "--strict"])
    assert strict.exit_code == 1


def test_shard_from_renders_carries_renders_reason_and_source_records(tmp_path: Path) -> None:
    """Render a folder with a degenerate mesh (every vertex the same point, as a broken
    export leaves it), a good one and a linked copy of its folder, then shard the renders:
    the degenerate object's line carries render's own reason, not a guess."""
    from typer.testing import CliRunner

    from xpt.toolkit.cli import app

    meshes = tmp_path / "meshes"
    (meshes / "bad").mkdir(parents=True)
    (meshes / "bad" / "flat.obj").write_text("v 1 1 1\nv 1 1 1\nv 1 1 1\nf 1 2 3\n")
    (meshes / "box").mkdir()
    trimesh.creation.box().export(meshes / "box" / "cube.obj")
    os.symlink(meshes / "box", meshes / "copy")
    renders, out = tmp_path / "renders", tmp_path / "shards"
    small = ["--views", "1", "--size", "16"]
    rendered = CliRunner().invoke(app, ["render", str(meshes), "--out", str(renders), *small])
    assert rendered.exit_code == 0, rendered.output
    by_render = {f.id: f for f in read_failures(renders / "failures.jsonl")}
    assert (by_render["folder_bad_flat"].stage, by_render["folder_bad_flat"].reason) == (
        "load",
        "zero-size bounding box",
    )
    args = ["shard", str(meshes), "--renders", str(renders), "--out", str(out), "--points", "64"]
    sharded = CliRunner().invoke(app, args)
    assert sharded.exit_code == 0, sharded.output
    failures = {f.id: f for f in read_failures(out / "failures.jsonl")}
    flat = failures["folder_bad_flat"]
    assert (flat.stage, flat.reason) == (
        "views",
        "not rendered: zero-size bounding box (render's failures.jsonl)",
    )
    assert flat.path.endswith("bad/flat.obj")
    # the linked folder is read once; its second path is recorded by both steps
    duplicate = "duplicate of box/cube.obj (the same file, reached through a symbolic link)"
    for records in (by_render, failures):
        assert (records["copy/cube.obj"].stage, records["copy/cube.obj"].reason) == (
            "source",
            duplicate,
        )
    assert read_manifest(out)["samples"] == 1 and sorted(failures) == [
        "copy/cube.obj",
        "folder_bad_flat",
    ]
