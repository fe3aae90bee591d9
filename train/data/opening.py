"""A shard set opened for a pretraining run: SHARDS resolved, one note for each thing its
layout means for the run (missing shards left out, the test split read, shuffling through a
buffer, unequal shares over the processes), and this rank's :class:`ShardLoader`."""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch
from rich.markup import escape

from xpt.toolkit.console import err
from xpt.train.config import PretrainConfig
from xpt.train.data.loader import LoaderConfig, ShardLoader, loader_workers, resolve_shuffle
from xpt.train.data.shard_sets import ShardSet, resolve_shards
from xpt.train.distributed import DistEnv
from xpt.train.errors import TrainingError
from xpt.train.failure_sink import FailureSink


def open_shards(
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


def training_loader(
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
