"""Few-shot episodes: shapes, disjointness, where queries come from, seeding."""

from __future__ import annotations

import numpy as np
import pytest

from xpt.benchmarks.fewshot import FewShotError, evaluate_fewshot, sample_episode
from xpt.benchmarks.protocols import CROSSPOINT, XPT, FewShotProtocol
from xpt.toolkit.seeding import rng


def _labels(per_class: int, classes: int) -> np.ndarray:
    return np.repeat(np.arange(classes), per_class)


def test_xpt_episodes_take_support_from_train_and_queries_from_test() -> None:
    train_y, test_y = _labels(30, 8), _labels(25, 8)
    for run in range(20):
        episode = sample_episode(train_y, test_y, 5, 10, 20, rng(0, run))
        assert episode.classes.shape == (5,) and len(set(episode.classes)) == 5
        assert episode.support.shape == (50,) and episode.query.shape == (100,)
        assert len(set(episode.support)) == 50 and len(set(episode.query)) == 100
        assert set(train_y[episode.support]) == set(episode.classes)
        assert set(test_y[episode.query]) == set(episode.classes)
        assert (
            np.bincount(train_y[episode.support], minlength=8)[episode.classes].tolist() == [10] * 5
        )


def test_release_episodes_draw_both_from_train_without_sharing_an_object() -> None:
    train_y = _labels(30, 12)
    for run in range(20):
        episode = sample_episode(train_y, None, 10, 10, 20, rng(0, run))
        assert not set(episode.support) & set(episode.query)
        assert episode.support.shape == (100,) and episode.query.shape == (200,)
        assert episode.query.max() < len(train_y)


def test_queries_never_come_from_train_under_the_xpt_protocol() -> None:
    """Train features are NaN-free but test features are marked: the score must depend on
    test features only for queries, and release episodes must never read them."""
    generator = np.random.default_rng(0)
    train_x = generator.normal(size=(8 * 30, 16))
    test_x = generator.normal(size=(8 * 25, 16))
    train_y, test_y = _labels(30, 8), _labels(25, 8)
    protocol = FewShotProtocol(settings=((5, 10),), runs=3)
    base = evaluate_fewshot(train_x, train_y, test_x, test_y, protocol, seed=1)[0]
    changed_test = evaluate_fewshot(train_x, train_y, test_x * -1.0, test_y, protocol, seed=1)[0]
    assert base.accuracies != changed_test.accuracies  # queries are test objects
    release = FewShotProtocol(settings=((5, 10),), runs=3, query_split="train")
    a = evaluate_fewshot(train_x, train_y, test_x, test_y, release, seed=1)[0]
    b = evaluate_fewshot(train_x, train_y, np.full_like(test_x, np.nan), test_y, release, seed=1)[0]
    assert a.accuracies == b.accuracies  # the release never reads the test split


def test_separable_features_give_perfect_episodes_and_seeds_repeat() -> None:
    generator = np.random.default_rng(3)
    centres = generator.normal(size=(6, 12)) * 5
    train_y, test_y = _labels(25, 6), _labels(22, 6)
    train_x = centres[train_y] + 0.1 * generator.normal(size=(len(train_y), 12))
    test_x = centres[test_y] + 0.1 * generator.normal(size=(len(test_y), 12))
    results = evaluate_fewshot(train_x, train_y, test_x, test_y, XPT.fewshot, seed=0)
    assert [r.name for r in results] == ["5w10s", "5w20s", "10w10s", "10w20s"]
    assert results[0].mean == 1.0 and results[0].std == 0.0 and len(results[0].accuracies) == 10
    assert isinstance(results[2], FewShotError) and "only 6 have them" in str(results[2])
    again = evaluate_fewshot(train_x, train_y, test_x, test_y, XPT.fewshot, seed=0)
    assert again[1].accuracies == results[1].accuracies


def test_std_follows_the_card() -> None:
    generator = np.random.default_rng(4)
    train_y, test_y = _labels(25, 6), _labels(22, 6)
    train_x, test_x = generator.normal(size=(150, 8)), generator.normal(size=(132, 8))
    sample = evaluate_fewshot(train_x, train_y, test_x, test_y, FewShotProtocol(((3, 2),)))[0]
    values = np.asarray(sample.accuracies)
    assert sample.std == pytest.approx(values.std(ddof=1))
    population = FewShotProtocol(((3, 2),), std="population")
    assert evaluate_fewshot(train_x, train_y, test_x, test_y, population)[0].std == pytest.approx(
        values.std(ddof=0)
    )
    assert CROSSPOINT.fewshot.std == "population"
