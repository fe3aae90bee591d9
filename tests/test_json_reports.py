"""Every command's ``--json`` report uses snake_case keys only (data keys such as category ids
aside), and ``--json -`` leaves stdout to the JSON alone. ``xpt demo``: tests/toolkit/test_demo.py.
"""

from __future__ import annotations

import json
import os

import pytest
from typer.testing import CliRunner

from xpt.toolkit.cli import app

os.environ.setdefault("PYOPENGL_PLATFORM", "egl")
os.environ.setdefault("XPT_NO_PROGRESS", "1")

TINY_BENCHMARK = [
    "--per-category", "4", "--num-points", "64", "--ways", "3", "--shots", "2",
    "--queries", "2", "--runs", "2", "--baseline-inits", "1",
]  # fmt: skip


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    """The ``--json`` report of each command on a tiny procedural pipeline, by command."""
    root = tmp_path_factory.mktemp("reports")
    runner = CliRunner()
    found: dict[str, dict] = {}

    def run(name: str, *args: object) -> None:
        target = root / f"{name}.json"
        result = runner.invoke(app, [*map(str, args), "--json", str(target)])
        assert result.exit_code == 0, result.output
        found[name] = json.loads(target.read_text())

    meshes, renders, shards, run_dir = (root / n for n in ("meshes", "renders", "shards", "run"))
    run("synth", "synth", meshes, "--per-category", "2", "--categories", "chair,mug,lamp")
    run("synth_eval", "synth", root / "eval", "--eval", "--per-category", "1")
    run("synth_scan", "synth", root / "scan", "--eval", "--scan", "--per-category", "2")
    args = ["render", meshes, "--out", renders, "--views", "2", "--size", "32", "--json", "-"]
    shown = runner.invoke(app, list(map(str, args)))
    assert shown.exit_code == 0, shown.output
    found["render"] = json.loads(shown.stdout)  # stdout holds the JSON and nothing else
    run("shard", "shard", meshes, "--renders", renders, "--out", shards, "--points", "64")
    run("verify", "verify", shards)
    run("inspect", "inspect", shards)
    run(
        "pretrain", "pretrain", shards, "--out", run_dir, "--backbone", "pointnet",
        "--image-encoder", "resnet18", "--epochs", "1", "--batch-size", "2", "--points", "64",
        "--emb-dims", "32", "--image-size", "16", "--workers", "0",
    )  # fmt: skip
    run(
        "benchmark", "benchmark", "--checkpoint", run_dir / "last.pt",
        "--cache", root / "cache", *TINY_BENCHMARK,
    )  # fmt: skip
    return found


COMMANDS = (
    "synth",
    "synth_eval",
    "synth_scan",
    "render",
    "shard",
    "verify",
    "inspect",
    "pretrain",
    "benchmark",
)


@pytest.mark.parametrize("command", COMMANDS)
def test_json_reports_use_snake_case_keys(reports: dict, command: str, assert_snake_case) -> None:
    assert reports[command]
    assert_snake_case(reports[command])


def test_renamed_keys(reports: dict) -> None:
    """The keys that used to be labels ("objects/s", "written now", "mean tris", "C")."""
    assert {"written_now", "resumed_shards", "unread", "objects_per_s"} <= set(reports["shard"])
    assert "mean_triangles" in reports["synth"]["categories"][0]
    assert {"views_per_sample", "points_per_sample", "image_format"} <= set(
        reports["inspect"]["sets"][0]
    )
    benchmark = reports["benchmark"]
    assert {"c", "c_grid"} <= set(benchmark["protocol"]["linear"])
    table = benchmark["datasets"][0]["tables"]["linear"][0]
    assert {"overall_acc_pct", "mean_class_acc_pct", "c"} <= set(table)
    assert benchmark["datasets"][0]["rows"][0]["linear"]["runs"][0]["c"] > 0


def test_the_check_flags_labels_not_data(assert_snake_case) -> None:
    assert_snake_case(
        {"categories": {"proc-chair": 1}, "fewshot": {"5w10s": {}}, "cv_accuracy": {"0.1": 1}}
    )
    for label in ("objects/s", "written now", "C", "overall acc %"):
        with pytest.raises(AssertionError, match="snake_case"):
            assert_snake_case({"rows": [{label: 1}]})
