"""GPU speed options of ``xpt pretrain`` (issue 12), exercised on CPU: ``--channels-last``
(NHWC image encoder, same loss, same state dict) and ``--compile`` (runs, or says what is
missing)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from xpt.toolkit.cli import app
from xpt.train import crosspoint, devices
from xpt.train.config import PretrainConfig
from xpt.train.crosspoint import build_models, compute_loss
from xpt.train.data import Batch
from xpt.train.devices import compile_problem

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = dict(
    backbone="pointnet", image_encoder="resnet18", batch_size=4, points=32, emb_dims=32,
    image_size=16, workers=0, shuffle_buffer=8, epochs=1, device="cpu",
)  # fmt: skip
ARGS = (
    "--backbone", "pointnet", "--image-encoder", "resnet18", "--batch-size", "4",
    "--points", "32", "--emb-dims", "32", "--image-size", "16", "--workers", "0",
    "--epochs", "1", "--max-steps", "1", "--device", "cpu",
)  # fmt: skip


def _batch() -> Batch:
    generator = torch.Generator().manual_seed(0)
    points = torch.randn(4, 32, 3, generator=generator)
    images = torch.randint(0, 256, (4, 24, 24, 3), generator=generator).to(torch.uint8)
    return Batch(points, images, [f"k{i}" for i in range(4)])


def test_channels_last_gives_the_same_loss_and_state_dict_names() -> None:
    losses, names = [], []
    for channels_last in (False, True):
        config = PretrainConfig(**TINY, channels_last=channels_last)
        point, image = build_models(config)
        if channels_last:
            image.to(memory_format=torch.channels_last)
        generator = torch.Generator().manual_seed(1)
        losses.append(compute_loss(point, image, _batch(), generator, config)["loss"])
        names.append(list(image.state_dict()))
    assert torch.allclose(losses[0], losses[1], rtol=1e-4, atol=1e-5)
    assert names[0] == names[1]


def test_cli_passes_both_options_into_the_saved_config(
    tiny_shards: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    compiled = []

    def record(model, device):  # compiling the real encoders takes minutes on 2 cores
        compiled.append(type(model).__name__)
        return model

    monkeypatch.setattr(crosspoint, "compile_model", record)
    monkeypatch.setattr(devices, "compile_problem", lambda device: None)
    run = tmp_path / "run"
    result = CliRunner().invoke(
        app, ["pretrain", str(tiny_shards), "--out", str(run), *ARGS, "--channels-last",
              "--compile", "--json", "-"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    saved = json.loads((run / "config.json").read_text())
    assert saved["channels_last"] is True and saved["compile"] is True
    assert sorted(compiled) == ["PointNet", "ResNet"]
    assert PretrainConfig().channels_last is False and PretrainConfig().compile is False


def test_compile_runs_on_cpu_forward_and_backward() -> None:
    """torch.compile itself on a small module (the CLI wiring is tested above)."""
    if compile_problem(torch.device("cpu")):
        pytest.skip("no C++ compiler: torch.compile cannot run on CPU here")
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))
    compiled = devices.compile_model(model, torch.device("cpu"))
    x = torch.randn(4, 8)
    assert torch.allclose(compiled(x), model(x), atol=1e-5)
    compiled(x).square().sum().backward()
    assert model[0].weight.grad is not None
    assert list(model.state_dict()) == ["0.weight", "0.bias", "2.weight", "2.bias"]


def test_compile_without_a_compiler_says_what_to_install(
    tiny_shards: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.setattr(devices.shutil, "which", lambda name: None)
    assert "C++ compiler" in compile_problem(torch.device("cpu"))
    result = CliRunner().invoke(
        app, ["pretrain", str(tiny_shards), "--out", str(tmp_path / "run"), *ARGS, "--compile"]
    )
    assert result.exit_code == 1
    said = " ".join(result.output.split())
    assert "--compile: torch.compile on CPU needs a C++ compiler" in said
