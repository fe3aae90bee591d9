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

This module holds what is CrossPoint's (the encoders, the loss, the settings a resume must
keep) and :func:`pretrain`, which builds the parts and hands them to the loop,
:class:`xpt.train.trainer.Trainer`; the run folder, checkpoints, metrics, stop signals and
probe are components of their own (``run_folder``, ``checkpointer``, ``metrics_log``,
``signals``, ``probing``), shared with any other training loop.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from rich.markup import escape
from torch import Tensor, nn

from xpt.toolkit.console import err
from xpt.toolkit.failures import FAILURES_FILE
from xpt.toolkit.fsio import make_folder
from xpt.toolkit.seeding import derive_seed
from xpt.train.augment import ImageAugmentConfig, PointAugmentConfig, augment_pair
from xpt.train.checkpointer import Checkpointer, Position, TrainingState
from xpt.train.config import MODEL_FIELDS, PretrainConfig, load_config, save_config
from xpt.train.data import (
    Batch,
    LoaderConfig,
    ShardLoader,
    ShardSet,
    loader_workers,
    resolve_shards,
    resolve_shuffle,
)
from xpt.train.distributed import (
    DistEnv,
    DistributedError,
    convert_sync_bn,
    device_for,
    environment,
    gather_with_grad,
    process_group,
    wrap,
)
from xpt.train.errors import TrainingError
from xpt.train.failure_sink import FailureSink
from xpt.train.losses import crosspoint_loss
from xpt.train.metrics_log import METRICS_FILE, MetricsLog
from xpt.train.metrics_log import best_probe as _best_probe
from xpt.train.metrics_log import truncate_metrics as _truncate_metrics
from xpt.train.models import build_image_encoder, build_point_encoder
from xpt.train.probing import EpochProbe
from xpt.train.run_folder import clear_leftovers, resume_wanted, run_lock
from xpt.train.schedule import lr_at, never_trains, schedule_record
from xpt.train.trainer import LoopSettings, Resumed, Trainer, resume_from_last

# The names other modules and tests import from here; some now live in the modules above.
__all__ = [
    "POINT_AUGMENT",
    "RESUME_EXACT_FIELDS",
    "TrainingError",
    "_best_probe",
    "_truncate_metrics",
    "augment_generator",
    "build_models",
    "compile_model",
    "compile_problem",
    "compute_loss",
    "crosspoint_loss",
    "embedding_loss",
    "lr_at",
    "never_trains",
    "pretrain",
    "resolve_amp",
    "resolve_device",
]

POINT_AUGMENT = PointAugmentConfig()
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


# ---------------------------------------------------------------------------- set-up


def resolve_device(name: str) -> torch.device:
    """ "auto" -> CUDA when available, else CPU; "cuda" without a GPU is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise TrainingError("--device cuda was asked for but no CUDA device is available")
    return torch.device(name)


def resolve_amp(mode: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype (None = float32). AMP is CUDA-only; "auto" prefers bf16."""
    if device.type != "cuda" or mode == "off":
        return None
    if mode == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if mode == "bf16" else torch.float16


def compile_problem(device: torch.device) -> str | None:
    """Why ``torch.compile`` cannot work on ``device`` here (None: it can): its CPU
    back-end builds C++ with the system compiler, its CUDA back-end needs Triton."""
    if not hasattr(torch, "compile"):
        return f"torch {torch.__version__} has no torch.compile (needs torch >= 2.0)"
    if device.type == "cuda":
        from torch.utils._triton import has_triton

        return None if has_triton() else "torch.compile on CUDA needs Triton (pip install triton)"
    compilers = [os.environ.get("CXX"), "g++", "c++", "clang++"]
    if not any(shutil.which(c) for c in compilers if c):
        return "torch.compile on CPU needs a C++ compiler (apt-get install g++, or set CXX)"
    return None


def compile_model(model: nn.Module, device: torch.device) -> nn.Module:
    """``torch.compile(model)`` after :func:`compile_problem` found nothing missing; the
    bare ``model`` keeps the state-dict names (no ``_orig_mod.`` prefix in checkpoints)."""
    problem = compile_problem(device)
    if problem:
        raise TrainingError(f"--compile: {problem}; run without --compile")
    return torch.compile(model)


def build_models(config: PretrainConfig) -> tuple[nn.Module, nn.Module]:
    """Point and image encoders, initialised from ``config.seed`` (global RNG restored)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(config.seed, "init"))
        point = build_point_encoder(
            config.backbone,
            k=config.k,
            emb_dims=config.emb_dims,
            proj_dim=config.proj_dim,
            edgeconv=config.edgeconv,
        )
        image = build_image_encoder(config.image_encoder, proj_dim=config.proj_dim)
    return point, image


def augment_generator(config: PretrainConfig, rank: int = 0) -> torch.Generator:
    """The CPU generator that drives every augmentation (device-independent draws); each
    rank of a multi-process run draws its own (rank 0 the same as one process)."""
    parts = ("augment",) if rank == 0 else ("augment", "rank", rank)
    return torch.Generator().manual_seed(derive_seed(config.seed, *parts))


def _autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def compute_loss(
    point_model: nn.Module,
    image_model: nn.Module,
    batch: Batch,
    generator: torch.Generator,
    config: PretrainConfig,
    amp_dtype: torch.dtype | None = None,
    gather: Callable[[Tensor], Tensor] | None = None,
) -> dict[str, Tensor]:
    """The CrossPoint loss of one batch: {"loss", "imid", "cmid"} float32 scalars.

    Uses the batch's augmented inputs when the loader made them (``batch.pair``); else
    draws, in this order, two point augmentations and (unless ``loss`` is "imid", which
    leaves the image encoder out) one image augmentation, on the model's device, from each
    object's own generator (``batch.seeds``, the loader's draws) or, for a batch without
    seeds, from ``generator``. ``gather``: see :func:`embedding_loss`.
    """
    device = next(point_model.parameters()).device
    batch = batch.to(device)
    with_images = config.loss != "imid"
    if batch.pair is None:
        image_config = ImageAugmentConfig(size=config.image_size) if with_images else None
        two, images = augment_pair(
            batch.points,
            batch.images if with_images else None,
            batch.generators() if batch.seeds else generator,
            POINT_AUGMENT,
            image_config,
        )
    else:
        two, images = batch.pair, batch.views if with_images else None
    pair = torch.cat([two[:, 0], two[:, 1]])
    return embedding_loss(point_model, image_model, pair, images, config, amp_dtype, gather)


def embedding_loss(
    point_model: nn.Module,
    image_model: nn.Module,
    pair: Tensor,
    images: Tensor | None,
    config: PretrainConfig,
    amp_dtype: torch.dtype | None = None,
    gather: Callable[[Tensor], Tensor] | None = None,
) -> dict[str, Tensor]:
    """The CrossPoint loss of augmented inputs: ``pair`` float32 (2B, N, 3), the two views
    of B clouds one batch after the other (so BatchNorm sees both together, as in the
    release), and ``images`` float32 (B, 3, H, W) or None (loss "imid").

    ``gather`` (e.g. :func:`xpt.train.distributed.gather_with_grad`) maps each (B, D)
    embedding to the (W * B, D) embeddings of every rank before the loss: NT-Xent with the
    negatives of the global batch.
    """
    device = pair.device
    b = pair.shape[0] // 2
    with _autocast(device, amp_dtype):
        z_points = point_model(pair)[1].float()
        if images is not None and config.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        z_image = image_model(images)[1].float() if images is not None else None
    z_a, z_b = z_points[:b], z_points[b:]
    if gather is not None:
        z_a, z_b = gather(z_a), gather(z_b)
        z_image = gather(z_image) if z_image is not None else None
    return crosspoint_loss(z_a, z_b, z_image, mode=config.loss, temperature=config.temperature)


# ---------------------------------------------------------------------------- the run


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
    amp_dtype = _check_options(config, device)
    shard_set, shuffle = _open_shards(config, shards, env)
    if not resume and env.is_main:
        clear_leftovers(run_dir, load_config)
    make_folder(run_dir)
    failures = FailureSink(run_dir / FAILURES_FILE, record=env.is_main)
    loader = _loader(config, shard_set, shuffle, device, failures)
    state = _training_state(config, env, device, amp_dtype)
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
    loss_fn = _loss_fn(config, state, env, device, amp_dtype)
    probing = EpochProbe(probe, state.models["point"], env, metrics_path)
    metrics = MetricsLog(run_dir, write=env.is_main, tensorboard=config.tensorboard)
    trainer = Trainer(
        settings=settings,
        env=env,
        state=state,
        loss_fn=loss_fn,
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


def _check_options(config: PretrainConfig, device: torch.device) -> torch.dtype | None:
    """The autocast dtype; refuses ``--compile`` where it cannot work, notes AMP off a GPU."""
    amp_dtype = resolve_amp(config.amp, device)
    if config.compile and (problem := compile_problem(device)):
        raise TrainingError(f"--compile: {problem}; run without --compile")
    if device.type != "cuda" and config.amp in ("bf16", "fp16"):
        err.print(f"[yellow]note[/yellow] AMP is CUDA-only; training in float32 on {device}")
    return amp_dtype


def _open_shards(
    config: PretrainConfig,
    shards: ShardSet | str | os.PathLike | Sequence[str | os.PathLike],
    env: DistEnv,
) -> tuple[ShardSet, str]:
    """The shard set and how it is shuffled, with a note on what that means for the run."""
    main = env.is_main
    shard_set = (
        shards
        if isinstance(shards, ShardSet)
        else resolve_shards(shards, config.split_names, config.skip_missing_shards)  # type: ignore[arg-type]
    )
    if shard_set.missing and main:
        count = len(shard_set.missing)
        err.print(
            f"[yellow]note[/yellow] --skip-missing-shards: training without {count} missing "
            f"shard(s) ({escape(', '.join(shard_set.missing))}); the epoch is "
            f"{shard_set.samples} samples",
            highlight=False,
            soft_wrap=True,
        )
    if "test" in config.split_names and main:
        err.print(
            "[yellow]warning[/yellow] pretraining reads the shards' test split: an evaluation "
            "on those objects (xpt benchmark --dataset shards) no longer holds them out",
            highlight=False,
            soft_wrap=True,
        )
    shuffle = resolve_shuffle(config.shuffle, shard_set)
    if config.shuffle == "auto" and shuffle == "buffer" and main:
        err.print(
            f"[yellow]note[/yellow] {escape(shard_set.spec)}: not local uncompressed files, so "
            f"samples are shuffled through a buffer of {config.shuffle_buffer} (a full "
            "reshuffle each epoch, --shuffle full, reads local shards by position)",
            highlight=False,
            soft_wrap=True,
        )
    _, note = loader_workers(config.workers, len(shard_set.urls) if shuffle == "buffer" else None)
    if note:
        err.print(f"[yellow]note[/yellow] {escape(note)}", highlight=False, soft_wrap=True)
    if env.active and shuffle == "buffer" and len(shard_set.urls) % env.world_size:
        err.print(
            f"[yellow]note[/yellow] {len(shard_set.urls)} shards over {env.world_size} "
            "processes: the ranks hold unequal shares, so an epoch (the same number of steps "
            "on every rank) reads some objects twice and leaves others out (which ones "
            "changes every epoch); a multiple of the process count reads each object once",
            highlight=False,
            soft_wrap=True,
        )
    return shard_set, shuffle


def _loader(
    config: PretrainConfig,
    shard_set: ShardSet,
    shuffle: str,
    device: torch.device,
    failures: FailureSink,
) -> ShardLoader:
    """This rank's batches; the "step" schedule needs to know how many an epoch has."""
    loader = ShardLoader(
        shard_set,
        LoaderConfig(
            batch_size=config.batch_size,
            points=config.points,
            image_size=config.image_size,
            seed=config.seed,
            shuffle=shuffle,
            shuffle_buffer=config.shuffle_buffer,
            workers=config.workers,
            samples_per_epoch=config.samples_per_epoch,
            augment=device.type == "cpu",  # in the workers; on a GPU, there (same draws)
            augment_images=config.loss != "imid",
            pin_memory=device.type == "cuda",
        ),
        on_error=failures,
        on_note=failures.note,
    )
    if config.lr_schedule == "step" and loader.steps_per_epoch is None:
        raise TrainingError(
            f"{shard_set.spec}: the epoch length is unknown (no manifest); give "
            "--samples-per-epoch or use an epoch-wise lr_schedule"
        )
    return loader


def _training_state(
    config: PretrainConfig, env: DistEnv, device: torch.device, amp_dtype: torch.dtype | None
) -> TrainingState:
    """The two encoders on ``device`` (bare: clean state-dict names), Adam over both, the
    loss scaler (float16 only) and this rank's augmentation generator."""
    point_model, image_model = build_models(config)
    if env.active and config.sync_bn:
        point_model, image_model = convert_sync_bn(point_model), convert_sync_bn(image_model)
    point_model.to(device)
    image_model.to(device)
    if config.channels_last:  # NHWC weights (same state dict); inputs follow in embedding_loss
        image_model.to(memory_format=torch.channels_last)
    models = {"point": point_model, "image": image_model}
    parameters = [p for model in models.values() for p in model.parameters()]
    optimizer = torch.optim.Adam(parameters, lr=config.lr, weight_decay=config.weight_decay)
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)
    return TrainingState(models, optimizer, scaler, augment_generator(config, env.rank))


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


def _loss_fn(
    config: PretrainConfig,
    state: TrainingState,
    env: DistEnv,
    device: torch.device,
    amp_dtype: torch.dtype | None,
) -> Callable[[Batch], dict[str, Tensor]]:
    """Batch -> the CrossPoint loss, through the modules that train.

    Those are the encoders in DistributedDataParallel with several processes (and compiled
    with ``compile``); ``state.models`` keeps the bare ones for checkpoints and the probe.
    An unused image encoder (loss "imid") stays unwrapped: DDP would wait for its gradients
    forever.
    """
    point_model, image_model = state.models["point"], state.models["image"]
    point_net = wrap(point_model, env, device)
    image_net = wrap(image_model, env, device) if config.loss != "imid" else image_model
    if config.compile:
        point_net, image_net = compile_model(point_net, device), compile_model(image_net, device)
    gather = gather_with_grad if env.active and config.global_negatives else None
    return functools.partial(
        compute_loss,
        point_net,
        image_net,
        generator=state.generator,
        config=config,
        amp_dtype=amp_dtype,
        gather=gather,
    )
