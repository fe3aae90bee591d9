"""The per-epoch linear probe of ``xpt pretrain --probe``: model selection without the test set.

Each probe fits the ``xpt`` protocol (BatchNorm statistics re-estimated on the fit clouds,
on a copy of the encoder; standardised features; C by cross-validation)
on part of an evaluation set's *train* split and scores it on a held-out, stratified,
seeded validation part of that same train split, so ``best.pt`` is chosen without ever
looking at test objects. ``split="test"`` replays the release instead (fit on train,
score on test, i.e. selection on the test set), and every output says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from xpt.benchmarks.datasets import EvalDataset
from xpt.benchmarks.features import extract_features, recalibrate_batchnorm, select_points
from xpt.benchmarks.linear import evaluate_linear
from xpt.benchmarks.protocols import PROTOCOLS, XPT, PointsSpec, ProtocolCard

if TYPE_CHECKING:
    from torch import nn

    from xpt.train.config import PretrainConfig

PROBE_SPLITS = ("val", "test")


def stratified_holdout(
    labels: np.ndarray, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Indices (fit, held) into ``labels``: a seeded, stratified ``fraction`` held out, and
    at least one object of every class (a small set holds out more than ``fraction``),
    leaving at least two of every class to fit on."""
    from sklearn.model_selection import train_test_split

    if not 0.0 < fraction < 1.0:
        raise ValueError(f"validation fraction must be in (0, 1), got {fraction}")
    counts = np.bincount(labels)
    if counts[counts > 0].min() < 2:
        raise ValueError("a stratified validation split needs 2+ train objects in every class")
    classes = int((counts > 0).sum())
    held_out = max(round(fraction * len(labels)), classes)
    if held_out > len(labels) - 2 * classes:  # and 2+ of each class to fit on
        raise ValueError(
            f"a stratified validation split of {len(labels)} train objects in {classes} "
            "classes leaves too few to fit on; use a larger probe set"
        )
    fit, held = train_test_split(
        np.arange(len(labels)), test_size=held_out, stratify=labels, random_state=seed
    )
    return np.sort(fit), np.sort(held)


@dataclass
class LinearProbe:
    """Call with a point encoder to get its probe accuracy (the model's train/eval mode is
    restored afterwards). ``fit_index``/``score_index`` index the dataset's train split
    (``split="val"``) or train and test (``split="test"``). ``card``: the protocol whose
    linear SVM and BatchNorm handling the probe uses (``xpt``, or ``crosspoint`` as the
    release's probe: raw features, C=0.1, stored statistics); its points are ``points``."""

    dataset: EvalDataset
    split: str = "val"
    card: ProtocolCard = XPT
    val_fraction: float = 0.2
    seed: int = 0
    points: PointsSpec = PointsSpec()
    batch_size: int = 16

    def __post_init__(self) -> None:
        if self.split not in PROBE_SPLITS:
            raise ValueError(f"probe split must be val or test, got {self.split!r}")
        train = self.dataset.train
        if self.split == "val":
            self.fit_index, self.score_index = stratified_holdout(
                train.labels, self.val_fraction, self.seed
            )
            self._fit = select_points(train.points[self.fit_index], self.points, self.seed)
            self._score = select_points(train.points[self.score_index], self.points, self.seed)
            self._fit_y, self._score_y = (
                train.labels[self.fit_index],
                train.labels[self.score_index],
            )
        else:
            test = self.dataset.test
            self.fit_index, self.score_index = (
                np.arange(len(train.labels)),
                np.arange(len(test.labels)),
            )
            self._fit = select_points(train.points, self.points, self.seed)
            self._score = select_points(test.points, self.points, self.seed)
            self._fit_y, self._score_y = train.labels, test.labels

    def describe(self) -> str:
        if self.split == "val":
            return (
                f"val split ({self.val_fraction:.0%} of {self.dataset.title} train, "
                f"{len(self.score_index)} objects)"
            )
        return f"TEST split of {self.dataset.title} (release behaviour: selection on test)"

    def __call__(self, model: nn.Module) -> dict[str, Any]:
        device = next(model.parameters()).device
        training = model.training
        encoder = model
        if self.card.bn_stats == "train":  # on a copy: the training model's statistics stay
            encoder = recalibrate_batchnorm(
                model, self._fit, batch_size=self.batch_size, device=device
            )
        try:
            fit = extract_features(
                encoder,
                self._fit,
                batch_size=self.batch_size,
                device=device,
                description="probe fit",
            )
            score = extract_features(
                encoder,
                self._score,
                batch_size=self.batch_size,
                device=device,
                description="probe score",
            )
        finally:
            model.train(training)
        result = evaluate_linear(
            fit, self._fit_y, score, self._score_y, self.card.linear,
            num_classes=len(self.dataset.class_names), seed=self.seed,
        )  # fmt: skip
        return {
            "probe_accuracy": result.accuracy,
            "probe_class_accuracy": result.class_accuracy,
            "probe_C": result.C,
            "probe_split": self.split,
            "probe_protocol": self.card.name,
            "probe_dataset": self.dataset.title,
        }


def build_probe(config: PretrainConfig) -> LinearProbe | None:
    """The probe a pretraining config asks for (None without ``probe``)."""
    from pathlib import Path

    from xpt.benchmarks.datasets import load_dataset

    if config.probe is None:
        return None
    dataset = load_dataset(
        config.probe,
        None if config.probe_data is None else Path(config.probe_data),
        variant=config.probe_variant,
        per_category=config.probe_per_category if config.probe_data is None else None,
    )
    return LinearProbe(
        dataset,
        split=config.probe_split,
        card=PROTOCOLS[config.probe_protocol],
        seed=config.seed,
        points=PointsSpec(min(config.probe_points, dataset.train.points.shape[1])),
    )
