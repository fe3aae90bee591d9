"""The learning rate as a function of the position: cosine annealing from ``lr`` to 0 over
``epochs``, per epoch ("epoch"), per step ("step") or as the CrossPoint release steps it
("release": one epoch ahead, so its last epoch trains at lr 0)."""

from __future__ import annotations

import math
from typing import Any, Protocol

from xpt.train.errors import TrainingError


class ScheduleSettings(Protocol):
    """The config fields a schedule reads (``PretrainConfig`` has them)."""

    lr: float
    epochs: int
    lr_schedule: str


def cosine_lr(base_lr: float, position: float, t_max: float, eta_min: float = 0.0) -> float:
    """CosineAnnealingLR's value at ``position`` of ``t_max``, from ``base_lr`` to ``eta_min``."""
    cosine = 1 + math.cos(math.pi * min(position, t_max) / t_max)
    return eta_min + 0.5 * (base_lr - eta_min) * cosine


def lr_at(config: ScheduleSettings, epoch: int, batch: int, steps_per_epoch: int | None) -> float:
    """Learning rate for batch ``batch`` of epoch ``epoch`` (both 0-based)."""
    if config.lr_schedule == "release":
        return cosine_lr(config.lr, epoch + 1, config.epochs)
    if config.lr_schedule == "epoch":
        return cosine_lr(config.lr, epoch, config.epochs)
    if steps_per_epoch is None:
        raise TrainingError('lr_schedule "step" needs a known epoch length')
    return cosine_lr(config.lr, epoch * steps_per_epoch + batch, config.epochs * steps_per_epoch)


def never_trains(config: ScheduleSettings, epoch: int) -> bool:
    """True when every step from the start of ``epoch`` (0-based) on runs at lr 0: the
    "release" schedule's last epoch, so ``epochs=1`` with it never changes the weights."""
    if config.lr_schedule == "step" or epoch >= config.epochs:
        return False  # a per-step cosine is 0 only after the last step
    return all(lr_at(config, e, 0, None) == 0 for e in range(epoch, config.epochs))


def schedule_record(config: ScheduleSettings, steps_per_epoch: int | None) -> dict[str, Any]:
    """The schedule as a checkpoint records it: ``{"kind", "base_lr", "t_max", "unit"}``."""
    per_step = config.lr_schedule == "step"
    return {
        "kind": config.lr_schedule,
        "base_lr": config.lr,
        "t_max": config.epochs * steps_per_epoch if per_step and steps_per_epoch else config.epochs,
        "unit": "step" if per_step else "epoch",
    }
