"""CrossPoint pretraining loop: streamed shards -> encoders, checkpoints, metrics.

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
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import os
import re
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import torch
from rich.markup import escape
from torch import Tensor, nn

from xpt.toolkit.console import RunProgress, err
from xpt.toolkit.failures import FAILURES_FILE, Failure, FailureLog, read_failures
from xpt.toolkit.fsio import TMP_PREFIX, atomic_write_text, make_folder
from xpt.toolkit.interrupts import Interrupted, deferred_interrupts
from xpt.toolkit.locks import FolderInUse, folder_lock
from xpt.toolkit.memory import heap_checkpoint
from xpt.toolkit.seeding import derive_seed
from xpt.train.augment import ImageAugmentConfig, PointAugmentConfig, augment_pair
from xpt.train.checkpoint import (
    BEST,
    LAST,
    CheckpointError,
    epoch_checkpoint_name,
    load_checkpoint,
    make_checkpoint,
    readable_fallback,
    restore_checkpoint,
    restore_rng,
    rng_state,
    save_checkpoint,
)
from xpt.train.config import CONFIG_FILE, MODEL_FIELDS, PretrainConfig, load_config, save_config
from xpt.train.curves import CURVES_FILE, TensorBoardLog, write_curves
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
from xpt.train.losses import crosspoint_loss
from xpt.train.models import build_image_encoder, build_point_encoder

METRICS_FILE = "metrics.jsonl"
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


class TrainingError(RuntimeError):
    """Training cannot start or had to stop; the message says why and what was kept."""


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


def cosine_lr(base_lr: float, position: float, t_max: float) -> float:
    """CosineAnnealingLR's value at ``position`` of ``t_max`` (eta_min 0)."""
    return 0.5 * base_lr * (1 + math.cos(math.pi * min(position, t_max) / t_max))


def lr_at(config: PretrainConfig, epoch: int, batch: int, steps_per_epoch: int | None) -> float:
    """Learning rate for batch ``batch`` of epoch ``epoch`` (both 0-based)."""
    if config.lr_schedule == "release":
        return cosine_lr(config.lr, epoch + 1, config.epochs)
    if config.lr_schedule == "epoch":
        return cosine_lr(config.lr, epoch, config.epochs)
    if steps_per_epoch is None:
        raise TrainingError('lr_schedule "step" needs a known epoch length')
    return cosine_lr(config.lr, epoch * steps_per_epoch + batch, config.epochs * steps_per_epoch)


def never_trains(config: PretrainConfig, epoch: int) -> bool:
    """True when every step from the start of ``epoch`` (0-based) on runs at lr 0: the
    "release" schedule's last epoch, so ``epochs=1`` with it never changes the weights."""
    if config.lr_schedule == "step" or epoch >= config.epochs:
        return False  # a per-step cosine is 0 only after the last step
    return all(lr_at(config, e, 0, None) == 0 for e in range(epoch, config.epochs))


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


# ---------------------------------------------------------------------------- records


class _FailureSink:
    """Data failures: each distinct one printed once and appended to failures.jsonl; and
    the data loader's notes, one line each. With ``record`` False (ranks other than 0)
    nothing is written: the failures wait in ``pending`` for rank 0 to record them."""

    def __init__(self, path: Path, record: bool = True):
        self.log = FailureLog(path)
        self.seen = {(f.id, f.path, f.reason) for f in read_failures(path)}
        self.bar: RunProgress | None = None
        self.record = record
        self.pending: list[Failure] = []

    def __call__(self, failure: Failure) -> None:
        key = (failure.id, failure.path, failure.reason)
        if key in self.seen:
            return
        self.seen.add(key)
        if not self.record:
            self.pending.append(failure)
            return
        self.log.record(failure)
        if self.bar is not None:
            self.bar.fail(failure.line())
        else:
            err.print(f"[red]skipped[/red] {escape(failure.line())}", highlight=False)

    def note(self, message: str) -> None:
        line = f"[yellow]note[/yellow] {escape(message)}"
        if self.bar is not None:
            self.bar.note(line)
        else:
            err.print(line, highlight=False, soft_wrap=True)


def _best_probe(path: Path) -> tuple[float, int] | None:
    """(accuracy, epoch) of the best probe line in ``metrics.jsonl`` (the latest on ties: the
    more trained of two equal encoders)."""
    best = None
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            with contextlib.suppress(ValueError, KeyError, TypeError):
                row = json.loads(line)
                if "probe_accuracy" in row and (best is None or row["probe_accuracy"] >= best[0]):
                    best = (float(row["probe_accuracy"]), int(row["epoch"]))
    return best


def _truncate_metrics(path: Path, step: int) -> None:
    """Drop metric lines past ``step`` (written after the checkpoint a run resumes from)."""
    if not path.exists():
        return
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            if json.loads(line)["step"] <= step:
                kept.append(line)
        except (ValueError, KeyError, TypeError):
            pass  # blank, or half-written by a run killed mid-write
    atomic_write_text(path, "".join(line + "\n" for line in kept))


def _non_finite(models: dict[str, nn.Module]) -> list[str]:
    """Names of the parameters and buffers holding a NaN or an infinity."""
    return [
        f"{name}.{key}"
        for name, model in models.items()
        for key, value in model.state_dict().items()
        if value.is_floating_point() and not bool(torch.isfinite(value).all())
    ]


def _changed_settings(config: PretrainConfig, run_dir: Path, saved: dict[str, Any]) -> list[str]:
    """``"name old -> new"`` for each :data:`RESUME_EXACT_FIELDS` setting that differs from
    the run's config.json (else the checkpoint's config)."""
    with contextlib.suppress(OSError, ValueError):
        saved = json.loads((run_dir / CONFIG_FILE).read_text(encoding="utf-8"))
    return [
        f"{f} {saved.get(f)!r} -> {getattr(config, f)!r}"
        for f in RESUME_EXACT_FIELDS
        if saved.get(f) != getattr(config, f)
    ]


def _metric_rows(path: Path) -> list[dict[str, Any]]:
    """The step lines of ``metrics.jsonl`` (probe lines and torn lines left out)."""
    rows = []
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            with contextlib.suppress(ValueError):
                row = json.loads(line)
                if isinstance(row, dict) and "loss" in row and "step" in row:
                    rows.append(row)
    return rows


def _final_figures(path: Path, epochs_done: int) -> tuple[float | None, float | None]:
    """(mean loss, mean objects/s) of the steps of epoch ``epochs_done`` in ``metrics.jsonl``:
    the figures of a finished run's last epoch, for a summary when nothing was trained."""
    rows = [r for r in _metric_rows(path) if r.get("epoch") == epochs_done]
    rates = [r["samples_per_s"] for r in rows if r.get("samples_per_s")]
    loss = sum(r["loss"] for r in rows) / len(rows) if rows else None
    return loss, sum(rates) / len(rates) if rates else None


def _fallback_hint(found: tuple[Path, int] | None) -> str:
    """What a run whose last.pt is missing or unreadable can resume from instead
    (``found``: :func:`~xpt.train.checkpoint.readable_fallback`'s answer)."""
    if found is None:
        return "no readable epoch_XXX.pt to resume from instead"
    return f"{found[0]} (step {found[1]}) is readable: copy it to {LAST} to resume from there"


def _load_last(run_dir: Path) -> dict[str, Any]:
    """``last.pt``, or a CheckpointError saying what is wrong with it and what could be
    resumed from instead."""
    try:
        return load_checkpoint(run_dir / LAST)
    except CheckpointError as exc:
        raise CheckpointError(f"{exc}; {_fallback_hint(readable_fallback(run_dir))}") from None


_CHECKPOINT_NAME = re.compile(rf"{re.escape(BEST)}|epoch_\d+\.pt")


def _clear_leftovers(run_dir: Path) -> None:
    """Make sure a new run in ``run_dir`` (which has no last.pt) appends to nothing.

    Checkpoints without ``last.pt`` are refused (they may be worth resuming). The leftovers
    of an xpt run stopped before its first checkpoint (its config.json, metrics.jsonl,
    failures.jsonl and temporary files) are removed with a note: no step of it can be
    resumed. Files of those names beside a config.json that is not an xpt run's are refused.
    """
    if not run_dir.is_dir():
        return
    checkpoints = sorted(p.name for p in run_dir.iterdir() if _CHECKPOINT_NAME.fullmatch(p.name))
    if checkpoints:
        raise TrainingError(
            f"{run_dir}: holds checkpoints ({', '.join(checkpoints)}) but no {LAST}; copy one "
            f"of them to {LAST} and pass --resume, or choose another --out"
        )
    leftovers = [run_dir / n for n in (CONFIG_FILE, METRICS_FILE, FAILURES_FILE)]
    leftovers = [p for p in leftovers if p.exists()] + sorted(run_dir.glob(TMP_PREFIX + "*"))
    if not leftovers:
        return
    names = ", ".join(p.name for p in leftovers)
    try:
        load_config(run_dir / CONFIG_FILE)
    except ValueError:
        raise TrainingError(
            f"{run_dir}: holds {names} but no {LAST}, and no xpt run's {CONFIG_FILE}; "
            "remove them or choose another --out"
        ) from None
    steps = len(_metric_rows(run_dir / METRICS_FILE))
    for path in leftovers:
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
    err.print(
        f"[yellow]note[/yellow] {run_dir}: removed {names} of an earlier run stopped before "
        f"its first checkpoint ({steps} step(s), none resumable); starting afresh",
        highlight=False,
    )


@dataclass
class _EpochStats:
    steps: int = 0
    samples: int = 0
    seconds: float = 0.0
    sums: dict[str, float] = field(default_factory=lambda: {"loss": 0.0, "imid": 0.0, "cmid": 0.0})

    def add(self, values: dict[str, float], samples: int, seconds: float) -> None:
        self.steps += 1
        self.samples += samples
        self.seconds += seconds
        for name in self.sums:
            self.sums[name] += values[name]

    def mean(self, name: str) -> float:
        return self.sums[name] / max(self.steps, 1)


# ---------------------------------------------------------------------------- the loop


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
    checkpoint (see :func:`_clear_leftovers`). Rank 0 holds ``run_dir``'s lock for the run
    (:func:`_run_lock`): another process writing it is a TrainingError on every rank.

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
        with process_group(env, device), _run_lock(Path(run_dir), env):
            return _pretrain(config, shards, Path(run_dir), resume, probe, env, device)
    finally:
        err.quiet = quiet


@contextlib.contextmanager
def _run_lock(run_dir: Path, env: DistEnv) -> Iterator[None]:
    """Rank 0 holds ``run_dir``'s lock for the body; when another process holds it, every
    rank raises the refusal (a rank left waiting for rank 0 would fail with a traceback)."""
    with contextlib.ExitStack() as held:
        refusal = None
        if env.is_main:
            try:
                held.enter_context(folder_lock(run_dir, "xpt pretrain"))
            except FolderInUse as error:
                refusal = f"{error.filename}: {error.strerror}"
        refusal = env.broadcast(refusal)
        if refusal is not None:
            raise TrainingError(refusal)
        yield


def _pretrain(
    config: PretrainConfig,
    shards: ShardSet | str | os.PathLike | Sequence[str | os.PathLike],
    run_dir: Path,
    resume: bool | str,
    probe: Callable[[nn.Module], dict[str, Any]] | None,
    env: DistEnv,
    device: torch.device,
) -> dict[str, Any]:
    last_path = run_dir / LAST
    if resume == "auto":
        resume = bool(env.broadcast(last_path.exists()))
    elif not isinstance(resume, bool):
        raise TrainingError(f"resume must be True, False or 'auto', got {resume!r}")
    if resume and not last_path.exists():
        found = readable_fallback(run_dir)
        raise TrainingError(
            f"{run_dir}: nothing to resume (no {LAST})"
            + (f"; {_fallback_hint(found)}" if found else "")
        )
    if not resume and last_path.exists():
        raise TrainingError(
            f"{run_dir}: already holds a run ({LAST}); pass --resume to continue it "
            "or choose another --out"
        )
    env.barrier()  # every rank has looked at run_dir before rank 0 writes to it
    main = env.is_main
    amp_dtype = resolve_amp(config.amp, device)
    if config.compile and (problem := compile_problem(device)):
        raise TrainingError(f"--compile: {problem}; run without --compile")
    if device.type != "cuda" and config.amp in ("bf16", "fp16"):
        err.print(f"[yellow]note[/yellow] AMP is CUDA-only; training in float32 on {device}")
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
    if not resume and main:
        _clear_leftovers(run_dir)

    make_folder(run_dir)
    sink = _FailureSink(run_dir / FAILURES_FILE, record=main)
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
        on_error=sink,
        on_note=sink.note,
    )
    steps_per_epoch = loader.steps_per_epoch
    if config.lr_schedule == "step" and steps_per_epoch is None:
        raise TrainingError(
            f"{shard_set.spec}: the epoch length is unknown (no manifest); give "
            "--samples-per-epoch or use an epoch-wise lr_schedule"
        )

    point_model, image_model = build_models(config)
    if env.active and config.sync_bn:
        point_model, image_model = convert_sync_bn(point_model), convert_sync_bn(image_model)
    point_model.to(device)
    image_model.to(device)
    if config.channels_last:  # NHWC weights (same state dict); inputs follow in embedding_loss
        image_model.to(memory_format=torch.channels_last)
    models = {"point": point_model, "image": image_model}  # bare: clean state-dict names
    parameters = [p for model in models.values() for p in model.parameters()]
    optimizer = torch.optim.Adam(parameters, lr=config.lr, weight_decay=config.weight_decay)
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)
    generator = augment_generator(config, env.rank)
    gather = gather_with_grad if env.active and config.global_negatives else None
    per_step = config.lr_schedule == "step"
    schedule = {
        "kind": config.lr_schedule,
        "base_lr": config.lr,
        "t_max": config.epochs * steps_per_epoch if per_step and steps_per_epoch else config.epochs,
        "unit": "step" if per_step else "epoch",
    }

    def at_max_steps() -> bool:
        return config.max_steps is not None and step >= config.max_steps

    step, epoch, batch_index = 0, 0, 0
    last_values: dict[str, float] = {}
    finished = False  # resumed a run that has nothing left to train
    if resume:
        state = _load_last(run_dir)
        changed = [f for f in MODEL_FIELDS if state["config"].get(f) != getattr(config, f)]
        if changed:
            raise TrainingError(
                f"{last_path}: written with other model settings than asked for: "
                + ", ".join(
                    f"{f} {state['config'].get(f)!r} -> {getattr(config, f)!r}" for f in changed
                )
                + "; resume with the run's own settings or choose another --out"
            )
        try:
            position = restore_checkpoint(
                state,
                models=models,
                optimizer=optimizer,
                scaler=scaler,
                generator=generator,
                path=last_path,
            )
        except CheckpointError as exc:
            raise CheckpointError(f"{exc}; {_fallback_hint(readable_fallback(run_dir))}") from None
        saved_world = int(state.get("world_size", 1))
        by_rank = state["rng"].get("by_rank") or []
        if len(by_rank) == env.world_size:
            restore_rng(by_rank[env.rank], generator)
        elif env.rank > 0:  # no state saved for this rank: a fresh stream, seeded by position
            generator.manual_seed(
                derive_seed(config.seed, "augment", "rank", env.rank, "resume", position["step"])
            )
        step, epoch, batch_index = position["step"], position["epoch"], position["batch"]
        if main:
            _truncate_metrics(run_dir / METRICS_FILE, step)
        last_values = dict(state["metrics"])
        finished = epoch >= config.epochs or at_max_steps()
        if finished:
            limit = (
                f"{epoch} of {config.epochs} epochs"
                if epoch >= config.epochs
                else f"max_steps {config.max_steps}"
            )
            err.print(
                f"{run_dir} is already complete ({limit}, step {step}); nothing to train "
                "(pass --epochs to train longer)",
                highlight=False,
            )
        else:
            changed = _changed_settings(config, run_dir, state["config"])
            if saved_world != env.world_size:
                changed.append(f"processes {saved_world} -> {env.world_size}")
            if changed:
                err.print(
                    "[yellow]warning[/yellow] resuming with changed settings: "
                    + ", ".join(changed)
                    + "; the run will not be an exact continuation of the original",
                    highlight=False,
                )
            err.print(
                f"resuming {run_dir} at step {step} (epoch {epoch + 1}, batch {batch_index})",
                markup=False,
            )
    if not finished:
        if main:
            save_config(config, run_dir)
        if never_trains(config, epoch):
            err.print(
                f"[yellow]warning[/yellow] lr_schedule 'release' trains its last epoch at lr 0 "
                f"(the published code's off-by-one) and every step left is in it (epoch "
                f"{epoch + 1} of {config.epochs}): the weights will not change; use "
                "--lr-schedule epoch",
                highlight=False,
            )

    # The modules that train (DistributedDataParallel with several processes); `models`
    # keeps the bare ones for checkpoints and the probe. An unused image encoder (loss
    # "imid") stays unwrapped: DDP would wait for its gradients forever.
    point_net = wrap(point_model, env, device)
    image_net = wrap(image_model, env, device) if config.loss != "imid" else image_model
    if config.compile:
        point_net, image_net = compile_model(point_net, device), compile_model(image_net, device)
    last_saved = step if resume else None
    epoch_stats = _EpochStats()
    run_samples, run_seconds = 0, 0.0
    stopped = "done"
    agreed = 0  # several processes: the signal every rank agreed to stop on (0: none)
    started = time.perf_counter()

    def stop_non_finite(what: str, epoch_done: int) -> NoReturn:
        kept = (
            f"the last good checkpoint is {last_path} (step {last_saved})"
            if last_saved is not None
            else "no checkpoint had been written yet"
        )
        raise TrainingError(f"{what} (epoch {epoch_done}); training stopped, {kept}")

    def stopping() -> int:
        """The signal the run stops on (0: none): this process's, or the ranks' agreement."""
        return agreed if env.active else (stop.signum or 0)

    def checkpoint(path: Path, selection: dict[str, Any] | None = None) -> None:
        # Every rank takes part: rank 0 collects the others' RNG states and data failures,
        # writes, and nobody goes on (or exits) before the file is in place.
        shared = env.all_gather(
            {"rng": rng_state(generator), "failures": sink.pending, "bad": _non_finite(models)}
        )
        sink.pending = []
        if main:
            for other in shared[1:]:
                for failure in other["failures"]:
                    sink(failure)
        bad = shared[0]["bad"]
        if bad:
            names = ", ".join(bad[:3]) + (f" and {len(bad) - 3} more" if len(bad) > 3 else "")
            # (After a completed epoch the position already points at the next one.)
            stop_non_finite(
                f"non-finite weights ({names}) after step {step}",
                epoch + 1 if batch_index else epoch,
            )
        if main:
            state = make_checkpoint(
                models=models,
                optimizer=optimizer,
                scaler=scaler,
                schedule=schedule,
                position={"step": step, "epoch": epoch, "batch": batch_index},
                generator=generator,
                config=config.to_dict(),
                metrics=last_values,
                selection=selection,
            )
            if env.active:
                state["world_size"] = env.world_size
                state["rng"]["by_rank"] = [other["rng"] for other in shared]
            save_checkpoint(state, path)
        env.barrier()

    best = env.broadcast(_best_probe(run_dir / METRICS_FILE) if main else None)
    probing = bool(env.broadcast(probe is not None))

    def run_probe(epochs_done: int) -> None:
        nonlocal best
        result = None
        if main:
            assert probe is not None
            result = probe(point_model)
        result = env.broadcast(result)
        accuracy = result["probe_accuracy"]
        record = {"step": step, "epoch": epochs_done, **result}
        metrics.write(json.dumps(record) + "\n")
        metrics.flush()
        if board is not None:
            board.log(record)
        improved = best is None or accuracy >= best[0]  # a tie goes to the later epoch
        where = (
            "the TEST split (release behaviour)"
            if result.get("probe_split") == "test"
            else (f"the {result.get('probe_split', 'val')} split")
        )
        card = result.get("probe_protocol", "xpt")
        err.print(
            f"epoch {epochs_done} probe: linear accuracy {100 * accuracy:.1f} % on {where} of "
            f"{result.get('probe_dataset', 'the probe set')}, C={result.get('probe_C', 0):g}"
            + ("" if card == "xpt" else f" (protocol {card})")
            + (
                f"; best so far -> {BEST}"
                if improved
                else f" (best {100 * best[0]:.1f} %, epoch {best[1]})"
            ),
            highlight=False,
        )
        if improved:
            best = (accuracy, epochs_done)
            selection = {
                "by": "probe_accuracy",
                "split": result.get("probe_split"),
                "protocol": result.get("probe_protocol", "xpt"),
                "dataset": result.get("probe_dataset"),
                "epoch": epochs_done,
                "accuracy": accuracy,
            }
            checkpoint(run_dir / BEST, selection)

    world = env.world_size
    for model in models.values():
        model.train()
    try:
        board = TensorBoardLog(run_dir / "tb") if config.tensorboard and main else None
    except ImportError as missing:
        raise TrainingError(str(missing)) from None
    with (
        open(run_dir / METRICS_FILE if main else os.devnull, "a", encoding="utf-8") as metrics,
        deferred_interrupts() as stop,
    ):
        try:
            while epoch < config.epochs and not at_max_steps() and not stopping():
                epoch_stats = _EpochStats()
                total = None if steps_per_epoch is None else steps_per_epoch - batch_index
                with RunProgress(
                    f"epoch {epoch + 1}/{config.epochs}",
                    total=None if total is None else total * config.batch_size * world,
                    unit="obj",
                ) as bar:
                    sink.bar = bar
                    tick = time.perf_counter()
                    # (None marks the end of this rank's data.)
                    for batch in itertools.chain(loader.epoch(epoch, skip=batch_index), [None]):
                        if env.active:  # stop or end the epoch together, at the same step
                            agreed, ran_out = env.all_max([stop.signum or 0, batch is None])
                            if agreed or ran_out:
                                break
                        elif batch is None or stop:  # a signal while the batch was read:
                            break  # leave it for resume
                        lr = lr_at(config, epoch, batch_index, steps_per_epoch)
                        for group in optimizer.param_groups:
                            group["lr"] = lr
                        losses = compute_loss(
                            point_net, image_net, batch, generator, config, amp_dtype, gather
                        )
                        # (the ranks' mean: every rank logs, and stops on, the same values)
                        values = env.mean(
                            {name: value.detach().item() for name, value in losses.items()}
                        )
                        if not math.isfinite(values["loss"]):
                            stop_non_finite(
                                f"non-finite loss ({values['loss']}) at step {step + 1}",
                                epoch + 1,
                            )
                        optimizer.zero_grad(set_to_none=True)
                        scaler.scale(losses["loss"]).backward()
                        scaler.step(optimizer)
                        scaler.update()
                        heap_checkpoint()  # (the freed-memory budget, when one is active)
                        step += 1
                        batch_index += 1
                        now = time.perf_counter()
                        seconds, tick = now - tick, now
                        objects = len(batch) * world
                        epoch_stats.add(values, objects, seconds)
                        run_samples += objects
                        run_seconds += seconds
                        last_values = values
                        record = {"step": step, "epoch": epoch + 1, **values, "lr": lr}
                        record["samples_per_s"] = objects / seconds if seconds > 0 else None
                        metrics.write(json.dumps(record) + "\n")
                        metrics.flush()
                        if board is not None:
                            board.log(record)
                        bar.advance(n=objects, detail=f"loss {values['loss']:.4f}")
                        if step % config.log_every_steps == 0:
                            bar.note(
                                f"step {step}: loss {values['loss']:.4f} "
                                f"(imid {values['imid']:.4f}, cmid {values['cmid']:.4f}), "
                                f"lr {lr:.3g}, {objects / max(seconds, 1e-9):.1f} obj/s"
                            )
                        if at_max_steps():
                            stopped = "max_steps"
                            break
                        if stop and not env.active:
                            break
                        if step % config.checkpoint_every_steps == 0:
                            checkpoint(last_path)
                            last_saved = step
                    sink.bar = None
                # (A resumed epoch may have nothing left: its last batch was trained on.)
                if epoch_stats.steps == 0 and batch_index == 0 and not stopping():
                    raise TrainingError(
                        f"{shard_set.spec}: no training batch could be read in epoch "
                        f"{epoch + 1} ({len(sink.seen)} failure(s), see {sink.log.path})"
                    )
                complete = (stopped == "done" and not stopping()) or batch_index == steps_per_epoch
                if epoch_stats.steps:
                    err.print(
                        f"epoch {epoch + 1}{'' if complete else ' (partial)'}: "
                        f"{epoch_stats.steps} steps, loss {epoch_stats.mean('loss'):.4f} "
                        f"(imid {epoch_stats.mean('imid'):.4f}, "
                        f"cmid {epoch_stats.mean('cmid'):.4f}), "
                        f"{epoch_stats.samples / max(epoch_stats.seconds, 1e-9):.1f} obj/s",
                        highlight=False,
                    )
                if complete:
                    if steps_per_epoch is not None and batch_index < steps_per_epoch:
                        err.print(
                            f"[yellow]note[/yellow] epoch {epoch + 1} ended after {batch_index} "
                            f"of {steps_per_epoch} batches (too few readable samples)"
                        )
                    epoch, batch_index = epoch + 1, 0
                    if probing and (epoch % config.probe_every == 0 or epoch == config.epochs):
                        run_probe(epoch)  # before last.pt: a run killed here re-probes on resume
                checkpoint(last_path)
                last_saved = step
                if complete and main:
                    write_curves([run_dir], run_dir / CURVES_FILE)
                if complete and epoch % config.checkpoint_every_epochs == 0:
                    checkpoint(run_dir / epoch_checkpoint_name(epoch))
        except Interrupted as again:
            kept = (
                f"{last_path} holds step {last_saved}; resume with --resume"
                if last_saved is not None
                else "no checkpoint had been written"
            )
            raise Interrupted(f"{again} at step {step}; {kept}", again.signum) from None
        if stopping() and stopped == "done" and epoch < config.epochs:
            raise Interrupted(f"interrupted at step {step}; resume with --resume", stopping())

    final = _final_figures(run_dir / METRICS_FILE, epoch) if finished else (None, None)
    return {
        "run_dir": str(run_dir),
        "device": str(device),
        "amp": str(amp_dtype).removeprefix("torch.") if amp_dtype else "off",
        "processes": world,
        "batch_size": config.batch_size,
        "global_batch_size": config.batch_size * world,
        "shuffle": shuffle,
        "stopped": "complete" if finished else stopped,
        "steps": step,
        "epochs_completed": epoch,
        "steps_per_epoch": steps_per_epoch,
        "loss": last_values.get("loss"),
        "epoch_loss": epoch_stats.mean("loss") if epoch_stats.steps else final[0],
        "samples_per_s": run_samples / run_seconds if run_seconds > 0 else final[1],
        "elapsed_s": time.perf_counter() - started,
        "data_failures": len(sink.seen),
        "last_checkpoint": str(last_path) if last_path.exists() else None,
        "best_checkpoint": str(run_dir / BEST) if best is not None else None,
        "probe_best_accuracy": best[0] if best is not None else None,
        "probe_best_epoch": best[1] if best is not None else None,
    }
