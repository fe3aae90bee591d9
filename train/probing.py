"""The probe between epochs: called on rank 0 with the encoder, its result shared with every
rank, logged and said, and the best epoch so far kept (as ``best.pt``, by the caller)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from torch import nn

from xpt.toolkit.console import err
from xpt.train.checkpoint import BEST
from xpt.train.distributed import DistEnv
from xpt.train.metrics_log import MetricsLog, best_probe

Probe = Callable[[nn.Module], dict[str, Any]]


class EpochProbe:
    """``probe`` (rank 0's; None elsewhere, or to probe nothing) of ``model`` after the
    epochs it is due; ``best`` is (accuracy, epoch) of the best probe so far, read from
    ``metrics_path`` of a resumed run."""

    def __init__(self, probe: Probe | None, model: nn.Module, env: DistEnv, metrics_path: Path):
        self.probe = probe
        self.model = model
        self.env = env
        self.best: tuple[float, int] | None = env.broadcast(
            best_probe(metrics_path) if env.is_main else None
        )
        self.enabled = bool(env.broadcast(probe is not None))

    def due(self, epochs_done: int, every: int, epochs: int) -> bool:
        """Probe after every ``every``-th epoch and after the last."""
        return self.enabled and (epochs_done % every == 0 or epochs_done == epochs)

    def __call__(self, epochs_done: int, step: int, metrics: MetricsLog) -> dict[str, Any] | None:
        """Probe, log and say the result; the ``selection`` of a new best (a tie goes to the
        later epoch), else None."""
        result = None
        if self.env.is_main:
            assert self.probe is not None
            result = self.probe(self.model)
        result = self.env.broadcast(result)
        accuracy = result["probe_accuracy"]
        metrics.log({"step": step, "epoch": epochs_done, **result})
        improved = self.best is None or accuracy >= self.best[0]
        err.print(_probe_line(epochs_done, result, improved, self.best), highlight=False)
        if not improved:
            return None
        self.best = (accuracy, epochs_done)
        return {
            "by": "probe_accuracy",
            "split": result.get("probe_split"),
            "protocol": result.get("probe_protocol", "xpt"),
            "dataset": result.get("probe_dataset"),
            "epoch": epochs_done,
            "accuracy": accuracy,
        }


def _probe_line(
    epochs_done: int, result: dict[str, Any], improved: bool, best: tuple[float, int] | None
) -> str:
    """``epoch 3 probe: linear accuracy 71.0 % on the val split of ..., C=1; best so far``
    (``probe_metric`` names another figure than linear accuracy); ``best``: the best before
    this probe."""
    where = (
        "the TEST split (release behaviour)"
        if result.get("probe_split") == "test"
        else (f"the {result.get('probe_split', 'val')} split")
    )
    card = result.get("probe_protocol", "xpt")
    if improved or best is None:
        ranking = f"; best so far -> {BEST}"
    else:
        ranking = f" (best {100 * best[0]:.1f} %, epoch {best[1]})"
    metric = result.get("probe_metric", "linear accuracy")
    return (
        f"epoch {epochs_done} probe: {metric} {100 * result['probe_accuracy']:.1f} % on "
        f"{where} of {result.get('probe_dataset', 'the probe set')}"
        + (f", C={result['probe_C']:g}" if "probe_C" in result else "")
        + ("" if card == "xpt" else f" (protocol {card})")
        + ranking
    )
