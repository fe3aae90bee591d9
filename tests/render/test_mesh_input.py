"""Meshes as other tools write them render like their source: upright, textured."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import trimesh
import webdataset as wds
from PIL import Image
from typer.testing import CliRunner

from xpt.render.config import RenderConfig
from xpt.render.renderer import ObjectRenderer
from xpt.toolkit.cli import app
from xpt.toolkit.meshes.load import load_mesh
from xpt.toolkit.shards.manifest import read_manifest, shard_paths
from xpt.toolkit.shards.schema import SPLITS

SMALL = ["--views", "4", "--size", "48"]


def mushroom_z_up() -> trimesh.Trimesh:
    """A thin stem along +Z with a wide cap at its top (z = 1): how a Z-up tool writes it."""
    stem = trimesh.creation.box(extents=(0.2, 0.2, 2.0))
    cap = trimesh.creation.box(extents=(1.0, 1.0, 0.2))
    cap.apply_translation((0.0, 0.0, 1.0))
    return trimesh.util.concatenate([stem, cap])


def _write_off(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(trimesh.exchange.off.export_off(mushroom_z_up()))


def _silhouette(image: np.ndarray) -> tuple[int, int]:
    """(height, width) in pixels of the non-white part of an RGB view."""
    rows, cols = np.nonzero((image < 245).any(axis=2))
    return int(rows.max() - rows.min() + 1), int(cols.max() - cols.min() + 1)


def _views(out: Path) -> dict[str, list[np.ndarray]]:
    return {
        folder.parent.name: [
            np.asarray(Image.open(p).convert("RGB")) for p in sorted(folder.glob("[0-9]*.png"))
        ]
        for folder in out.glob("*/*/rendering")
    }


def _samples(folder: Path) -> list[dict]:
    """Every sample of every split: its points and its json."""
    urls = [str(p) for split in SPLITS for p in shard_paths(folder, split)]
    dataset = wds.DataPipeline(wds.SimpleShardList(urls), wds.tarfile_to_samples())
    return [
        {"points": np.load(io.BytesIO(s["points.npy"])), "json": json.loads(s["json"])}
        for s in dataset
    ]


def _assert_upright(points: np.ndarray) -> None:
    extent = points.max(axis=0) - points.min(axis=0)
    assert extent[1] > 1.8 * max(extent[0], extent[2])  # the height axis is +Y
    top = points[points[:, 1] > points[:, 1].max() - 0.1]
    bottom = points[points[:, 1] < points[:, 1].min() + 0.1]
    # the wide cap is at the top: the source's +Z went to +Y, not -Y
    assert np.abs(top[:, [0, 2]]).max() > 3 * np.abs(bottom[:, [0, 2]]).max()


def test_z_up_sources_render_and_sample_upright(tmp_path: Path) -> None:
    modelnet = tmp_path / "ModelNet"
    _write_off(modelnet / "pole" / "train" / "pole_0001.off")
    _write_off(modelnet / "pole" / "test" / "pole_0002.off")
    folder = tmp_path / "scans"
    _write_off(folder / "pole" / "tall.off")
    runner = CliRunner()

    # ModelNet is +Z up by default; a plain folder when told (its OFF is +Z by default too)
    for source, extra, out in [
        (modelnet, [], tmp_path / "r-modelnet"),
        (folder, ["--up-axis", "+Z"], tmp_path / "r-folder"),
    ]:
        args = ["render", str(source), "--out", str(out), "--rig", "ring", *SMALL, *extra]
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
        views = _views(out)
        assert len(views) == (2 if source == modelnet else 1)
        for images in views.values():
            for image in images:
                height, width = _silhouette(image)
                assert height > 1.4 * width, (source, height, width)
        for cameras in out.glob("*/*/rendering/cameras.json"):
            record = json.loads(cameras.read_text())
            assert (record["up_axis"], record["source_up_axis"]) == ("+Y", "+Z")
            assert record["settings"]["up_axis"] == ("+Z" if extra else "auto")

    # the same file read as stored (+Y up): the pole lies on its side
    with ObjectRenderer(RenderConfig(rig="ring", views=4, size=48)) as renderer:
        lying = renderer.render(load_mesh(folder / "pole" / "tall.off").scene, "pole")
    assert any(_silhouette(image)[1] > 1.4 * _silhouette(image)[0] for image in lying.color)

    # points: rendered on the fly (ModelNet default) and from the renders (folder, told)
    shard = ["shard", "--points", "256", "--val-fraction", "0", *SMALL]
    result = runner.invoke(app, [*shard, str(modelnet), "--out", str(tmp_path / "s-modelnet")])
    assert result.exit_code == 0, result.output
    args = [*shard, str(folder), "--up-axis", "+Z", "--renders", str(tmp_path / "r-folder")]
    result = runner.invoke(app, [*args, "--out", str(tmp_path / "s-folder")])
    assert result.exit_code == 0, result.output
    for out, told in [(tmp_path / "s-modelnet", "auto"), (tmp_path / "s-folder", "+Z")]:
        samples = _samples(out)
        assert len(samples) == (2 if told == "auto" else 1)
        assert read_manifest(out)["settings"]["up_axis"] == told
        for sample in samples:
            assert (sample["json"]["up_axis"], sample["json"]["source_up_axis"]) == ("+Y", "+Z")
            _assert_upright(sample["points"])

    # renders made +Z up do not pair with a mesh read +Y up: the object fails, saying why
    args = [*shard, str(folder), "--up-axis", "+Y", "--renders", str(tmp_path / "r-folder")]
    result = runner.invoke(app, [*args, "--out", str(tmp_path / "s-mismatch")])
    failures = (tmp_path / "s-mismatch" / "failures.jsonl").read_text().splitlines()
    assert len(failures) == 1
    assert json.loads(failures[0])["reason"] == (
        "the views were rendered from the mesh read +Z up, this run reads it +Y up "
        "(give both the same --up-axis)"
    )


def test_auto_reads_cad_stl_and_off_z_up_says_so_and_records_it(
    tmp_path: Path, write_cad_stl
) -> None:
    """A folder as users have them: a CAD part (binary STL), a Z-up OFF outside ModelNet's
    layout and a Y-up OBJ. ``auto`` stands the first two up, records the axis per object and
    says in one line how many it turned; ``--up-axis +Y`` keeps every file as stored."""
    folder = tmp_path / "mixed"
    part = trimesh.creation.box(extents=(0.4, 0.6, 2.0))
    write_cad_stl(folder / "brackets" / "tall.stl", part.triangles)
    _write_off(folder / "poles" / "pole.off")
    part.apply_transform(trimesh.transformations.rotation_matrix(-np.pi / 2, (1, 0, 0)))
    (folder / "posts" / "post.obj").parent.mkdir(parents=True)
    (folder / "posts" / "post.obj").write_text(trimesh.exchange.obj.export_obj(part))
    runner = CliRunner()
    told = {
        "auto": {"tall": "+Z", "pole": "+Z", "post": "+Y"},
        "+Y": dict.fromkeys(["tall", "pole", "post"], "+Y"),
    }
    for axis, expected in told.items():
        out = tmp_path / f"r-{axis}"
        args = ["render", str(folder), "--out", str(out), "--rig", "ring", *SMALL]
        result = runner.invoke(app, [*args, "--up-axis", axis])
        assert result.exit_code == 0, result.output
        recorded = {
            path.parent.parent.name: json.loads(path.read_text())["source_up_axis"]
            for path in out.glob("*/*/rendering/cameras.json")
        }
        assert recorded == expected
        notes = [line for line in result.output.splitlines() if line.startswith("note up axis")]
        standing = {
            name: all(_silhouette(v)[0] > 1.4 * _silhouette(v)[1] for v in views)
            for name, views in _views(out).items()
        }
        if axis == "auto":
            assert notes == [
                "note up axis: 2 objects read as +Z by their format's convention (STL, OFF); "
                "--up-axis +Y to keep them as stored"
            ]
            assert standing == {"tall": True, "pole": True, "post": True}
        else:
            assert notes == []
            assert standing == {"tall": False, "pole": False, "post": True}
    # a folder rendered when auto still read STL +Y up is rendered again on resume, not kept
    cameras = tmp_path / "r-auto" / "brackets" / "tall" / "rendering" / "cameras.json"
    cameras.write_text(json.dumps({**json.loads(cameras.read_text()), "source_up_axis": "+Y"}))
    args = ["render", str(folder), "--out", str(tmp_path / "r-auto"), "--rig", "ring", *SMALL]
    again = runner.invoke(app, [*args, "--json", "-"])
    assert again.exit_code == 0, again.output
    assert (json.loads(again.stdout)["done"], json.loads(again.stdout)["skipped"]) == (1, 2)
    assert json.loads(cameras.read_text())["source_up_axis"] == "+Z"


def test_up_axis_for_the_procedural_library_is_a_one_line_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["render", "--out", str(tmp_path), "--up-axis", "+Z", *SMALL, "--limit", "1"]
    )
    assert result.exit_code == 1
    assert "procedural library is generated +Y up" in result.output
    assert "Traceback" not in result.output


def test_textured_obj_with_windows_references_renders_its_texture(tmp_path: Path) -> None:
    folder = tmp_path / "m"
    (folder / "textures").mkdir(parents=True)
    Image.new("RGB", (8, 8), (210, 40, 30)).save(folder / "textures" / "wood.png")
    (folder / "model.mtl").write_text(
        "newmtl wood\nKd 1 1 1\nmap_Kd -s 1 1 1 ..\\Textures\\Wood.PNG\n"
    )
    box = trimesh.creation.box()
    uv = np.random.default_rng(0).random((len(box.vertices), 2))
    lines = ["mtllib model.mtl", *(f"v {x} {y} {z}" for x, y, z in box.vertices)]
    lines += [f"vt {u} {v}" for u, v in uv] + ["usemtl wood"]
    lines += [f"f {a}/{a} {b}/{b} {c}/{c}" for a, b, c in box.faces + 1]
    (folder / "model.obj").write_text("\n".join(lines) + "\n")
    loaded = load_mesh(folder / "model.obj")
    assert loaded.warnings == []
    with ObjectRenderer(RenderConfig(views=2, size=48)) as renderer:
        image = renderer.render(loaded.scene, "box").color[0].astype(float)
    inside = (image < 245).any(axis=2)
    red, green, blue = (image[..., c][inside].mean() for c in range(3))
    assert red > 2 * green and red > 2 * blue  # the texture's red, not the white Kd
