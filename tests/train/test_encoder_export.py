"""`xpt.load_encoder` and `xpt export`: every source loads to the same features, the export
round-trips exactly, and the model card quotes the benchmark report and nothing else."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import xpt
from xpt.toolkit.cli import app
from xpt.train.augment import normalize_unit_sphere
from xpt.train.config import PretrainConfig
from xpt.train.encoder import EncoderLoadError, load_encoder
from xpt.train.loop import pretrain

pytestmark = pytest.mark.usefixtures("one_thread")
runner = CliRunner()


@pytest.fixture(scope="module")
def run(tiny_shards: Path, tiny_settings: dict, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("export") / "run"
    pretrain(PretrainConfig(**tiny_settings, epochs=1), tiny_shards, folder)
    return folder


def _clouds(n: int = 3, points: int = 32) -> np.ndarray:
    return np.random.default_rng(0).normal(size=(n, points, 3)).astype(np.float32) * 3.0 + 1.0


def test_a_checkpoint_loads_with_its_settings_and_normalises_as_pretraining(run: Path) -> None:
    encoder = xpt.load_encoder(run / "last.pt", device="cpu")
    assert encoder.settings["backbone"] == "pointnet" and encoder.image is not None
    assert not encoder.point.training
    clouds = _clouds()
    features = encoder.features(clouds)
    assert isinstance(features, np.ndarray) and features.shape == (3, encoder.point.feature_dim)
    with torch.no_grad():
        direct = encoder.point.forward_features(normalize_unit_sphere(torch.from_numpy(clouds)))
    np.testing.assert_array_equal(features, direct.numpy())
    np.testing.assert_array_equal(encoder.features(clouds[0]), features[0])  # (N, 3) in
    as_tensor = encoder.features(torch.from_numpy(clouds))
    assert torch.is_tensor(as_tensor) and torch.equal(as_tensor, torch.from_numpy(features))
    images = np.random.default_rng(1).integers(0, 256, size=(2, 20, 20, 3), dtype=np.uint8)
    assert encoder.image_features(images).shape == (2, encoder.image.feature_dim)


def test_export_round_trips_to_identical_features(run: Path, tmp_path: Path) -> None:
    out = tmp_path / "export"
    result = runner.invoke(app, ["export", str(run), "--out", str(out), "--with-image"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == [
        "README.md",
        "config.json",
        "model.safetensors",
    ]
    from safetensors.torch import load_file

    names = list(load_file(str(out / "model.safetensors")))
    assert all(n.startswith(("point.", "image.")) and "module." not in n for n in names)
    config = json.loads((out / "config.json").read_text())
    assert config["architecture"]["backbone"] == "pointnet"
    assert config["source"]["path"] == str(run / "last.pt")  # no best.pt without --probe
    exported, original = (
        load_encoder(out, device="cpu"),
        load_encoder(run / "last.pt", device="cpu"),
    )
    clouds = _clouds()
    np.testing.assert_array_equal(exported.features(clouds), original.features(clouds))
    images = np.random.default_rng(1).integers(0, 256, size=(2, 20, 20, 3), dtype=np.uint8)
    np.testing.assert_array_equal(exported.image_features(images), original.image_features(images))
    point_only = tmp_path / "point-only"
    assert runner.invoke(app, ["export", str(run), "--out", str(point_only)]).exit_code == 0
    assert load_encoder(point_only, device="cpu").image is None


@pytest.mark.parametrize("wrap", ["plain", "module", "nested"])
def test_release_state_dicts_load(dgcnn_reference: dict, tmp_path: Path, wrap: str) -> None:
    weights = dgcnn_reference["state_dict"]
    if wrap != "plain":  # DataParallel's prefix, as the release saved it
        weights = {f"module.{k}": v for k, v in weights.items()}
    saved = {"model_state_dict": weights} if wrap == "nested" else weights
    torch.save(saved, tmp_path / "best_model.pth")
    encoder = load_encoder(tmp_path / "best_model.pth", device="cpu")
    assert encoder.settings["backbone"] == "dgcnn" and encoder.image is None
    features = encoder.features(dgcnn_reference["points_bnc"].float(), normalize=False)
    torch.testing.assert_close(features, dgcnn_reference["expected_feat"], atol=1e-4, rtol=0)


def test_the_model_card_quotes_the_report_and_no_other_number(
    run: Path, tmp_path: Path, write_modelnet_h5
) -> None:
    data = write_modelnet_h5(
        tmp_path / "modelnet", ["sphere", "box", "ring"], {"train": 8, "test": 4}, points=48
    )
    report = tmp_path / "report.json"
    bench = runner.invoke(
        app,
        [
            "benchmark", "--checkpoint", str(run / "last.pt"), "--dataset", "modelnet40",
            "--data", str(data), "--num-points", "48", "--tasks", "linear",
            "--baseline-inits", "2", "--cache", str(tmp_path), "--json", str(report),
        ],
    )  # fmt: skip
    assert bench.exit_code == 0, bench.output
    out = tmp_path / "export"
    result = runner.invoke(app, ["export", str(run), "--out", str(out), "--benchmark", str(report)])
    assert result.exit_code == 0, result.output
    card = (out / "README.md").read_text()
    benchmarks = card.split("## Benchmarks", 1)[1].split("## Citation", 1)[0]
    report_text = report.read_text()
    for row in json.loads(report_text)["datasets"][0]["tables"]["linear"]:
        assert f"| {row['encoder']} |" in benchmarks and all(
            str(v) in benchmarks for v in row.values()
        )
    numbers = set(re.findall(r"\d+(?:\.\d+)?", benchmarks))
    assert numbers and numbers <= set(re.findall(r"\d+(?:\.\d+)?", report_text))


def test_bad_sources_are_one_line(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(EncoderLoadError, match="notes.txt"):
        load_encoder(tmp_path / "notes.txt")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(EncoderLoadError, match="no config.json"):
        load_encoder(empty)
    result = runner.invoke(app, ["export", str(empty), "--out", str(tmp_path / "x")])
    assert result.exit_code == 1 and "without best.pt or last.pt" in result.output
    assert "Traceback" not in result.output
