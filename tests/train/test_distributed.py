"""Multi-process pretraining (``torchrun --nproc-per-node 2``, gloo on CPU).

How the shards are split over ranks and DataLoader workers is checked in this process (the
loader reads RANK / WORLD_SIZE as torchrun sets them); the collectives run in real
two-rank groups started with torchrun: the gathered-negatives loss, one DDP step's
gradients, an epoch of unknown length over an uneven split (``ddp_checks.py``), and the CLI
end to end (rank 0 alone writes; SIGTERM to one rank, ``--resume auto``; checkpoints moving
between one process and two).

BatchNorm: torch's SyncBatchNorm runs on GPUs only, so the gradient check keeps per-rank
batch statistics and accounts for them: the single-process reference runs the encoders on
each rank's half of the batch separately (each half with its own statistics, as the ranks
do), then takes the loss of the concatenated embeddings.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from xpt.train.checkpoint import load_checkpoint
from xpt.train.config import PretrainConfig
from xpt.train.crosspoint import build_models, embedding_loss
from xpt.train.curves import read_metrics
from xpt.train.data import LoaderConfig, ShardLoader, resolve_shards
from xpt.train.loop import pretrain
from xpt.train.losses import crosspoint_loss

pytestmark = pytest.mark.usefixtures("one_thread")

HERE = Path(__file__).parent
BIN = Path(sys.executable).parent
XPT = BIN / "xpt"
TORCHRUN = (
    [str(BIN / "torchrun")]
    if (BIN / "torchrun").exists()
    else [sys.executable, "-m", "torch.distributed.run"]
)
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "XPT_NO_PROGRESS": "1"}
for name in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
    ENV.pop(name, None)


def _torchrun(*args: object) -> list[str]:
    return [*TORCHRUN, "--standalone", "--nproc-per-node", "2", *map(str, args)]


def _epoch_keys(shards: Path, world: int, workers: int, epoch: int, monkeypatch) -> list[list]:
    """The keys of every batch each rank reads in ``epoch`` (RANK / WORLD_SIZE as torchrun
    sets them; ``workers`` DataLoader workers per rank)."""
    ranks = []
    for rank in range(world):
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("WORLD_SIZE", str(world))
        loader = ShardLoader(
            resolve_shards(shards),
            LoaderConfig(batch_size=2, points=16, image_size=8, workers=workers, shuffle_buffer=4),
            on_error=None,
            on_note=None,
        )
        ranks.append([batch.keys for batch in loader.epoch(epoch)])
    return ranks


@pytest.mark.parametrize("workers", [0, 2])
def test_two_ranks_read_every_object_once_per_epoch(
    make_shards, tmp_path: Path, monkeypatch, workers: int
) -> None:
    shards = make_shards(tmp_path / "s", train_shards=(4, 4, 4, 4), val_samples=0)
    everything = sorted(k for b in _epoch_keys(shards, 1, 0, 0, monkeypatch)[0] for k in b)
    assert len(everything) == 16
    for epoch in (0, 1):
        ranks = _epoch_keys(shards, 2, workers, epoch, monkeypatch)
        assert [len(batches) for batches in ranks] == [4, 4]  # 16 // (2 ranks * 2) steps each
        seen = [k for batches in ranks for batch in batches for k in batch]
        assert sorted(seen) == everything  # each once: none twice, none missing
    # (which shards a rank reads changes with the epoch)
    first = {k for b in _epoch_keys(shards, 2, workers, 0, monkeypatch)[0] for k in b}
    assert any(
        {k for b in _epoch_keys(shards, 2, workers, e, monkeypatch)[0] for k in b} != first
        for e in (1, 2, 3)
    )


def test_an_uneven_split_keeps_the_steps_equal(make_shards, tmp_path: Path, monkeypatch) -> None:
    """3 shards of 4 over 2 ranks, batches of 2: 12 // 4 = 3 steps on each rank. The rank
    with two shards reads 6 of its 8 objects; the one with one shard reads its 4 and 2 of
    its share of the next pass (a fresh shuffle), so the epoch reads some objects twice and
    leaves others out (documented in ShardLoader and the README)."""
    shards = make_shards(tmp_path / "s", train_shards=(4, 4, 4), val_samples=0)
    for epoch in (0, 1):
        ranks = _epoch_keys(shards, 2, 0, epoch, monkeypatch)
        assert [len(batches) for batches in ranks] == [3, 3]
        keys = [[k for batch in batches for k in batch] for batches in ranks]
        assert [len(k) for k in keys] == [6, 6]
        assert len(set(keys[0]) | set(keys[1])) < 12


@pytest.fixture(scope="module")
def ddp_checks(tmp_path_factory, tiny_settings: dict, tiny_shards: Path) -> tuple[Path, dict]:
    """``ddp_checks.py`` run once on two ranks; its folder and its global batch."""
    out = tmp_path_factory.mktemp("ddp")
    g = torch.Generator().manual_seed(0)
    inputs = {
        "z_a": torch.randn(8, 16, generator=g),
        "z_b": torch.randn(8, 16, generator=g),
        "z_img": torch.randn(8, 16, generator=g),
        "view_a": torch.rand(8, 32, 3, generator=g) * 2 - 1,
        "view_b": torch.rand(8, 32, 3, generator=g) * 2 - 1,
        "images": torch.rand(8, 3, 16, 16, generator=g),
    }
    torch.save(inputs, out / "inputs.pt")
    # Three shards of 6 (the third a copy): 12 objects on one rank, 6 on the other.
    shutil.copy(tiny_shards / "train-000000.tar", out / "copy-000000.tar")
    shards = [str(tiny_shards / "train-00000{0,1}.tar"), str(out / "copy-000000.tar")]
    command = _torchrun(HERE / "ddp_checks.py", out, json.dumps(shards), json.dumps(tiny_settings))
    done = subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    return out, inputs


def test_gathered_negatives_loss_equals_one_process_on_the_whole_batch(ddp_checks) -> None:
    out, inputs = ddp_checks
    whole = [inputs[n].clone().requires_grad_() for n in ("z_a", "z_b", "z_img")]
    loss = crosspoint_loss(*whole)["loss"]
    loss.backward()
    for rank in (0, 1):
        gathered = torch.load(out / f"rank{rank}.pt", weights_only=True)["gathered"]
        assert gathered["loss"] == pytest.approx(loss.item(), rel=1e-6)
        # Each rank gets W * dL/dz of its rows; DDP's mean over the W ranks undoes the W.
        for mine, reference in zip(gathered["grads"], whole, strict=True):
            expected = 2 * reference.grad[4 * rank : 4 * (rank + 1)]
            torch.testing.assert_close(mine, expected, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("mode", ["local", "global"])
def test_one_ddp_step_matches_one_process_on_the_global_batch(
    ddp_checks, tiny_settings: dict, mode: str
) -> None:
    """Reference: one process, the encoders run on each rank's half separately (per-rank
    BatchNorm statistics, as without --sync-bn); the loss is the mean of the halves' losses
    (local negatives) or the loss of the concatenated embeddings (--global-negatives)."""
    out, inputs = ddp_checks
    config = PretrainConfig(**tiny_settings, global_negatives=mode == "global")
    point, image = build_models(config)
    halves = []
    for rank in (0, 1):
        mine = slice(4 * rank, 4 * (rank + 1))
        pair = torch.cat([inputs["view_a"][mine], inputs["view_b"][mine]])
        if mode == "local":
            halves.append(embedding_loss(point, image, pair, inputs["images"][mine], config))
        else:
            z = point(pair)[1]
            halves.append((z[:4], z[4:], image(inputs["images"][mine])[1]))
    if mode == "local":
        loss = (halves[0]["loss"] + halves[1]["loss"]) / 2
    else:
        loss = crosspoint_loss(*(torch.cat(parts) for parts in zip(*halves, strict=True)))["loss"]
    loss.backward()
    expected = {f"point.{n}": p.grad for n, p in point.named_parameters()}
    expected |= {f"image.{n}": p.grad for n, p in image.named_parameters()}
    for rank in (0, 1):
        step = torch.load(out / f"rank{rank}.pt", weights_only=True)[mode]
        assert set(step["grads"]) == set(expected)
        for name, grad in expected.items():
            torch.testing.assert_close(step["grads"][name], grad, rtol=1e-4, atol=1e-6, msg=name)
    if mode == "global":
        assert step["loss"] == pytest.approx(loss.item(), rel=1e-5)


def test_an_epoch_of_unknown_length_ends_at_the_same_step_on_every_rank(ddp_checks) -> None:
    """No known count and an uneven split (3 shards of 6: 12 and 6 objects, batches of 4):
    the epoch ends when the first rank runs out, after 1 step on both."""
    out, _ = ddp_checks
    summaries = [json.loads((out / f"summary{r}.json").read_text()) for r in (0, 1)]
    assert [s["steps"] for s in summaries] == [1, 1]
    assert all(s["epochs_completed"] == 1 and s["processes"] == 2 for s in summaries)
    assert sorted(p.name for p in (out / "run").iterdir()) == [
        "config.json",
        "curves.png",
        "last.pt",
        "metrics.jsonl",
    ]


def _metrics(run: Path) -> list[dict]:
    """The lines of metrics.jsonl so far (none before it exists; a line being written skipped)."""
    return read_metrics(run) if (run / "metrics.jsonl").exists() else []


def _settings_file(path: Path, settings: dict, **more) -> Path:
    values = {**settings, **more}
    path.write_text("".join(f"{k} = {json.dumps(v)}\n" for k, v in values.items()))
    return path


def test_torchrun_cli_rank0_writes_and_the_checkpoint_loads_in_one_process(
    make_shards, tmp_path: Path, tiny_settings: dict
) -> None:
    shards = make_shards(tmp_path / "s", train_shards=(4, 4, 4, 4), val_samples=0)
    run = tmp_path / "run"
    toml = _settings_file(tmp_path / "t.toml", tiny_settings, batch_size=2, epochs=2)
    command = _torchrun(
        "--no-python", XPT, "pretrain", shards, "--out", run, "--config", toml,
        "--checkpoint-every-epochs", "1", "--global-negatives", "--json", "-",
    )  # fmt: skip
    done = subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("xpt pretrain") == 1  # one rank alone printed the summary
    summary = json.loads(done.stdout[done.stdout.index("{") :])
    assert (summary["processes"], summary["batch_size"], summary["global_batch_size"]) == (2, 2, 4)
    assert (summary["steps"], summary["steps_per_epoch"]) == (8, 4)  # 16 objects / 4 a step
    assert done.stderr.count("epoch 2: 4 steps") == 1
    assert [row["step"] for row in _metrics(run)] == list(range(1, 9))
    assert sorted(p.name for p in run.iterdir()) == [
        "config.json",
        "curves.png",
        "epoch_001.pt",
        "epoch_002.pt",
        "last.pt",
        "metrics.jsonl",
    ]
    state = load_checkpoint(run / "last.pt")
    assert state["world_size"] == 2 and len(state["rng"]["by_rank"]) == 2
    names = [k for model in state["models"].values() for k in model]
    assert not [k for k in names if k.startswith("module.")]

    # The two-process run continues in one process (8 steps of 2 per epoch now).
    settings = {**tiny_settings, "batch_size": 2}
    config = PretrainConfig(**settings, epochs=3, global_negatives=True)
    resumed = pretrain(config, shards, run, resume="auto")
    assert (resumed["processes"], resumed["steps"], resumed["epochs_completed"]) == (1, 16, 3)


def _worker_pids(parent: int) -> dict[int, int]:
    """rank -> pid of the processes torchrun (``parent``) started."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            environ = (entry / "environ").read_bytes().split(b"\0")
        except (OSError, IndexError, ValueError):
            continue
        ranks = [v[5:] for v in environ if v.startswith(b"RANK=")]
        if ppid == parent and ranks:
            found[int(ranks[0])] = int(entry.name)
    return found


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="needs /proc")
def test_sigterm_to_one_rank_checkpoints_all_and_resume_auto_continues(
    make_shards, tmp_path: Path, tiny_settings: dict, started_until
) -> None:
    shards = make_shards(tmp_path / "s", train_shards=(4, 4, 4, 4), val_samples=0)
    run = tmp_path / "run"
    # A one-process start (3 steps); two processes take over (a checkpoint from one process
    # loads in two), one of them is sent SIGTERM, and `--resume auto` finishes the run.
    settings = {**tiny_settings, "samples_per_epoch": 120, "epochs": 1}
    first = pretrain(PretrainConfig(**settings, max_steps=3), shards, run, resume="auto")
    assert first["steps"] == 3
    toml = _settings_file(tmp_path / "t.toml", settings)
    resume = ["pretrain", shards, "--out", run, "--config", toml, "--resume", "auto"]
    process = started_until(
        _torchrun("--no-python", XPT, *resume), ENV, lambda: len(_metrics(run)) >= 5, "no step"
    )
    os.kill(_worker_pids(process.pid)[1], signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    assert process.returncode != 0, err[-3000:]
    state = load_checkpoint(run / "last.pt")
    stopped = state["position"]["step"]
    assert 5 <= stopped < 15  # an epoch is 120 // (2 * 4) steps on two ranks
    assert _metrics(run)[-1]["step"] == stopped  # both ranks stopped after the same step
    assert f"interrupted at step {stopped}" in err

    done = subprocess.run(
        _torchrun("-m", "xpt", *resume), env=ENV, capture_output=True, text=True, timeout=240
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"resuming {run} at step {stopped}" in " ".join(done.stderr.split())
    steps = [row["step"] for row in _metrics(run)]
    assert steps == list(range(1, steps[-1] + 1))  # no step twice, none missing
    assert steps[-1] == 15 and load_checkpoint(run / "last.pt")["position"]["epoch"] == 1
