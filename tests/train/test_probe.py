"""The per-epoch linear probe: held out from the evaluation train split, logged, best.pt."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from xpt.benchmarks.datasets import EvalDataset, Split, load_modelnet40
from xpt.benchmarks.probe import LinearProbe, stratified_holdout
from xpt.benchmarks.protocols import PointsSpec
from xpt.toolkit.cli import app
from xpt.train.checkpoint import load_checkpoint
from xpt.train.config import PretrainConfig
from xpt.train.loop import pretrain
from xpt.train.metrics_log import best_probe as _best_probe
from xpt.train.models import build_point_encoder

pytestmark = pytest.mark.usefixtures("one_thread")

FAMILIES = ("sphere", "box", "ring")  # the tiny shards' categories


@pytest.fixture(scope="module")
def eval_set(tmp_path_factory: pytest.TempPathFactory, write_modelnet_h5) -> Path:
    """A modelnet40_ply_hdf5_2048 folder of the tiny shards' three families."""
    folder = tmp_path_factory.mktemp("probe") / "modelnet40_ply_hdf5_2048"
    return write_modelnet_h5(folder, FAMILIES, {"train": 10, "test": 5})


def test_the_holdout_is_stratified_seeded_and_inside_train() -> None:
    labels = np.repeat(np.arange(4), [10, 20, 5, 15])
    fit, held = stratified_holdout(labels, 0.2, seed=3)
    assert not set(fit) & set(held) and len(fit) + len(held) == len(labels)
    assert np.bincount(labels[held]).tolist() == [2, 4, 1, 3]
    assert np.array_equal(held, stratified_holdout(labels, 0.2, seed=3)[1])
    assert not np.array_equal(held, stratified_holdout(labels, 0.2, seed=4)[1])
    with pytest.raises(ValueError, match="2\\+ train objects in every class"):
        stratified_holdout(np.array([0, 0, 1]), 0.2, seed=0)
    small = np.repeat(np.arange(19), 3)  # 20 % would be 11 objects for 19 classes
    fit, held = stratified_holdout(small, 0.2, seed=0)
    assert sorted(small[held]) == list(range(19)) and len(fit) == 38
    with pytest.raises(ValueError, match="leaves too few to fit on"):
        stratified_holdout(np.repeat(np.arange(19), 2), 0.2, seed=0)


def test_the_val_probe_never_reads_test_objects(eval_set: Path) -> None:
    dataset = load_modelnet40(eval_set)
    scrambled = EvalDataset(
        dataset.name,
        None,
        dataset.class_names,
        dataset.train,
        Split(np.zeros_like(dataset.test.points), np.zeros_like(dataset.test.labels)),
        dataset.files,
    )
    model = build_point_encoder("pointnet", emb_dims=16)
    model.train()
    results = [LinearProbe(data, points=PointsSpec(32))(model) for data in (dataset, scrambled)]
    assert results[0] == results[1] and results[0]["probe_split"] == "val"
    assert model.training  # the caller's mode is restored
    probe = LinearProbe(dataset, points=PointsSpec(32))
    assert len(probe.score_index) == 6 and probe.score_index.max() < len(dataset.train.labels)
    on_test = LinearProbe(dataset, split="test", points=PointsSpec(32))
    assert "TEST split" in on_test.describe() and on_test(model)["probe_split"] == "test"


def test_pretraining_keeps_the_best_probed_epoch(
    tiny_shards: Path, eval_set: Path, tmp_path: Path, tiny_settings: dict
) -> None:
    run = tmp_path / "run"
    config = PretrainConfig(**tiny_settings, lr_schedule="epoch", epochs=3)
    probe = LinearProbe(load_modelnet40(eval_set), points=PointsSpec(32))
    summary = pretrain(config, tiny_shards, run, probe=probe)
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    probes = [line for line in lines if "probe_accuracy" in line]
    assert [p["epoch"] for p in probes] == [1, 2, 3] and all(
        p["probe_split"] == "val" for p in probes
    )
    accuracies = [p["probe_accuracy"] for p in probes]
    best_epoch = len(accuracies) - int(np.argmax(accuracies[::-1]))  # the latest of equal bests
    selection = load_checkpoint(run / "best.pt")["selection"]
    assert selection["epoch"] == best_epoch == summary["probe_best_epoch"]
    assert selection["split"] == "val" and selection["accuracy"] == max(accuracies)
    assert load_checkpoint(run / "best.pt")["position"]["epoch"] == best_epoch


def test_a_tied_probe_goes_to_the_later_epoch(tmp_path: Path) -> None:
    """Equal probes keep the more trained encoder (a flat probe must not select epoch 1)."""
    metrics = tmp_path / "metrics.jsonl"
    rows = [{"step": 8 * e, "epoch": e, "probe_accuracy": a} for e, a in [(1, 0.74), (2, 0.73)]]
    rows += [{"step": 24, "loss": 1.0}, {"step": 24, "epoch": 3, "probe_accuracy": 0.74}]
    metrics.write_text("".join(json.dumps(row) + "\n" for row in rows))
    assert _best_probe(metrics) == (0.74, 3)
    metrics.write_text("".join(json.dumps(row) + "\n" for row in rows[:2]))
    assert _best_probe(metrics) == (0.74, 1)


def test_probe_on_test_is_labelled_and_flagged_by_the_benchmark(
    tiny_shards: Path, eval_set: Path, tmp_path: Path, tiny_settings: dict
) -> None:
    run = tmp_path / "run"
    toml = tmp_path / "tiny.toml"
    toml.write_text(
        "".join(
            f"{k} = {json.dumps(v)}\n" for k, v in {**tiny_settings, "lr_schedule": "epoch"}.items()
        )
    )
    args = [
        "pretrain", tiny_shards, "--out", run, "--config", toml, "--epochs", 1,
        "--probe", "modelnet40", "--probe-data", eval_set, "--probe-split", "test",
    ]  # fmt: skip
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    assert "TEST split (release behaviour)" in " ".join(result.output.split())
    assert load_checkpoint(run / "best.pt")["selection"]["split"] == "test"

    bench = [
        "benchmark", "--checkpoint", run / "best.pt", "--dataset", "modelnet40", "--data",
        eval_set, "--num-points", 32, "--tasks", "linear", "--baseline-inits", 1,
        "--cache", tmp_path / "cache", "--json", tmp_path / "report.json",
    ]  # fmt: skip
    result = CliRunner().invoke(app, [str(a) for a in bench])
    assert result.exit_code == 0, result.output
    assert "selected on a test split" in " ".join(result.output.split())
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["encoder"]["kind"] == "checkpoint" and report["encoder"]["selected_on"] == "test"

    no_data = [
        "pretrain",
        tiny_shards,
        "--out",
        tmp_path / "r2",
        "--config",
        toml,
        "--probe",
        "modelnet40",
    ]
    refused = CliRunner().invoke(app, [str(a) for a in no_data])
    assert refused.exit_code == 1 and "modelnet40: --data is needed" in refused.output
