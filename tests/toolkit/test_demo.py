"""``xpt demo --fast``: every stage runs, in order, and demo.json says what was compared."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from xpt.toolkit.cli import app


def test_fast_demo_runs_every_stage_and_resumes(tmp_path: Path, assert_snake_case) -> None:
    out = tmp_path / "demo"
    result = CliRunner().invoke(app, ["demo", "--out", str(out), "--fast", "--workers", "1"])
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())
    for stage in (
        "1. synth",
        "2. render",
        "3. shard",
        "4. eval set",
        "5. pretrain",
        "6. benchmark",
    ):
        assert stage in said
    summary = json.loads((out / "demo.json").read_text())
    assert summary["protocol"] == "xpt" and summary["settings"]["epochs"] == 1
    stages = {"synth", "render", "shard", "scan", "pretrain", "benchmark"}
    assert set(summary["seconds"]) == stages  # (demo.json keys are sorted)
    for variant in ("upright", "rotated"):
        for row in ("pretrained", "random_init", "hand_crafted"):
            assert 0.0 <= summary[row]["linear_accuracy"][variant] <= 1.0
            assert set(summary[row]["fewshot"][variant]) == {"3w2s"}
        assert len(summary["random_init"]["linear_runs"][variant]) == 3
        margin = summary["margin"][variant]
        expected = 100 * (
            summary["pretrained"]["linear_accuracy"][variant]
            - summary["random_init"]["linear_accuracy"][variant]
        )
        assert abs(margin["points"] - expected) < 1e-9
    selection = json.loads((out / "benchmark.json").read_text())["encoder"]
    assert selection["label"].startswith("best.pt") and selection["selected_on"] == "val"
    step = selection["step"]
    assert summary["checkpoint_label"] == f"best.pt (step {step})"
    assert f"best.pt (step {step}) vs random init x3" in said  # the table says what it compared
    assert (out / "benchmark-procedural-scan-upright.png").stat().st_size > 10_000
    assert (out / "pretrain" / "best.pt").exists() and (out / "renders-preview.png").exists()
    assert (out / "scan-preview.png").stat().st_size > 5_000

    assert_snake_case(summary)
    assert_snake_case(json.loads((out / "benchmark.json").read_text()))

    # resumed, with a real set in a <class>/{train,test}/ tree (np.save, +Z up): one more row
    real = _write_tree(tmp_path / "real")
    args = ["demo", "--out", str(out), "--fast", "--workers", "1", "--json", "-"]
    args += ["--eval-data", str(real), "--eval-up-axis", "+Z"]
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0, again.output
    resumed = json.loads((out / "demo.json").read_text())
    real_set = "modelnet40"  # 3 classes: not ModelNet10; read as a (non-standard) ModelNet40
    assert resumed["margin"] == {**summary["margin"], real_set: resumed["margin"][real_set]}
    assert json.loads(again.stdout)["margin"] == resumed["margin"]  # the tables on stderr
    assert 0.0 <= resumed["pretrained"]["linear_accuracy"][real_set] <= 1.0
    assert len(resumed["random_init"]["linear_runs"][real_set]) == 3
    read = json.loads((out / "benchmark-real.json").read_text())["datasets"][0]["dataset"]
    assert "read from tree files, up axis +Z turned to +Y" in read["notes"]
    assert read["title"] == "modelnet40 (non-standard)" and read["standard"] is False
    said = " ".join(again.output.split())
    assert "pretrained %" in said and "hand-crafted %" in said and real_set in said


def _write_tree(folder: Path) -> Path:
    """3 classes of 300-point clouds, 4 train and 2 test objects each, saved by numpy."""
    rng = np.random.default_rng(0)
    for label, name in enumerate(("bed", "chair", "lamp")):
        for split, count in (("train", 4), ("test", 2)):
            (folder / name / split).mkdir(parents=True)
            for i in range(count):
                points = rng.normal(size=(300, 3)) * [1.0, 1.0, 0.5 + label]
                np.save(folder / name / split / f"{name}_{i:04d}.npy", points.astype(np.float32))
    return folder


def test_a_missing_eval_set_fails_before_any_stage(tmp_path: Path) -> None:
    args = ["demo", "--out", str(tmp_path / "demo"), "--fast", "--eval-data", str(tmp_path / "no")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1
    assert "no such folder" in " ".join(result.output.split()) and "1. synth" not in result.output
