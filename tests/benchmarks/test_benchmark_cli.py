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
    # a small set named modelnet40 is not ModelNet40: no paper figure beside it, and it says so
    assert data["datasets"][0]["paper"]["linear_accuracy_percent"] is None
    assert _table_cells(result.output, "paper (release protocol)")[1] == "–"
    assert data["datasets"][0]["dataset"]["standard"] is False
    assert "modelnet40 (non-standard)" in result.output
    assert "not the standard ModelNet40 (ModelNet40 has 40 classes, 9843 or 9840 / 2468; this " in (
        " ".join(result.output.split())
    )
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


def test_a_tree_of_point_files_is_read_up_axis_turned(tmp_path: Path) -> None:
    """ModelNet10-like files in a <class>/{train,test}/ tree (np.save), +Z up, 40 points each,
    evaluated at 32: the report says how the set was read and that it is not ModelNet10."""
    rng = np.random.default_rng(0)
    for label, name in enumerate(("bed", "chair")):
        for split, count in (("train", 6), ("test", 3)):
            (tmp_path / "tree" / name / split).mkdir(parents=True)
            for i in range(count):
                points = rng.normal(size=(40, 3)) * [1, 1, 3 if label else 0.3]
                np.save(tmp_path / "tree" / name / split / f"{name}_{i:04d}.npy", points * 90)
    report = tmp_path / "report.json"
    args = ["--random-init", "--backbone", "pointnet", "--emb-dims", 16, "--baseline-inits", 1]
    args += ["--dataset", "modelnet10", "--data", tmp_path / "tree", "--up-axis", "+Z"]
    args += ["--num-points", 32, "--tasks", "linear", "--cache", tmp_path, "--json", report]
    result = _invoke(*args)
    assert result.exit_code == 0, result.output
    dataset = json.loads(report.read_text())["datasets"][0]["dataset"]
    assert (dataset["title"], dataset["standard"]) == ("modelnet10 (non-standard)", False)
    assert (dataset["train"], dataset["test"], dataset["points_per_cloud"]) == (12, 6, 32)
    assert "read from tree files, up axis +Z turned to +Y" in dataset["notes"]
    assert "18 clouds of more than 32 points (up to 40) brought to 32 (first)" in dataset["notes"]
    said = " ".join(result.output.split())
    assert "modelnet10 (non-standard): 12 train / 6 test, 2 classes" in said
    assert "not the standard ModelNet10 (ModelNet10 has 10 classes, 3991 / 908;" in said


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
        (
            ["--random-init", "--up-axis", "+Z"],
            "--format and --up-axis apply to modelnet40 and modelnet10, not procedural",
        ),
        (
            ["--random-init", "--dataset", "modelnet10", "--data", "{tree}", "--format", "h5"],
            "no train files (neither train_files.txt nor ply_data_train*.h5)",
        ),
        (
            ["--random-init", "--dataset", "modelnet10", "--data", "{tree}"],
            "chair_0002.pcd: truncated: header declares 24 points",
        ),
        (["--random-init", "--dataset", "modelnet10", "--data", "{text}"], "is a file"),
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
    tree = tmp_path / "tree"
    (tree / "chair" / "train").mkdir(parents=True)
    np.save(tree / "chair" / "train" / "chair_0001.npy", np.eye(3))
    header = "VERSION 0.7\nFIELDS x y z\nSIZE 4 4 4\nTYPE F F F\nCOUNT 1 1 1\nWIDTH 24\n"
    header += "HEIGHT 1\nVIEWPOINT 0 0 0 1 0 0 0\nPOINTS 24\nDATA binary\n"
    body = np.ones((20, 3), "<f4").tobytes()  # 4 points short
    (tree / "chair" / "train" / "chair_0002.pcd").write_bytes(header.encode() + body)
    paths = {
        "missing": tmp_path / "nowhere",
        "text": tmp_path / "notes.pt",
        "broken": broken,
        "tree": tree,
    }
    result = _invoke(*[a.format(**paths) for a in args], "--cache", tmp_path)
    said = " ".join(result.output.split())
    assert result.exit_code in (1, 2), result.output
    assert message in said and "Traceback" not in result.output
    if "{" in " ".join(args):
        assert re.search(re.escape(str(tmp_path)), said)
