"""`verify` and `inspect`: every fault named by file; the summary and the preview sheet."""

from __future__ import annotations

import io
import json
import shutil
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from xpt.toolkit.meshes.geometry import Normalization
from xpt.toolkit.meshes.objects import MeshObject
from xpt.toolkit.seeding import rng
from xpt.toolkit.shards.build import SampleError, ShardConfig, base_meta, build_shards
from xpt.toolkit.shards.inspect import point_scatter, preview_rows, summarize
from xpt.toolkit.shards.manifest import read_manifest, write_manifest
from xpt.toolkit.shards.schema import Sample, encode_sample
from xpt.toolkit.shards.verify import file_sha256, verify_shards
from xpt.toolkit.shards.writer import ShardWriter, _tarinfo, tar_member_size

N_POINTS = 32


@dataclass
class SphereMaker:
    """Samples without meshes: seeded points on a sphere of radius 0.8, flat-colour views."""

    views: int = 2

    def __call__(self, obj: MeshObject) -> Sample:
        generator = rng(0, obj.key)
        direction = generator.normal(size=(N_POINTS, 3))
        points = 0.8 * direction / np.linalg.norm(direction, axis=1, keepdims=True)
        colour = generator.integers(0, 256, size=3).astype(np.uint8)
        images = [np.broadcast_to(colour, (16, 16, 3)).copy() for _ in range(self.views)]
        meta = {
            **base_meta(obj, 0),
            "cameras": [{"view": i} for i in range(self.views)],
            "normalization": Normalization((0.0, 0.0, 0.0), 1.0).to_json(),
        }
        return Sample(obj.key, points.astype(np.float32), images, meta)

    def describe(self) -> dict:
        return {"views": "sphere-test"}


def _objects(n: int = 10) -> list[MeshObject]:
    return [
        MeshObject("test", f"c{i % 3}", f"cat{i % 3}", f"m{i:02d}", label=i % 3) for i in range(n)
    ]


def _build(out: Path, **changes) -> Path:
    config = ShardConfig(out=out, max_samples=3, val_fraction=0.3, **changes)
    build_shards(_objects(), config, SphereMaker())
    return out


@pytest.fixture()
def shard_set(tmp_path: Path) -> Path:
    return _build(tmp_path / "set")


def _names(report) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for problem in report.problems:
        found.setdefault(problem.name, []).append(problem.reason)
    return found


def test_a_clean_set_verifies(shard_set: Path) -> None:
    report = verify_shards(shard_set)
    manifest = read_manifest(shard_set)
    assert report.ok and report.problems == []
    assert report.samples == manifest["samples"] == 10
    assert report.shards == sum(len(s["shards"]) for s in manifest["splits"].values()) >= 4


def test_flipped_byte_is_caught_by_checksum(shard_set: Path) -> None:
    shard = shard_set / "train-000001.tar"
    data = bytearray(shard.read_bytes())
    data[700] ^= 0x01  # inside the first member's data
    shard.write_bytes(bytes(data))
    found = _names(verify_shards(shard_set))
    assert list(found) == ["train-000001.tar"]
    assert any("sha256 mismatch" in reason for reason in found["train-000001.tar"])


def test_truncated_tar_is_named(shard_set: Path) -> None:
    shard = shard_set / "train-000000.tar"
    shard.write_bytes(shard.read_bytes()[:3000])
    found = _names(verify_shards(shard_set))
    assert list(found) == ["train-000000.tar"]
    reasons = " | ".join(found["train-000000.tar"])
    assert "truncated: 3,000 bytes" in reasons and "unreadable tar" in reasons


def test_missing_shard_is_named(shard_set: Path) -> None:
    (shard_set / "val-000000.tar").unlink()
    found = _names(verify_shards(shard_set))
    assert list(found) == ["val-000000.tar"] and "missing" in found["val-000000.tar"][0]


def test_foreign_and_unlisted_files_are_named(shard_set: Path) -> None:
    (shard_set / "notes.txt").write_text("hello")
    shutil.copy(shard_set / "train-000000.tar", shard_set / "train-000099.tar")
    (shard_set / ".tmp-train-000005.tar").write_bytes(b"half")
    found = _names(verify_shards(shard_set))
    assert sorted(found) == [".tmp-train-000005.tar", "notes.txt", "train-000099.tar"]
    assert "foreign file" in found["notes.txt"][0]
    assert "not listed" in found["train-000099.tar"][0]
    assert "interrupted" in found[".tmp-train-000005.tar"][0]


def _rewrite_first_shard(folder: Path, edit) -> str:
    """Re-write train-000000.tar with ``edit(raw entries)`` applied to its first sample,
    and update the manifest checksum so that only the schema problem remains."""
    name = "train-000000.tar"
    with tarfile.open(folder / name) as tar:
        members = [(m.name, tar.extractfile(m).read()) for m in tar]
    key = members[0][0].split(".")[0]
    first = {n.split(".", 1)[1]: d for n, d in members if n.startswith(key + ".")}
    rest = [(n, d) for n, d in members if not n.startswith(key + ".")]
    entries = edit(first)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for member, data in [(f"{key}.{e}", d) for e, d in sorted(entries.items())] + rest:
            info = tarfile.TarInfo(member)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    (folder / name).write_bytes(buffer.getvalue())
    manifest = read_manifest(folder)
    shard = manifest["splits"]["train"]["shards"][0]
    shard["sha256"], shard["bytes"] = file_sha256(folder / name)
    write_manifest(folder, manifest)
    return key


def test_wrong_schema_samples_are_named(shard_set: Path) -> None:
    key = _rewrite_first_shard(shard_set, lambda e: {k: v for k, v in e.items() if k != "json"})
    found = _names(verify_shards(shard_set))
    assert list(found) == ["train-000000.tar"]
    assert f"sample {key}: missing entry 'json'" in found["train-000000.tar"]


def test_view_count_and_frame_errors_are_caught(shard_set: Path) -> None:
    def edit(entries: dict) -> dict:
        entries = {k: v for k, v in entries.items() if k != "view_01.png"}
        points = np.full((N_POINTS, 3), 2.0, dtype=np.float32)
        buffer = io.BytesIO()
        np.save(buffer, points)
        return {**entries, "points.npy": buffer.getvalue()}

    _rewrite_first_shard(shard_set, edit)
    reasons = " | ".join(_names(verify_shards(shard_set))["train-000000.tar"])
    assert "outside the unit sphere" in reasons and "num_views 2 but 1 views" in reasons


def test_encoding_refuses_a_bad_sample() -> None:
    meta = {**base_meta(_objects()[0], 0), "cameras": [{}], "normalization": {}}
    meta["split"] = "train"
    views = [np.zeros((4, 4, 3), np.uint8)]
    with pytest.raises(ValueError, match="centre"):
        encode_sample(Sample("k", np.zeros((4, 3), np.float32), views, meta))
    with pytest.raises(ValueError, match=r"\(N, 3\)"):
        encode_sample(Sample("k", np.zeros((4, 2), np.float32), views, meta))
    with pytest.raises(ValueError, match="dots"):
        encode_sample(Sample("a.b", np.zeros((4, 3), np.float32), views, meta))


def test_writer_rolls_by_samples_and_renames_complete_shards(tmp_path: Path) -> None:
    done = []
    writer = ShardWriter(tmp_path, "val", max_samples=2, on_shard=done.append)
    entries = {"__key__": "k0", "json": b"{}"}
    for i in range(3):
        writer.write({**entries, "__key__": f"k{i}"}, position=i, category="c", views=0)
    assert [d.name for d in done] == ["val-000000.tar"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".tmp-val-000001.tar", "val-000000.tar"]
    writer.close()
    assert [(d.name, d.samples, d.start, d.end) for d in done] == [
        ("val-000000.tar", 2, 0, 2),
        ("val-000001.tar", 1, 2, 3),
    ]
    for info in done:
        assert (info.sha256, info.bytes) == file_sha256(tmp_path / info.name)
        with tarfile.open(tmp_path / info.name) as tar:
            assert all(m.mtime == 0 and m.uid == 0 and m.uname == "" for m in tar)


@pytest.mark.parametrize("name", ["k.json", "a" * 95 + ".json", "b" * 120 + ".npy", "é.json"])
def test_member_size_estimate_is_exact(name: str) -> None:
    for size in (0, 1, 511, 512, 513):
        info = _tarinfo(name, size)
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
            tar.addfile(info, io.BytesIO(b"x" * size))
            assert tar.offset == tar_member_size(info)


def test_summary_and_preview(shard_set: Path, tmp_path: Path) -> None:
    summary = summarize(shard_set)
    assert summary["samples"] == 10 and summary["train"] + summary["val"] == 10
    assert summary["categories"] == 3 and summary["views_per_sample"] == 2.0
    assert summary["complete"] and summary["image_format"] == "png"
    rows, labels = preview_rows(shard_set, samples=4, views=3, size=32)
    assert len(rows) == len(labels) == 4 and all(len(row) == 3 for row in rows)  # 2 views
    assert all(row[-1].shape == (32, 32, 3) and row[0].shape == (16, 16, 3) for row in rows)
    assert labels[0].startswith("cat") and "/m" in labels[0]
    scatter = point_scatter(np.array([[0.0, 0.0, 0.0]]), size=9, azimuth=0.0, elevation=0.0)
    assert (scatter != 255).any(axis=2).sum() == 4  # one 2x2 dot at the centre
    assert (scatter[4:6, 4:6] != 255).all()


runner = CliRunner()


def test_verify_and_inspect_commands(shard_set: Path, tmp_path: Path) -> None:
    from xpt.toolkit.cli import app

    ok = runner.invoke(app, ["verify", str(shard_set), "--json", str(tmp_path / "v.json")])
    assert ok.exit_code == 0, ok.output
    assert json.loads((tmp_path / "v.json").read_text())["ok"] is True
    preview = tmp_path / "grid.png"
    shown = runner.invoke(app, ["inspect", str(shard_set), "--preview", str(preview)])
    assert shown.exit_code == 0, shown.output
    assert "views per sample" in shown.output
    with Image.open(preview) as image:
        assert image.height == 4 + 6 * (128 + 4)  # 6 rows of the contact sheet
    listed = runner.invoke(app, ["inspect", str(shard_set), "--json", "-"])
    assert json.loads(listed.stdout)["sets"][0]["samples"] == 10
    (shard_set / "val-000000.tar").unlink()
    bad = runner.invoke(app, ["verify", str(shard_set)])
    assert bad.exit_code == 1 and "val-000000.tar" in bad.output
    as_json = runner.invoke(app, ["verify", str(shard_set), "--json", "-"])
    report = json.loads(as_json.stdout)
    assert as_json.exit_code == 1 and report["ok"] is False
    assert report["sets"][0]["problems"][0]["name"] == "val-000000.tar"
    missing = runner.invoke(app, ["inspect", str(tmp_path / "nothing")])
    assert missing.exit_code == 1


def test_an_empty_set_is_refused(tmp_path: Path) -> None:
    """Every object failed: a complete manifest with nothing in it is not a usable set."""

    class Failing(SphereMaker):
        def __call__(self, obj: MeshObject) -> Sample:
            raise SampleError("views", f"{obj.model_id}: no cameras.json")

    config = ShardConfig(out=tmp_path / "empty")
    result = build_shards(_objects(3), config, Failing())
    assert result.all_failed and result.manifest["complete"] and result.manifest["samples"] == 0
    report = verify_shards(tmp_path / "empty")
    assert _names(report) == {
        "manifest.json": ["empty: the set holds no samples (see failures.jsonl for why)"]
    }
    from xpt.toolkit.cli import app

    cli = runner.invoke(app, ["verify", str(tmp_path / "empty")])
    assert cli.exit_code == 1 and "empty" in cli.output


def test_a_set_with_test_shards_verifies_and_counts_them(tmp_path: Path) -> None:
    objects = [
        MeshObject("modelnet", "c", "c", f"m{i}", label=0, split="test" if i < 3 else "train")
        for i in range(8)
    ]
    build_shards(objects, ShardConfig(out=tmp_path / "s", val_fraction=0.5), SphereMaker())
    assert verify_shards(tmp_path / "s").ok
    summary = summarize(tmp_path / "s")
    assert summary["test"] == 3 and summary["train"] + summary["val"] == 5
    assert (tmp_path / "s" / "test-000000.tar").is_file()


def test_inspect_names_missing_and_truncated_shards(shard_set: Path) -> None:
    from xpt.toolkit.cli import app

    clean = runner.invoke(app, ["inspect", str(shard_set), "--json", "-"])
    assert clean.exit_code == 0 and json.loads(clean.stdout)["problems"] == []
    (shard_set / "val-000000.tar").unlink()
    train = shard_set / "train-000000.tar"
    size = train.stat().st_size
    with open(train, "r+b") as handle:
        handle.truncate(size - 512)
    damaged = runner.invoke(app, ["inspect", str(shard_set)])
    assert damaged.exit_code == 1 and "Traceback" not in damaged.output
    assert f"{shard_set / 'val-000000.tar'}: missing" in damaged.output
    assert f"{train}: truncated: {size - 512} bytes, the manifest says {size}" in damaged.output


def test_inspect_names_a_missing_path_and_a_file(tmp_path: Path) -> None:
    from xpt.toolkit.cli import app

    missing = runner.invoke(app, ["inspect", str(tmp_path / "nothing")])
    assert missing.exit_code == 1
    assert f"{tmp_path / 'nothing'}: no such file or folder" in missing.output
    a_file = tmp_path / "notes.txt"
    a_file.write_text("hello")
    as_file = runner.invoke(app, ["inspect", str(a_file)])
    assert as_file.exit_code == 1 and f"{a_file}: a file, not a shard folder" in as_file.output
