"""N-way K-shot evaluation of frozen features in seeded episodes.

An episode draws ``ways`` classes, ``shots`` support objects per class from train and
``queries`` query objects per class from the protocol's query split (test for ``xpt``;
train for the release, in which case support and queries are disjoint draws from the same
class pool). A linear SVM is fitted on the support features, standardised with the
support's statistics, and scored on the queries. Episode ``r`` of a setting draws from
``rng(seed, "fewshot", ways, shots, r)`` only, so a setting's episodes do not depend on
which other settings run.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from xpt.benchmarks.protocols import FewShotProtocol
from xpt.toolkit.seeding import rng


@dataclass(frozen=True)
class Episode:
    """Indices of one episode: ``support`` into train, ``query`` into the query split;
    ``classes`` (ways,) the original labels, episode label i = ``classes[i]``."""

    classes: np.ndarray
    support: np.ndarray
    query: np.ndarray


@dataclass(frozen=True)
class FewShotResult:
    """One N-way K-shot setting: accuracy per run (fractions), their mean and std."""

    ways: int
    shots: int
    accuracies: tuple[float, ...]
    mean: float
    std: float
    seconds: float

    @property
    def name(self) -> str:
        return f"{self.ways}w{self.shots}s"

    def to_dict(self) -> dict:
        return {
            "ways": self.ways,
            "shots": self.shots,
            "runs": list(self.accuracies),
            "mean": self.mean,
            "std": self.std,
            "seconds": self.seconds,
        }


class FewShotError(ValueError):
    """A setting the data cannot supply (too few classes with enough objects)."""

    def __init__(self, ways: int, shots: int, message: str):
        super().__init__(message)
        self.ways, self.shots = ways, shots

    @property
    def name(self) -> str:
        return f"{self.ways}w{self.shots}s"


def eligible_classes(
    train_labels: np.ndarray,
    query_labels: np.ndarray | None,
    shots: int,
    queries: int,
) -> np.ndarray:
    """Classes with ``shots`` support objects in train and ``queries`` queries in the query
    split (``query_labels`` None: queries come from train too, disjoint from the support)."""
    train_counts = np.bincount(train_labels)
    if query_labels is None:
        return np.flatnonzero(train_counts >= shots + queries)
    query_counts = np.bincount(query_labels, minlength=len(train_counts))
    size = min(len(train_counts), len(query_counts))
    ok = (train_counts[:size] >= shots) & (query_counts[:size] >= queries)
    return np.flatnonzero(ok)


def sample_episode(
    train_labels: np.ndarray,
    query_labels: np.ndarray | None,
    ways: int,
    shots: int,
    queries: int,
    generator: np.random.Generator,
) -> Episode:
    """Draw one episode (``query_labels`` None: queries from train, disjoint from support)."""
    pool = eligible_classes(train_labels, query_labels, shots, queries)
    if len(pool) < ways:
        where = "train" if query_labels is None else "train/test"
        raise FewShotError(
            ways,
            shots,
            f"{ways}-way {shots}-shot needs {ways} classes with enough objects in {where}, "
            f"only {len(pool)} have them",
        )
    classes = generator.choice(pool, ways, replace=False)
    support, query = [], []
    for k in classes:
        members = np.flatnonzero(train_labels == k)
        if query_labels is None:
            chosen = generator.choice(members, shots + queries, replace=False)
            support.append(chosen[:shots])
            query.append(chosen[shots:])
        else:
            support.append(generator.choice(members, shots, replace=False))
            query.append(
                generator.choice(np.flatnonzero(query_labels == k), queries, replace=False)
            )
    return Episode(classes, np.concatenate(support), np.concatenate(query))


def run_episode(
    train_x: np.ndarray,
    train_y: np.ndarray,
    query_x: np.ndarray,
    query_y: np.ndarray,
    episode: Episode,
    C: float,
) -> float:
    """Accuracy of a support-standardised linear SVM on the episode's queries."""
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    relabel = {int(k): i for i, k in enumerate(episode.classes)}
    support_y = np.array([relabel[int(k)] for k in train_y[episode.support]])
    query_true = np.array([relabel[int(k)] for k in query_y[episode.query]])
    scaler = StandardScaler().fit(train_x[episode.support])
    svm = SVC(kernel="linear", C=C).fit(scaler.transform(train_x[episode.support]), support_y)
    predicted = svm.predict(scaler.transform(query_x[episode.query]))
    return float(np.mean(predicted == query_true))


def evaluate_fewshot(
    train_x: np.ndarray,
    train_y: np.ndarray,
    test_x: np.ndarray,
    test_y: np.ndarray,
    protocol: FewShotProtocol,
    *,
    seed: int = 0,
) -> list[FewShotResult | FewShotError]:
    """Every setting of ``protocol`` (one result, or the error saying why it cannot run)."""
    from_test = protocol.query_split == "test"
    query_x, query_y = (test_x, test_y) if from_test else (train_x, train_y)
    results: list[FewShotResult | FewShotError] = []
    for ways, shots in protocol.settings:
        started = time.perf_counter()
        accuracies = []
        try:
            for run in range(protocol.runs):
                episode = sample_episode(
                    train_y,
                    test_y if from_test else None,
                    ways,
                    shots,
                    protocol.queries,
                    rng(seed, "fewshot", ways, shots, run),
                )
                accuracies.append(
                    run_episode(train_x, train_y, query_x, query_y, episode, protocol.C)
                )
        except FewShotError as error:
            results.append(error)
            continue
        values = np.asarray(accuracies)
        ddof = 1 if protocol.std == "sample" and len(values) > 1 else 0
        results.append(
            FewShotResult(
                ways=ways,
                shots=shots,
                accuracies=tuple(float(a) for a in values),
                mean=float(values.mean()),
                std=float(values.std(ddof=ddof)),
                seconds=time.perf_counter() - started,
            )
        )
    return results
