"""Evaluation protocols as named cards: every number xpt reports carries the card it was made with.

Two cards exist:

* ``xpt`` (the default, leakage-free): the frozen encoder's global feature, taken after
  every encoder's BatchNorm statistics are re-estimated on the unlabelled train clouds (so
  that a random initialisation, whose stored statistics are the identity, and a checkpoint,
  whose statistics come from augmented pretraining clouds, are compared by their weights:
  on procedural-scan the re-estimation alone lifts a random PointNet by 3-10 points),
  standardised with statistics of the training features; a linear SVM whose C is chosen by
  stratified k-fold cross-validation on the training features only; overall and mean per-class
  accuracy on test. Few-shot episodes draw the support set from train and the queries from
  test; everything is seeded.
* ``crosspoint``: the published CrossPoint code, replayed (encoders as stored). Linear: the
  first 1024 points,
  raw (unscaled) features, ``SVC(kernel="linear", C)`` with a fixed C fitted on all train
  features and scored on test. Few-shot: a DGCNN rebuilt with k=5 (the release's few-shot
  script default) on all 2048 points; support and queries both from the *train* split;
  ``StandardScaler`` fitted on the support; ``SVC(kernel="linear", C=1)``; population std.
  The release's episodes were unseeded; xpt seeds them so that a replay is repeatable.

Cards are frozen dataclasses (scikit-learn style: every setting explicit and recorded).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

# Decades from 1e-5 to 10: wide enough for raw and standardised features alike.
C_GRID: tuple[float, ...] = (1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0)
CLASSIFIER = "sklearn.svm.SVC(kernel='linear')"
# Training objects the C search of the xpt card uses at most (stratified subsample): the
# search's cost grows as n^2, and on ModelNet40-sized features the subsample picks the same
# C at the same accuracy (docs/BENCHMARKS.md, "Linear evaluation speed").
CV_SUBSAMPLE = 2500
FEWSHOT_SETTINGS: tuple[tuple[int, int], ...] = ((5, 10), (5, 20), (10, 10), (10, 20))
RESAMPLE_METHODS = ("first", "fps", "random")


@dataclass(frozen=True)
class PointsSpec:
    """Which points of each stored cloud the encoder sees.

    ``count`` None keeps every stored point. ``resample`` "first" takes the first ``count``
    (the release; the stored order of ModelNet/ScanObjectNN h5 points is random),
    "fps" farthest-point sampling from a seeded start, "random" a seeded random subset.
    """

    count: int | None = 1024
    resample: str = "first"

    def __post_init__(self) -> None:
        if self.resample not in RESAMPLE_METHODS:
            raise ValueError(f"resample must be first, fps or random, got {self.resample!r}")
        if self.count is not None and self.count < 1:
            raise ValueError(f"point count must be >= 1, got {self.count}")

    def label(self) -> str:
        return "all points" if self.count is None else f"{self.resample} {self.count} points"


@dataclass(frozen=True)
class LinearProtocol:
    """Linear SVM on frozen features. ``C`` fixed, or None to choose it from ``C_grid`` by
    stratified ``cv_folds``-fold cross-validation on the training features only.

    ``cv_subsample`` (None: every object) caps the objects the C search uses: a stratified
    seeded subsample of m of the n training objects, fitted with ``C * n / m``; the final
    fit always uses every training object. Grid values above the first C whose fit has no
    dual variable at its bound reuse that fit's score (the solution no longer changes).
    """

    points: PointsSpec = PointsSpec()
    standardize: bool = True
    C: float | None = None
    C_grid: tuple[float, ...] = C_GRID
    cv_folds: int = 5
    cv_subsample: int | None = CV_SUBSAMPLE
    classifier: str = CLASSIFIER

    def __post_init__(self) -> None:
        if self.cv_subsample is not None and self.cv_subsample < 2:
            raise ValueError(f"cv_subsample must be >= 2 or None, got {self.cv_subsample}")
        if self.C is not None and not self.C > 0:
            raise ValueError(f"C must be > 0, got {self.C}")
        if self.C is None and (not self.C_grid or min(self.C_grid) <= 0 or self.cv_folds < 2):
            raise ValueError("cross-validated C needs a grid of positive values and >= 2 folds")

    def describe(self) -> str:
        features = "standardised (train statistics)" if self.standardize else "raw (unscaled)"
        if self.C is None:
            grid = ", ".join(f"{c:g}" for c in self.C_grid)
            choice = f"C by stratified {self.cv_folds}-fold CV on train only over {{{grid}}}"
            if self.cv_subsample is not None:
                choice += (
                    f" (search on a stratified subsample of at most {self.cv_subsample} train "
                    "objects with C scaled by n/m; final fit on all)"
                )
        else:
            choice = f"fixed C={self.C:g}"
        return f"{self.points.label()}; {features} features; {self.classifier}, {choice}"


@dataclass(frozen=True)
class FewShotProtocol:
    """N-way K-shot episodes: support from train, queries from ``query_split``, disjoint.

    Features are standardised with the support set's statistics, then a linear SVM with a
    fixed C is fitted on the support and scored on the queries. ``dgcnn_k`` rebuilds a
    DGCNN with that many neighbours for few-shot features (None keeps the checkpoint's).
    ``std`` "sample" (ddof=1) or "population" (ddof=0) across runs.
    """

    points: PointsSpec = PointsSpec()
    settings: tuple[tuple[int, int], ...] = FEWSHOT_SETTINGS
    queries: int = 20
    runs: int = 10
    query_split: str = "test"
    C: float = 1.0
    dgcnn_k: int | None = None
    std: str = "sample"
    classifier: str = CLASSIFIER

    def __post_init__(self) -> None:
        if self.query_split not in ("train", "test"):
            raise ValueError(f"query_split must be train or test, got {self.query_split!r}")
        if self.std not in ("sample", "population"):
            raise ValueError(f"std must be sample or population, got {self.std!r}")
        if self.queries < 1 or self.runs < 1 or not self.C > 0:
            raise ValueError("queries and runs must be >= 1 and C > 0")
        for ways, shots in self.settings:
            if ways < 2 or shots < 1:
                raise ValueError(
                    f"few-shot setting {ways}-way {shots}-shot: need ways >= 2, shots >= 1"
                )

    def describe(self) -> str:
        k = f"; DGCNN rebuilt with k={self.dgcnn_k}" if self.dgcnn_k is not None else ""
        return (
            f"{self.points.label()}{k}; support from train, {self.queries} queries per class "
            f"from {self.query_split}; features standardised on the support; {self.classifier}, "
            f"C={self.C:g}; {self.runs} runs, mean ± {self.std} std"
        )


# JSON keys of the protocol fields named as sklearn names them.
JSON_NAMES = {"C": "c", "C_grid": "c_grid"}


@dataclass(frozen=True)
class ProtocolCard:
    """A named evaluation protocol: how features are taken and classified."""

    name: str
    title: str
    linear: LinearProtocol
    fewshot: FewShotProtocol
    bn_stats: str = "checkpoint"
    release: bool = False

    def __post_init__(self) -> None:
        if self.bn_stats not in ("checkpoint", "train"):
            raise ValueError(f"bn_stats must be checkpoint or train, got {self.bn_stats!r}")

    def describe_bn(self) -> str:
        if self.bn_stats == "train":
            return (
                "every encoder's BatchNorm statistics re-estimated on the train split "
                "(no labels, no gradient) before features are taken"
            )
        return "encoders used as stored (their own BatchNorm statistics)"

    def to_dict(self) -> dict[str, Any]:
        """The card as JSON: every field, with snake_case keys (sklearn's ``C`` as ``c``)."""
        card = asdict(self)
        for part in ("linear", "fewshot"):
            card[part] = {JSON_NAMES.get(k, k): v for k, v in card[part].items()}
        return {
            **card,
            "encoder_text": self.describe_bn(),
            "linear_text": self.linear.describe(),
            "fewshot_text": self.fewshot.describe(),
        }

    def lines(self) -> list[str]:
        """The card as printed above every report."""
        head = f"protocol {self.name}: {self.title}"
        if self.release:
            head += " [release protocol: replays the published code, not leakage-free]"
        return [
            head,
            f"  encoders: {self.describe_bn()}",
            f"  linear: {self.linear.describe()}",
            f"  few-shot: {self.fewshot.describe()}",
        ]


XPT = ProtocolCard(
    name="xpt",
    title="leakage-free: standardised features, C cross-validated on train, queries from test",
    linear=LinearProtocol(),
    fewshot=FewShotProtocol(),
    bn_stats="train",
)

CROSSPOINT = ProtocolCard(
    name="crosspoint",
    title="the published CrossPoint evaluation code",
    linear=LinearProtocol(standardize=False, C=0.1, cv_subsample=None),
    fewshot=FewShotProtocol(
        points=PointsSpec(count=None), query_split="train", dgcnn_k=5, std="population"
    ),
    release=True,
)

PROTOCOLS: dict[str, ProtocolCard] = {card.name: card for card in (XPT, CROSSPOINT)}


def protocol_card(
    name: str,
    *,
    C: float | None = None,
    points: PointsSpec | None = None,
    settings: tuple[tuple[int, int], ...] | None = None,
    queries: int | None = None,
    runs: int | None = None,
    bn_stats: str | None = None,
) -> ProtocolCard:
    """The card ``name`` with the given settings changed (None keeps the card's own).

    ``C`` fixes the linear SVM's C (for ``xpt`` this replaces the cross-validated choice and
    the card's title says so); ``points`` applies to the linear protocol, and to few-shot
    unless the card keeps all points there (``crosspoint``).
    """
    if name not in PROTOCOLS:
        raise ValueError(f"unknown protocol {name!r}; valid: {', '.join(PROTOCOLS)}")
    card = PROTOCOLS[name]
    linear, fewshot = card.linear, card.fewshot
    title = card.title
    if C is not None:
        linear = replace(linear, C=C)
        if not card.release:
            title = f"{title}; C fixed at {C:g} by the user instead of cross-validated"
    if points is not None:
        linear = replace(linear, points=points)
        if fewshot.points.count is not None:
            fewshot = replace(fewshot, points=points)
    changes = {"settings": settings, "queries": queries, "runs": runs}
    fewshot = replace(fewshot, **{k: v for k, v in changes.items() if v is not None})
    if bn_stats is not None and bn_stats != card.bn_stats:
        card = replace(card, bn_stats=bn_stats)
        if bn_stats == "checkpoint":
            title = f"{title}; encoders' own BatchNorm statistics kept by the user"
        else:
            title = f"{title}; BatchNorm statistics re-estimated on train by the user"
    return replace(card, title=title, linear=linear, fewshot=fewshot)
