"""``xpt merge``: a partitioned render + shard in 3 parts, merged, holds the unpartitioned
run's samples byte for byte, passes verify, links instead of copying, and bad parts are
refused with one line."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from xpt.toolkit.cli import app
from xpt.toolkit.failures import read_failures
from xpt.toolkit.shards.manifest import manifest_shards, read_manifest
from xpt.toolkit.shards.merge import MergeError, merge_parts
from xpt.toolkit.shards.schema import SPLITS, iter_tar_samples
from xpt.toolkit.shards.verify import verify_shards

os.environ.setdefault("PYOPENGL_PLATFORM", "egl")
os.environ.setdefault("XPT_NO_PROGRESS", "1")

OBJECTS = ["procedural", "--categories", "mug,chair,table", "--per-category", "3"]
RENDER = ["--views", "2", "--size", "16", "--no-antialias"]
SHARD = ["--points", "64", "--max-samples", "2", "--val-fraction", "0.4"]
BROKEN = "rendering"  # one object's views removed: a failure recorded by every run


def _xpt(*args: object) -> None:
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output


def _drop_one_object(renders: Path) -> str:
    """Remove the first object's renders (the same object in every tree); its model id."""
    folder = sorted(renders.glob(f"*/*/{BROKEN}"))[0]
    shutil.rmtree(folder)
    return folder.parent.name


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """An unpartitioned render + shard, the same in 3 parts, and the parts merged."""
    root = tmp_path_factory.mktemp("merge")
    _xpt("render", *OBJECTS, *RENDER, "--out", root / "renders")
    for i in range(3):
        _xpt("render", *OBJECTS, *RENDER, "--out", root / "renders-parts", "--part", f"{i}/3")
    assert _drop_one_object(root / "renders") == _drop_one_object(root / "renders-parts")
    _xpt("shard", *OBJECTS, "--renders", root / "renders", *SHARD, "--out", root / "whole")
    for i in range(3):
        _xpt(
            "shard", *OBJECTS, "--renders", root / "renders-parts", *SHARD,
            "--out", root / "parts", "--part", f"{i}/3",
        )  # fmt: skip
    _xpt("merge", root / "parts", "--out", root / "merged", "--json", root / "merge.json")
    return {name: root / name for name in ("renders", "whole", "parts", "merged", "merge.json")}


def _samples(folder: Path) -> dict[str, dict[str, dict[str, bytes]]]:
    """Split -> key -> member -> bytes, over the manifest's shards."""
    found: dict[str, dict[str, dict[str, bytes]]] = {split: {} for split in SPLITS}
    for split, infos in manifest_shards(read_manifest(folder)).items():
        for info in infos:
            for raw in iter_tar_samples(folder / info.name):
                raw.pop("__url__")
                found[split][raw.pop("__key__")] = raw
    return found


def test_merged_parts_hold_the_unpartitioned_samples_byte_for_byte(runs) -> None:
    whole, merged = _samples(runs["whole"]), _samples(runs["merged"])
    assert whole["train"] and whole["val"]  # both splits are exercised
    for split in SPLITS:
        assert sorted(merged[split]) == sorted(whole[split]), split
        for key, members in whole[split].items():
            assert merged[split][key] == members, (split, key)


def test_merged_set_passes_verify_and_its_manifest_matches(runs) -> None:
    report = verify_shards(runs["merged"])
    assert report.ok, report.problems
    result = CliRunner().invoke(app, ["verify", str(runs["merged"])])
    assert result.exit_code == 0, result.output
    whole, merged = read_manifest(runs["whole"]), read_manifest(runs["merged"])
    assert merged["complete"] and merged["samples"] == whole["samples"]
    assert merged["categories"] == whole["categories"]
    for split in SPLITS:
        assert merged["splits"][split]["samples"] == whole["splits"][split]["samples"]
        assert merged["splits"][split]["views"] == whole["splits"][split]["views"]
    settings = dict(merged["settings"])
    assert settings.pop("merged")["parts"] == 3
    expected = {k: v for k, v in whole["settings"].items() if k not in ("part", "objects_digest")}
    parts = str(runs["renders"]) + "-parts"  # the only difference: where the views were read
    assert json.loads(json.dumps(settings).replace(parts, str(runs["renders"]))) == expected


def test_order_is_the_parts_one_after_another(runs) -> None:
    """The documented order: part 0's shards first, each part in its own seeded order."""
    merged = _samples(runs["merged"])
    for split in SPLITS:
        in_parts = [
            key for part in sorted(runs["parts"].glob("part-*")) for key in _samples(part)[split]
        ]
        assert list(merged[split]) == in_parts


def test_failures_of_the_parts_are_merged(runs) -> None:
    whole = read_failures(runs["whole"] / "failures.jsonl")
    merged = read_failures(runs["merged"] / "failures.jsonl")
    assert len(whole) == 1 and whole[0].stage == "views"
    assert [(f.id, f.stage) for f in merged] == [(f.id, f.stage) for f in whole]
    assert read_manifest(runs["merged"])["failures"] == 1


def test_no_tar_data_is_copied(runs) -> None:
    """Every merged shard is a hard link to a part's shard (same inode)."""
    report = json.loads(runs["merge.json"].read_text())
    assert report["copied"] == 0 and report["linked"] == report["shards"] > 3
    inodes = {p.stat().st_ino for p in runs["parts"].glob("part-*/*.tar")}
    for shard in runs["merged"].glob("*.tar"):
        assert shard.stat().st_ino in inodes and shard.stat().st_nlink == 2


def test_merging_again_replaces_an_earlier_merge(runs, tmp_path: Path) -> None:
    out = tmp_path / "again"
    first = merge_parts([runs["parts"]], out)
    second = merge_parts(sorted(runs["parts"].glob("part-*")), out)  # parts named one by one
    assert first.manifest["splits"] == second.manifest["splits"]
    assert verify_shards(out).ok


# ---------------------------------------------------------------- refused parts


def _link_tars(source: str, target: str) -> None:
    """Tars hard-linked (never edited), anything else copied (the tests edit manifests)."""
    (os.link if source.endswith(".tar") else shutil.copy2)(source, target)


def _copy_parts(runs, here: Path) -> list[Path]:
    """Copies of the three part folders under ``here``."""
    parts = []
    for part in sorted(runs["parts"].glob("part-*")):
        parts.append(Path(shutil.copytree(part, here / part.name, copy_function=_link_tars)))
    return parts


def _edit_manifest(folder: Path, **changes) -> None:
    path = folder / "manifest.json"
    manifest = json.loads(path.read_text())
    settings = changes.pop("settings", {})
    manifest.update(changes)
    manifest["settings"].update(settings)
    path.write_text(json.dumps(manifest))


def _refused(parts: list[Path], out: Path, match: str) -> str:
    result = CliRunner().invoke(app, ["merge", *map(str, parts), "--out", str(out)])
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error "), result.output
    assert match in lines[0], lines[0]
    assert not out.exists()
    return lines[0]


def test_a_missing_part_is_refused(runs, tmp_path: Path) -> None:
    p0, p1, _ = _copy_parts(runs, tmp_path)
    _refused([p0, p1], tmp_path / "out", "missing part 2/3")


def test_an_incomplete_part_is_refused(runs, tmp_path: Path) -> None:
    parts = _copy_parts(runs, tmp_path)
    _edit_manifest(parts[1], complete=False)
    line = _refused(parts, tmp_path / "out", "incomplete part 1/3")
    assert str(parts[1]) in line


def test_parts_with_other_settings_are_refused(runs, tmp_path: Path) -> None:
    parts = _copy_parts(runs, tmp_path)
    _edit_manifest(parts[2], settings={"num_points": 128, "seed": 7})
    line = _refused(parts, tmp_path / "out", "made with other settings")
    assert "(num_points, seed)" in line and str(parts[2]) in line


def test_parts_of_different_partitions_are_refused(runs, tmp_path: Path) -> None:
    parts = _copy_parts(runs, tmp_path)
    _edit_manifest(parts[1], settings={"part": "1/4"})
    _refused(parts, tmp_path / "out", "parts of different partitions")


def test_overlapping_parts_are_refused(runs, tmp_path: Path) -> None:
    parts = _copy_parts(runs, tmp_path)
    twin = Path(shutil.copytree(parts[0], tmp_path / "twin", copy_function=_link_tars))
    _refused([*parts, twin], tmp_path / "out", "are both part 0/3 (overlapping)")
    _refused([*parts, parts[0]], tmp_path / "out", "given twice")
    # a part that holds another part's samples
    _edit_manifest(parts[1], settings={"part": "0/3"})
    _edit_manifest(parts[0], settings={"part": "1/3"})
    _refused(parts, tmp_path / "out", "belongs to part")


def test_a_damaged_part_shard_and_a_non_part_are_refused(runs, tmp_path: Path) -> None:
    parts = _copy_parts(runs, tmp_path)
    shard = sorted(parts[0].glob("*.tar"))[0]
    shard.unlink()
    _refused(parts, tmp_path / "out", f"{shard}: missing")
    _refused([runs["whole"]], tmp_path / "out", "a whole set (made without --part)")
    _refused([runs["merged"]], tmp_path / "out", "not a part of an `xpt shard --part i/n` run")
    _refused([tmp_path / "nothing"], tmp_path / "out", "no such folder")


def test_out_must_be_new_or_an_earlier_merge(runs, tmp_path: Path) -> None:
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "keep.txt").write_text("mine\n")
    with pytest.raises(MergeError, match="not an earlier merge"):
        merge_parts([runs["parts"]], taken)
    assert (taken / "keep.txt").read_text() == "mine\n"
    with pytest.raises(MergeError, match="holds the parts"):
        merge_parts([runs["parts"]], runs["parts"])
