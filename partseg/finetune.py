"""Fine-tune the DGCNN part-segmentation network: one run, on the training loop's parts.

The run folder, checkpoints (``last.pt`` resumable exactly, ``best.pt`` at the selected
epoch), metrics, curves, stop signals and the per-epoch evaluation are the components of
:mod:`xpt.train` that pretraining uses (:class:`~xpt.train.trainer.Trainer`,
:class:`~xpt.train.checkpointer.Checkpointer`, ...); what is part segmentation's is here:
the in-memory loader, the loss, the evaluation and the final test.

After training, ``best.pt`` (the epoch chosen on the card's selection split) is evaluated on
test and ``result.json`` written: instance and class mIoU, per-category IoU, the card.
"""

from __future__ import annotations

import functools
import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from xpt.partseg.config import (
    MODEL_FIELDS,
    RESUME_EXACT_FIELDS,
    FinetuneConfig,
    card,
    load_finetune_config,
    save_finetune_config,
)
from xpt.partseg.data import PartSet, PartSplit, label_fraction
from xpt.partseg.metrics import PartScores, part_scores
from xpt.toolkit.console import err
from xpt.toolkit.failures import FAILURES_FILE
from xpt.toolkit.fsio import atomic_write_bytes, atomic_write_json, make_folder
from xpt.toolkit.seeding import derive_seed
from xpt.train.checkpoint import BEST, load_checkpoint
from xpt.train.checkpointer import Checkpointer, Position, TrainingState
from xpt.train.devices import resolve_device
from xpt.train.distributed import DistEnv, environment
from xpt.train.errors import TrainingError
from xpt.train.failure_sink import FailureSink
from xpt.train.metrics_log import METRICS_FILE, MetricsLog
from xpt.train.models.dgcnn_partseg import PROJECTION_HEAD, DGCNNPartSeg
from xpt.train.probing import EpochProbe
from xpt.train.run_folder import clear_leftovers, resume_wanted, run_lock
from xpt.train.schedule import cosine_lr
from xpt.train.trainer import LoopSettings, Resumed, Trainer, resume_from_last

RESULT_FILE = "result.json"
PREDICTIONS_FILE = "test_predictions.npy"  # (S, points) int16: best.pt's test predictions
MODEL = "seg"  # the model's name in checkpoints
# The release drops the last partial batch when the training set has 100 shapes or more.
DROP_LAST_FROM = 100


@dataclass(frozen=True)
class PartBatch:
    """Clouds (B, P, 3) float32, their categories (B,) and part ids (B, P) int64."""

    points: Tensor
    category: Tensor
    parts: Tensor

    def __len__(self) -> int:
        return len(self.points)


class PartLoader:
    """Epochs of batches from a split held in memory: the shapes in a seeded order per epoch
    and each cloud's points in a seeded order per batch (the release shuffles them), so a
    resumed run that skips the batches already trained on sees the same ones."""

    def __init__(self, split: PartSplit, batch_size: int, points: int, seed: int):
        self.split, self.batch_size, self.points, self.seed = split, batch_size, points, seed
        count = len(split)
        # (and a last batch of one cloud: BatchNorm needs two)
        drop_last = count >= DROP_LAST_FROM or count % batch_size == 1
        self.steps_per_epoch = count // batch_size if drop_last else math.ceil(count / batch_size)
        if self.steps_per_epoch == 0:
            raise TrainingError(f"{count} training shapes: fewer than a batch of {batch_size}")

    def epoch(self, epoch: int, skip: int = 0):
        order = np.random.default_rng(derive_seed(self.seed, "shapes", epoch)).permutation(
            len(self.split)
        )
        size = self.batch_size
        for batch in range(skip, self.steps_per_epoch):
            index = np.sort(order[batch * size : (batch + 1) * size])
            rng = np.random.default_rng(derive_seed(self.seed, "points", epoch, batch))
            shuffle = np.argsort(rng.random((len(index), self.points)), axis=1)
            points = self.split.points[index, : self.points]
            parts = self.split.parts[index, : self.points]
            yield PartBatch(
                torch.from_numpy(np.take_along_axis(points, shuffle[..., None], axis=1)),
                torch.from_numpy(self.split.category[index].astype(np.int64)),
                torch.from_numpy(np.take_along_axis(parts, shuffle, axis=1).astype(np.int64)),
            )


def smoothed_cross_entropy(logits: Tensor, target: Tensor, smoothing: float) -> Tensor:
    """The release's ``cal_loss``: cross-entropy against 1 - eps on the true part and
    eps / (C - 1) on each other one; ``logits`` (B, C, P), ``target`` (B, P)."""
    classes = logits.shape[1]
    log_p = F.log_softmax(logits, dim=1)
    if smoothing == 0:
        return F.nll_loss(log_p, target)
    one_hot = torch.zeros_like(log_p).scatter_(1, target.unsqueeze(1), 1.0)
    soft = one_hot * (1 - smoothing) + (1 - one_hot) * smoothing / (classes - 1)
    return -(soft * log_p).sum(dim=1).mean()


def seg_loss(
    model: nn.Module, batch: PartBatch, device: torch.device, smoothing: float
) -> dict[str, Tensor]:
    logits = model(batch.points.to(device), batch.category.to(device))
    return {"loss": smoothed_cross_entropy(logits, batch.parts.to(device), smoothing)}


@torch.no_grad()
def predict(model: nn.Module, split: PartSplit, points: int, batch_size: int) -> np.ndarray:
    """(S, points) predicted part ids in eval mode (the model's mode is restored)."""
    device = next(model.parameters()).device
    training = model.training
    model.eval()
    out = []
    for start in range(0, len(split), batch_size):
        chunk = slice(start, start + batch_size)
        cloud = torch.from_numpy(np.ascontiguousarray(split.points[chunk, :points])).to(device)
        category = torch.from_numpy(split.category[chunk].astype(np.int64)).to(device)
        out.append(model(cloud, category).argmax(dim=1).cpu().numpy())
    model.train(training)
    return np.concatenate(out)


def evaluate(model: nn.Module, part_set: PartSet, split: str, config: FinetuneConfig) -> PartScores:
    """The scores of ``model`` on one split of ``part_set``."""
    predicted = predict(model, part_set.splits[split], config.points, config.eval_batch_size)
    return _scores(part_set, split, predicted, config)


def _scores(
    part_set: PartSet, split: str, predicted: np.ndarray, config: FinetuneConfig
) -> PartScores:
    data = part_set.splits[split]
    return part_scores(
        predicted,
        data.parts[:, : config.points],
        data.category,
        part_set.part_ranges,
        part_set.categories,
    )


def training_split(part_set: PartSet, config: FinetuneConfig) -> PartSplit:
    """The card's training splits, joined, then ``label_fraction`` of their shapes."""
    missing = [
        s for s in (*config.train_splits, config.selection_split) if s not in part_set.splits
    ]
    if missing:
        raise TrainingError(
            f"{part_set.source or part_set.name}: no {' or '.join(missing)} split, which the "
            f"{config.protocol} card needs"
        )
    parts = [part_set.splits[name] for name in config.train_splits]
    joined = PartSplit(
        points=np.concatenate([p.points for p in parts]),
        category=np.concatenate([p.category for p in parts]),
        parts=np.concatenate([p.parts for p in parts]),
    )
    if config.label_fraction == 1:
        return joined
    return joined.subset(label_fraction(joined, config.label_fraction, config.seed))


def build_model(config: FinetuneConfig, checkpoint: Path | None) -> nn.Module:
    """The network, seeded; its encoder from ``checkpoint`` when given (strict: see
    :func:`xpt.partseg.weights.init_from_checkpoint`), the report said in one line."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(config.seed, "init"))
        model = DGCNNPartSeg(
            config.parts, config.categories, k=config.k, emb_dims=config.emb_dims,
            dropout=config.dropout,
        )  # fmt: skip
    if checkpoint is not None:
        from xpt.partseg.weights import init_from_checkpoint

        report = init_from_checkpoint(model, checkpoint)
        head = [key for key in report.new if not key.startswith(PROJECTION_HEAD)]
        err.print(
            f"initialised from {checkpoint}: {len(report.loaded)} tensors loaded, "
            f"{len(head)} new (the segmentation head)"
            + (
                f", {len(report.new) - len(head)} new in the unused projection head"
                if len(head) < len(report.new)
                else ""
            )
            + (
                f", {len(report.ignored)} ignored ({', '.join(report.ignored[:3])}...)"
                if report.ignored
                else ""
            ),
            markup=False,
        )
    return model


def selection_probe(part_set: PartSet, config: FinetuneConfig) -> Any:
    """The per-epoch evaluation on the card's selection split, in the form the
    :class:`~xpt.train.probing.EpochProbe` keeps the best epoch by."""

    def probe(model: nn.Module) -> dict[str, Any]:
        scores = evaluate(model, part_set, config.selection_split, config)
        return {
            "probe_accuracy": scores.instance_miou,
            "probe_metric": "instance mIoU",
            "probe_split": config.selection_split,
            "probe_protocol": config.protocol,
            "probe_dataset": part_set.name,
            "class_miou": scores.class_miou,
        }

    return probe


def finetune(
    config: FinetuneConfig,
    part_set: PartSet,
    run_dir: Path,
    *,
    checkpoint: Path | None = None,
    resume: bool | str = False,
) -> dict[str, Any]:
    """Fine-tune on ``part_set`` into ``run_dir`` (``checkpoint``: the pretrained encoder,
    None for a random initialisation); returns the result (also ``result.json``).

    ``resume`` True continues from ``last.pt`` exactly; "auto" does so when it exists.
    Raises :class:`TrainingError` when the run cannot start or must stop, and
    :class:`~xpt.toolkit.interrupts.Interrupted` after a stop signal (``last.pt`` written).
    """
    env = environment()
    if env.active:
        raise TrainingError("xpt finetune runs in one process; start it without torchrun")
    with run_lock(run_dir, env, "xpt finetune"):
        resume = resume_wanted(run_dir, resume, env)
        if not resume:
            clear_leftovers(run_dir, load_finetune_config)
        make_folder(run_dir)
        trainer = _trainer(config, part_set, run_dir, checkpoint, resume, env)
        trainer.fit()
        return _final_result(config, part_set, run_dir, trainer, checkpoint)


def _trainer(
    config: FinetuneConfig,
    part_set: PartSet,
    run_dir: Path,
    checkpoint: Path | None,
    resume: bool,
    env: DistEnv,
) -> Trainer:
    """The parts of a run, wired: state, loader, checkpointer, metrics, probe."""
    device = resolve_device(config.device)
    model = build_model(config, None if resume else checkpoint).to(device)
    # Dropout draws from torch's global generator: seeded here, saved in every checkpoint and
    # restored on resume (xpt.train.checkpoint.rng_state).
    torch.manual_seed(derive_seed(config.seed, "dropout"))
    optimizer = torch.optim.SGD(
        model.parameters(), lr=config.lr, momentum=config.momentum,
        weight_decay=config.weight_decay,
    )  # fmt: skip
    state = TrainingState(
        {MODEL: model}, optimizer, torch.amp.GradScaler("cuda", enabled=False),
        torch.Generator().manual_seed(derive_seed(config.seed, "augment")),
    )  # fmt: skip
    loader = PartLoader(
        training_split(part_set, config), config.batch_size, config.points, config.seed
    )
    failures = FailureSink(run_dir / FAILURES_FILE, record=True)
    schedule = {"kind": "cosine", "base_lr": config.lr, "eta_min": config.min_lr,
                "t_max": config.epochs, "unit": "epoch"}  # fmt: skip
    checkpointer = Checkpointer(
        run_dir, env, state, config=config.to_dict(), schedule=schedule, seed=config.seed,
        failures=failures,
    )  # fmt: skip
    settings, metrics_path = LoopSettings.of(config), run_dir / METRICS_FILE
    start = Resumed(Position(), {}, finished=False)
    if resume:
        start = resume_from_last(
            checkpointer, metrics_path, settings, MODEL_FIELDS, RESUME_EXACT_FIELDS
        )
    save_finetune_config(config, run_dir)
    probe = EpochProbe(selection_probe(part_set, config), model, env, metrics_path)
    return Trainer(
        settings=settings,
        env=env,
        state=state,
        loss_fn=functools.partial(seg_loss, model, device=device, smoothing=config.label_smoothing),
        lr_fn=lambda epoch, batch: cosine_lr(config.lr, epoch, config.epochs, config.min_lr),
        loader=loader,
        checkpointer=checkpointer,
        metrics=MetricsLog(run_dir, write=True),
        failures=failures,
        probe=probe,
        data_name=part_set.source or part_set.name,
        position=start.position,
        last_values=start.last_values,
        finished=start.finished,
    )


def _final_result(
    config: FinetuneConfig,
    part_set: PartSet,
    run_dir: Path,
    trainer: Trainer,
    checkpoint: Path | None,
) -> dict[str, Any]:
    """Test scores of ``best.pt`` (the selected epoch), with the card; ``result.json``."""
    model = trainer.state.models[MODEL]
    best = load_checkpoint(run_dir / BEST)
    model.load_state_dict(best["models"][MODEL])
    selected = best["selection"]
    predicted = predict(model, part_set.splits["test"], config.points, config.eval_batch_size)
    test = _scores(part_set, "test", predicted, config)
    buffer = io.BytesIO()
    np.save(buffer, predicted.astype(np.int16))
    atomic_write_bytes(run_dir / PREDICTIONS_FILE, buffer.getvalue(), "the test predictions")
    result = {
        "task": "partseg",
        "dataset": part_set.name,
        "data": part_set.source,
        "init": str(checkpoint) if checkpoint is not None else "random",
        "seed": config.seed,
        "label_fraction": config.label_fraction,
        "card": card(config),
        "selected_epoch": selected["epoch"],
        "selection_miou": selected["accuracy"],
        "test": test.as_dict(),
        "training": trainer.summary(),
        "config": config.to_dict(),
    }
    atomic_write_json(run_dir / RESULT_FILE, result)
    return result
