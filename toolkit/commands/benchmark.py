"""``xpt benchmark``: linear-SVM and few-shot evaluation of a frozen point encoder."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from xpt.toolkit.commands.pretrain import Backbone


class Dataset(str, Enum):
    procedural = "procedural"
    procedural_scan = "procedural-scan"
    modelnet40 = "modelnet40"
    modelnet10 = "modelnet10"
    scanobjectnn = "scanobjectnn"
    shards = "shards"


class DataFormat(str, Enum):
    h5 = "h5"
    normal_resampled = "normal-resampled"
    tree = "tree"


class UpAxis(str, Enum):
    pos_y = "+Y"
    neg_y = "-Y"
    pos_z = "+Z"
    neg_z = "-Z"
    pos_x = "+X"
    neg_x = "-X"


class Protocol(str, Enum):
    xpt = "xpt"
    crosspoint = "crosspoint"


class BnStats(str, Enum):
    train = "train"
    checkpoint = "checkpoint"


class Resample(str, Enum):
    first = "first"
    fps = "fps"
    random = "random"


def benchmark(
    checkpoint: Annotated[
        Path | None,
        typer.Option(
            help="xpt checkpoint (last.pt, best.pt, epoch_XXX.pt), a pretraining run folder "
            "(its best.pt, else last.pt) or a CrossPoint release DGCNN state dict (recognised "
            "by its keys)."
        ),
    ] = None,
    random_init: Annotated[
        bool,
        typer.Option(
            "--random-init",
            help="Evaluate seeded untrained encoders only (the baseline every report shows).",
        ),
    ] = False,
    backbone: Annotated[
        Backbone, typer.Option(help="Architecture for --random-init without a checkpoint.")
    ] = Backbone.dgcnn,
    k: Annotated[
        int | None,
        typer.Option(
            "--k", min=1, help="DGCNN neighbours (default: the checkpoint's; 15 otherwise)."
        ),
    ] = None,
    emb_dims: Annotated[
        int, typer.Option(min=1, help="Embedding size for --random-init without a checkpoint.")
    ] = 1024,
    dataset: Annotated[Dataset, typer.Option(help="Evaluation dataset.")] = Dataset.procedural,
    data: Annotated[
        Path | None,
        typer.Option(
            help="Dataset folder: ModelNet40/10 as modelnet40_ply_hdf5_2048, PointNet++'s "
            "modelnet40_normal_resampled or a <class>/{train,test}/ tree of .npy/.txt/.xyz/"
            ".pcd/.ply point files; ScanObjectNN h5_files/main_split...; an xpt shard set; or "
            "an `xpt synth --eval [--scan]` folder (procedural sets are generated into the "
            "cache when omitted)."
        ),
    ] = None,
    data_format: Annotated[
        DataFormat | None,
        typer.Option(
            "--format",
            help="ModelNet folder layout: h5, normal-resampled or tree (default: detected).",
        ),
    ] = None,
    up_axis: Annotated[
        UpAxis | None,
        typer.Option(
            "--up-axis",
            help="ModelNet: the files' up axis, turned to +Y (xpt's frame). Raw ModelNet "
            "files are +Z up; the h5 release and PointNet++'s resampled set are +Y up. "
            "(default: +Y)",
        ),
    ] = None,
    train: Annotated[
        Path | None, typer.Option("--train", help="ScanObjectNN: explicit training h5 file.")
    ] = None,
    test: Annotated[
        Path | None, typer.Option("--test", help="ScanObjectNN: explicit test h5 file.")
    ] = None,
    variant: Annotated[
        str | None,
        typer.Option(
            help="ScanObjectNN: OBJ_BG, OBJ_ONLY or PB_T50_RS; procedural-scan: upright or "
            "rotated (default: both, side by side)."
        ),
    ] = None,
    per_category: Annotated[
        int | None,
        typer.Option(
            "--per-category",
            min=1,
            help="Objects per category of a generated procedural set (default: 20; scan: 100).",
        ),
    ] = None,
    tasks: Annotated[
        str, typer.Option(help="Comma-separated: linear, fewshot.")
    ] = "linear,fewshot",
    protocol: Annotated[
        Protocol,
        typer.Option(
            help="xpt: leakage-free (standardised features, C by CV on train, few-shot queries "
            "from test). crosspoint: the published code, replayed."
        ),
    ] = Protocol.xpt,
    C: Annotated[
        float | None,
        typer.Option(
            "--C", help="Fix the linear SVM's C (crosspoint default 0.1; xpt cross-validates)."
        ),
    ] = None,
    bn_stats: Annotated[
        BnStats | None,
        typer.Option(
            help="train: re-estimate every encoder's BatchNorm statistics on the train clouds "
            "(no labels) first, so encoders are compared by their weights (xpt default); "
            "checkpoint: use encoders as stored (crosspoint default)."
        ),
    ] = None,
    num_points: Annotated[
        int, typer.Option("--num-points", min=1, help="Points per cloud the encoder sees.")
    ] = 1024,
    resample: Annotated[
        Resample,
        typer.Option(
            help="first: the first N stored points (the release); fps or random subsets. "
            "Point files holding another count are brought to --num-points the same way."
        ),
    ] = Resample.first,
    ways: Annotated[str, typer.Option(help="Few-shot ways, comma-separated.")] = "5,10",
    shots: Annotated[str, typer.Option(help="Few-shot shots, comma-separated.")] = "10,20",
    queries: Annotated[int, typer.Option(min=1, help="Few-shot queries per class.")] = 20,
    runs: Annotated[int, typer.Option(min=1, help="Few-shot episodes per setting and seed.")] = 10,
    seed: Annotated[
        list[int] | None,
        typer.Option(
            help="Evaluation seed (CV folds, episodes, resampling); repeat it for mean ± std "
            "over seeds. (default: 0)"
        ),
    ] = None,
    baseline_inits: Annotated[
        int, typer.Option(min=1, help="Random initialisations in the random-init baseline.")
    ] = 3,
    descriptors: Annotated[
        bool, typer.Option(help="Report the hand-crafted shape-descriptor baseline.")
    ] = True,
    cache: Annotated[
        Path | None,
        typer.Option(help="Cache folder for generated sets and features (default: ~/.cache/xpt)."),
    ] = None,
    no_cache: Annotated[
        bool, typer.Option("--no-cache", help="Recompute features (generated sets still cached).")
    ] = False,
    batch_size: Annotated[int, typer.Option(min=1, help="Clouds per encoder batch.")] = 16,
    json_path: Annotated[
        str | None, typer.Option("--json", help="Write every number as JSON ('-' for stdout).")
    ] = None,
    plot: Annotated[
        Path | None,
        typer.Option(
            help="PNG: test features in 2-D for the checkpoint and random init, and per-class "
            "accuracy (one file per dataset variant)."
        ),
    ] = None,
) -> None:
    """Evaluate a frozen point encoder with linear-SVM and few-shot protocols.

    Every report prints its protocol card and shows, under the encoder, a random-init
    baseline of the same architecture (--baseline-inits seeds) and a hand-crafted
    descriptor baseline, plus the paper's figure where one is recorded.
    Runs with no data at all on the embedded procedural sets.
    """
    from xpt.benchmarks.run import benchmark_from_options

    benchmark_from_options(
        checkpoint=checkpoint,
        random_init=random_init,
        backbone=backbone,
        k=k,
        emb_dims=emb_dims,
        dataset=dataset,
        data=data,
        data_format=data_format,
        up_axis=up_axis,
        train=train,
        test=test,
        variant=variant,
        per_category=per_category,
        tasks=tasks,
        protocol=protocol,
        C=C,
        bn_stats=bn_stats,
        num_points=num_points,
        resample=resample,
        ways=ways,
        shots=shots,
        queries=queries,
        runs=runs,
        seed=seed,
        baseline_inits=baseline_inits,
        descriptors=descriptors,
        cache=cache,
        no_cache=no_cache,
        batch_size=batch_size,
        json_path=json_path,
        plot=plot,
    )
