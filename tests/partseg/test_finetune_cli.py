"""``xpt finetune --task partseg`` end to end on files in DGCNN's published h5 layout."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from xpt.toolkit.cli import app
from xpt.train.models.dgcnn_partseg import DGCNNSegEncoder

pytestmark = pytest.mark.usefixtures("one_thread")

POINTS = 48
# category -> its global part ids in ShapeNetPart (airplane 0-3, chair 12-15)
PARTS = {0: (0, 4), 4: (12, 16)}
SIZES = {"train": 12, "val": 6, "test": 6}
SMALL = ("--epochs", "2", "--points", "32", "--k", "4", "--batch-size", "4", "--device", "cpu")


def _h5_split(split: str, count: int) -> dict[str, np.ndarray]:
    """Clouds whose part is their height band, in the release's dtypes."""
    rng = np.random.default_rng(len(split))
    label = np.array([0, 4] * (count // 2), dtype=np.uint8)
    data = rng.uniform(-1, 1, size=(count, POINTS, 3)).astype(np.float32)
    band = np.clip(((data[..., 1] + 1) * 2).astype(int), 0, 3)
    pid = np.stack([PARTS[int(c)][0] + band[i] for i, c in enumerate(label)])
    return {"data": data, "label": label.reshape(-1, 1), "pid": pid.astype(np.uint8)}


@pytest.fixture(scope="module")
def hdf5_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """PointNet's hdf5_data folder as its data_prep_util writes it (gzip 4)."""
    folder = tmp_path_factory.mktemp("shapenet_part_seg_hdf5_data") / "hdf5_data"
    folder.mkdir()
    for split, count in SIZES.items():
        with h5py.File(folder / f"ply_data_{split}0.h5", "w") as handle:
            for name, values in _h5_split(split, count).items():
                handle.create_dataset(name, data=values, compression="gzip", compression_opts=4)
    return folder


def _finetune(*args: object) -> object:
    return CliRunner().invoke(app, ["finetune", *map(str, args)])


def test_random_init_reports_scores_card_and_picture(hdf5_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "ft"
    result = _finetune(
        "--task", "partseg", "--random-init", "--fast", "--dataset", "shapenetpart",
        "--data", hdf5_data, "--out", out, *SMALL, "--json", tmp_path / "r.json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "r.json").read_text())
    assert list(report["arms"]) == ["random-init"]
    arm = report["arms"]["random-init"]
    assert 0 <= arm["instance_miou"]["mean"] <= 1
    assert set(arm["per_category"]) == {"airplane", "chair"}
    assert report["card"]["name"] == "xpt" and report["card"]["selected_on_test"] is False
    assert report["shapes"] == SIZES
    assert (out / "random-init" / "seed0" / "result.json").is_file()
    assert (out / "partseg.png").stat().st_size > 10_000
    assert "instance mIoU" in result.output and "card xpt" in result.output
    assert report["standard"] is False and "shapenetpart (non-standard)" in result.output
    said = " ".join(result.output.split())
    assert "data: shapenetpart" in said and "12 train / 6 val / 6 test shapes" in said
    assert "not the standard ShapeNetPart" in said
    assert "fine-tuning from random-init, seed 0" in said


def test_checkpoint_and_baseline_share_seeds_and_give_a_margin(
    hdf5_data: Path, tmp_path: Path
) -> None:
    """A release-style dgcnn_seg state dict (DDP's module. prefix) initialises the encoder;
    emb_dims comes from it; random init runs beside it with the same seeds."""
    encoder = DGCNNSegEncoder(k=4, emb_dims=16)
    path = tmp_path / "crosspoint_dgcnn_seg.pth"
    torch.save({f"module.{k}": v for k, v in encoder.state_dict().items()}, path)
    result = _finetune(
        "--checkpoint", path, "--dataset", "shapenetpart", "--data", hdf5_data,
        "--out", tmp_path / "ft", *SMALL, "--seed", "0", "--seed", "1", "--json", "-",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout[result.stdout.index("{") :])
    assert list(report["arms"]) == ["pretrained", "random-init"]
    assert report["arms"]["pretrained"]["seeds"] == [0, 1]
    assert report["runs"]["pretrained"][0]["config"]["emb_dims"] == 16
    assert len(report["margin"]["runs"]) == 2
    assert "tensors loaded" in result.output and "pretrained - random init" in result.output


def test_a_width_other_than_the_checkpoints_is_refused(hdf5_data: Path, tmp_path: Path) -> None:
    path = tmp_path / "seg.pth"
    torch.save(DGCNNSegEncoder(k=4, emb_dims=16).state_dict(), path)
    result = _finetune(
        "--checkpoint", path, "--emb-dims", "32", "--dataset", "shapenetpart",
        "--data", hdf5_data, "--out", tmp_path / "o",
    )  # fmt: skip
    assert result.exit_code == 1
    assert "--emb-dims 32" in result.output and "of width 16" in " ".join(result.output.split())
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    "args, said",
    [
        ((), "give --checkpoint CKPT or --random-init"),
        (("--random-init", "--checkpoint", "x.pt"), "give --checkpoint CKPT or --random-init"),
        (("--random-init", "--label-fraction", "0"), "label fraction must be in (0, 1]"),
        (("--random-init", "--points", "64"), "clouds of 48 points, fewer than the 64 asked for"),
    ],
)
def test_bad_options_are_one_line(
    hdf5_data: Path, tmp_path: Path, args: tuple[str, ...], said: str
) -> None:
    result = _finetune(
        *args, "--dataset", "shapenetpart", "--data", hdf5_data, "--out", tmp_path / "o"
    )
    assert result.exit_code == 1
    assert said in " ".join(result.output.split())
    assert "Traceback" not in result.output
