"""``xpt demo --fast``: every stage runs, in order, and demo.json says what was compared."""

from __future__ import annotations

import json
from pathlib import Path

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
    assert (out / "benchmark-procedural-scan-upright.png").stat().st_size > 10_000
    assert (out / "pretrain" / "best.pt").exists() and (out / "renders-preview.png").exists()
    assert (out / "scan-preview.png").stat().st_size > 5_000

    assert_snake_case(summary)
    assert_snake_case(json.loads((out / "benchmark.json").read_text()))

    args = ["demo", "--out", str(out), "--fast", "--workers", "1", "--json", "-"]
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0, again.output
    assert json.loads((out / "demo.json").read_text())["margin"] == summary["margin"]
    assert json.loads(again.stdout)["margin"] == summary["margin"]  # the tables on stderr
    assert "pretrained %" in again.output and "hand-crafted %" in again.output
