"""Training curves: a panel per logged metric, a line per run, a valid PNG; `xpt plot`."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from xpt.toolkit.cli import app
from xpt.train.curves import curves_figure, write_curves


def _run(folder: Path, steps: int, probe: bool) -> Path:
    folder.mkdir(parents=True)
    lines = []
    for step in range(1, steps + 1):
        loss = 10.0 / step
        lines.append(
            {
                "step": step,
                "epoch": 1 + (step - 1) // 2,
                "loss": loss,
                "imid": loss / 2,
                "cmid": loss / 2,
                "lr": 0.001,
                "samples_per_s": 5.0,
            }
        )
        if probe and step % 2 == 0:
            lines.append({"step": step, "epoch": step // 2, "probe_accuracy": 0.5 + step / 100})
    text = "".join(json.dumps(line) + "\n" for line in lines)
    (folder / "metrics.jsonl").write_text(text + '{"step": 99, "lo')  # a half-written line
    return folder


def test_one_panel_per_metric_and_one_line_per_run(tmp_path: Path) -> None:
    a, b = _run(tmp_path / "a" / "run", 6, probe=True), _run(tmp_path / "b" / "run", 4, False)
    figure = curves_figure([a, b])
    titles = [axis.get_title() for axis in figure.axes]
    assert titles == ["loss", "imid", "cmid", "lr", "probe accuracy"]
    for axis in figure.axes[:4]:
        assert [line.get_label() for line in axis.get_lines()] == ["a/run", "b/run"]
        assert [len(line.get_xdata()) for line in axis.get_lines()] == [6, 4]
    assert [line.get_label() for line in figure.axes[4].get_lines()] == ["a/run"]
    assert list(figure.axes[4].get_lines()[0].get_xdata()) == [1, 2, 3]
    alone = curves_figure([b])
    assert [axis.get_title() for axis in alone.axes] == ["loss", "imid", "cmid", "lr"]
    out = write_curves([a], tmp_path / "curves.png")
    with Image.open(out) as image:
        assert image.format == "PNG" and image.width > image.height > 100


def test_plot_command(tmp_path: Path) -> None:
    a, b = _run(tmp_path / "a", 4, True), _run(tmp_path / "b", 4, True)
    out = tmp_path / "both.png"
    result = CliRunner().invoke(app, ["plot", str(a), str(b), "--out", str(out)])
    assert result.exit_code == 0 and out.is_file(), result.output
    missing = CliRunner().invoke(app, ["plot", str(tmp_path / "nope"), "--out", str(out)])
    assert missing.exit_code == 1 and "nope" in missing.output and "Traceback" not in missing.output


def test_pretraining_draws_its_curves_each_epoch(
    tiny_shards: Path, tiny_settings: dict, tmp_path: Path, one_thread: None
) -> None:
    from xpt.train.config import PretrainConfig
    from xpt.train.loop import pretrain

    run = tmp_path / "run"
    pretrain(PretrainConfig(**tiny_settings, epochs=2), tiny_shards, run)
    with Image.open(run / "curves.png") as image:
        assert image.format == "PNG"
    figure = curves_figure([run])
    assert [len(axis.get_lines()) for axis in figure.axes] == [1, 1, 1, 1]
    assert len(figure.axes[0].get_lines()[0].get_xdata()) == 6  # 2 epochs x 3 steps


def test_tensorboard_without_the_package_is_one_line(
    tiny_shards: Path, tiny_settings: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # as if not installed
    toml = tmp_path / "tiny.toml"
    toml.write_text("".join(f"{k} = {json.dumps(v)}\n" for k, v in tiny_settings.items()))
    result = CliRunner().invoke(
        app,
        ["pretrain", str(tiny_shards), "--out", str(tmp_path / "run"), "--config", str(toml),
         "--epochs", "1", "--tensorboard"],
    )  # fmt: skip
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "--tensorboard needs the tensorboard package: pip install tensorboard" in result.output
