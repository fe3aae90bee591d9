"""CrossPoint pretraining: streamed shards -> encoders, checkpoints, metrics.

Each step takes a batch of objects (points + one rendered view), makes two independent
augmented copies of every cloud and an augmented image on the training device, runs both
clouds through the point encoder as one batch of 2B (as the release does, so BatchNorm
sees both views together) and the image through the image encoder, and minimises
IMID + CMID (``xpt.train.losses.crosspoint_loss``) with Adam.

Outputs in RUN_DIR: ``config.json``, ``metrics.jsonl`` (one line per step),
``last.pt`` (every ``checkpoint_every_steps`` steps and after every epoch),
``epoch_XXX.pt`` (every ``checkpoint_every_epochs`` epochs), ``best.pt`` (with a probe:
the epoch of the best probe accuracy, a line per probe in ``metrics.jsonl``) and
``failures.jsonl`` (samples or shards the pipeline skipped). ``resume=True`` continues from
``last.pt`` exactly: same data order, augmentations and learning rates as an uninterrupted run.
On SIGINT, SIGTERM or SIGUSR1 the step in progress finishes and ``last.pt`` is written before
the run stops, so an interrupted run loses nothing (``xpt.toolkit.interrupts``).

Several processes (``torchrun --nproc-per-node N xpt pretrain ...``, ``xpt.train.distributed``)
train one model with DistributedDataParallel: each rank reads its own share of the shards
(``xpt.train.data``) and trains on ``batch_size`` objects a step, so the global batch is
``batch_size * N``; the gradients are averaged over the ranks. Each rank's loss uses its own
batch (the paper's one-GPU setting) or, with ``global_negatives``, the embeddings of every
rank's batch (the same loss as one process on the global batch). Rank 0 alone logs, probes
and writes files; every rank reads ``last.pt`` on resume. Before each step the ranks agree
(one all-reduce) on whether any of them was signalled or ran out of data, so they stop, or
end the epoch, at the same step.

This module holds :func:`pretrain`, which builds the parts and hands them to the loop,
:class:`xpt.train.trainer.Trainer`, and the settings a resume must keep. What is CrossPoint's
(encoders, loss, optimiser) is in ``crosspoint``, the device, AMP and compile checks in
``devices``, the shard set and loader in ``data.opening``; the run folder, checkpoints,
metrics, stop signals and probe are components of their own (``run_folder``,
``checkpointer``, ``metrics_log``, ``signals``, ``probing``), shared with any other loop.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from xpt.toolkit.console import err
from xpt.toolkit.failures import FAILURES_FILE
from xpt.toolkit.fsio import make_folder
from xpt.train.checkpointer import Checkpointer, Position
from xpt.train.config import MODEL_FIELDS, PretrainConfig, load_config, save_config
from xpt.train.crosspoint import loss_fn, training_state
from xpt.train.data import ShardSet, open_shards, training_loader
from xpt.train.devices import check_options, resolve_device
from xpt.train.distributed import DistEnv, DistributedError, device_for, environment, process_group
from xpt.train.errors import TrainingError
from xpt.train.failure_sink import FailureSink
from xpt.train.metrics_log import METRICS_FILE, MetricsLog
from xpt.train.probing import EpochProbe
from xpt.train.run_folder import clear_leftovers, resume_wanted, run_lock
from xpt.train.schedule import lr_at, never_trains, schedule_record
from xpt.train.trainer import LoopSettings, Resumed, Trainer, resume_from_last

# Settings that fix the data order, the augmentations or the optimisation: changing one
# on resume is allowed, but the run is then no exact continuation of the original.
RESUME_EXACT_FIELDS = (
    "epochs",
    "edgeconv",
    "batch_size",
    "lr",
    "weight_decay",
    "lr_schedule",
    "points",
    "image_size",
    "loss",
    "temperature",
    "workers",
    "seed",
    "splits",
    "shuffle",
    "shuffle_buffer",
    "samples_per_epoch",
    "global_negatives",
    "sync_bn",
)


def pretrain(
    config: PretrainConfig,
    shards: ShardSet | str | os.PathLike | Sequence[str | os.PathLike],
    run_dir: str | os.PathLike,
    resume: bool | str = False,
    probe: Callable[[nn.Module], dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Pretrain CrossPoint on ``shards``; returns a summary dict.

    ``resume``: True continues the run in ``run_dir`` from its ``last.pt``; "auto" does so
    when ``last.pt`` exists and starts afresh otherwise (one job script for the first start
    and every requeue).

    ``probe`` (e.g. :class:`xpt.benchmarks.probe.LinearProbe`) is called with the point
    encoder after every ``config.probe_every``-th completed epoch and returns
    ``{"probe_accuracy", ...}``; the line goes to ``metrics.jsonl`` and the best epoch is
    kept as ``best.pt`` (its ``selection`` says on which split it was chosen). In a
    multi-process run only rank 0's ``probe`` is called (the others may pass None).

    Under ``torchrun`` (``WORLD_SIZE`` > 1) the process joins the group for the run
    (``xpt.train.distributed``; see the module docstring); ranks other than 0 print nothing.

    Raises :class:`TrainingError` when the run cannot start (no checkpoint to resume, a
    run already in ``run_dir``, model settings changed on resume, no readable data) or
    must stop (a non-finite loss, or non-finite weights or buffers when a checkpoint is
    due: nothing is saved and ``last.pt`` stays the last good checkpoint). Resuming with
    changed :data:`RESUME_EXACT_FIELDS` settings (or another number of processes) warns that
    the run is no exact continuation; resuming a finished run trains nothing and returns its
    final figures. A new run removes the leftovers of one stopped before its first
    checkpoint (see :func:`~xpt.train.run_folder.clear_leftovers`). Rank 0 holds
    ``run_dir``'s lock for the run (:func:`~xpt.train.run_folder.run_lock`): another process
    writing it is a TrainingError on every rank.

    Raises :class:`~xpt.toolkit.interrupts.Interrupted` after a first SIGINT/SIGTERM/SIGUSR1
    (on any rank: once the step in progress is done and ``last.pt`` written) or at once on a
    second one (no checkpoint half-written); its ``exit_code`` is 128 + the signal number.
    """
    try:
        env = environment()
        device = device_for(env, resolve_device(config.device))
    except DistributedError as exc:
        raise TrainingError(str(exc)) from None
    if env.active and config.sync_bn and device.type != "cuda":
        raise TrainingError("--sync-bn needs CUDA (torch's SyncBatchNorm runs on GPUs only)")
    quiet = err.quiet
    err.quiet = quiet or not env.is_main
    try:
        with process_group(env, device), run_lock(Path(run_dir), env, "xpt pretrain"):
            return _pretrain(config, shards, Path(run_dir), resume, probe, env, device)
    finally:
        err.quiet = quiet


def _pretrain(
    config: PretrainConfig,
    shards: ShardSet | str | os.PathLike | Sequence[str | os.PathLike],
    run_dir: Path,
    resume: bool | str,
    probe: Callable[[nn.Module], dict[str, Any]] | None,
    env: DistEnv,
    device: torch.device,
) -> dict[str, Any]:
    """The run, inside its process group and folder lock: the parts, then the Trainer."""
    resume = resume_wanted(run_dir, resume, env)
    env.barrier()  # every rank has looked at run_dir before rank 0 writes to it
    amp_dtype = check_options(config.amp, config.compile, device)
    shard_set, shuffle = open_shards(config, shards, env)
    if not resume and env.is_main:
        clear_leftovers(run_dir, load_config)
    make_folder(run_dir)
    failures = FailureSink(run_dir / FAILURES_FILE, record=env.is_main)
    loader = training_loader(config, shard_set, shuffle, device, failures)
    state = training_state(config, env, device, amp_dtype)
    checkpointer = Checkpointer(
        run_dir,
        env,
        state,
        config=config.to_dict(),
        schedule=schedule_record(config, loader.steps_per_epoch),
        seed=config.seed,
        failures=failures,
    )
    settings, metrics_path = LoopSettings.of(config), run_dir / METRICS_FILE
    start = Resumed(Position(), {}, finished=False)
    if resume:
        start = resume_from_last(
            checkpointer, metrics_path, settings, MODEL_FIELDS, RESUME_EXACT_FIELDS
        )
    if not start.finished:
        _starting(config, run_dir, env, start.position.epoch)
    compute = loss_fn(config, state, env, device, amp_dtype)
    probing = EpochProbe(probe, state.models["point"], env, metrics_path)
    metrics = MetricsLog(run_dir, write=env.is_main, tensorboard=config.tensorboard)
    trainer = Trainer(
        settings=settings,
        env=env,
        state=state,
        loss_fn=compute,
        lr_fn=functools.partial(lr_at, config, steps_per_epoch=loader.steps_per_epoch),
        loader=loader,
        checkpointer=checkpointer,
        metrics=metrics,
        failures=failures,
        probe=probing,
        data_name=shard_set.spec,
        position=start.position,
        last_values=start.last_values,
        finished=start.finished,
    )
    trainer.fit()
    return {
        "run_dir": str(run_dir),
        "device": str(device),
        "amp": str(amp_dtype).removeprefix("torch.") if amp_dtype else "off",
        "processes": env.world_size,
        "batch_size": config.batch_size,
        "global_batch_size": config.batch_size * env.world_size,
        "shuffle": shuffle,
        **trainer.summary(),
    }


def _starting(config: PretrainConfig, run_dir: Path, env: DistEnv, epoch: int) -> None:
    """Record the run's config (rank 0); warn when no step left can change the weights."""
    if env.is_main:
        save_config(config, run_dir)
    if never_trains(config, epoch):
        err.print(
            f"[yellow]warning[/yellow] lr_schedule 'release' trains its last epoch at lr 0 "
            f"(the published code's off-by-one) and every step left is in it (epoch "
            f"{epoch + 1} of {config.epochs}): the weights will not change; use "
            "--lr-schedule epoch",
            highlight=False,
        )
