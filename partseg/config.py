"""Settings of a part-segmentation fine-tuning run and its two protocol cards.

Defaults are the CrossPoint release's ``train_partseg.py`` as its scripts run it: DGCNN
part-seg network with k=40 and emb_dims 1024 on 2,048 points, batch 8, 300 epochs, SGD at
lr 0.1 (``args.lr * 100``), momentum 0.9, weight decay 1e-4, cosine annealing per epoch to
1e-3, cross-entropy with the release's label smoothing (0.2), each training cloud's point
order shuffled.

Cards (``protocol``):

* ``xpt`` (default): trains on the train split (or ``label_fraction`` of it), chooses the
  epoch by instance mIoU on the val split and reports the test split at that epoch; test is
  read once, at the end.
* ``crosspoint``: the release's recipe: trains on train+val and keeps the epoch of the best
  *test* instance mIoU, so its figure is selected on test (optimistic); reports say so.

``--fast`` (:data:`FAST`) shrinks everything to what 2 CPU cores fine-tune in minutes.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from xpt.toolkit.fsio import atomic_write_json
from xpt.train.config import CONFIG_FILE

PROTOCOLS = ("xpt", "crosspoint")
DATASETS = ("procedural-parts", "shapenetpart")
# Fields that a checkpoint's weights depend on: a resume must keep them.
MODEL_FIELDS = ("task", "dataset", "emb_dims", "parts", "categories")
# Fields that fix the data order or the optimisation: changed on resume, the run is no exact
# continuation.
RESUME_EXACT_FIELDS = (
    "protocol",
    "points",
    "k",
    "batch_size",
    "epochs",
    "lr",
    "min_lr",
    "momentum",
    "weight_decay",
    "label_smoothing",
    "label_fraction",
    "seed",
)


@dataclass(frozen=True)
class FinetuneConfig:
    """One fine-tuning run; ``parts`` and ``categories`` are the data's (set when it is read)."""

    task: str = "partseg"
    dataset: str = "procedural-parts"
    protocol: str = "xpt"
    points: int = 2048
    k: int = 40
    emb_dims: int = 1024
    dropout: float = 0.5
    batch_size: int = 8
    eval_batch_size: int = 8
    epochs: int = 300
    lr: float = 0.1
    min_lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 1e-4
    label_smoothing: float = 0.2
    label_fraction: float = 1.0
    seed: int = 0
    device: str = "auto"
    max_steps: int | None = None
    log_every_steps: int = 50
    checkpoint_every_steps: int = 500
    checkpoint_every_epochs: int = 50
    probe_every: int = 1
    parts: int = 0
    categories: int = 0

    def __post_init__(self) -> None:
        if self.task != "partseg":
            raise ValueError(f"task must be partseg, got {self.task!r}")
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be xpt or crosspoint, got {self.protocol!r}")
        if self.dataset not in DATASETS:
            raise ValueError(f"dataset must be one of {', '.join(DATASETS)}, got {self.dataset!r}")
        if not 0 < self.label_fraction <= 1:
            raise ValueError(f"label fraction must be in (0, 1], got {self.label_fraction}")
        if self.batch_size < 2:
            raise ValueError("batch size must be >= 2 (BatchNorm needs two clouds a step)")
        if self.k > self.points:
            raise ValueError(f"k ({self.k}) cannot exceed the points per cloud ({self.points})")
        for name in ("points", "k", "emb_dims", "epochs", "eval_batch_size", "probe_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")

    @property
    def selection_split(self) -> str:
        """The split whose instance mIoU picks the epoch."""
        return "val" if self.protocol == "xpt" else "test"

    @property
    def train_splits(self) -> tuple[str, ...]:
        return ("train",) if self.protocol == "xpt" else ("train", "val")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# The documented small run: about 1.5 minutes a run on 2 CPU cores (docs/BENCHMARKS.md, part
# segmentation), on a procedural-parts set of FAST_PER_CATEGORY objects per category.
FAST: dict[str, Any] = dict(points=256, k=10, emb_dims=128, epochs=10, batch_size=16)
FAST_PER_CATEGORY = 24


def fast(config: FinetuneConfig) -> FinetuneConfig:
    """``config`` at the ``--fast`` sizes."""
    return replace(config, **FAST)


def card(config: FinetuneConfig) -> dict[str, Any]:
    """The protocol card a result carries: what was trained on, how the epoch was chosen,
    what the figure is measured on."""
    selected_on_test = config.protocol == "crosspoint"
    return {
        "name": config.protocol,
        "task": "part segmentation (per-point classification), fine-tuning every layer",
        "network": f"DGCNN part segmentation, k={config.k}, emb_dims {config.emb_dims}, "
        "category one-hot input",
        "points": f"first {config.points} points of each stored cloud",
        "train": "+".join(config.train_splits)
        + (
            ""
            if config.label_fraction == 1
            else f" ({config.label_fraction:g} of the shapes, seeded, stratified by category)"
        ),
        "optimiser": f"SGD lr {config.lr:g} momentum {config.momentum:g} weight decay "
        f"{config.weight_decay:g}, cosine per epoch to {config.min_lr:g}, {config.epochs} epochs, "
        f"batch {config.batch_size}, label smoothing {config.label_smoothing:g}",
        "prediction": "argmax over every part id (as the release)",
        "metric": "instance mIoU (mean over shapes of the mean part IoU of the shape's "
        "category, an empty union counts as 1); class mIoU beside it",
        "selection": f"epoch of the best instance mIoU on {config.selection_split}",
        "selected_on_test": selected_on_test,
        "note": "selects on the TEST split, as the release: optimistic"
        if selected_on_test
        else "test is read once, at the selected epoch",
    }


def save_finetune_config(config: FinetuneConfig, run_dir: Path) -> Path:
    """Write ``RUN_DIR/config.json`` atomically."""
    return atomic_write_json(run_dir / CONFIG_FILE, config.to_dict())


def load_finetune_config(path: Path) -> FinetuneConfig:
    """A fine-tuning run's ``config.json``; a ValueError for anything else (another
    command's run, an unreadable file)."""
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: cannot read config: {exc}") from None
    if not isinstance(values, dict) or values.get("task") != "partseg":
        raise ValueError(f"{path}: not the config of an xpt finetune run")
    known = {f.name for f in fields(FinetuneConfig)}
    return FinetuneConfig(**{name: value for name, value in values.items() if name in known})
