"""The training loop as the algorithm: for each epoch, for each batch, a step; at the end of
an epoch, a probe when due and the checkpoints.

:class:`Trainer` knows nothing of the models it trains beyond a ``loss_fn`` (batch -> loss
values, the one to minimise under "loss") and the :class:`~xpt.train.checkpointer.TrainingState`
it checkpoints; the bookkeeping lives in the components it calls: the
:class:`~xpt.train.checkpointer.Checkpointer`, the :class:`~xpt.train.metrics_log.MetricsLog`,
the stop signals (:mod:`xpt.train.signals`), the :class:`~xpt.train.probing.EpochProbe` and
the :class:`~xpt.train.failure_sink.FailureSink`. Rank 0 alone writes; every rank runs the
same steps.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, NamedTuple, Protocol

from torch import Tensor

from xpt.toolkit.console import RunProgress, err
from xpt.toolkit.interrupts import Interrupted
from xpt.toolkit.memory import heap_checkpoint
from xpt.train.checkpoint import BEST, epoch_checkpoint_name
from xpt.train.checkpointer import Checkpointer, Position, TrainingState
from xpt.train.distributed import DistEnv
from xpt.train.errors import TrainingError
from xpt.train.failure_sink import FailureSink
from xpt.train.metrics_log import EpochStats, MetricsLog, final_figures, truncate_metrics
from xpt.train.probing import EpochProbe
from xpt.train.run_folder import changed_settings
from xpt.train.signals import StopSignals, stop_signals


@dataclass(frozen=True)
class LoopSettings:
    """How long to train, and how often to log, checkpoint and probe."""

    epochs: int
    batch_size: int  # objects a step on each process
    max_steps: int | None
    log_every_steps: int
    checkpoint_every_steps: int
    checkpoint_every_epochs: int
    probe_every: int

    @classmethod
    def of(cls, config: Any) -> LoopSettings:
        """The settings of a command's config, which has fields of these names."""
        return cls(**{f.name: getattr(config, f.name) for f in fields(cls)})

    def at_max_steps(self, step: int) -> bool:
        return self.max_steps is not None and step >= self.max_steps


class EpochLoader(Protocol):
    """Batches of one epoch at a time (``len(batch)`` objects each), resumable mid-epoch."""

    steps_per_epoch: int | None

    def epoch(self, epoch: int, skip: int = 0) -> Iterable[Any]: ...


class Resumed(NamedTuple):
    """Where a resumed run continues: the position, the last step's values, and whether
    nothing is left to train."""

    position: Position
    last_values: dict[str, float]
    finished: bool


def resume_from_last(
    checkpointer: Checkpointer,
    metrics_path: Path,
    settings: LoopSettings,
    model_fields: Sequence[str],
    exact_fields: Sequence[str],
) -> Resumed:
    """Restore ``last.pt`` (see :meth:`Checkpointer.restore_last`), drop the lines of
    ``metrics_path`` written after it, and say where the run continues, or that it is
    complete; changed ``exact_fields`` settings (or process counts) are warned about."""
    run_dir, env = checkpointer.run_dir, checkpointer.env
    state = checkpointer.restore_last(model_fields)
    position = Position(**state["position"])
    if env.is_main:
        truncate_metrics(metrics_path, position.step)
    if position.epoch >= settings.epochs or settings.at_max_steps(position.step):
        limit = (
            f"{position.epoch} of {settings.epochs} epochs"
            if position.epoch >= settings.epochs
            else f"max_steps {settings.max_steps}"
        )
        err.print(
            f"{run_dir} is already complete ({limit}, step {position.step}); nothing to train "
            "(pass --epochs to train longer)",
            highlight=False,
        )
        return Resumed(position, dict(state["metrics"]), True)
    changed = changed_settings(checkpointer.config, run_dir, state["config"], exact_fields)
    saved_world = int(state.get("world_size", 1))
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
        f"resuming {run_dir} at step {position.step} (epoch {position.epoch + 1}, "
        f"batch {position.batch})",
        markup=False,
    )
    return Resumed(position, dict(state["metrics"]), False)


def loss_text(values: dict[str, float]) -> str:
    """``loss 6.3033 (imid 2.9387, cmid 3.3646)``: the loss, then its parts."""
    parts = ", ".join(f"{name} {value:.4f}" for name, value in values.items() if name != "loss")
    return f"loss {values['loss']:.4f}" + (f" ({parts})" if parts else "")


@dataclass(eq=False)
class Trainer:
    """Trains ``state`` by ``loss_fn`` over ``loader``'s epochs from ``position`` on.

    ``lr_fn(epoch, batch)`` gives the learning rate of each step; ``data_name`` names the
    data in the error of an epoch with no readable batch. ``finished``: a resumed run with
    nothing left to train (:func:`resume_from_last`).
    """

    settings: LoopSettings
    env: DistEnv
    state: TrainingState
    loss_fn: Callable[[Any], dict[str, Tensor]]
    lr_fn: Callable[[int, int], float]
    loader: EpochLoader
    checkpointer: Checkpointer
    metrics: MetricsLog
    failures: FailureSink
    probe: EpochProbe
    data_name: str
    position: Position = field(default_factory=Position)
    last_values: dict[str, float] = field(default_factory=dict)
    finished: bool = False
    stopped: str = field(default="done", init=False)  # or "max_steps"
    epoch_stats: EpochStats = field(default_factory=EpochStats, init=False)
    run_samples: int = field(default=0, init=False)
    run_seconds: float = field(default=0.0, init=False)
    started: float = field(default_factory=time.perf_counter, init=False)
    signals: StopSignals = field(init=False, repr=False)  # (set by fit)

    def fit(self) -> None:
        """Train until the last epoch, ``max_steps`` or a signal (then raise
        :class:`~xpt.toolkit.interrupts.Interrupted` once ``last.pt`` is written)."""
        for model in self.state.models.values():
            model.train()
        epochs = self.settings.epochs
        with self.metrics, stop_signals(self.env) as self.signals:
            try:
                while self.more_to_train():
                    self.train_epoch()
                    self.end_epoch()
            except Interrupted as again:
                kept = self.checkpointer.kept_when_interrupted()
                raise Interrupted(
                    f"{again} at step {self.position.step}; {kept}", again.signum
                ) from None
            if self.signals.signum and self.stopped == "done" and self.position.epoch < epochs:
                raise Interrupted(
                    f"interrupted at step {self.position.step}; resume with --resume",
                    self.signals.signum,
                )

    def more_to_train(self) -> bool:
        """Epochs left, ``max_steps`` not reached, and no signal to stop on."""
        position = self.position
        return (
            position.epoch < self.settings.epochs
            and not self.settings.at_max_steps(position.step)
            and not self.signals.signum
        )

    def train_epoch(self) -> None:
        """The steps of the epoch in progress, from the position on, until its data ends, a
        signal or ``max_steps``; ``last.pt`` every ``checkpoint_every_steps`` steps."""
        position, settings = self.position, self.settings
        self.epoch_stats = EpochStats()
        steps, world = self.loader.steps_per_epoch, self.env.world_size
        total = None if steps is None else (steps - position.batch) * settings.batch_size * world
        with RunProgress(f"epoch {position.epoch + 1}/{settings.epochs}", total, "obj") as bar:
            self.failures.bar = bar
            tick = time.perf_counter()
            # (None marks the end of this rank's data.)
            for batch in itertools.chain(
                self.loader.epoch(position.epoch, skip=position.batch), [None]
            ):
                if self.signals.leave_before_step(batch is None):
                    break
                lr = self.lr_fn(position.epoch, position.batch)
                values = self.train_step(batch, lr)
                now = time.perf_counter()
                seconds, tick = now - tick, now
                self.log_step(values, lr, len(batch) * world, seconds, bar)
                if settings.at_max_steps(position.step):
                    self.stopped = "max_steps"
                    break
                if self.signals.leave_after_step():
                    break
                if position.step % settings.checkpoint_every_steps == 0:
                    self.checkpointer.save_last(position, self.last_values)
            self.failures.bar = None

    def train_step(self, batch: Any, lr: float) -> dict[str, float]:
        """One optimiser step at ``lr``; returns the loss values (the ranks' mean, so every
        rank logs, and stops on, the same values). A non-finite loss stops the run."""
        optimizer, scaler, position = self.state.optimizer, self.state.scaler, self.position
        for group in optimizer.param_groups:
            group["lr"] = lr
        losses = self.loss_fn(batch)
        values = self.env.mean({name: value.detach().item() for name, value in losses.items()})
        if not math.isfinite(values["loss"]):
            self.checkpointer.stop_non_finite(
                f"non-finite loss ({values['loss']}) at step {position.step + 1}",
                position.epoch + 1,
            )
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(losses["loss"]).backward()
        scaler.step(optimizer)
        scaler.update()
        heap_checkpoint()  # (the freed-memory budget, when one is active)
        position.step += 1
        position.batch += 1
        return values

    def log_step(
        self, values: dict[str, float], lr: float, objects: int, seconds: float, bar: RunProgress
    ) -> None:
        """Count the step, write its metrics line and show it."""
        step = self.position.step
        self.epoch_stats.add(values, objects, seconds)
        self.run_samples += objects
        self.run_seconds += seconds
        self.last_values = values
        record = {"step": step, "epoch": self.position.epoch + 1, **values, "lr": lr}
        record["samples_per_s"] = objects / seconds if seconds > 0 else None
        self.metrics.log(record)
        bar.advance(n=objects, detail=f"loss {values['loss']:.4f}")
        if step % self.settings.log_every_steps == 0:
            bar.note(
                f"step {step}: {loss_text(values)}, lr {lr:.3g}, "
                f"{objects / max(seconds, 1e-9):.1f} obj/s"
            )

    def end_epoch(self) -> None:
        """Say how the epoch went; after a complete one, probe when due and move on to the
        next; write ``last.pt`` (and, every ``checkpoint_every_epochs``, ``epoch_XXX.pt``)."""
        position, stats = self.position, self.epoch_stats
        # (A resumed epoch may have nothing left: its last batch was trained on.)
        if stats.steps == 0 and position.batch == 0 and not self.signals.signum:
            raise TrainingError(
                f"{self.data_name}: no training batch could be read in epoch "
                f"{position.epoch + 1} ({len(self.failures.seen)} failure(s), see "
                f"{self.failures.log.path})"
            )
        complete = (
            self.stopped == "done" and not self.signals.signum
        ) or position.batch == self.loader.steps_per_epoch
        if stats.steps:
            err.print(
                f"epoch {position.epoch + 1}{'' if complete else ' (partial)'}: "
                f"{stats.steps} steps, {loss_text(stats.means())}, "
                f"{stats.samples / max(stats.seconds, 1e-9):.1f} obj/s",
                highlight=False,
            )
        if complete:
            self.next_epoch()
        self.checkpointer.save_last(position, self.last_values)
        if complete:
            self.metrics.draw_curves()
        if complete and position.epoch % self.settings.checkpoint_every_epochs == 0:
            path = self.checkpointer.run_dir / epoch_checkpoint_name(position.epoch)
            self.checkpointer.save(path, position, self.last_values)

    def next_epoch(self) -> None:
        """Move the position past a complete epoch, then probe when due (before ``last.pt``
        is written: a run killed here probes again on resume)."""
        position, steps_per_epoch = self.position, self.loader.steps_per_epoch
        if steps_per_epoch is not None and position.batch < steps_per_epoch:
            err.print(
                f"[yellow]note[/yellow] epoch {position.epoch + 1} ended after {position.batch} "
                f"of {steps_per_epoch} batches (too few readable samples)"
            )
        position.epoch, position.batch = position.epoch + 1, 0
        settings = self.settings
        if self.probe.due(position.epoch, settings.probe_every, settings.epochs):
            selection = self.probe(position.epoch, position.step, self.metrics)
            if selection is not None:
                self.checkpointer.save_best(position, self.last_values, selection)

    def summary(self) -> dict[str, Any]:
        """How the run went: where it stopped, its figures, its checkpoints and best probe."""
        position, stats, best = self.position, self.epoch_stats, self.probe.best
        final = final_figures(self.metrics.path, position.epoch) if self.finished else (None, None)
        last_path = self.checkpointer.last_path
        rate = self.run_samples / self.run_seconds if self.run_seconds > 0 else None
        return {
            "stopped": "complete" if self.finished else self.stopped,
            "steps": position.step,
            "epochs_completed": position.epoch,
            "steps_per_epoch": self.loader.steps_per_epoch,
            "loss": self.last_values.get("loss"),
            "epoch_loss": stats.mean("loss") if stats.steps else final[0],
            "samples_per_s": rate if rate is not None else final[1],
            "elapsed_s": time.perf_counter() - self.started,
            "data_failures": len(self.failures.seen),
            "last_checkpoint": str(last_path) if last_path.exists() else None,
            "best_checkpoint": str(self.checkpointer.run_dir / BEST) if best is not None else None,
            "probe_best_accuracy": best[0] if best is not None else None,
            "probe_best_epoch": best[1] if best is not None else None,
        }
