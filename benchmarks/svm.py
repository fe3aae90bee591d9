"""libsvm's multi-class linear SVM on one BLAS Gram matrix, applied through weight vectors.

``SVC(kernel="linear", C)`` trains one binary C-SVC per pair of classes (one-vs-one) and
predicts by their votes. :func:`fit_linear_svm` trains the same problems with the same libsvm
solver, but

- every dot product comes from one float64 Gram matrix (a BLAS ``syrk``) instead of libsvm's
  own loop, computed once per training set and shared by every C (:class:`ClassGram`);
- each pair's classifier is applied through its primal weight vector (the linear kernel's
  ``w = sum_k alpha_k y_k x_k``), so prediction is one (n, d) x (d, pairs) product instead
  of a kernel row against every training object.

The dual solutions and the votes are libsvm's (the tests compare predictions and intercepts
with ``SVC``); only the rounding of the dot products differs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ClassGram:
    """Training features with rows grouped by class (stable) and their float64 Gram matrix.

    ``classes`` are the sorted distinct labels; the rows of ``classes[k]`` are
    ``starts[k]:starts[k + 1]``. Build it once per training set with :meth:`of`; every C
    fitted on it reuses the Gram matrix.
    """

    features: np.ndarray
    gram: np.ndarray
    classes: np.ndarray
    starts: np.ndarray

    @classmethod
    def of(cls, features: np.ndarray, labels: np.ndarray) -> ClassGram:
        classes, codes = np.unique(np.asarray(labels), return_inverse=True)
        if len(classes) < 2:
            raise ValueError("a linear SVM needs at least 2 classes in its training set")
        order = np.argsort(codes, kind="stable")
        grouped = np.ascontiguousarray(np.asarray(features, dtype=np.float64)[order])
        starts = np.searchsorted(codes[order], np.arange(len(classes) + 1))
        # np.dot finds the symmetric product (BLAS syrk, half the work); matmul took 1.3x
        # as long here
        return cls(grouped, np.dot(grouped, grouped.T), classes, starts)


@dataclass(frozen=True)
class LinearSVM:
    """A fitted one-vs-one linear SVM: one weight vector and intercept per class pair.

    Pair p separates ``classes[first[p]]`` (decision < 0) from ``classes[second[p]]``
    (decision >= 0, where libsvm also votes for the second class).
    """

    classes: np.ndarray
    first: np.ndarray
    second: np.ndarray
    weights: np.ndarray
    intercepts: np.ndarray
    max_dual: float

    def decision(self, features: np.ndarray) -> np.ndarray:
        """(n, pairs) float64 decision values of every pair's classifier."""
        return np.asarray(features, dtype=np.float64) @ self.weights.T + self.intercepts

    def predict(self, features: np.ndarray) -> np.ndarray:
        """The class with the most pair votes; ties go to the lower class, as in libsvm."""
        decision = self.decision(features)
        winners = np.where(decision < 0, self.first, self.second)
        n, k = len(decision), len(self.classes)
        cells = (np.arange(n)[:, None] * k + winners).ravel()
        votes = np.bincount(cells, minlength=n * k).reshape(n, k)
        return self.classes[np.argmax(votes, axis=1)]


def _class_rows(data: ClassGram, k: int) -> np.ndarray:
    return data.features[data.starts[k] : data.starts[k + 1]]


def fit_linear_svm(data: ClassGram, C: float) -> LinearSVM:
    """libsvm's multi-class C-SVC on ``data``'s Gram matrix, as per-pair weights.

    sklearn's ``dual_coef_`` (K - 1, support vectors) holds, for pair (i, j), the
    coefficients of class i's support vectors in row j - 1 and those of class j's in row i;
    its pair decision is positive for class i, so both signs are flipped to this module's
    convention (negative for the first class), except with 2 classes, where sklearn has
    already flipped them."""
    from sklearn.svm import SVC

    first, second = np.triu_indices(len(data.classes), 1)
    svm = SVC(kernel="precomputed", C=C).fit(
        data.gram, np.repeat(np.arange(len(data.classes)), np.diff(data.starts))
    )
    sign = 1.0 if len(data.classes) == 2 else -1.0
    dual = np.zeros((len(data.classes) - 1, len(data.features)))
    dual[:, svm.support_] = svm.dual_coef_
    # (K, K - 1, d): row r of class k's block is the sum of its support vectors weighted by
    # their coefficients in dual row r (one product per class, its rows read once)
    sums = np.stack(
        [
            dual[:, data.starts[k] : data.starts[k + 1]] @ _class_rows(data, k)
            for k in range(len(data.classes))
        ]
    )
    weights = sums[first, second - 1] + sums[second, first]
    return LinearSVM(
        classes=data.classes,
        first=first,
        second=second,
        weights=sign * weights,
        intercepts=sign * svm.intercept_,
        max_dual=float(np.abs(svm.dual_coef_).max(initial=0.0)),
    )
