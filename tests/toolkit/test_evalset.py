"""The procedural evaluation set in the exact `modelnet40_ply_hdf5_2048` layout."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest

from xpt.toolkit.evalset import read_h5_split, write_eval_set
from xpt.toolkit.procedural import CATEGORIES, EVAL_ONLY_CATEGORIES, objects

CHOSEN = ["chair", *EVAL_ONLY_CATEGORIES[:3]]


@pytest.fixture(scope="module")
def eval_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("data") / "procedural_eval_hdf5_2048"
    write_eval_set(out, per_category=4, seed=0, categories=CHOSEN)
    return out


def test_files_and_datasets_follow_modelnet40_ply_hdf5_2048(eval_set: Path) -> None:
    names = sorted(p.name for p in eval_set.iterdir())
    assert names == [
        "eval_set.json",
        "ply_data_test0.h5",
        "ply_data_test_0_id2file.json",
        "ply_data_train0.h5",
        "ply_data_train_0_id2file.json",
        "shape_names.txt",
        "test_files.txt",
        "train_files.txt",
    ]
    assert (eval_set / "shape_names.txt").read_text().splitlines() == CHOSEN
    prefix = "data/procedural_eval_hdf5_2048/"
    assert (eval_set / "train_files.txt").read_text() == prefix + "ply_data_train0.h5\n"
    assert (eval_set / "test_files.txt").read_text() == prefix + "ply_data_test0.h5\n"
    counts = {}
    for split in ("train", "test"):
        with h5py.File(eval_set / f"ply_data_{split}0.h5", "r") as handle:
            assert set(handle) == {"data", "label", "normal"}
            data, label = handle["data"], handle["label"]
            assert data.dtype == np.float32 and label.dtype == np.uint8
            assert data.shape[1:] == (2048, 3) and label.shape == (data.shape[0], 1)
            assert handle["normal"].shape == data.shape
            counts[split] = data.shape[0]
            clouds = data[:]
            # ModelNet h5 normalisation: centred on the mean, max radius exactly 1
            assert np.allclose(clouds.mean(axis=1), 0.0, atol=1e-5)
            assert np.allclose(np.linalg.norm(clouds, axis=2).max(axis=1), 1.0, atol=1e-5)
            labels = label[:, 0]
        id2file = json.loads((eval_set / f"ply_data_{split}_0_id2file.json").read_text())
        assert len(id2file) == counts[split]
        for name, value in zip(id2file, labels, strict=True):
            assert name.split("/")[0] == CHOSEN[value]
    # every fourth instance of a category is a test object (the library's split)
    assert counts == {"train": 12, "test": 4}
    record = json.loads((eval_set / "eval_set.json").read_text())
    assert record["eval_only_categories"] == CHOSEN[1:] and record["seed"] == 0


def test_eval_instances_are_not_pretraining_instances(eval_set: Path) -> None:
    assert not set(EVAL_ONLY_CATEGORIES) & set(CATEGORIES) and len(EVAL_ONLY_CATEGORIES) >= 3
    pretraining = {o.seed for o in objects(4, seed=0, categories=["chair"])}
    evaluation = {o.seed for o in objects(4, seed=0, categories=["chair"], eval=True)}
    assert not pretraining & evaluation
    train, _ = read_h5_split(eval_set, "train")
    assert len(np.unique(train.reshape(len(train), -1), axis=0)) == len(train)


def test_files_roll_and_the_set_is_deterministic(eval_set: Path, tmp_path: Path) -> None:
    out = tmp_path / "small"
    result = write_eval_set(out, per_category=4, seed=0, categories=CHOSEN, shapes_per_file=5)
    assert result.files["train"] == [
        "ply_data_train0.h5",
        "ply_data_train1.h5",
        "ply_data_train2.h5",
    ]
    assert (out / "train_files.txt").read_text().splitlines() == [
        f"data/small/ply_data_train{i}.h5" for i in range(3)
    ]
    for split in ("train", "test"):
        data, label = read_h5_split(out, split)
        reference, reference_label = read_h5_split(eval_set, split)
        assert np.array_equal(data, reference) and np.array_equal(label, reference_label)
    other, _ = read_h5_split(
        write_eval_set(tmp_path / "s1", 4, seed=1, categories=CHOSEN).out, "test"
    )
    assert not np.array_equal(other, read_h5_split(eval_set, "test")[0])


def test_synth_eval_writes_the_h5_set(eval_set: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from xpt.toolkit.cli import app

    out = tmp_path / "procedural_eval_hdf5_2048"
    args = ["synth", str(out), "--eval", "--per-category", "4", "--categories", ",".join(CHOSEN)]
    result = CliRunner().invoke(app, [*args, "--json", str(tmp_path / "report.json")])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["eval_h5"]["train"] == 12 and report["eval_h5"]["test"] == 4
    for split in ("train", "test"):  # the same set as the library call writes
        data, label = read_h5_split(out, split)
        reference, reference_label = read_h5_split(eval_set, split)
        assert np.array_equal(data, reference) and np.array_equal(label, reference_label)
    assert (out / "shape_names.txt").read_text().splitlines() == CHOSEN
