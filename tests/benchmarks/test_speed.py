"""The speed harness: its JSON schema, the ratio's direction, and its stage filter."""

from __future__ import annotations

import json

import pytest

from xpt.benchmarks import speed


def test_ratio_above_one_always_means_xpt_is_better() -> None:
    faster = speed.result(1.0, 3.0, "s")  # times: less is better
    assert faster["ratio"] == pytest.approx(3.0)
    smaller = speed.result(10.0, 40.0, "MiB")
    assert smaller["ratio"] == pytest.approx(4.0)
    more = speed.result(200.0, 50.0, "objects/s")  # rates: more is better
    assert more["ratio"] == pytest.approx(4.0)
    assert speed.result(3.0, 1.0, "ms/step")["ratio"] < 1.0
    assert set(speed.UNITS) == set(speed.STAGES) == set(speed.STAGE_FUNCTIONS)


def test_interleaved_runs_alternately_and_takes_medians() -> None:
    calls: list[str] = []
    ours, baseline = speed.interleaved(
        lambda: calls.append("o"), lambda: calls.append("b"), repeats=3
    )
    assert calls == ["o", "b"] * 4  # one warm-up each, then alternating
    assert ours >= 0.0 and baseline >= 0.0


def test_quick_run_writes_the_schema(tmp_path, capsys) -> None:
    path = tmp_path / "speed.json"
    stages = ["peak_memory", "linear_eval", "edgeconv_eval"]
    code = speed.main(["--quick", "--repeats", "1", "--stages", *stages, "--json", str(path)])
    assert code == 0
    records = json.loads(path.read_text())
    assert list(records) == stages
    for stage, record in records.items():
        assert {"ours", "baseline", "ratio", "unit"} <= set(record)
        assert record["unit"] == speed.UNITS[stage]
        if record["ratio"] is None:  # a stage that cannot run here says why
            assert record["note"].startswith("unavailable")
            continue
        expected = (
            record["baseline"] / record["ours"]
            if record["unit"] in speed.LOWER_IS_BETTER
            else record["ours"] / record["baseline"]
        )
        assert record["ratio"] == pytest.approx(expected)
        assert record["ours"] > 0 and record["baseline"] > 0
    assert records["linear_eval"]["same_accuracy"] is True
    out = capsys.readouterr().out
    assert "ratio > 1: xpt better" in out and all(stage in out for stage in stages)


def test_an_unavailable_stage_gets_null_figures_and_a_note(monkeypatch) -> None:
    def missing(config):
        raise speed.Unavailable("no renderer here")

    monkeypatch.setitem(speed.STAGE_FUNCTIONS, "render", missing)
    records = speed.run_stages(speed.SpeedConfig.quick_config(), ("render",))
    assert records["render"]["ratio"] is None and records["render"]["ours"] is None
    assert records["render"]["note"] == "unavailable: no renderer here"
    with pytest.raises(ValueError, match="unknown stage"):
        speed.run_stages(speed.SpeedConfig.quick_config(), ("nope",))
