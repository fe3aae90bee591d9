"""Import of the CrossPoint release layout (PLY point clouds + 3D-R2N2 RGBA renderings)."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from xpt.toolkit.crosspoint_import import CrossPointLayoutError, crosspoint_objects, find_root
from xpt.toolkit.failures import read_failures
from xpt.toolkit.meshes.geometry import normalization
from xpt.toolkit.shards.build import ShardConfig, run_shard
from xpt.toolkit.shards.inspect import iter_samples
from xpt.toolkit.shards.manifest import read_manifest
from xpt.toolkit.shards.verify import verify_shards

SIZE = 137
PLANE, CHAIR = "02691156", "03001627"


def _cloud(seed: int, n: int) -> np.ndarray:
    generator = np.random.default_rng(seed)
    return (generator.random((n, 3)) * [2.0, 1.0, 0.5] + [5.0, -1.0, 3.0]).astype(np.float32)


def _ply(path: Path, points: np.ndarray, fmt: str) -> None:
    header = f"ply\nformat {fmt} 1.0\nelement vertex {len(points)}\n"
    header += "property float x\nproperty float y\nproperty float z\nend_header\n"
    if fmt == "ascii":
        body = "".join(f"{x!r} {y!r} {z!r}\n" for x, y, z in points.tolist()).encode()
    else:
        order = "<" if fmt == "binary_little_endian" else ">"
        body = b"".join(struct.pack(order + "3f", *row) for row in points.tolist())
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(header.encode() + body)


def _rgba(colour: tuple[int, int, int]) -> np.ndarray:
    """Transparent background, an opaque square, and a half-transparent stripe."""
    image = np.zeros((SIZE, SIZE, 4), np.uint8)
    image[40:90, 40:90] = (*colour, 255)
    image[100:110, :] = (*colour, 128)
    return image


def _renderings(root: Path, synset: str, model: str, colour: tuple[int, int, int]) -> None:
    folder = root / "ShapeNetRendering" / synset / model / "rendering"
    folder.mkdir(parents=True)
    for view in range(3):
        Image.fromarray(_rgba(colour), "RGBA").save(folder / f"{view:02d}.png")
    lines = [f"{30.0 * v} {25.0 + v} 0 {0.8 + 0.01 * v} 25" for v in range(3)]
    (folder / "rendering_metadata.txt").write_text("\n".join(lines) + "\n")
    (folder / "renderings.txt").write_text("00.png\n01.png\n02.png\n")


CLOUDS = {
    (PLANE, "aaa"): (_cloud(1, 300), "binary_little_endian"),
    (PLANE, "bbb"): (_cloud(2, 100), "ascii"),
    (CHAIR, "ccc"): (_cloud(3, 200), "binary_big_endian"),
}


@pytest.fixture()
def release(tmp_path: Path) -> Path:
    """``<tmp>/data/ShapeNet`` + ``ShapeNetRendering``: 3 good objects and 2 bad ones."""
    root = tmp_path / "data"
    for (synset, model), (points, fmt) in CLOUDS.items():
        _ply(root / "ShapeNet" / synset / f"{model}.ply", points, fmt)
        _renderings(root, synset, model, (200, 30, 60))
    broken = root / "ShapeNet" / CHAIR / "ddd.ply"
    _ply(broken, _cloud(4, 50), "binary_little_endian")
    broken.write_bytes(broken.read_bytes()[:-20])
    _renderings(root, CHAIR, "ddd", (0, 0, 0))
    _ply(root / "ShapeNet" / CHAIR / "eee.ply", _cloud(5, 50), "ascii")  # no renderings
    return tmp_path


def test_objects_of_the_layout(release: Path) -> None:
    assert find_root(release) == release / "data" == find_root(release / "data")
    objects = crosspoint_objects(release)
    assert [o.key for o in objects] == [
        f"crosspoint_{PLANE}_aaa",
        f"crosspoint_{PLANE}_bbb",
        f"crosspoint_{CHAIR}_ccc",
        f"crosspoint_{CHAIR}_ddd",
        f"crosspoint_{CHAIR}_eee",
    ]
    assert [(o.category_name, o.label) for o in objects[1:3]] == [("airplane", 0), ("chair", 1)]
    assert len(crosspoint_objects(release, categories=["chair"])) == 3
    with pytest.raises(CrossPointLayoutError, match="no categories"):
        crosspoint_objects(release, categories=["bathtub"])
    with pytest.raises(CrossPointLayoutError, match="not the CrossPoint layout"):
        find_root(release / "data" / "ShapeNet")


def test_import_writes_verified_shards_without_rendering(release: Path, tmp_path: Path) -> None:
    out = tmp_path / "shards"
    config = ShardConfig(
        out=out, source=str(release), format="crosspoint", num_points=128, val_fraction=0.0
    )
    result = run_shard(config)
    assert result.manifest["samples"] == 3 and result.manifest["failures"] == 2
    failures = {f.id: f for f in read_failures(out / "failures.jsonl")}
    assert failures[f"crosspoint_{CHAIR}_ddd"].stage == "load"
    assert "truncated" in failures[f"crosspoint_{CHAIR}_ddd"].reason
    assert failures[f"crosspoint_{CHAIR}_eee"].stage == "views"
    assert verify_shards(out).ok
    samples = {s["__key__"]: s for s in iter_samples(out)}
    assert set(samples) == {f"crosspoint_{s}_{m}" for s, m in CLOUDS}
    for (synset, model), (raw, _) in CLOUDS.items():
        sample = samples[f"crosspoint_{synset}_{model}"]
        meta, points = sample["json"], sample["points"]
        assert points.shape == (128, 3) and points.dtype == np.float32 and "normals" not in sample
        # points are rows of the PLY moved into its bounding-box frame (half-diagonal 1)
        norm = normalization(_as_mesh(raw))
        expected = norm.apply(raw).astype(np.float32)
        assert np.allclose(meta["normalization"]["centre"], norm.centre)
        rows = {tuple(r) for r in expected}
        assert all(tuple(r) in rows for r in points)
        assert len({tuple(r) for r in points}) == min(128, len(raw))
        assert np.linalg.norm(points, axis=1).max() <= 1.0 + 1e-6
        # RGBA views composited on white, 3D-R2N2 camera parameters kept
        assert len(sample["views"]) == 3 == meta["num_views"]
        view = sample["views"][0]
        assert view.shape == (SIZE, SIZE, 3)
        assert (view[0, 0] == 255).all() and tuple(view[60, 60]) == (200, 30, 60)
        assert tuple(view[105, 5]) == (227, 142, 157)  # c * 128/255 + 255 * 127/255
        assert meta["cameras"][2]["azimuth"] == 60.0 and meta["cameras"][1]["elevation"] == 26.0
        assert meta["source"] == "crosspoint" and meta["source_points"] == len(raw)
        assert meta["category_name"] == {PLANE: "airplane", CHAIR: "chair"}[synset]


def _as_mesh(points: np.ndarray):
    import trimesh

    return trimesh.Trimesh(vertices=points, process=False)


def test_import_through_the_command_line(release: Path, tmp_path: Path) -> None:
    from xpt.toolkit.cli import app

    out = tmp_path / "cli"
    args = ["shard", str(release / "data"), "--format", "crosspoint", "--out", str(out)]
    result = CliRunner().invoke(app, [*args, "--points", "64", "--max-samples", "2"])
    assert result.exit_code == 0, result.output
    assert verify_shards(out).ok
    assert sum(1 for _ in iter_samples(out)) == 3
    not_layout = str(release / "data" / "ShapeNet")
    bad = CliRunner().invoke(
        app, ["shard", not_layout, "--format", "crosspoint", "--out", str(tmp_path / "x")]
    )
    assert bad.exit_code == 1 and "not the CrossPoint layout" in bad.output


def test_unparsable_rendering_metadata_is_a_warning_not_a_silent_drop(
    release: Path, tmp_path: Path
) -> None:
    import json

    from xpt.toolkit.cli import app

    folder = release / "data" / "ShapeNetRendering" / PLANE / "aaa" / "rendering"
    (folder / "rendering_metadata.txt").write_text("[30.0, 25.0, 0, 0.8, 25]\n")
    out, report = tmp_path / "shards", tmp_path / "report.json"
    args = ["shard", str(release), "--format", "crosspoint", "--out", str(out)]
    result = CliRunner().invoke(app, [*args, "--points", "64", "--json", str(report)])
    assert result.exit_code == 0, result.output
    key = f"crosspoint_{PLANE}_aaa"
    assert f"warning {key}" in " ".join(result.output.split())
    assert "rendering_metadata.txt" in result.output
    assert json.loads(report.read_text())["warnings"] == 1
    samples = {s["__key__"]: s for s in iter_samples(out)}
    meta = samples[key]["json"]  # the object still imports, its views without angles
    assert len(meta["cameras"]) == 3 and "azimuth" not in meta["cameras"][0]
    assert len(meta["warnings"]) == 1 and "rendering_metadata.txt" in meta["warnings"][0]
    assert samples[f"crosspoint_{PLANE}_bbb"]["json"]["warnings"] == []
    assert key not in {f.id for f in read_failures(out / "failures.jsonl")}


def test_alpha_drop_replays_the_release_loader(release: Path, tmp_path: Path) -> None:
    """The release's Image.convert("RGB") keeps the colour under transparent pixels."""
    from xpt.toolkit.cli import app

    rng = np.random.default_rng(0)
    view = rng.integers(0, 256, size=(SIZE, SIZE, 4), dtype=np.uint8)
    view[..., 3] = np.where(rng.random((SIZE, SIZE)) < 0.5, 0, 255)  # colour under alpha 0
    folder = release / "data" / "ShapeNetRendering" / PLANE / "aaa" / "rendering"
    for path in folder.glob("*.png"):
        Image.fromarray(view, "RGBA").save(path)
    with Image.open(folder / "00.png") as image:
        released = np.asarray(image.convert("RGB"))
    outs = {}
    for alpha in ("drop", "white"):
        outs[alpha] = tmp_path / alpha
        args = ["shard", str(release / "data"), "--format", "crosspoint", "--alpha", alpha]
        result = CliRunner().invoke(app, [*args, "--out", str(outs[alpha]), "--points", "64"])
        assert result.exit_code == 0, result.output
    views = {
        alpha: next(s for s in iter_samples(out) if s["json"]["model_id"] == "aaa")["views"][0]
        for alpha, out in outs.items()
    }
    np.testing.assert_array_equal(views["drop"], released)
    opaque = view[..., 3] == 255
    assert (views["white"][~opaque] == 255).all()
    np.testing.assert_array_equal(views["white"][opaque], view[..., :3][opaque])
    settings = read_manifest(outs["drop"])["settings"]
    assert settings["views_from"]["alpha"] == "drop"
    meshes = CliRunner().invoke(app, ["shard", "--alpha", "drop", "--out", str(tmp_path / "m")])
    assert meshes.exit_code == 1 and "--format crosspoint" in meshes.output

    # --replay-release picks 'drop' (an explicit --alpha still wins) and says so
    args = ["shard", str(release / "data"), "--format", "crosspoint", "--points", "64"]
    replayed = CliRunner().invoke(app, [*args, "--replay-release", "--out", str(tmp_path / "r")])
    assert replayed.exit_code == 0, replayed.output
    assert "replaying the published code (--replay-release): alpha drop" in replayed.output
    assert read_manifest(tmp_path / "r")["settings"]["views_from"]["alpha"] == "drop"
    white = [*args, "--replay-release", "--alpha", "white", "--out", str(tmp_path / "w")]
    assert CliRunner().invoke(app, white).exit_code == 0
    assert read_manifest(tmp_path / "w")["settings"]["views_from"]["alpha"] == "white"
