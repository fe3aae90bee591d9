"""The linear SVM on a Gram matrix is libsvm's multi-class SVC: same votes, same intercepts."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.svm import SVC

from xpt.benchmarks.svm import ClassGram, LinearSVM, fit_linear_svm


def _overlapping(n: int, classes: np.ndarray, dims: int, seed: int):
    """Gaussian classes that overlap (many support vectors, some at the bound), rows shuffled,
    a quarter of one class's labels swapped to another so that some pairs are not separable."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(len(classes), dims))
    codes = rng.integers(0, len(classes), n)
    features = centres[codes] + 1.5 * rng.normal(size=(n, dims))
    codes[(codes == 0) & (rng.random(n) < 0.25)] = 1
    return features.astype(np.float32), classes[codes]


@pytest.mark.parametrize(
    ("classes", "C"),
    [
        (np.array([0, 1]), 1.0),
        (np.arange(5), 0.01),
        (np.arange(5), 10.0),
        (np.array([7, 2, 11, 4]), 0.1),  # labels neither sorted nor contiguous
    ],
)
def test_predictions_and_intercepts_equal_libsvm(classes: np.ndarray, C: float) -> None:
    x, y = _overlapping(500, classes, 24, seed=len(classes))
    train_x, train_y, test_x, test_y = x[:300], y[:300], x[300:], y[300:]
    model = fit_linear_svm(ClassGram.of(train_x, train_y), C)

    a, b = train_x.astype(np.float64), test_x.astype(np.float64)
    linear = SVC(kernel="linear", C=C).fit(a, train_y)
    precomputed = SVC(kernel="precomputed", C=C, decision_function_shape="ovo")
    precomputed.fit(a @ a.T, train_y)
    assert np.array_equal(model.predict(b), linear.predict(b))
    assert np.array_equal(model.predict(b), precomputed.predict(b @ a.T))
    assert 0.3 < np.mean(model.predict(b) == test_y) < 1.0  # a problem where C matters
    # libsvm's rho and decisions per pair: the decision here is negative for the first class
    # of a pair; sklearn's multi-class decision is positive for it, its 2-class one negative.
    sign = 1.0 if len(classes) == 2 else -1.0
    assert np.allclose(model.intercepts, sign * precomputed.intercept_, rtol=1e-7, atol=1e-9)
    assert model.max_dual == pytest.approx(np.abs(precomputed.dual_coef_).max(), rel=1e-9)
    assert np.array_equal(model.classes, np.sort(classes))
    expected = precomputed.decision_function(b @ a.T).reshape(len(b), -1)
    assert np.allclose(model.decision(b), sign * expected, rtol=1e-7, atol=1e-9)


def test_vote_ties_go_to_the_lower_class_as_in_libsvm() -> None:
    # pairs (0,1), (0,2), (1,2): decisions -1 (votes 0), +1 (votes 2), -1 (votes 1): a tie.
    model = LinearSVM(
        classes=np.array([3, 5, 9]),
        first=np.array([0, 0, 1]),
        second=np.array([1, 2, 2]),
        weights=np.zeros((3, 1)),
        intercepts=np.array([-1.0, 1.0, -1.0]),
        max_dual=0.0,
    )
    assert model.predict(np.zeros((1, 1))).tolist() == [3]
    # a decision of exactly 0 votes for the second class (libsvm: "dec > 0" votes the first)
    zero = LinearSVM(model.classes, model.first, model.second, np.zeros((3, 1)), np.zeros(3), 0)
    assert zero.predict(np.zeros((1, 1))).tolist() == [9]


def test_one_class_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 2 classes"):
        ClassGram.of(np.ones((4, 3)), np.zeros(4, dtype=int))
