"""The linear-SVM protocols: accuracy on known problems, the release replayed exactly, and a
cross-validated C that never depends on test features."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.svm import SVC

from xpt.benchmarks.linear import choose_C, evaluate_linear, per_class_accuracy
from xpt.benchmarks.protocols import CROSSPOINT, XPT, LinearProtocol, protocol_card


def _blobs(per_class: int, classes: int, dims: int, spread: float, seed: int):
    """Gaussian blobs around random centres: (n, dims) float32, (n,) int64."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(classes, dims)) * 3.0
    labels = np.repeat(np.arange(classes), per_class)
    features = centres[labels] + spread * rng.normal(size=(len(labels), dims))
    order = rng.permutation(len(labels))
    return features[order].astype(np.float32), labels[order]


def test_separable_features_score_100_and_shuffled_labels_score_chance() -> None:
    train_x, train_y = _blobs(30, 6, 32, 0.5, seed=0)
    test_x, test_y = _blobs(20, 6, 32, 0.5, seed=0)  # the same centres (same seed)
    result = evaluate_linear(train_x, train_y, test_x, test_y, XPT.linear, num_classes=6)
    assert result.accuracy == 1.0 and result.class_accuracy == 1.0
    assert np.array_equal(result.per_class, np.ones(6))
    assert result.C in XPT.linear.C_grid and set(result.cv_accuracy) == set(XPT.linear.C_grid)

    rng = np.random.default_rng(1)
    noise_train = rng.normal(size=(600, 32)).astype(np.float32)
    noise_test = rng.normal(size=(600, 32)).astype(np.float32)
    labels_train, labels_test = rng.integers(0, 6, 600), rng.integers(0, 6, 600)
    chance = evaluate_linear(
        noise_train, labels_train, noise_test, labels_test, XPT.linear, num_classes=6
    )
    assert abs(chance.accuracy - 1 / 6) < 0.06  # chance, within ~3 binomial std


def test_crosspoint_protocol_equals_scikit_learn_called_directly() -> None:
    train_x, train_y = _blobs(20, 5, 24, 4.0, seed=2)  # overlapping: not every C is perfect
    test_x, test_y = _blobs(15, 5, 24, 4.0, seed=2)
    for C in (0.01, 0.1, 1.0):
        card = protocol_card("crosspoint", C=C)
        ours = evaluate_linear(train_x, train_y, test_x, test_y, card.linear, num_classes=5)
        direct = SVC(kernel="linear", C=C).fit(train_x, train_y).predict(test_x)
        assert ours.accuracy == np.mean(direct == test_y)
        assert np.array_equal(ours.per_class, per_class_accuracy(test_y, direct, 5), equal_nan=True)
        assert ours.C == C and ours.cv_accuracy == {} and ours.cv_folds == 0
    assert CROSSPOINT.linear.C == 0.1 and not CROSSPOINT.linear.standardize
    assert CROSSPOINT.linear.points.count == 1024 and CROSSPOINT.linear.points.resample == "first"


def test_the_cv_choice_of_C_never_depends_on_test_features() -> None:
    train_x, train_y = _blobs(25, 4, 16, 3.0, seed=3)
    test_x, test_y = _blobs(15, 4, 16, 3.0, seed=3)
    first = evaluate_linear(train_x, train_y, test_x, test_y, XPT.linear, num_classes=4, seed=7)
    rng = np.random.default_rng(9)
    garbage_x = rng.normal(size=test_x.shape).astype(np.float32) * 100.0
    garbage_y = rng.permutation(test_y)
    second = evaluate_linear(
        train_x, train_y, garbage_x, garbage_y, XPT.linear, num_classes=4, seed=7
    )
    assert second.C == first.C and second.cv_accuracy == first.cv_accuracy
    assert second.accuracy != first.accuracy  # the test data did change


def test_cv_matches_a_plain_scikit_learn_pipeline() -> None:
    """The Gram-matrix shortcut gives the same CV scores as StandardScaler + linear SVC."""
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, y = _blobs(20, 3, 12, 3.5, seed=4)
    protocol = LinearProtocol(C_grid=(0.001, 0.1, 10.0))
    C, scores, folds = choose_C(x.astype(np.float64), y, protocol, seed=5)
    splitter = StratifiedKFold(n_splits=5, shuffle=True, random_state=5)
    for c in protocol.C_grid:
        pipeline = make_pipeline(StandardScaler(), SVC(kernel="linear", C=c))
        expected = cross_val_score(pipeline, x.astype(np.float64), y, cv=splitter)
        assert scores[c] == pytest.approx(float(expected.mean()), abs=1e-9)
    assert folds == 5 and scores[C] == max(scores.values())


def test_folds_are_capped_by_the_smallest_class() -> None:
    x, y = _blobs(3, 3, 8, 0.5, seed=6)
    _, _, folds = choose_C(x.astype(np.float64), y, XPT.linear, seed=0)
    assert folds == 3
    with pytest.raises(ValueError, match="at least 2 training objects in every class"):
        choose_C(x[:7].astype(np.float64), np.array([0, 0, 0, 1, 1, 1, 2]), XPT.linear, seed=0)


def test_per_class_accuracy_marks_absent_classes() -> None:
    result = per_class_accuracy(np.array([0, 0, 1, 1]), np.array([0, 1, 1, 1]), 3)
    assert result[0] == 0.5 and result[1] == 1.0 and np.isnan(result[2])


def test_cards_describe_themselves_and_validate() -> None:
    assert "CV on train only" in XPT.linear.describe()
    assert "raw (unscaled)" in CROSSPOINT.linear.describe()
    assert any("release protocol" in line for line in CROSSPOINT.lines())
    assert CROSSPOINT.fewshot.query_split == "train" and CROSSPOINT.fewshot.dgcnn_k == 5
    assert CROSSPOINT.fewshot.points.count is None and CROSSPOINT.fewshot.std == "population"
    assert XPT.fewshot.query_split == "test"
    assert XPT.bn_stats == "train" and CROSSPOINT.bn_stats == "checkpoint"
    assert "re-estimated on the train split" in XPT.lines()[1]
    changed = protocol_card("crosspoint", bn_stats="train")
    assert changed.bn_stats == "train" and "re-estimated on train by the user" in changed.title
    fixed = protocol_card("xpt", C=0.5)
    assert fixed.linear.C == 0.5 and "fixed at 0.5 by the user" in fixed.title
    with pytest.raises(ValueError, match="unknown protocol"):
        protocol_card("nope")
    with pytest.raises(ValueError, match="C must be > 0"):
        LinearProtocol(C=0.0)


def test_precomputed_gram_and_linear_svc_predict_the_same_labels() -> None:
    """The xpt card's final fit (standardised) on the Gram matrix equals SVC(kernel="linear")."""
    from sklearn.preprocessing import StandardScaler

    train_x, train_y = _blobs(25, 6, 40, 3.5, seed=11)
    test_x, test_y = _blobs(20, 6, 40, 3.5, seed=11)
    scaler = StandardScaler().fit(train_x.astype(np.float64))
    a = scaler.transform(train_x.astype(np.float64))
    b = scaler.transform(test_x.astype(np.float64))
    for C in (1e-3, 0.1, 10.0):
        linear = SVC(kernel="linear", C=C).fit(a, train_y).predict(b)
        gram = SVC(kernel="precomputed", C=C).fit(a @ a.T, train_y).predict(b @ a.T)
        assert np.array_equal(linear, gram)
        card = LinearProtocol(C=C)
        ours = evaluate_linear(train_x, train_y, test_x, test_y, card, num_classes=6)
        assert ours.accuracy == np.mean(linear == test_y)


def test_saturated_grid_values_reuse_a_score_equal_to_refitting() -> None:
    """Above the first C with no dual variable at its bound the score no longer changes:
    the shortcut's scores equal a refit at every C (separable blobs saturate early)."""
    from sklearn.model_selection import StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, y = _blobs(15, 4, 30, 1.0, seed=12)
    protocol = LinearProtocol(cv_subsample=None)
    _, scores, folds = choose_C(x.astype(np.float64), y, protocol, seed=1)
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=1)
    for c in protocol.C_grid:
        correct = 0
        for fit, held in splitter.split(x, y):
            pipeline = make_pipeline(StandardScaler(), SVC(kernel="linear", C=c))
            correct += int(np.sum(pipeline.fit(x[fit], y[fit]).predict(x[held]) == y[held]))
        assert scores[c] == pytest.approx(correct / len(y), abs=1e-9)


def test_subsampled_search_picks_a_C_as_good_as_the_exhaustive_one() -> None:
    """On a problem where C matters (overlapping classes, few dims), the C chosen on a
    stratified subsample scores within 2 points of the exhaustive choice on test."""
    train_x, train_y = _blobs(150, 5, 8, 3.0, seed=13)
    test_x, test_y = _blobs(100, 5, 8, 3.0, seed=13)
    grid = (1e-4, 1e-3, 1e-2, 1e-1, 1.0)
    exhaustive = LinearProtocol(C_grid=grid, cv_subsample=None)
    fast = LinearProtocol(C_grid=grid, cv_subsample=250)
    full = evaluate_linear(train_x, train_y, test_x, test_y, exhaustive, num_classes=5)
    sub = evaluate_linear(train_x, train_y, test_x, test_y, fast, num_classes=5)
    assert sub.C in grid and set(sub.cv_accuracy) == set(grid)
    assert abs(sub.accuracy - full.accuracy) <= 0.02
    assert "subsample of at most 250" in fast.describe()


def test_search_subsample_is_stratified_seeded_and_keeps_small_classes() -> None:
    from xpt.benchmarks.linear import search_subsample

    labels = np.repeat([0, 1, 2], [300, 100, 4])
    rows = search_subsample(labels, 100, folds=5, seed=0)
    counts = np.bincount(labels[rows])
    assert counts[0] == 74 and counts[1] == 25 and counts[2] == 4  # shares, >= folds or all
    assert np.array_equal(rows, search_subsample(labels, 100, folds=5, seed=0))
    assert not np.array_equal(rows, search_subsample(labels, 100, folds=5, seed=1))
    assert np.array_equal(search_subsample(labels, None, 5, 0), np.arange(len(labels)))
    with pytest.raises(ValueError, match="cv_subsample"):
        LinearProtocol(cv_subsample=1)
