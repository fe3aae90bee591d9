"""Stopping ``xpt pretrain`` with SIGTERM / SIGINT: the step finishes, last.pt is written, the
exit status is 128 + the signal, and ``--resume`` continues exactly; a second signal stops
at once without leaving a half-written checkpoint."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

import xpt.train.checkpoint as checkpoint
import xpt.train.crosspoint as crosspoint
from xpt.toolkit.fsio import TMP_PREFIX
from xpt.toolkit.interrupts import Interrupted, deferred_interrupts
from xpt.train.checkpoint import load_checkpoint
from xpt.train.config import PretrainConfig
from xpt.train.curves import read_metrics
from xpt.train.loop import pretrain

pytestmark = pytest.mark.usefixtures("one_thread")

XPT = Path(sys.executable).parent / "xpt"
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "XPT_NO_PROGRESS": "1"}


def _config(settings: dict, **more) -> PretrainConfig:
    """The tiny settings, one epoch of 250 steps (12 objects read round and round), so a
    signal always lands before the first checkpoint; the lr changes every step."""
    return PretrainConfig(**settings, epochs=1, samples_per_epoch=1000, lr_schedule="step", **more)


def _steps(run: Path) -> list[dict]:
    """The lines of metrics.jsonl so far (none before it exists; a line being written skipped)."""
    return read_metrics(run) if (run / "metrics.jsonl").exists() else []


def _start_and_signal(started_until, shards: Path, run: Path, config: PretrainConfig, signum: int):
    """``xpt pretrain`` in its own process group; once its first metrics line is written,
    ``signum`` goes to the whole group (as a terminal's Ctrl-C or a scheduler's SIGTERM)."""
    toml = run.parent / "settings.toml"
    toml.write_text(
        "".join(f"{k} = {json.dumps(v)}\n" for k, v in config.to_dict().items() if v is not None)
    )
    process = started_until(
        [XPT, "pretrain", shards, "--out", run, "--config", toml], ENV, lambda: bool(_steps(run)),
        "no step",
    )  # fmt: skip
    os.killpg(process.pid, signum)
    _, err = process.communicate(timeout=120)
    return process.returncode, " ".join(err.split())


@pytest.mark.parametrize(
    ("signum", "code", "workers"), [(signal.SIGTERM, 143, 2), (signal.SIGINT, 130, 0)]
)
def test_a_signal_saves_last_pt_and_resume_continues_exactly(
    tiny_shards: Path,
    tmp_path: Path,
    tiny_settings: dict,
    signum: int,
    code: int,
    workers: int,
    started_until,
) -> None:
    config = _config({**tiny_settings, "workers": workers})
    run = tmp_path / "run"
    status, said = _start_and_signal(started_until, tiny_shards, run, config, signum)
    assert status == code, said
    steps = len(_steps(run))
    assert f"interrupted at step {steps}; resume with --resume" in said
    assert "Traceback" not in said and "Error" not in said, said  # none from the workers either
    position = load_checkpoint(run / "last.pt")["position"]
    assert position == {"step": steps, "epoch": 0, "batch": steps}
    assert steps < 250 and not list(run.glob(TMP_PREFIX + "*"))

    total = steps + 3
    limited = replace(config, max_steps=total)
    assert pretrain(limited, tiny_shards, run, resume=True)["steps"] == total
    pretrain(limited, tiny_shards, tmp_path / "reference")
    got, want = _steps(run), _steps(tmp_path / "reference")
    assert [r["step"] for r in got] == list(range(1, total + 1))
    for have, expected in zip(got, want, strict=True):
        assert have["lr"] == expected["lr"], have["step"]
        for name in ("loss", "imid", "cmid"):
            assert abs(have[name] - expected[name]) <= 1e-6, (have["step"], name)


def test_a_second_signal_stops_at_once_without_a_half_written_checkpoint(
    tiny_shards: Path, tmp_path: Path, tiny_settings: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first SIGTERM comes during step 2, the second while its last.pt is being
    written: the write is abandoned and its temporary file removed."""
    real_loss, real_save = crosspoint.compute_loss, checkpoint.torch.save
    calls = []

    def signalled_loss(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            os.kill(os.getpid(), signal.SIGTERM)
        return real_loss(*args, **kwargs)

    def signalled_save(state, handle):
        handle.write(b"PK\x03\x04 half a checkpoint")
        os.kill(os.getpid(), signal.SIGTERM)
        real_save(state, handle)

    monkeypatch.setattr(crosspoint, "compute_loss", signalled_loss)
    monkeypatch.setattr(checkpoint.torch, "save", signalled_save)
    run = tmp_path / "run"
    with pytest.raises(Interrupted) as caught:
        pretrain(_config(tiny_settings), tiny_shards, run)
    assert str(caught.value) == (
        "SIGTERM again: stopped at once at step 2; no checkpoint had been written"
    )
    assert caught.value.exit_code == 143
    assert sorted(p.name for p in run.iterdir()) == ["config.json", "metrics.jsonl"]
    assert [r["step"] for r in _steps(run)] == [1, 2]

    # A fresh run into the same folder starts afresh (nothing there can be resumed).
    monkeypatch.setattr(crosspoint, "compute_loss", real_loss)
    monkeypatch.setattr(checkpoint.torch, "save", real_save)
    pretrain(replace(_config(tiny_settings), max_steps=1), tiny_shards, run)
    assert [r["step"] for r in _steps(run)] == [1]


def test_deferred_interrupts_flag_first_raise_second_and_restore() -> None:
    before = signal.getsignal(signal.SIGINT)
    with deferred_interrupts() as stop:
        assert not stop
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop and stop.name == "SIGTERM"
        with pytest.raises(Interrupted, match="SIGINT again") as caught:
            os.kill(os.getpid(), signal.SIGINT)
        assert caught.value.exit_code == 130
    assert signal.getsignal(signal.SIGINT) is before


def test_workers_ignore_interrupts() -> None:
    code = (
        "import os, signal; from xpt.toolkit.interrupts import ignore_interrupts as f; f(0); "
        "os.kill(os.getpid(), signal.SIGINT); os.kill(os.getpid(), signal.SIGTERM); print('ok')"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout == "ok\n", result.stderr
