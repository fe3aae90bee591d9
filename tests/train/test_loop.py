"""The training loop on tiny shards: learning, exact resume, schedules, stopping cleanly."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

import xpt.train.crosspoint as crosspoint
from xpt.train.checkpoint import load_checkpoint
from xpt.train.config import PretrainConfig
from xpt.train.crosspoint import build_models, compute_loss
from xpt.train.data import LoaderConfig, ShardLoader, resolve_shards
from xpt.train.errors import TrainingError
from xpt.train.loop import pretrain
from xpt.train.metrics_log import truncate_metrics
from xpt.train.schedule import lr_at, never_trains

pytestmark = pytest.mark.usefixtures("one_thread")


def _metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_a_few_steps_reduce_the_loss_on_a_fixed_batch(
    make_shards, tmp_path: Path, tiny_settings: dict
) -> None:
    shards = make_shards(tmp_path / "shards", train_shards=(4,), val_samples=0)
    config = PretrainConfig(**tiny_settings, epochs=6, lr_schedule="epoch")
    summary = pretrain(config, shards, tmp_path / "run")
    assert summary["steps"] == 6 and summary["epochs_completed"] == 6

    loader = ShardLoader(resolve_shards(shards), LoaderConfig(4, 32, 16), on_error=None)
    batch = next(iter(loader.epoch(0)))

    def loss(models) -> float:
        generator = torch.Generator().manual_seed(7)  # the same augmentations each time
        with torch.no_grad():
            return compute_loss(*models, batch, generator, config)["loss"].item()

    initial = build_models(config)  # the run's initial weights (same seed)
    trained = build_models(config)
    state = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    trained[0].load_state_dict(state["models"]["point"])
    trained[1].load_state_dict(state["models"]["image"])
    before, after = loss(initial), loss(trained)
    assert after < 0.85 * before, (before, after)

    rows = _metrics(tmp_path / "run")
    assert [r["step"] for r in rows] == list(range(1, 7))
    assert [r["epoch"] for r in rows] == list(range(1, 7))
    for row in rows:
        assert math.isclose(row["loss"], row["imid"] + row["cmid"], rel_tol=1e-6)
        assert row["samples_per_s"] > 0
    assert [r["lr"] for r in rows] == [lr_at(config, e, 0, 1) for e in range(6)]
    assert json.loads((tmp_path / "run" / "config.json").read_text()) == config.to_dict()


@pytest.fixture(scope="module")
def reference_runs(
    one_thread: None,
    tiny_shards: Path,
    tmp_path_factory: pytest.TempPathFactory,
    tiny_settings: dict,
) -> dict:
    """Uninterrupted 2-epoch runs (6 steps), by worker count."""
    runs = {}
    for workers in (0, 2):
        run = tmp_path_factory.mktemp(f"reference{workers}")
        config = PretrainConfig(
            **{**tiny_settings, "workers": workers}, epochs=2, lr_schedule="step"
        )
        pretrain(config, tiny_shards, run)
        runs[workers] = run
    return runs


@pytest.mark.parametrize(("workers", "stop_after"), [(0, 4), (0, 3), (2, 4)])
def test_resume_continues_exactly(
    tiny_shards: Path,
    reference_runs: dict,
    tmp_path: Path,
    tiny_settings: dict,
    workers: int,
    stop_after: int,
) -> None:
    """Interrupted mid-epoch (step 4) or at the epoch boundary (step 3), then resumed."""
    config = PretrainConfig(**{**tiny_settings, "workers": workers}, epochs=2, lr_schedule="step")
    run = tmp_path / "run"
    first = pretrain(
        PretrainConfig(**{**config.to_dict(), "max_steps": stop_after}), tiny_shards, run
    )
    assert first["stopped"] == "max_steps" and first["steps"] == stop_after
    position = load_checkpoint(run / "last.pt")["position"]
    assert position == {"step": stop_after, "epoch": stop_after // 3, "batch": stop_after % 3}

    second = pretrain(config, tiny_shards, run, resume=True)
    assert second["steps"] == 6 and second["epochs_completed"] == 2

    expected, got = _metrics(reference_runs[workers]), _metrics(run)
    assert [r["step"] for r in got] == list(range(1, 7))
    for want, have in zip(expected, got, strict=True):
        assert have["lr"] == want["lr"]
        for name in ("loss", "imid", "cmid"):
            assert abs(have[name] - want[name]) <= 1e-6, (have["step"], name)
    final = load_checkpoint(run / "last.pt")["models"]
    reference = load_checkpoint(reference_runs[workers] / "last.pt")["models"]
    for part in ("point", "image"):
        for key, value in reference[part].items():
            assert torch.allclose(final[part][key].float(), value.float(), atol=1e-6), key


def test_learning_rate_schedules() -> None:
    release = PretrainConfig(epochs=4, lr=1.0, lr_schedule="release")
    # The release steps CosineAnnealingLR(T_max=epochs) before each epoch.
    assert [lr_at(release, e, 0, 10) for e in range(4)] == pytest.approx(
        [0.5 * (1 + math.cos(math.pi * (e + 1) / 4)) for e in range(4)]
    )
    assert lr_at(release, 3, 5, 10) == pytest.approx(0.0)
    epoch = PretrainConfig(epochs=4, lr=1.0, lr_schedule="epoch")
    assert lr_at(epoch, 0, 9, 10) == 1.0 and lr_at(epoch, 2, 0, 10) == pytest.approx(0.5)
    step = PretrainConfig(epochs=4, lr=1.0, lr_schedule="step")
    assert lr_at(step, 2, 0, 10) == pytest.approx(0.5) and lr_at(step, 1, 5, 10) < lr_at(
        step, 1, 4, 10
    )


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(
    tiny_shards: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_settings: dict
) -> None:
    real = crosspoint.crosspoint_loss
    calls = []

    def poisoned(*args, **kwargs):
        out = real(*args, **kwargs)
        calls.append(1)
        if len(calls) == 3:
            out["loss"] = out["loss"] * float("nan")
        return out

    monkeypatch.setattr(crosspoint, "crosspoint_loss", poisoned)
    run = tmp_path / "run"
    config = PretrainConfig(**tiny_settings, epochs=2, checkpoint_every_steps=2)
    with pytest.raises(
        TrainingError, match=r"non-finite loss \(nan\) at step 3 .*last.pt \(step 2\)"
    ):
        pretrain(config, tiny_shards, run)
    assert load_checkpoint(run / "last.pt")["position"]["step"] == 2
    assert [r["step"] for r in _metrics(run)] == [1, 2]

    monkeypatch.setattr(crosspoint, "crosspoint_loss", real)
    with pytest.raises(TrainingError, match="already holds a run"):
        pretrain(config, tiny_shards, run)
    changed = PretrainConfig(**{**config.to_dict(), "emb_dims": 16})
    with pytest.raises(TrainingError, match="emb_dims 32 -> 16"):
        pretrain(changed, tiny_shards, run, resume=True)
    with pytest.raises(TrainingError, match="nothing to resume"):
        pretrain(config, tiny_shards, tmp_path / "empty", resume=True)


def test_skipped_data_is_recorded_once(make_shards, tmp_path: Path, tiny_settings: dict) -> None:
    shards = make_shards(tmp_path / "shards", train_shards=(4, 4), val_samples=0)
    data = (shards / "train-000001.tar").read_bytes()
    (shards / "train-000001.tar").write_bytes(data[: len(data) // 3])
    run = tmp_path / "run"
    summary = pretrain(PretrainConfig(**tiny_settings, epochs=2, loss="imid"), shards, run)
    failures = [json.loads(x) for x in (run / "failures.jsonl").read_text().splitlines()]
    # One record: the shard, by name (not its cut-off object, nor webdataset's second report).
    assert failures == [
        {
            "id": "train-000001.tar",
            "path": str(shards / "train-000001.tar"),
            "stage": "pretrain-data",
            "reason": "truncated: the tar data ends inside a member (unexpected end of data)",
        }
    ]
    assert summary["data_failures"] == 1
    assert all(r["cmid"] == 0.0 and r["loss"] == r["imid"] for r in _metrics(run))


def test_resume_at_the_end_of_an_epoch_of_unknown_length(
    tiny_shards: Path, tmp_path: Path, tiny_settings: dict
) -> None:
    """Without a known epoch length, --max-steps stopping on an epoch's last batch leaves
    last.pt at (epoch, batch = all of it); resuming must go on to the next epoch."""
    spec = f"pipe:cat {tiny_shards}/train-00000{{0,1}}.tar"  # 12 objects: 3 batches a pass
    config = PretrainConfig(**tiny_settings, epochs=2)
    run = tmp_path / "run"
    pretrain(PretrainConfig(**{**config.to_dict(), "max_steps": 3}), spec, run)
    assert load_checkpoint(run / "last.pt")["position"] == {"step": 3, "epoch": 0, "batch": 3}
    summary = pretrain(config, spec, run, resume=True)
    assert summary["steps"] == 6 and summary["epochs_completed"] == 2


class _PoisonedAdam(torch.optim.Adam):
    """Adam whose 4th step leaves a non-finite value in ``victim`` (a parameter or a
    BatchNorm running statistic, set by the test) while the loss stays finite."""

    victim: torch.Tensor

    def __init__(self, params, **kwargs):
        super().__init__(params, **kwargs)
        self.steps = 0

    def step(self, closure=None):
        out = super().step(closure)
        self.steps += 1
        if self.steps == 4:
            with torch.no_grad():
                self.victim.view(-1)[0] = float("nan")
        return out


@pytest.mark.parametrize("target", ["parameter", "buffer"])
def test_non_finite_weights_stop_and_keep_the_last_good_checkpoint(
    tiny_shards: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    tiny_settings: dict,
    target: str,
) -> None:
    real_build = crosspoint.build_models

    def build(config):
        point, image = real_build(config)
        norm = next(m for m in point.modules() if isinstance(m, torch.nn.BatchNorm1d))
        _PoisonedAdam.victim = norm.running_var if target == "buffer" else norm.weight
        return point, image

    monkeypatch.setattr(crosspoint, "build_models", build)
    monkeypatch.setattr(torch.optim, "Adam", _PoisonedAdam)
    run = tmp_path / "run"
    config = PretrainConfig(**tiny_settings, epochs=2, checkpoint_every_steps=2)
    # Steps 1-3 are good (last.pt at steps 2 and 3, the end of epoch 1); step 4 poisons.
    with pytest.raises(
        TrainingError,
        match=r"non-finite weights \(point\..*\) after step 4 \(epoch 2\).*last.pt \(step 3\)",
    ):
        pretrain(config, tiny_shards, run)
    state = load_checkpoint(run / "last.pt")
    assert state["position"]["step"] == 3
    for part in state["models"].values():
        for value in part.values():
            assert not value.is_floating_point() or bool(value.isfinite().all())


def test_truncating_metrics_drops_a_half_written_line(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    rows = [json.dumps({"step": s, "loss": 1.0}) for s in (1, 2, 3)]
    path.write_text("\n".join(rows) + "\n" + '{"step": 4, "lo')  # killed mid-write
    truncate_metrics(path, 2)
    assert [json.loads(line)["step"] for line in path.read_text().splitlines()] == [1, 2]


def test_resume_with_changed_settings_warns_that_it_is_not_exact(
    tiny_shards: Path, tmp_path: Path, capsys: pytest.CaptureFixture, tiny_settings: dict
) -> None:
    run = tmp_path / "run"
    config = PretrainConfig(**tiny_settings, epochs=2)
    pretrain(PretrainConfig(**{**config.to_dict(), "max_steps": 2}), tiny_shards, run)
    with (run / "metrics.jsonl").open("a") as handle:
        handle.write('{"step": 3, "epo')  # a kill mid-write must not block --resume
    capsys.readouterr()

    same = pretrain(PretrainConfig(**{**config.to_dict(), "max_steps": 3}), tiny_shards, run, True)
    assert same["steps"] == 3
    assert "not be an exact continuation" not in " ".join(capsys.readouterr().err.split())

    changed = PretrainConfig(**{**config.to_dict(), "lr": 5e-4, "shuffle_buffer": 4})
    summary = pretrain(changed, tiny_shards, run, resume=True)
    said = " ".join(capsys.readouterr().err.split())
    assert summary["steps"] == 6
    assert "lr 0.001 -> 0.0005" in said and "shuffle_buffer 8 -> 4" in said
    assert "not be an exact continuation" in said
    assert "batch_size" not in said
    assert [r["step"] for r in _metrics(run)] == list(range(1, 7))


def test_the_default_schedule_trains_one_epoch_at_the_base_lr(
    tiny_shards: Path, tmp_path: Path, capsys: pytest.CaptureFixture, tiny_settings: dict
) -> None:
    assert PretrainConfig().lr_schedule == "epoch"
    pretrain(PretrainConfig(**tiny_settings, epochs=1, lr=2e-3), tiny_shards, tmp_path / "a")
    assert [r["lr"] for r in _metrics(tmp_path / "a")] == [2e-3] * 3
    assert "lr 0" not in capsys.readouterr().err

    release = PretrainConfig(**tiny_settings, epochs=1, lr_schedule="release")
    pretrain(release, tiny_shards, tmp_path / "b")
    assert [r["lr"] for r in _metrics(tmp_path / "b")] == [0.0] * 3
    said = " ".join(capsys.readouterr().err.split())
    assert "lr_schedule 'release' trains its last epoch at lr 0" in said
    assert "epoch 1 of 1): the weights will not change; use --lr-schedule epoch" in said
    assert never_trains(PretrainConfig(epochs=3, lr_schedule="release"), 2)
    assert not never_trains(PretrainConfig(epochs=3, lr_schedule="release"), 1)
    assert not never_trains(PretrainConfig(epochs=1, lr_schedule="step"), 0)


def test_a_fresh_run_cleans_checkpointless_leftovers_and_refuses_the_rest(
    tiny_shards: Path, tmp_path: Path, capsys: pytest.CaptureFixture, tiny_settings: dict
) -> None:
    config = PretrainConfig(**tiny_settings, epochs=2, checkpoint_every_epochs=1)
    run = tmp_path / "run"
    pretrain(PretrainConfig(**{**config.to_dict(), "max_steps": 2}), tiny_shards, run)
    (run / "last.pt").unlink()  # as if killed (SIGKILL) before its first checkpoint
    (run / ".tmp-last.pt.abc123").write_bytes(b"PK half")
    capsys.readouterr()
    pretrain(PretrainConfig(**{**config.to_dict(), "max_steps": 1}), tiny_shards, run)
    said = " ".join(capsys.readouterr().err.split())
    assert (
        f"{run}: removed config.json, metrics.jsonl, .tmp-last.pt.abc123 of an earlier run "
        "stopped before its first checkpoint (2 step(s), none resumable); starting afresh"
    ) in said
    assert [r["step"] for r in _metrics(run)] == [1]  # nothing appended to the old lines

    pretrain(config, tiny_shards, tmp_path / "done")
    (tmp_path / "done" / "last.pt").unlink()
    with pytest.raises(TrainingError) as caught:
        pretrain(config, tiny_shards, tmp_path / "done")
    assert str(caught.value) == (
        f"{tmp_path / 'done'}: holds checkpoints (epoch_001.pt, epoch_002.pt) but no last.pt; "
        "copy one of them to last.pt and pass --resume, or choose another --out"
    )
    with pytest.raises(TrainingError) as caught:
        pretrain(config, tiny_shards, tmp_path / "done", resume=True)
    assert str(caught.value) == (
        f"{tmp_path / 'done'}: nothing to resume (no last.pt); {tmp_path / 'done'}/epoch_002.pt "
        "(step 6) is readable: copy it to last.pt to resume from there"
    )

    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "config.json").write_text('{"model": "something else"}')
    (foreign / "metrics.jsonl").write_text('{"step": 1}\n')
    with pytest.raises(TrainingError, match="holds config.json, metrics.jsonl but no last.pt"):
        pretrain(config, tiny_shards, foreign)
    assert (foreign / "config.json").read_text() == '{"model": "something else"}'


def test_resuming_a_finished_run_says_so_and_shows_its_figures(
    tiny_shards: Path, tmp_path: Path, capsys: pytest.CaptureFixture, tiny_settings: dict
) -> None:
    config = PretrainConfig(**tiny_settings, epochs=2)
    run = tmp_path / "run"
    first = pretrain(config, tiny_shards, run)
    before = (run / "metrics.jsonl").read_text()
    capsys.readouterr()
    again = pretrain(config, tiny_shards, run, resume=True)
    said = " ".join(capsys.readouterr().err.split())
    assert f"{run} is already complete (2 of 2 epochs, step 6); nothing to train" in said
    assert "resuming /" not in said and "epoch 3" not in said
    assert (run / "metrics.jsonl").read_text() == before
    rows = _metrics(run)
    assert again["stopped"] == "complete"
    assert (again["steps"], again["epochs_completed"]) == (6, 2)
    assert again["loss"] == first["loss"] == rows[-1]["loss"]
    assert again["epoch_loss"] == pytest.approx(first["epoch_loss"], rel=1e-12)
    assert again["samples_per_s"] == pytest.approx(
        sum(r["samples_per_s"] for r in rows[3:]) / 3, rel=1e-12
    )
    assert again["last_checkpoint"] == str(run / "last.pt")
