"""``xpt render`` through the CLI: --part, --json, --preview, --strict."""

from __future__ import annotations

import json
import os
from pathlib import Path

from PIL import Image
from typer.testing import CliRunner

from xpt.toolkit.cli import app

SMALL = ["--views", "2", "--size", "32", "--per-category", "1"]
TRIANGLE_OBJ = "v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n"
CATEGORIES = "chair,table,mug,car,lamp,bowl"


def _rendered(out: Path) -> set[str]:
    return {p.parent.parent.name + "/" + p.parent.name for p in out.glob("*/*/rendering")}


def test_parts_cover_every_object_once_and_json_summary(tmp_path: Path) -> None:
    runner = CliRunner()
    outs = []
    for index in range(2):
        out = tmp_path / f"part{index}"
        report = tmp_path / f"part{index}.json"
        args = ["render", "--out", str(out), "--categories", CATEGORIES, *SMALL]
        args += ["--part", f"{index}/2", "--json", str(report)]
        if index == 0:
            args += ["--preview", str(tmp_path / "grid.png")]
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
        summary = json.loads(report.read_text())
        assert summary["failed"] == 0 and summary["done"] == summary["objects"] >= 1
        assert summary["views"] == 2 * summary["done"] and summary["backend"] == "egl"
        assert summary["gl_renderer"] and summary["views_per_second"] > 0
        assert "views per second" in result.output
        outs.append(_rendered(out))
    assert not outs[0] & outs[1]
    assert len(outs[0] | outs[1]) == 6
    # The preview shows one row per rendered object of part 0 and its 2 views.
    grid = Image.open(tmp_path / "grid.png")
    assert grid.height == len(outs[0]) * (96 + 4) + 4 and grid.width > 2 * 96


def test_strict_fails_on_a_broken_mesh_and_bad_options_are_one_line_errors(
    tmp_path: Path,
) -> None:
    meshes = tmp_path / "meshes" / "thing"
    meshes.mkdir(parents=True)
    (meshes / "broken.ply").write_bytes(b"ply\nformat ascii 1.0\nelement vertex 9999999\n")
    runner = CliRunner()
    out = tmp_path / "out"
    args = ["render", str(meshes.parent), "--out", str(out), "--views", "2", "--size", "32"]
    nothing = runner.invoke(app, args)  # every object failed: an error even without --strict
    assert nothing.exit_code == 1 and "every object failed" in nothing.output
    (meshes / "good.obj").write_text(TRIANGLE_OBJ)
    relaxed = runner.invoke(app, args)
    assert relaxed.exit_code == 0, relaxed.output
    strict = runner.invoke(app, [*args, "--strict"])
    assert strict.exit_code == 1
    # the object is still failed, and listed once however many runs failed it
    assert (out / "failures.jsonl").read_text().count("broken.ply") == 1
    bad = runner.invoke(app, ["render", "--out", str(out), "--part", "3/2"])
    assert bad.exit_code == 1 and "--part" in bad.output
    bad = runner.invoke(app, ["render", "--out", str(out), "--size", "2"])
    assert bad.exit_code == 1 and "size" in bad.output


def test_any_file_name_renders_and_unread_entries_are_recorded(tmp_path: Path) -> None:
    meshes = tmp_path / "meshes" / "things"
    meshes.mkdir(parents=True)
    for name in ("椅子.obj", "桌子.obj", "[red]odd.obj"):
        (meshes / name).write_text(TRIANGLE_OBJ)
    with open(os.fsencode(meshes) + b"/caf\xe9.obj", "wb") as handle:  # not valid UTF-8
        handle.write(TRIANGLE_OBJ.encode())
    with open(os.fsencode(meshes) + b"/bad\xff.obj", "wb") as handle:
        handle.write(b"v 0 0 0\nf 1 2 7\n")
    (meshes / "gone.obj").symlink_to(tmp_path / "nowhere.obj")
    (meshes / "x.off").mkdir()
    out = tmp_path / "out"
    args = ["render", str(meshes.parent), "--out", str(out), "--views", "1", "--size", "16"]
    result = CliRunner().invoke(app, [*args, "--json", str(tmp_path / "r.json")])
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "r.json").read_text())
    assert (summary["done"], summary["failed"], summary["unread"]) == (4, 1, 2)
    assert summary["layout"] == "folder"
    text = (out / "failures.jsonl").read_bytes().decode("utf-8", errors="strict")
    records = [json.loads(line) for line in text.splitlines()]
    assert sorted(Path(r["path"]).name for r in records) == ["bad\\xff.obj", "gone.obj", "x.off"]
    assert "\\ud" not in text  # no lone surrogate, not even escaped
    manifest = (out / "render_manifest.jsonl").read_bytes().decode("utf-8", errors="strict")
    assert len({json.loads(line)["key"] for line in manifest.splitlines()}) == 4
    assert result.output.count("not read: ") == 2  # each named on the console
    strict = CliRunner().invoke(app, [*args, "--strict"])  # unread entries fail --strict
    assert strict.exit_code == 1
