"""A run's checkpoints as the loop takes them: ``last.pt``, ``epoch_XXX.pt`` and ``best.pt``
written with every rank's state, and ``last.pt`` restored on resume.

Every rank takes part in a save: rank 0 collects the other ranks' augmentation RNG states
and data failures, refuses to write non-finite weights, writes, and nobody goes on (or
exits) before the file is in place. The file format is :mod:`xpt.train.checkpoint`'s.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import torch
from torch import nn

from xpt.toolkit.seeding import derive_seed
from xpt.train.checkpoint import (
    BEST,
    LAST,
    CheckpointError,
    load_checkpoint,
    make_checkpoint,
    readable_fallback,
    restore_checkpoint,
    restore_rng,
    rng_state,
    save_checkpoint,
)
from xpt.train.distributed import DistEnv
from xpt.train.errors import TrainingError
from xpt.train.failure_sink import FailureSink
from xpt.train.run_folder import fallback_hint


@dataclass
class Position:
    """Where a run is: optimiser steps done, the epoch in progress (0-based) and the
    batches of it already trained on."""

    step: int = 0
    epoch: int = 0
    batch: int = 0

    def as_dict(self) -> dict[str, int]:
        return {"step": self.step, "epoch": self.epoch, "batch": self.batch}

    @property
    def epoch_of_last_step(self) -> int:
        """The 1-based epoch of the last step taken (after a completed epoch the position
        already points at the next one)."""
        return self.epoch + 1 if self.batch else self.epoch


@dataclass
class TrainingState:
    """What a checkpoint holds besides the position: the bare models (clean state-dict
    names; not their DDP or compiled wrappers), the optimiser, the loss scaler and the
    generator that drives this rank's augmentations."""

    models: dict[str, nn.Module]
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    generator: torch.Generator


def non_finite(models: dict[str, nn.Module]) -> list[str]:
    """Names of the parameters and buffers holding a NaN or an infinity."""
    return [
        f"{name}.{key}"
        for name, model in models.items()
        for key, value in model.state_dict().items()
        if value.is_floating_point() and not bool(torch.isfinite(value).all())
    ]


class Checkpointer:
    """Saves and restores ``state`` in ``run_dir``; ``config`` (the run's settings as a
    dict), ``schedule`` and ``seed`` go into every checkpoint or derive from it, and
    ``failures`` holds the data failures that other ranks pass to rank 0 at each save.

    ``last_saved`` is the step of the newest ``last.pt`` (None before the first), which the
    messages of a run that has to stop name as what was kept.
    """

    def __init__(
        self,
        run_dir: Path,
        env: DistEnv,
        state: TrainingState,
        *,
        config: dict[str, Any],
        schedule: dict[str, Any],
        seed: int,
        failures: FailureSink,
    ):
        self.run_dir = run_dir
        self.env = env
        self.state = state
        self.config = config
        self.schedule = schedule
        self.seed = seed
        self.failures = failures
        self.last_saved: int | None = None

    @property
    def last_path(self) -> Path:
        return self.run_dir / LAST

    def save(
        self,
        path: Path,
        position: Position,
        metrics: dict[str, float],
        selection: dict[str, Any] | None = None,
    ) -> None:
        """Write a checkpoint at ``position`` to ``path`` (every rank calls this); a
        TrainingError instead when the weights or buffers hold a NaN or an infinity."""
        env, state = self.env, self.state
        shared = env.all_gather(
            {
                "rng": rng_state(state.generator),
                "failures": self.failures.pending,
                "bad": non_finite(state.models),
            }
        )
        self.failures.pending = []
        if env.is_main:
            for other in shared[1:]:
                for failure in other["failures"]:
                    self.failures(failure)
        bad = shared[0]["bad"]
        if bad:
            names = ", ".join(bad[:3]) + (f" and {len(bad) - 3} more" if len(bad) > 3 else "")
            self.stop_non_finite(
                f"non-finite weights ({names}) after step {position.step}",
                position.epoch_of_last_step,
            )
        if env.is_main:
            checkpoint = make_checkpoint(
                models=state.models,
                optimizer=state.optimizer,
                scaler=state.scaler,
                schedule=self.schedule,
                position=position.as_dict(),
                generator=state.generator,
                config=self.config,
                metrics=metrics,
                selection=selection,
            )
            if env.active:
                checkpoint["world_size"] = env.world_size
                checkpoint["rng"]["by_rank"] = [other["rng"] for other in shared]
            save_checkpoint(checkpoint, path)
        env.barrier()

    def save_last(self, position: Position, metrics: dict[str, float]) -> None:
        """``last.pt``: where a resumed run continues."""
        self.save(self.last_path, position, metrics)
        self.last_saved = position.step

    def save_best(
        self, position: Position, metrics: dict[str, float], selection: dict[str, Any]
    ) -> None:
        """``best.pt``, with ``selection`` saying how it was chosen."""
        self.save(self.run_dir / BEST, position, metrics, selection)

    def stop_non_finite(self, what: str, epoch: int) -> NoReturn:
        """Stop the run on a non-finite value; the message names the last good checkpoint."""
        kept = (
            f"the last good checkpoint is {self.last_path} (step {self.last_saved})"
            if self.last_saved is not None
            else "no checkpoint had been written yet"
        )
        raise TrainingError(f"{what} (epoch {epoch}); training stopped, {kept}")

    def kept_when_interrupted(self) -> str:
        """What an interrupted run has kept, for its message."""
        if self.last_saved is None:
            return "no checkpoint had been written"
        return f"{self.last_path} holds step {self.last_saved}; resume with --resume"

    def restore_last(self, model_fields: Sequence[str]) -> dict[str, Any]:
        """Load ``last.pt`` into the state (this rank's own RNG state where the run had as
        many processes; else a fresh stream seeded by the position) and return it.

        Refuses a checkpoint written with other ``model_fields`` settings than ``config``
        asks for; an unreadable one names what could be resumed from instead.
        """
        path = self.last_path
        checkpoint = self._load_last()
        saved = checkpoint["config"]
        changed = [f for f in model_fields if saved.get(f) != self.config[f]]
        if changed:
            raise TrainingError(
                f"{path}: written with other model settings than asked for: "
                + ", ".join(f"{f} {saved.get(f)!r} -> {self.config[f]!r}" for f in changed)
                + "; resume with the run's own settings or choose another --out"
            )
        state = self.state
        try:
            position = restore_checkpoint(
                checkpoint,
                models=state.models,
                optimizer=state.optimizer,
                scaler=state.scaler,
                generator=state.generator,
                path=path,
            )
        except CheckpointError as exc:
            raise self._with_fallback(exc) from None
        rank = self.env.rank
        by_rank = checkpoint["rng"].get("by_rank") or []
        if len(by_rank) == self.env.world_size:
            restore_rng(by_rank[rank], state.generator)
        elif rank > 0:  # no state saved for this rank: a fresh stream, seeded by position
            state.generator.manual_seed(
                derive_seed(self.seed, "augment", "rank", rank, "resume", position["step"])
            )
        self.last_saved = position["step"]
        return checkpoint

    def _with_fallback(self, exc: CheckpointError) -> CheckpointError:
        """``exc`` saying also what could be resumed from instead."""
        return CheckpointError(f"{exc}; {fallback_hint(readable_fallback(self.run_dir))}")

    def _load_last(self) -> dict[str, Any]:
        """``last.pt``, or a CheckpointError saying what is wrong with it and what could be
        resumed from instead."""
        try:
            return load_checkpoint(self.last_path)
        except CheckpointError as exc:
            raise self._with_fallback(exc) from None
