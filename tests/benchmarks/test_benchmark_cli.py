"""``xpt benchmark`` through the CLI on a tiny ModelNet40-layout set written with h5py."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from xpt.benchmarks.report import percent
from xpt.toolkit.cli import app

FIXTURE = Path(__file__).resolve().parents[1] / "data" / "dgcnn_reference_fixture.pt"
CLASSES = ("sphere", "box", "ring", "rod")
POINTS = 64


@pytest.fixture(scope="module")
def modelnet(tmp_path_factory: pytest.TempPathFactory, write_modelnet_h5) -> Path:
    folder = tmp_path_factory.mktemp("data") / "modelnet40_ply_hdf5_2048"
    return write_modelnet_h5(folder, CLASSES, {"train": 12, "test": 6}, points=POINTS)


def _invoke(*args: object):
    return CliRunner().invoke(app, ["benchmark", *map(str, args)])


def _small(modelnet: Path, cache: Path) -> list[object]:
    return [
        "--dataset", "modelnet40", "--data", modelnet, "--num-points", 48, "--ways", 3,
        "--shots", 2, "--queries", 2, "--runs", 3, "--cache", cache,
    ]  # fmt: skip


def _table_cells(output: str, row: str) -> list[str]:
    """The cells of the first table line starting with ``row`` (rich box drawing)."""
    for line in output.splitlines():
        cells = [c.strip() for c in line.strip("│┃ ").split("│")]
        if cells and cells[0] == row:
            return cells
    raise AssertionError(f"no table row {row!r} in:\n{output}")


def test_random_init_report_json_and_plot(modelnet: Path, tmp_path: Path) -> None:
    report, plot = tmp_path / "report.json", tmp_path / "bench.png"
    args = [
        "--random-init",
        "--backbone",
        "pointnet",
        "--emb-dims",
        32,
        *_small(modelnet, tmp_path),
    ]
    result = _invoke(*args, "--json", report, "--plot", plot, "--seed", 0, "--seed", 1)
    assert result.exit_code == 0, result.output
    data = json.loads(report.read_text())
    assert data["protocol"]["name"] == "xpt" and data["seeds"] == [0, 1]
    assert data["encoder"] is None and data["architecture"]["backbone"] == "pointnet"
    (entry,) = data["datasets"]
    assert entry["dataset"]["name"] == "modelnet40" and entry["dataset"]["test"] == 24
    assert len(entry["dataset"]["fingerprint"]) == 16
    rows = {row["encoder"]: row for row in entry["rows"]}
    assert list(rows) == ["random init", "hand-crafted"]
    random = rows["random init"]
    assert len(random["encoders"]) == 3 and len(random["linear"]["runs"]) == 6  # 3 inits x 2 seeds
    # every number the table shows is in the JSON
    cells = _table_cells(result.output, "random init x3")
    assert cells[1] == percent(random["linear"]["accuracy"])
    assert cells[2] == percent(random["linear"]["class_accuracy"])
    shown = _table_cells(result.output.split("few-shot")[-1], "random init x3")
    assert shown[1] == percent(random["fewshot"]["3w2s"])
    assert len(random["fewshot"]["3w2s"]["runs"]) == 3 * 2 * 3  # inits x seeds x runs
    assert _table_cells(result.output, "hand-crafted")[1] == percent(
        rows["hand-crafted"]["linear"]["accuracy"]
    )
    assert entry["tables"]["linear"][0]["overall_acc_pct"] == cells[1]
    assert plot.stat().st_size > 10_000


def test_a_release_state_dict_evaluates_beside_random_init(modelnet: Path, tmp_path: Path) -> None:
    fixture = torch.load(FIXTURE, weights_only=True)
    weights = {f"module.{k}": v for k, v in fixture["state_dict"].items()}  # DataParallel
    torch.save(weights, tmp_path / "best_model.pth")
    report = tmp_path / "report.json"
    args = ["--checkpoint", tmp_path / "best_model.pth", *_small(modelnet, tmp_path)]
    result = _invoke(*args, "--tasks", "linear", "--baseline-inits", 2, "--json", report)
    assert result.exit_code == 0, result.output
    data = json.loads(report.read_text())
    assert data["encoder"]["kind"] == "reference" and data["architecture"]["emb_dims"] == 256
    assert data["checkpoint_sha256"] == data["encoder"]["sha256"]
    rows = [row["encoder"] for row in data["datasets"][0]["rows"]]
    assert rows == ["pretrained", "random init", "hand-crafted"]
    assert "linear OA margin over random init" in " ".join(result.output.split())
    assert data["datasets"][0]["paper"]["linear_accuracy_percent"] == 91.2  # ModelNet40, DGCNN
    assert "91.2" in _table_cells(result.output, "paper (release protocol)")[1]
    cached = sorted((tmp_path / "features").glob("*.npz"))
    assert len(cached) == 3 * 2  # (pretrained + 2 inits) x (train, test)
    again = _invoke(*args, "--tasks", "linear", "--baseline-inits", 2, "--json", report)
    assert again.exit_code == 0, again.output
    assert sorted((tmp_path / "features").glob("*.npz")) == cached  # reused, nothing new
    rerun = json.loads(report.read_text())["datasets"][0]["tables"]
    assert rerun == data["datasets"][0]["tables"]


def test_the_release_protocol_is_labelled_and_uses_k5_and_all_points(
    modelnet: Path, tmp_path: Path
) -> None:
    report = tmp_path / "report.json"
    args = ["--random-init", "--k", 10, "--emb-dims", 16, "--protocol", "crosspoint"]
    result = _invoke(*args, *_small(modelnet, tmp_path), "--baseline-inits", 1, "--json", report)
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())
    assert "release protocol: replays the published code" in said and "fixed C=0.1" in said
    data = json.loads(report.read_text())
    card = data["protocol"]
    assert card["release"] and card["linear"]["c"] == 0.1 and not card["linear"]["standardize"]
    assert card["fewshot"]["dgcnn_k"] == 5 and card["fewshot"]["points"]["count"] is None
    assert card["fewshot"]["query_split"] == "train"
    # the linear task saw the first 48 points with k=10, few-shot all 64 points with k=5
    features = [
        json.loads(str(np.load(path)["meta"])) for path in (tmp_path / "features").glob("*.npz")
    ]
    seen = {(f["encoder"].split("-")[2], f["points"]["count"]) for f in features}
    assert seen == {("k10", 48), ("k5", None)}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "give --checkpoint PATH, or --random-init"),
        (["--random-init", "--dataset", "modelnet40"], "modelnet40: --data is needed"),
        (["--random-init", "--dataset", "modelnet40", "--data", "{missing}"], "no such folder"),
        (
            ["--checkpoint", "{text}", "--dataset", "procedural"],
            "not a readable PyTorch checkpoint",
        ),
        (["--random-init", "--dataset", "modelnet40", "--data", "{broken}"], "not a readable HDF5"),
        (["--random-init", "--tasks", "svm"], "tasks must be a non-empty subset"),
        (["--random-init", "--ways", "five"], "--ways must be comma-separated integers"),
    ],
)
def test_user_errors_are_one_line_without_traceback(
    modelnet: Path, tmp_path: Path, args: list[str], message: str
) -> None:
    (tmp_path / "notes.pt").write_text("not a checkpoint")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "ply_data_train0.h5").write_bytes(b"\x89HDF\r\n\x1a\n truncated")
    (broken / "ply_data_test0.h5").write_bytes(b"")
    paths = {"missing": tmp_path / "nowhere", "text": tmp_path / "notes.pt", "broken": broken}
    result = _invoke(*[a.format(**paths) for a in args], "--cache", tmp_path)
    said = " ".join(result.output.split())
    assert result.exit_code in (1, 2), result.output
    assert message in said and "Traceback" not in result.output
    if "{" in " ".join(args):
        assert re.search(re.escape(str(tmp_path)), said)
