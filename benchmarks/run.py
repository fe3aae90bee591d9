"""``xpt benchmark``: one protocol card, one or more datasets, every baseline beside the encoder.

For each dataset (and each of its variants) the report has one row per *encoder*:

* ``pretrained``: the checkpoint's point encoder (absent with ``--random-init`` alone);
* ``random init``: ``baseline_inits`` seeded untrained encoders of the same architecture;
* ``hand-crafted``: shape descriptors (:mod:`xpt.benchmarks.descriptors`), no learning.

Every row is evaluated under the same card for every evaluation seed (``seeds``: CV
folds, few-shot episodes, resampling); a row's figure is the mean ± std over its
encoders x seeds (few-shot: over all their episodes), and every single run is kept.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from xpt.benchmarks.datasets import EvalDataset, load_dataset
from xpt.benchmarks.features import (
    EncoderInfo,
    FeatureCache,
    encoder_feature_pair,
    select_points,
    with_k,
)
from xpt.benchmarks.fewshot import FewShotError, FewShotResult, evaluate_fewshot
from xpt.benchmarks.linear import LinearResult, evaluate_linear
from xpt.benchmarks.protocols import XPT, PointsSpec, ProtocolCard

if TYPE_CHECKING:
    from xpt.benchmarks.pointsets import PointSetOptions

TASKS = ("linear", "fewshot")
# The rows of every report, in order (also the names in --json).
PRETRAINED, RANDOM_INIT, HAND_CRAFTED = ROWS = ("pretrained", "random init", "hand-crafted")


@dataclass(frozen=True)
class BenchmarkConfig:
    """What to evaluate, on what, under which card.

    ``checkpoint`` None evaluates random initialisations only. ``backbone``/``k``/
    ``emb_dims`` give the architecture when there is no checkpoint (``k`` also overrides a
    checkpoint's). ``variants`` None takes every variant the dataset offers (procedural-scan:
    upright and rotated; ScanObjectNN: the one its files say). ``data_format`` (None:
    detected) and ``up_axis`` (None: +Y) say how a ModelNet folder is read
    (:mod:`xpt.benchmarks.pointsets`). ``cache`` holds generated sets (None: the default
    cache folder) and, unless ``features_cache`` is off, features.
    """

    checkpoint: Path | None = None
    backbone: str = "dgcnn"
    k: int | None = None
    emb_dims: int = 1024
    dataset: str = "procedural"
    data: Path | None = None
    data_format: str | None = None
    up_axis: str | None = None
    variants: tuple[str | None, ...] | None = None
    train_file: Path | None = None
    test_file: Path | None = None
    per_category: int | None = None
    tasks: tuple[str, ...] = TASKS
    protocol: ProtocolCard = XPT
    seeds: tuple[int, ...] = (0,)
    baseline_inits: int = 3
    descriptors: bool = True
    cache: Path | None = None
    features_cache: bool = True
    batch_size: int = 16

    def __post_init__(self) -> None:
        unknown = [t for t in self.tasks if t not in TASKS]
        if unknown or not self.tasks:
            raise ValueError(
                f"tasks must be a non-empty subset of {', '.join(TASKS)}, got {self.tasks}"
            )
        if not self.seeds:
            raise ValueError("at least one seed is needed")
        if self.baseline_inits < 1:
            raise ValueError(f"baseline_inits must be >= 1, got {self.baseline_inits}")


@dataclass
class RowResult:
    """One row of a report: its encoders and every run of every task."""

    name: str
    label: str
    encoders: list[dict[str, Any]]
    linear: list[LinearResult] = field(default_factory=list)
    fewshot: dict[str, list[FewShotResult]] = field(default_factory=dict)
    fewshot_errors: dict[str, str] = field(default_factory=dict)
    test_features: np.ndarray | None = None  # of the first encoder, for the plot

    def linear_summary(self) -> dict[str, Any] | None:
        if not self.linear:
            return None
        return {
            "accuracy": spread([r.accuracy for r in self.linear]),
            "class_accuracy": spread([r.class_accuracy for r in self.linear]),
            "per_class": np.nanmean(np.stack([r.per_class for r in self.linear]), axis=0),
            "C": sorted({r.C for r in self.linear}),
        }

    def fewshot_summary(self, std: str) -> dict[str, dict[str, Any]]:
        ddof = 1 if std == "sample" else 0
        return {
            name: spread([a for r in results for a in r.accuracies], ddof=ddof)
            for name, results in self.fewshot.items()
        }


def spread(values: list[float], ddof: int = 1) -> dict[str, Any]:
    """{"mean", "std", "n", "runs"} of fractions (std 0 for a single value)."""
    array = np.asarray(values, dtype=np.float64)
    std = float(array.std(ddof=ddof)) if len(array) > ddof else 0.0
    return {"mean": float(array.mean()), "std": std, "n": len(array), "runs": array.tolist()}


@dataclass
class DatasetResult:
    dataset: dict[str, Any]
    class_names: tuple[str, ...]
    test_labels: np.ndarray
    rows: list[RowResult]
    paper: dict[str, Any]
    seconds: float


@dataclass
class BenchmarkReport:
    config: BenchmarkConfig
    encoder: EncoderInfo | None
    architecture: dict[str, Any]
    results: list[DatasetResult]
    seconds: float
    notes: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------- encoders


def _encoders(config: BenchmarkConfig):
    """(pretrained (model, info) or None, [random-init (model, info)], architecture)."""
    from xpt.benchmarks.features import load_point_encoder, random_point_encoder

    pretrained = None
    if config.checkpoint is not None:
        pretrained = load_point_encoder(config.checkpoint, k=config.k)
        info = pretrained[1]
        backbone, k, emb_dims = info.backbone, info.k, info.emb_dims
    else:
        backbone, emb_dims = config.backbone, config.emb_dims
        k = 15 if config.k is None else config.k
    randoms = [
        random_point_encoder(backbone, k=k, emb_dims=emb_dims, seed=seed)
        for seed in range(config.baseline_inits)
    ]
    return pretrained, randoms, {"backbone": backbone, "k": k, "emb_dims": emb_dims}


def _dataset_variants(config: BenchmarkConfig) -> list[str | None]:
    if config.variants is not None:
        return list(config.variants)
    if config.dataset == "procedural-scan":
        from xpt.benchmarks.datasets import SCAN_VARIANTS

        return list(SCAN_VARIANTS)
    return [None]


def _point_set_options(config: BenchmarkConfig) -> PointSetOptions | None:
    """How a ModelNet folder is read: files brought to the largest point count the card's
    tasks ask for (as stored when one asks for all points), by the card's resampling."""
    from xpt.benchmarks.datasets import MODELNET
    from xpt.benchmarks.pointsets import PointSetOptions

    if config.dataset not in MODELNET:
        if config.data_format is not None or config.up_axis is not None:
            # (given for a dataset they do not apply to: load_dataset refuses them by name)
            return PointSetOptions(config.data_format, config.up_axis or "+Y")
        return None
    specs = [_task_points(config.protocol, task) for task in config.tasks]
    counts = [spec.count for spec in specs]
    return PointSetOptions(
        format=config.data_format,
        up_axis=config.up_axis or "+Y",
        points=None if None in counts else max(counts),
        resample=config.protocol.linear.points.resample,
        seed=config.seeds[0],
    )


def _load(config: BenchmarkConfig, variant: str | None) -> EvalDataset:
    return load_dataset(
        config.dataset,
        config.data,
        variant=variant,
        train=config.train_file,
        test=config.test_file,
        per_category=config.per_category if config.data is None else None,
        cache_dir=config.cache,
        point_set=_point_set_options(config),
    )


# ---------------------------------------------------------------------------- evaluation


def _descriptor_pair(dataset: EvalDataset, spec: PointsSpec, seed: int):
    from xpt.benchmarks.descriptors import shape_descriptors

    return tuple(
        shape_descriptors(select_points(getattr(dataset, split).points, spec, seed))
        for split in ("train", "test")
    )


def _evaluate_row(
    row: RowResult, features_for, dataset: EvalDataset, config: BenchmarkConfig
) -> None:
    """Fill ``row`` with every task x seed; ``features_for(task, seed)`` -> (train, test)."""
    card = config.protocol
    k = len(dataset.class_names)
    for seed in config.seeds:
        if "linear" in config.tasks:
            train, test = features_for("linear", seed)
            if row.test_features is None:
                row.test_features = test
            row.linear.append(
                evaluate_linear(
                    train,
                    dataset.train.labels,
                    test,
                    dataset.test.labels,
                    card.linear,
                    num_classes=k,
                    seed=seed,
                )
            )
        if "fewshot" in config.tasks:
            train, test = features_for("fewshot", seed)
            for result in evaluate_fewshot(
                train, dataset.train.labels, test, dataset.test.labels, card.fewshot, seed=seed
            ):
                if isinstance(result, FewShotError):
                    row.fewshot_errors.setdefault(result.name, str(result))
                else:
                    row.fewshot.setdefault(result.name, []).append(result)


def _task_points(card: ProtocolCard, task: str) -> PointsSpec:
    return card.linear.points if task == "linear" else card.fewshot.points


def _encoder_pair(task, seed, *, encoders, dataset, config, cache):
    """(train, test) features of ``encoders[task]`` = (model, info) for one task and seed."""
    model, info = encoders[task]
    return encoder_feature_pair(
        model,
        info,
        dataset.train.points,
        dataset.test.points,
        fingerprint=dataset.fingerprint,
        spec=_task_points(config.protocol, task),
        seed=seed,
        cache=cache,
        bn_stats=config.protocol.bn_stats,
        batch_size=config.batch_size,
    )


def _encoder_row(name, label, encoders, dataset, config, cache) -> RowResult:
    """A row of one or more neural encoders (features per task from the card's specs;
    few-shot may rebuild a DGCNN with the card's ``dgcnn_k``)."""
    card = config.protocol
    row = RowResult(name, label, [info.to_dict() for _, info in encoders])
    for model, info in encoders:
        fewshot = (model, info)
        if card.fewshot.dgcnn_k is not None:
            fewshot = with_k(model, info, card.fewshot.dgcnn_k)
        features_for = functools.partial(
            _encoder_pair,
            encoders={"linear": (model, info), "fewshot": fewshot},
            dataset=dataset,
            config=config,
            cache=cache,
        )
        _evaluate_row(row, features_for, dataset, config)
    return row


def _descriptor_row(dataset: EvalDataset, config: BenchmarkConfig) -> RowResult:
    """The no-learning row: a linear SVM on hand-crafted shape descriptors."""
    from xpt.benchmarks.descriptors import DescriptorConfig, descriptor_names

    dims = len(descriptor_names(DescriptorConfig()))
    row = RowResult(HAND_CRAFTED, f"D2 + height/radial histograms + PCA extents ({dims}-d)", [])

    def features_for(task: str, seed: int):
        return _descriptor_pair(dataset, _task_points(config.protocol, task), seed)

    _evaluate_row(row, features_for, dataset, config)
    return row


def paper_figures(dataset: EvalDataset, backbone: str) -> dict[str, Any]:
    """The paper's linear-SVM figure for this dataset and backbone, when one is recorded.

    ModelNet40 and ScanObjectNN's OBJ_BG (the variant the authors used) only, and only when
    the set read is that set (class names and split sizes, :meth:`EvalDataset.is_standard`);
    the few-shot figures are not recorded, so they stay empty: a dash, never a guess.
    """
    import json
    from importlib import resources

    table = json.loads(resources.files("xpt.benchmarks").joinpath("paper_results.json").read_text())
    linear = table["linear_svm_accuracy_percent"]
    figure = None
    published = dataset.name == "modelnet40" or (
        dataset.name == "scanobjectnn" and dataset.variant == "OBJ_BG"
    )
    if published and dataset.is_standard():
        figure = linear[dataset.name].get(backbone)
    confirmed = backbone == "dgcnn"
    return {
        "linear_accuracy_percent": figure,
        "confirmed": confirmed if figure is not None else None,
        "source": table["source"],
        "protocol": "the release's (raw features, fixed C, DGCNN k=15, first 1024 points)",
    }


def run_benchmark(config: BenchmarkConfig) -> BenchmarkReport:
    """Evaluate ``config`` end to end; raises DatasetError / EncoderError on bad inputs."""
    started = time.perf_counter()
    pretrained, randoms, architecture = _encoders(config)
    cached = config.cache is not None and config.features_cache
    cache = FeatureCache(config.cache / "features" if cached else None)
    results, notes = [], []
    if pretrained is not None and pretrained[1].selected_on == "test":
        notes.append(
            f"{pretrained[1].label} was selected on a test split during pretraining "
            "(release behaviour): its test figures are optimistic"
        )
    if config.protocol.bn_stats == "checkpoint":
        notes.append(
            "encoders keep their stored BatchNorm statistics: identity for the random inits, so "
            "part of a margin over them can be statistics rather than weights (--bn-stats train)"
        )
    for variant in _dataset_variants(config):
        dataset_started = time.perf_counter()
        dataset = _load(config, variant)
        rows = []
        if pretrained is not None:
            rows.append(
                _encoder_row(PRETRAINED, pretrained[1].label, [pretrained], dataset, config, cache)
            )
        seeds = ", ".join(str(info.init_seed) for _, info in randoms)
        rows.append(
            _encoder_row(
                RANDOM_INIT,
                f"{len(randoms)} inits (seeds {seeds})",
                randoms,
                dataset,
                config,
                cache,
            )
        )
        if config.descriptors:
            rows.append(_descriptor_row(dataset, config))
        results.append(
            DatasetResult(
                dataset=dataset.describe(),
                class_names=dataset.class_names,
                test_labels=np.asarray(dataset.test.labels),
                rows=rows,
                paper=paper_figures(dataset, architecture["backbone"]),
                seconds=time.perf_counter() - dataset_started,
            )
        )
    return BenchmarkReport(
        config=config,
        encoder=pretrained[1] if pretrained is not None else None,
        architecture=architecture,
        results=results,
        seconds=time.perf_counter() - started,
        notes=notes,
    )


# ---------------------------------------------------------------------------- the command


class OptionError(ValueError):
    """A malformed option value (``xpt benchmark`` reports it as a usage error, status 2)."""


def _int_list(text: str, what: str) -> tuple[int, ...]:
    try:
        values = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise OptionError(f"{what} must be comma-separated integers, got {text!r}") from None
    if not values:
        raise OptionError(f"{what} is empty")
    return values


def _plain(value: Any) -> Any:
    """An Enum option's value (the members are ``str`` Enums), anything else as is."""
    return getattr(value, "value", value)


def benchmark_config_from_options(
    *,
    checkpoint: Path | None,
    backbone: str,
    k: int | None,
    emb_dims: int,
    dataset: str,
    data: Path | None,
    data_format: str | None,
    up_axis: str | None,
    variant: str | None,
    train: Path | None,
    test: Path | None,
    per_category: int | None,
    tasks: str,
    protocol: str,
    C: float | None,
    bn_stats: str | None,
    num_points: int,
    resample: str,
    ways: str,
    shots: str,
    queries: int,
    runs: int,
    seed: list[int] | None,
    baseline_inits: int,
    descriptors: bool,
    cache: Path,
    no_cache: bool,
    batch_size: int,
) -> BenchmarkConfig:
    """The :class:`BenchmarkConfig` of ``xpt benchmark``'s options (Enum members taken as
    their values; ``tasks``, ``ways`` and ``shots`` comma-separated); ValueError on a bad
    value, :class:`OptionError` on a malformed list."""
    from itertools import product

    from xpt.benchmarks.protocols import protocol_card

    card = protocol_card(
        _plain(protocol),
        C=C,
        points=PointsSpec(num_points, _plain(resample)),
        settings=tuple(product(_int_list(ways, "--ways"), _int_list(shots, "--shots"))),
        queries=queries,
        runs=runs,
        bn_stats=_plain(bn_stats),
    )
    return BenchmarkConfig(
        checkpoint=checkpoint,
        backbone=_plain(backbone),
        k=k,
        emb_dims=emb_dims,
        dataset=_plain(dataset),
        data=data,
        data_format=_plain(data_format),
        up_axis=_plain(up_axis),
        variants=None if variant is None else (variant,),
        train_file=train,
        test_file=test,
        per_category=per_category,
        tasks=tuple(t.strip() for t in tasks.split(",") if t.strip()),
        protocol=card,
        seeds=tuple(seed) if seed else (0,),
        baseline_inits=baseline_inits,
        descriptors=descriptors,
        cache=cache,
        features_cache=not no_cache,
        batch_size=batch_size,
    )


def run_checkpoint(folder: Path) -> Path:
    """The checkpoint a pretraining run folder stands for (best.pt, else last.pt), named in
    one line so the report's encoder is no surprise."""
    from xpt.toolkit.console import err, error_exit
    from xpt.toolkit.export import resolve_checkpoint

    try:
        path = resolve_checkpoint(folder)
    except ValueError as error:
        raise error_exit(str(error)) from None
    why = "the epoch its probe chose" if path.name == "best.pt" else "it has no best.pt"
    line = f"{folder}: a run folder; evaluating its {path.name} ({why})"
    err.print(line, markup=False, highlight=False, soft_wrap=True)
    return path


def benchmark_from_options(
    *,
    checkpoint: Path | None,
    random_init: bool,
    cache: Path | None,
    json_path: str | None,
    plot: Path | None,
    **options: Any,
) -> None:
    """``xpt benchmark``: check the outputs, evaluate, print the report and write the plots
    and JSON; ``options`` as :func:`benchmark_config_from_options` takes them. User errors
    exit 1 in one line (a malformed list is a usage error, status 2)."""
    import typer
    from rich.markup import escape

    from xpt.benchmarks.datasets import DatasetError, default_cache_dir
    from xpt.benchmarks.features import EncoderError
    from xpt.benchmarks.report import print_report, report_json, write_plots
    from xpt.toolkit.console import err, error_exit, write_json_report
    from xpt.toolkit.fsio import WriteError, check_writable

    if checkpoint is None and not random_init:
        raise error_exit("give --checkpoint PATH, or --random-init to evaluate untrained encoders")
    if checkpoint is not None and checkpoint.is_dir():
        checkpoint = run_checkpoint(checkpoint)
    check_writable(plot, json_path)  # now, not after the evaluation
    try:
        cache_dir = cache if cache is not None else default_cache_dir()
        config = benchmark_config_from_options(checkpoint=checkpoint, cache=cache_dir, **options)
        report = run_benchmark(config)
    except OptionError as error:
        raise typer.BadParameter(str(error)) from None
    except (DatasetError, EncoderError, ValueError) as error:
        raise error_exit(str(error)) from None
    except OSError as error:  # e.g. a cache folder that cannot be written
        raise error_exit(f"{error.filename or cache_dir}: {error.strerror}") from None
    if json_path != "-":
        print_report(report)
    try:
        if plot is not None:
            for path in write_plots(plot, report):
                err.print(f"plot: {escape(str(path))}", highlight=False)
        write_json_report(json_path, report_json(report))
    except WriteError as error:
        raise error_exit(str(error)) from None
