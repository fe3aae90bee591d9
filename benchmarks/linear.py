"""Linear-SVM evaluation of frozen features (the standard protocol of self-supervised 3D work).

Every fit is libsvm's one-vs-one C-SVC on the Gram matrix of the features
(:mod:`xpt.benchmarks.svm`): the same binary problems as the release's
``SVC(kernel="linear", C)``, so the same classifier (tests compare the two), about 13x
faster on ModelNet40-sized features because the dot products are one BLAS product instead
of libsvm's own loop (shared by every C of a cross-validation fold) and prediction goes
through each class pair's weight vector. Only training features ever enter the choice of C:
the test features are touched once, by the final classifier.

The C search (:func:`choose_C`) is fast on large sets because it runs on a stratified
subsample (``LinearProtocol.cv_subsample``) and does not refit grid values above the C where
the solution stops changing; the classifier itself is never changed for speed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from xpt.benchmarks.protocols import LinearProtocol
from xpt.benchmarks.svm import ClassGram, LinearSVM, fit_linear_svm


@dataclass(frozen=True)
class LinearResult:
    """Accuracies are fractions in [0, 1]; ``per_class`` (K,) is NaN for a class with no
    test object; ``cv_accuracy`` maps each C of the grid to its mean CV accuracy (empty
    when C was fixed)."""

    accuracy: float
    class_accuracy: float
    per_class: np.ndarray
    C: float
    cv_accuracy: dict[float, float]
    cv_folds: int
    seconds: float

    def to_dict(self) -> dict:
        return {
            "accuracy": self.accuracy,
            "class_accuracy": self.class_accuracy,
            "per_class": [None if np.isnan(a) else float(a) for a in self.per_class],
            "c": self.C,
            "cv_accuracy": {f"{c:g}": a for c, a in self.cv_accuracy.items()},
            "cv_folds": self.cv_folds,
            "seconds": self.seconds,
        }


def per_class_accuracy(labels: np.ndarray, predicted: np.ndarray, num_classes: int) -> np.ndarray:
    """(K,) float64: the fraction of each class's objects predicted right (NaN if absent)."""
    result = np.full(num_classes, np.nan)
    for k in range(num_classes):
        members = labels == k
        if members.any():
            result[k] = float(np.mean(predicted[members] == k))
    return result


def _standardizer(train: np.ndarray):
    from sklearn.preprocessing import StandardScaler

    return StandardScaler().fit(train)


def search_subsample(labels: np.ndarray, size: int | None, folds: int, seed: int) -> np.ndarray:
    """Sorted row indices of a stratified, seeded subsample of at most ~``size`` objects.

    Every class keeps its share of the rows (rounded), and at least ``folds`` rows (or all
    it has) so that stratified CV stays possible. ``size`` None or >= n keeps every row.
    """
    n = len(labels)
    if size is None or size >= n:
        return np.arange(n)
    rng = np.random.default_rng(seed)
    keep = []
    for k in np.unique(labels):
        rows = np.flatnonzero(labels == k)
        take = min(len(rows), max(folds, int(round(len(rows) * size / n))))
        keep.append(rng.choice(rows, size=take, replace=False))
    return np.sort(np.concatenate(keep))


def _at_bound(svm: LinearSVM, C: float) -> bool:
    """Whether any dual variable of the fitted SVM sits at its upper bound C.

    If none does, the box constraint is inactive and the same dual solution is optimal for
    every larger C: the classifier (and so its CV score) no longer changes with C.
    """
    return svm.max_dual >= C * (1.0 - 1e-6)


def choose_C(
    features: np.ndarray, labels: np.ndarray, protocol: LinearProtocol, seed: int
) -> tuple[float, dict[float, float], int]:
    """The grid's C with the best mean stratified-CV accuracy on ``features`` alone.

    Ties go to the smaller C (the more regularised classifier). Folds are capped by the
    smallest class (at least 2). Returns (C, {C: mean accuracy}, folds used).

    Two shortcuts, both stated by the protocol card. With ``protocol.cv_subsample`` set and
    more training objects than that, the search runs on a stratified seeded subsample of
    ``m`` of the ``n`` objects, every fit using ``C * n / m`` so that the hinge-loss weight
    relative to the regulariser is that of the full set (the final fit uses all objects and
    the chosen C). Within a fold the grid is walked in ascending C; once a fit has no dual
    variable at its bound, every larger C has the same solution, so it reuses that score.
    """
    from sklearn.model_selection import StratifiedKFold

    counts = np.bincount(labels)
    smallest = int(counts[counts > 0].min()) if len(labels) else 0
    folds = min(protocol.cv_folds, smallest)
    if folds < 2:
        raise ValueError("cross-validating C needs at least 2 training objects in every class")
    rows = search_subsample(labels, protocol.cv_subsample, folds, seed)
    scale = len(labels) / len(rows)
    features, labels = features[rows], labels[rows]
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    grid = sorted(protocol.C_grid)
    correct = {c: 0 for c in grid}
    for fit_rows, held_rows in splitter.split(features, labels):
        fit_x, held_x = features[fit_rows], features[held_rows]
        if protocol.standardize:
            scaler = _standardizer(fit_x)
            fit_x, held_x = scaler.transform(fit_x), scaler.transform(held_x)
        fit_gram = ClassGram.of(fit_x, labels[fit_rows])
        saturated = None
        for c in grid:
            if saturated is None:
                svm = fit_linear_svm(fit_gram, c * scale)
                hits = int(np.sum(svm.predict(held_x) == labels[held_rows]))
                if not _at_bound(svm, c * scale):
                    saturated = hits
            correct[c] += hits if saturated is None else saturated
    scores = {c: correct[c] / len(labels) for c in protocol.C_grid}
    best = max(scores.values())
    return min(c for c, s in scores.items() if s == best), scores, folds


def evaluate_linear(
    train_x: np.ndarray,
    train_y: np.ndarray,
    test_x: np.ndarray,
    test_y: np.ndarray,
    protocol: LinearProtocol,
    *,
    num_classes: int,
    seed: int = 0,
) -> LinearResult:
    """Fit the protocol's linear SVM on (train_x (n, d), train_y (n,)) and score it on test."""
    started = time.perf_counter()
    train_x = np.asarray(train_x, dtype=np.float64)
    test_x = np.asarray(test_x, dtype=np.float64)
    if protocol.C is None:
        C, scores, folds = choose_C(train_x, train_y, protocol, seed)
    else:
        C, scores, folds = protocol.C, {}, 0
    if protocol.standardize:
        scaler = _standardizer(train_x)
        train_x, test_x = scaler.transform(train_x), scaler.transform(test_x)
    svm = fit_linear_svm(ClassGram.of(train_x, train_y), C)
    predicted = svm.predict(test_x)
    per_class = per_class_accuracy(test_y, predicted, num_classes)
    return LinearResult(
        accuracy=float(np.mean(predicted == test_y)),
        class_accuracy=float(np.nanmean(per_class)),
        per_class=per_class,
        C=float(C),
        cv_accuracy=scores,
        cv_folds=folds,
        seconds=time.perf_counter() - started,
    )
