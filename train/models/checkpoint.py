"""Loading renamed foreign state dicts with a by-name report (in the spirit of timm's helpers)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn


@dataclass(frozen=True)
class LoadReport:
    """What did not match when a state dict was loaded: key names, sorted."""

    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.missing and not self.unexpected


def strip_module_prefix(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Drop the ``module.`` prefix that DataParallel / DDP checkpoints carry on every key."""
    keys = list(state_dict)
    if keys and all(k.startswith("module.") for k in keys):
        return {k[len("module.") :]: v for k, v in state_dict.items()}
    return dict(state_dict)


def load_renamed_state_dict(
    model: nn.Module, state_dict: Mapping[str, Tensor], *, strict: bool = True
) -> LoadReport:
    """Load ``state_dict`` (already in ``model``'s own key names) into ``model``.

    A tensor whose shape differs from the model's is always refused with a ValueError
    naming the key and both shapes. Missing / unexpected keys are listed by name in the
    returned report; with ``strict`` they raise a ValueError instead. Values are copied
    with dtype conversion (e.g. a float16-stored checkpoint into a float32 model).
    """
    own = model.state_dict()
    for key, value in state_dict.items():
        if not isinstance(value, Tensor):
            raise ValueError(f"{key}: expected a tensor, got {type(value).__name__}")
        if key in own and tuple(value.shape) != tuple(own[key].shape):
            raise ValueError(
                f"{key}: checkpoint shape {tuple(value.shape)} does not match the model's "
                f"{tuple(own[key].shape)}"
            )
    report = LoadReport(
        missing=sorted(set(own) - set(state_dict)),
        unexpected=sorted(set(state_dict) - set(own)),
    )
    if strict and not report.ok:
        parts = []
        if report.missing:
            parts.append("missing keys: " + ", ".join(report.missing))
        if report.unexpected:
            parts.append("unexpected keys: " + ", ".join(report.unexpected))
        raise ValueError(f"{type(model).__name__} state dict does not match: " + "; ".join(parts))
    with torch.no_grad():
        model.load_state_dict({k: v for k, v in state_dict.items() if k in own}, strict=False)
    return report
