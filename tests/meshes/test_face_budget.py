"""The face budget (``--max-faces``): dense meshes simplified and recorded, huge files refused.

The meshes are written as other tools write them: a binary STL of a finely tessellated sphere
(an 80-byte header, one 50-byte record per triangle), a trimesh-exported binary PLY with
vertex colours, and a textured UV sphere as an OBJ + MTL + PNG with a seam. Each is rendered
through ``xpt render`` with a small budget and with none, and the two renders compared.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import trimesh
from PIL import Image
from typer.testing import CliRunner

from xpt.render.config import RenderConfig
from xpt.render.output import is_complete
from xpt.toolkit.cli import app
from xpt.toolkit.meshes import budget
from xpt.toolkit.meshes.budget import load_within_budget, same_faces_under
from xpt.toolkit.meshes.load import MeshError
from xpt.toolkit.meshes.objects import MeshObject
from xpt.toolkit.shards.inspect import iter_samples

os.environ.setdefault("PYOPENGL_PLATFORM", "egl")
os.environ.setdefault("XPT_NO_PROGRESS", "1")

BUDGET = 4500  # every mesh but dense.ply holds 1 to 5 times this: simplified, not refused
VIEWS = ["--rig", "ring", "--views", "2", "--size", "64", "--mask", "--up-axis", "+Y"]
RED, GREEN, BLUE = (200, 30, 30), (30, 170, 40), (30, 40, 200)
STL_RECORD = np.dtype([("normal", "<f4", 3), ("corners", "<f4", (3, 3)), ("attribute", "<u2")])


def _write_stl(path: Path, mesh: trimesh.Trimesh) -> None:
    """A binary STL: 80-byte header, uint32 triangle count, one 50-byte record per face."""
    records = np.zeros(len(mesh.faces), dtype=STL_RECORD)
    records["normal"] = mesh.face_normals
    records["corners"] = mesh.vertices[mesh.faces]
    header = b"binary STL written by a CAD tool".ljust(80, b" ")
    path.write_bytes(header + np.uint32(len(records)).tobytes() + records.tobytes())


def _coloured_sphere() -> trimesh.Trimesh:
    """20,480 faces; vertex colours red above the equator, blue below."""
    sphere = trimesh.creation.icosphere(subdivisions=5)
    colours = np.where(sphere.vertices[:, 1:2] > 0, RED, BLUE).astype(np.uint8)
    sphere.visual = trimesh.visual.ColorVisuals(sphere, vertex_colors=colours)
    return sphere


def _write_textured_sphere(folder: Path, rows: int = 64, cols: int = 128) -> None:
    """A UV sphere of 16,128 faces as Blender writes one: a seam at u = 0 / 1, one pole
    vertex per column; the texture is red for u < 0.5 and green beyond."""
    u, v = np.meshgrid(np.linspace(0, 1, cols + 1), np.linspace(0, 1, rows + 1))
    theta, phi = np.pi * v, 2 * np.pi * u
    points = np.stack([np.sin(theta) * np.cos(phi), np.cos(theta), np.sin(theta) * np.sin(phi)])
    index = np.arange((rows + 1) * (cols + 1)).reshape(rows + 1, cols + 1)
    a, b, c, d = index[:-1, :-1], index[:-1, 1:], index[1:, :-1], index[1:, 1:]
    quads = np.stack([np.stack([a, b, c], -1)[1:], np.stack([b, d, c], -1)[:-1]])  # outward
    faces = np.concatenate([quads[0].reshape(-1, 3), quads[1].reshape(-1, 3)])
    texture = np.zeros((8, 16, 3), dtype=np.uint8)
    texture[:, :8], texture[:, 8:] = RED, GREEN
    Image.fromarray(texture).save(folder / "globe.png")
    (folder / "globe.mtl").write_text("newmtl globe\nKd 1 1 1\nmap_Kd globe.png\n")
    lines = ["mtllib globe.mtl", "usemtl globe"]
    lines += [f"v {x:.6f} {y:.6f} {z:.6f}" for x, y, z in points.reshape(3, -1).T]
    lines += [f"vt {s:.6f} {1 - t:.6f}" for s, t in zip(u.ravel(), v.ravel(), strict=True)]
    lines += [f"f {i}/{i} {j}/{j} {k}/{k}" for i, j, k in faces + 1]
    (folder / "globe.obj").write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def renders(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One folder of meshes rendered twice: with ``--max-faces BUDGET`` and with none."""
    root = tmp_path_factory.mktemp("budget")
    meshes = root / "meshes" / "things"
    meshes.mkdir(parents=True)
    _write_stl(meshes / "sphere.stl", trimesh.creation.icosphere(subdivisions=5))
    _coloured_sphere().export(meshes / "colours.ply")
    _write_textured_sphere(meshes)
    trimesh.creation.icosphere(subdivisions=6).export(meshes / "dense.ply")  # 81,920 faces
    runner, runs = CliRunner(), {}
    for name, limit in (("budget", BUDGET), ("full", 0)):
        out = root / name
        args = ["render", str(meshes.parent), "--out", str(out), *VIEWS]
        result = runner.invoke(app, [*args, "--max-faces", str(limit)])
        assert result.exit_code == 0, result.output
        runs[name] = (out, result.output)
    return {"meshes": meshes.parent, **runs}


def _record(out: Path, name: str) -> dict:
    return json.loads((out / "things" / name / "rendering" / "cameras.json").read_text())


def _images(out: Path, name: str, kind: str) -> list[np.ndarray]:
    folder = out / "things" / name / kind
    return [np.asarray(Image.open(path)) for path in sorted(folder.glob("*.png"))]


def test_a_mesh_over_the_budget_is_simplified_and_recorded(renders: dict) -> None:
    out, output = renders["budget"]
    expected = {"sphere": 20480, "colours": 20480, "globe": 16128}
    for name, before in expected.items():
        record = _record(out, name)
        assert record["faces"]["max_faces"] == BUDGET and record["faces"]["before"] == before
        assert 0.9 * BUDGET <= record["faces"]["after"] <= BUDGET
        warning = f"simplified from {before:,} to {record['faces']['after']:,} faces to fit "
        assert warning + f"--max-faces {BUDGET:,}" in record["warnings"]
        assert warning in " ".join(output.split())
    full = _record(renders["full"][0], "sphere")["faces"]
    assert full == {"max_faces": 0, "before": 20480, "after": 20480}


def test_the_simplified_silhouette_matches_the_full_mesh(renders: dict) -> None:
    for name in ("sphere", "colours", "globe"):
        simplified = _images(renders["budget"][0], name, "mask")
        full = _images(renders["full"][0], name, "mask")
        assert len(simplified) == len(full) == 2
        for a, b in zip(simplified, full, strict=True):
            iou = ((a > 0) & (b > 0)).sum() / ((a > 0) | (b > 0)).sum()
            assert iou > 0.97, (name, iou)


def _colour_shares(out: Path, name: str) -> np.ndarray:
    """(3,) the share of object pixels nearest to red, green and blue."""
    views = zip(_images(out, name, "rendering"), _images(out, name, "mask"), strict=True)
    pixels = np.concatenate([image[..., :3][mask > 0].astype(float) for image, mask in views])
    hue = np.argmax(pixels - pixels.mean(axis=1, keepdims=True), axis=1)
    return np.bincount(hue, minlength=3) / len(hue)


def test_vertex_colours_and_textures_survive_simplification(renders: dict) -> None:
    for name, present in (("colours", (0, 2)), ("globe", (0, 1))):
        simplified = _colour_shares(renders["budget"][0], name)
        full = _colour_shares(renders["full"][0], name)
        assert np.abs(simplified - full).max() < 0.03, (name, simplified, full)
        assert all(simplified[channel] > 0.1 for channel in present), (name, simplified)


def test_a_file_declaring_too_many_faces_is_refused_unread(renders: dict) -> None:
    out, output = renders["budget"]
    failures = [json.loads(line) for line in (out / "failures.jsonl").read_text().splitlines()]
    assert [(f["id"].rsplit("_", 1)[-1], f["stage"]) for f in failures] == [("dense", "load")]
    reason = (
        f"the PLY header declares 81,920 faces, more than 5 x --max-faces ({5 * BUDGET:,}) can "
        "load within memory; not read (simplify the file first, or raise --max-faces on a "
        "machine with more memory)"
    )
    assert failures[0]["reason"] == reason and "\n" not in reason
    assert reason in " ".join(output.split())
    full = _record(renders["full"][0], "dense")["faces"]  # without a budget it is drawn
    assert full == {"max_faces": 0, "before": 81920, "after": 81920}


def test_an_absurd_header_is_refused_before_parsing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    header = (
        b"ply\nformat binary_little_endian 1.0\nelement vertex 3\nproperty float x\n"
        b"property float y\nproperty float z\nelement face 500000000\n"
        b"property list uchar int vertex_indices\nend_header\n"
    )
    huge = tmp_path / "huge.ply"
    with open(huge, "wb") as handle:  # as long as its header says (sparse: no disk used)
        handle.write(header)
        handle.truncate(len(header) + 3 * 12 + 500_000_000 * 13)
    parsed = []
    monkeypatch.setattr("xpt.toolkit.meshes.load.load_object", lambda *a, **k: parsed.append(1))
    obj = MeshObject("folder", "x", "x", "huge", path=huge)
    with pytest.raises(MeshError) as refused:
        load_within_budget(obj, max_faces=budget.DEFAULT_MAX_FACES, up_axis="+Y")
    assert refused.value.reason.startswith(
        "the PLY header declares 500,000,000 faces, more than 5 x --max-faces (10,000,000)"
    )
    assert parsed == []
    # A short file declaring as much is corrupt, and the loader says so rather than the budget.
    monkeypatch.undo()
    short = tmp_path / "short.ply"
    short.write_bytes(header + bytes(200))
    obj = MeshObject("folder", "x", "x", "short", path=short)
    with pytest.raises(MeshError) as corrupt:
        load_within_budget(obj, max_faces=budget.DEFAULT_MAX_FACES, up_axis="+Y")
    assert "truncated or corrupt" in corrupt.value.reason
    assert "--max-faces" not in corrupt.value.reason


def test_declared_counts_of_each_format(tmp_path: Path) -> None:
    sphere = trimesh.creation.icosphere(subdivisions=3)  # 1,280 faces
    for suffix, says in (("stl", "binary STL header declares"), ("off", "OFF header declares")):
        sphere.export(tmp_path / f"s.{suffix}")
        assert budget.declared_faces(tmp_path / f"s.{suffix}") == (1280, f"the {says}")
    sphere.export(tmp_path / "s.obj")
    assert budget.declared_faces(tmp_path / "s.obj") == (1280, "the OBJ file has")
    sphere.export(tmp_path / "s.ply", encoding="ascii")
    assert budget.declared_faces(tmp_path / "s.ply") == (1280, "the PLY header declares")
    (tmp_path / "s.glb").write_bytes(sphere.export(file_type="glb"))
    assert budget.declared_faces(tmp_path / "s.glb") is None


def test_parts_share_the_budget_and_small_parts_stay_whole() -> None:
    # a 12-face box beside a 50,000-face body placed twice: the box stays whole
    targets = budget.face_targets({"box": 12, "body": 50000}, {"box": 1, "body": 2}, 20000)
    assert targets == {"box": 12, "body": 9994}
    assert budget.face_targets({"a": 3000, "b": 1000}, {"a": 1, "b": 1}, 2000) == {
        "a": 1500,
        "b": 500,
    }
    # a thousand small parts cannot all stay whole: every part gives up the same fraction
    assert budget.face_targets({"bolt": 12}, {"bolt": 1000}, 5000) == {"bolt": 5}
    scene = trimesh.Scene()
    ball = trimesh.creation.icosphere(subdivisions=4)  # 5,120 faces
    for x in (0.0, 3.0):
        scene.add_geometry(
            ball, geom_name="ball", transform=trimesh.transformations.translation_matrix([x, 0, 0])
        )
    scene.add_geometry(trimesh.creation.box(), geom_name="box")
    assert budget.fit_face_budget(scene, 2000) == {
        "max_faces": 2000,
        "before": 10252,
        "after": 2000,
    }
    assert len(scene.geometry["box"].faces) == 12
    assert np.allclose(scene.bounds, [[-1, -1, -1], [4, 1, 1]], atol=0.01)


def test_a_changed_budget_renders_again_only_the_objects_it_changes(renders: dict) -> None:
    folder = renders["budget"][0] / "things" / "sphere"
    config = RenderConfig("ring", 2, 64, mask=True, up_axis="+Y", max_faces=BUDGET)
    assert is_complete(folder, config)
    for other in (0, BUDGET + 1, budget.DEFAULT_MAX_FACES):
        assert not is_complete(folder, RenderConfig(**{**config.to_json(), "max_faces": other}))
    small = {"max_faces": BUDGET, "before": 1000, "after": 1000}
    assert [same_faces_under(small, m) for m in (0, 1000, 10**6, 999)] == [True] * 3 + [False]
    assert not same_faces_under({"before": "many"}, BUDGET)


def test_shard_samples_the_simplified_mesh_and_checks_the_renders_budget(
    renders: dict, tmp_path: Path
) -> None:
    runner = CliRunner()
    args = ["shard", str(renders["meshes"]), "--renders", str(renders["budget"][0])]
    args += ["--up-axis", "+Y", "--points", "256"]
    same = runner.invoke(app, [*args, "--out", str(tmp_path / "a"), "--max-faces", str(BUDGET)])
    assert same.exit_code == 0, same.output
    faces = {s["json"]["model_id"]: s["json"]["faces"] for s in iter_samples(tmp_path / "a")}
    assert sorted(faces) == ["colours", "globe", "sphere"]
    for name, record in faces.items():
        assert record == _record(renders["budget"][0], name)["faces"]
    other = runner.invoke(app, [*args, "--out", str(tmp_path / "b"), "--max-faces", "0"])
    failures = (tmp_path / "b" / "failures.jsonl").read_text()
    assert other.exit_code == 1 and "give both the same --max-faces" in failures


def test_max_faces_is_validated(tmp_path: Path) -> None:
    runner = CliRunner()
    for command in ("render", "shard"):
        args = [command, "--out", str(tmp_path / command), "--max-faces", "-1"]
        result = runner.invoke(app, args)
        assert result.exit_code == 1
        assert "max faces must be 0 (no budget) or positive, got -1" in result.output
        assert len(result.output.strip().splitlines()) == 1
    with pytest.raises(ValueError, match="got -5"):
        RenderConfig(max_faces=-5)
