"""``xpt pretrain`` through the CLI: settings precedence, outputs, resume, user errors."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from xpt.toolkit.cli import app
from xpt.train.config import PretrainConfig, resolve_config

pytestmark = pytest.mark.usefixtures("one_thread")

TOML = """
backbone = "pointnet"
image_encoder = "resnet18"
epochs = 1
batch_size = 4
points = 32
emb_dims = 64
image_size = 16
workers = 0
shuffle_buffer = 8
lr = 2e-3
"""


def _invoke(*args: str):
    return CliRunner().invoke(app, ["pretrain", *map(str, args)])


def _said(result) -> str:
    """The output with the console's line wrapping undone."""
    return " ".join(result.output.split())


def test_config_file_then_options_then_resume(tiny_shards: Path, tmp_path: Path) -> None:
    (tmp_path / "run.toml").write_text(TOML)
    run = tmp_path / "run"
    result = _invoke(
        tiny_shards, "--out", run, "--config", tmp_path / "run.toml", "--emb-dims", "32",
        "--max-steps", "2", "--json", "-",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    saved = json.loads((run / "config.json").read_text())
    assert saved["emb_dims"] == 32  # option beats file
    assert saved["batch_size"] == 4 and saved["lr"] == 2e-3  # file beats defaults
    assert saved["weight_decay"] == 1e-6 and saved["temperature"] == 0.1  # paper defaults
    summary = json.loads(result.stdout[result.stdout.index("{") :])
    assert summary["steps"] == 2 and summary["stopped"] == "max_steps"
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 2
    state = torch.load(run / "last.pt", weights_only=True)
    assert state["config"]["emb_dims"] == 32 and state["position"]["step"] == 2

    refused = _invoke(tiny_shards, "--out", run)
    assert refused.exit_code == 1 and "already holds a run (last.pt)" in _said(refused)

    # --resume starts from the run's own config (not the defaults) and drops its max_steps.
    resumed = _invoke(tiny_shards, "--out", run, "--resume", "--epochs", "2")
    assert resumed.exit_code == 0, resumed.output
    saved = json.loads((run / "config.json").read_text())
    assert saved["emb_dims"] == 32 and saved["epochs"] == 2 and saved["max_steps"] is None
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 7))
    assert not (run / "epoch_002.pt").exists()  # every 10 epochs by default


def test_user_errors_exit_1_with_a_clear_message(tiny_shards: Path, tmp_path: Path) -> None:
    (tmp_path / "bad.toml").write_text("epochs = 2\nlearning_rate = 0.1\n")
    result = _invoke(tiny_shards, "--out", tmp_path / "a", "--config", tmp_path / "bad.toml")
    assert result.exit_code == 1
    assert "bad.toml: unknown key(s) 'learning_rate'" in _said(result)

    (tmp_path / "typed.toml").write_text('epochs = "ten"\n')
    result = _invoke(tiny_shards, "--out", tmp_path / "b", "--config", tmp_path / "typed.toml")
    assert result.exit_code == 1 and "typed.toml: epochs must be int, got 'ten'" in _said(result)

    result = _invoke(tmp_path / "missing", "--out", tmp_path / "c")
    assert result.exit_code == 1 and "missing: no such shard file or folder" in _said(result)

    result = _invoke(tiny_shards, "--out", tmp_path / "d", "--resume")
    assert result.exit_code == 1 and "nothing to resume (no last.pt)" in _said(result)
    assert not (tmp_path / "a").exists()


def test_resolve_config_precedence_and_validation(tmp_path: Path) -> None:
    (tmp_path / "c.toml").write_text('backbone = "pointnet"\nepochs = 5\nlr = 1\n')
    config = resolve_config(file=tmp_path / "c.toml", overrides={"epochs": 7, "k": None})
    assert (config.backbone, config.epochs, config.lr, config.k) == ("pointnet", 7, 1.0, 15)
    assert isinstance(config.lr, float)
    defaults = PretrainConfig()
    assert (defaults.lr, defaults.weight_decay, defaults.epochs, defaults.batch_size) == (
        1e-3,
        1e-6,
        100,
        20,
    )
    assert (defaults.k, defaults.points, defaults.image_size, defaults.emb_dims) == (
        15,
        2048,
        224,
        1024,
    )
    with pytest.raises(ValueError, match="backbone must be one of dgcnn, pointnet"):
        resolve_config(overrides={"backbone": "pointnet++"})
    (tmp_path / "t.toml").write_text("[train]\nepochs = 1\n")
    with pytest.raises(ValueError, match="t.toml: tables are not supported"):
        resolve_config(file=tmp_path / "t.toml")


def test_help_defaults_match_the_config() -> None:
    result = CliRunner().invoke(app, ["pretrain", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    names = {"checkpoint-every": "checkpoint_every_steps"}
    documented = re.findall(r"--([a-z-]+)\s.*?\(default: ([^)]+)\)", result.output)
    assert len(documented) >= 15
    defaults = PretrainConfig()
    for option, shown in documented:
        field = names.get(option, option.replace("-", "_"))
        if hasattr(defaults, field):
            assert str(getattr(defaults, field)) == shown, option


@pytest.fixture(scope="module")
def finished_run(one_thread: None, tiny_shards: Path, tmp_path_factory: pytest.TempPathFactory):
    """A finished 2-epoch run (6 steps) with epoch_001.pt, epoch_002.pt and last.pt."""
    (tmp_path_factory.getbasetemp() / "cli.toml").write_text(TOML)
    run = tmp_path_factory.mktemp("finished") / "run"
    result = _invoke(
        tiny_shards, "--out", run, "--config", tmp_path_factory.getbasetemp() / "cli.toml",
        "--epochs", "2", "--emb-dims", "32", "--checkpoint-every-epochs", "1",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    return run


def _corrupt(path: Path, kind: str) -> None:
    """Replace the checkpoint at ``path`` by one of the broken kinds a user meets."""
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":
        path.write_bytes(path.read_bytes()[:1000])
    elif kind == "text":
        path.write_text("version https://git-lfs.github.com/spec/v1\n")
    elif kind == "foreign":
        torch.save({"state_dict": {"w": torch.zeros(1)}}, path)
    else:  # weights of another model size under this run's settings
        state = torch.load(path, weights_only=True)
        state["models"]["point"]["head.fc2.weight"] = torch.zeros(7, 7)
        torch.save(state, path)


@pytest.mark.parametrize(
    ("kind", "what"),
    [
        ("empty", "not a readable PyTorch checkpoint: an empty file (0 bytes)"),
        ("truncated", "not a readable PyTorch checkpoint: truncated (1000 bytes;"),
        ("text", "not a readable PyTorch checkpoint: a text file (it starts 'version https:"),
        ("foreign", "a PyTorch file, but not an xpt checkpoint (a dict with keys state_dict)"),
        ("shape", "its point encoder weights do not fit the model settings (backbone "
                  "'pointnet', emb_dims 32, proj_dim 256): size mismatch for head.fc2.weight"),
    ],
)  # fmt: skip
def test_a_broken_last_pt_is_described_and_an_epoch_checkpoint_offered(
    finished_run: Path, tiny_shards: Path, tmp_path: Path, kind: str, what: str
) -> None:
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    _corrupt(run / "last.pt", kind)
    result = _invoke(tiny_shards, "--out", run, "--resume", "--epochs", "3")
    said = _said(result)
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert f"error {run}/last.pt: {what}" in said, said
    assert f"{run}/epoch_002.pt (step 6) is readable: copy it to last.pt to resume" in said

    _corrupt(run / "epoch_002.pt", "truncated")
    said = _said(_invoke(tiny_shards, "--out", run, "--resume", "--epochs", "3"))
    assert f"{run}/epoch_001.pt (step 3) is readable" in said
    (run / "epoch_001.pt").write_bytes(b"")
    said = _said(_invoke(tiny_shards, "--out", run, "--resume", "--epochs", "3"))
    assert "no readable epoch_XXX.pt to resume from instead" in said


def test_resume_with_other_model_settings_is_refused(finished_run: Path, tiny_shards: Path) -> None:
    result = _invoke(tiny_shards, "--out", finished_run, "--resume", "--emb-dims", "64")
    assert result.exit_code == 1
    assert (
        f"{finished_run}/last.pt: written with other model settings than asked for: "
        "emb_dims 32 -> 64; resume with the run's own settings or choose another --out"
    ) in _said(result)


def test_resuming_a_finished_run_shows_its_final_figures(
    finished_run: Path, tiny_shards: Path
) -> None:
    before = (finished_run / "metrics.jsonl").read_text()
    result = _invoke(tiny_shards, "--out", finished_run, "--resume", "--json", "-")
    assert result.exit_code == 0, result.output
    said = _said(result)
    assert f"{finished_run} is already complete (2 of 2 epochs, step 6); nothing to train" in said
    assert "epoch 3" not in said
    summary = json.loads(result.stdout[result.stdout.index("{") :])
    rows = [json.loads(line) for line in before.splitlines()]
    assert summary["stopped"] == "complete" and summary["steps"] == 6
    assert summary["loss"] == rows[-1]["loss"]
    assert summary["epoch_loss"] == pytest.approx(sum(r["loss"] for r in rows[3:]) / 3)
    assert None not in (summary["samples_per_s"], summary["last_checkpoint"])
    assert (finished_run / "metrics.jsonl").read_text() == before


def test_more_workers_than_shards_and_fewer_points_are_one_line_notes(
    tiny_shards: Path, tmp_path: Path, recwarn: pytest.WarningsRecorder
) -> None:
    """2 train shards of 64-point clouds, --workers 3 --points 96: a note each, once, on one
    line; no Python warning (ours or torch's DataLoader worker-count one)."""
    (tmp_path / "run.toml").write_text(TOML)
    run = tmp_path / "run"
    result = _invoke(
        tiny_shards, "--out", run, "--config", tmp_path / "run.toml", "--workers", "3",
        "--points", "96", "--max-steps", "3", "--shuffle", "buffer",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert not recwarn.list, [str(w.message) for w in recwarn.list]
    assert "Warning" not in result.output
    notes = [line for line in result.output.splitlines() if line.startswith("note ")]
    assert len(notes) == 2, result.output
    assert notes[0].startswith("note --workers 3 > 2 shards: using 2 data workers (a worker")
    assert notes[0].endswith("pass --workers 2 to silence this")
    assert notes[1] == (
        f"note {tiny_shards}: clouds of 64 stored points, fewer than --points 96: their points "
        "are repeated to make 96 (use --points 64 or fewer, or xpt shard --points 96)"
    )
    # the batches are those of 2 workers either way; the requested count is recorded
    assert json.loads((run / "config.json").read_text())["workers"] == 3


def test_splits_and_a_full_reshuffle(tiny_shards: Path, tmp_path: Path) -> None:
    """--splits train,val reads both (12 + 2 objects: 3 batches of 4); local shards are
    reshuffled in full by default, and the summary says so."""
    (tmp_path / "run.toml").write_text(TOML)
    run = tmp_path / "run"
    result = _invoke(
        tiny_shards, "--out", run, "--config", tmp_path / "run.toml", "--splits", "train,val",
        "--json", "-",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout[result.stdout.index("{") :])
    assert summary["steps_per_epoch"] == 3 and summary["shuffle"] == "full"
    assert json.loads((run / "config.json").read_text())["splits"] == "train,val"

    piped = f"pipe:cat {tiny_shards}/train-00000{{0,1}}.tar"
    result = _invoke(
        piped, "--out", tmp_path / "p", "--config", tmp_path / "run.toml", "--max-steps", "1",
        "--json", "-",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout[result.stdout.index("{") :])["shuffle"] == "buffer"
    assert "not local uncompressed files, so samples are shuffled through a buffer of 8" in (
        _said(result)
    )
    refused = _invoke(piped, "--out", tmp_path / "q", "--config", tmp_path / "run.toml",
                      "--shuffle", "full")  # fmt: skip
    assert refused.exit_code == 1
    assert "--shuffle full reads samples by position from local shard files" in _said(refused)

    with_test = _invoke(
        tiny_shards, "--out", tmp_path / "t", "--config", tmp_path / "run.toml", "--splits",
        "train,test", "--max-steps", "1",
    )  # fmt: skip
    assert with_test.exit_code == 0, with_test.output
    assert "warning pretraining reads the shards' test split" in _said(with_test)
    assert "test split" not in _said(result)

    bad = _invoke(tiny_shards, "--out", tmp_path / "b", "--splits", "train,dev")
    assert bad.exit_code == 1
    assert "splits must be distinct names among train, val, test" in _said(bad)


def test_replay_release_is_printed_and_recorded(tiny_shards: Path, tmp_path: Path) -> None:
    (tmp_path / "run.toml").write_text(TOML)
    run = tmp_path / "run"
    result = _invoke(
        tiny_shards, "--out", run, "--config", tmp_path / "run.toml", "--replay-release",
        "--max-steps", "1", "--json", "-",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert (
        "replaying the published code (--replay-release): splits train,val, shuffle full, "
        "lr_schedule release, probe_split test, probe_protocol crosspoint, amp off, "
        "global_negatives False, sync_bn False; no --probe, so no best.pt"
    ) in _said(result)
    saved = json.loads((run / "config.json").read_text())
    assert saved["preset"] == "release" and saved["lr_schedule"] == "release"
    assert json.loads(result.stdout[result.stdout.index("{") :])["steps_per_epoch"] == 3
