"""``xpt pretrain``: CrossPoint pretraining on WebDataset shards."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from typer.core import TyperCommand


class Backbone(str, Enum):
    dgcnn = "dgcnn"
    pointnet = "pointnet"
    dgcnn_seg = "dgcnn_seg"


class ImageEncoder(str, Enum):
    resnet50 = "resnet50"
    resnet18 = "resnet18"


class Loss(str, Enum):
    both = "both"
    imid = "imid"
    cmid = "cmid"


class EdgeConvImpl(str, Enum):
    fast = "fast"
    plain = "plain"


class Amp(str, Enum):
    auto = "auto"
    bf16 = "bf16"
    fp16 = "fp16"
    off = "off"


class Device(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


class ProbeSplit(str, Enum):
    val = "val"
    test = "test"


class Shuffle(str, Enum):
    auto = "auto"
    full = "full"
    buffer = "buffer"


class ProbeProtocol(str, Enum):
    xpt = "xpt"
    crosspoint = "crosspoint"


class Schedule(str, Enum):
    epoch = "epoch"
    step = "step"
    release = "release"


class PretrainCommand(TyperCommand):
    """Reads ``--resume auto`` as the hidden flag ``--resume-auto``: click has no option
    whose value is optional, and a bare ``--resume`` stays a flag."""

    def parse_args(self, ctx, args):  # type: ignore[no-untyped-def]
        args = list(args)
        for i in range(len(args) - 1):
            if args[i] == "--resume" and args[i + 1] == "auto":
                args[i : i + 2] = ["--resume-auto"]
                break
        return super().parse_args(ctx, args)


def pretrain(
    shards: Annotated[
        list[str],
        typer.Argument(
            help="Shard folder (with manifest.json), tar paths, brace patterns "
            "('train-{000000..000099}.tar') or 'pipe:' commands.",
            show_default=False,
            metavar="SHARDS",
        ),
    ],
    out: Annotated[Path, typer.Option("--out", help="Run folder (checkpoints, metrics).")],
    config_file: Annotated[
        Path | None,
        typer.Option("--config", help="TOML file of settings (flat keys); options override it."),
    ] = None,
    replay_release: Annotated[
        bool,
        typer.Option(
            "--replay-release",
            help="Replay the published code where xpt's defaults differ: every split of the "
            "set (--splits train,val), --shuffle full, --lr-schedule release, --probe-split "
            "test --probe-protocol crosspoint, --amp off (docs/REPRODUCE.md). --config and "
            "options still override it; config.json records preset 'release'.",
        ),
    ] = False,
    backbone: Annotated[
        Backbone | None, typer.Option(help="Point encoder. (default: dgcnn)")
    ] = None,
    image_encoder: Annotated[
        ImageEncoder | None, typer.Option(help="Image encoder. (default: resnet50)")
    ] = None,
    epochs: Annotated[int | None, typer.Option(help="Epochs. (default: 100)")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Objects per batch. (default: 20)")] = None,
    lr: Annotated[float | None, typer.Option(help="Adam learning rate. (default: 0.001)")] = None,
    weight_decay: Annotated[
        float | None, typer.Option(help="Adam weight decay. (default: 1e-06)")
    ] = None,
    lr_schedule: Annotated[
        Schedule | None,
        typer.Option(
            help="Cosine annealing from --lr to 0 over the epochs: 'epoch' (epoch e of E at "
            "the value of e/E, the first at --lr), 'step' (per optimiser step), or 'release' "
            "(the published code's off-by-one: e+1/E, so the last epoch trains at lr 0, and "
            "all of a 1-epoch run). (default: epoch)"
        ),
    ] = None,
    points: Annotated[int | None, typer.Option(help="Points per cloud. (default: 2048)")] = None,
    k: Annotated[int | None, typer.Option("--k", help="DGCNN neighbours. (default: 15)")] = None,
    edgeconv: Annotated[
        EdgeConvImpl | None,
        typer.Option(
            help="DGCNN EdgeConv formulation: fast (less memory and time) or plain (the "
            "reference's); the same function and weights. (default: fast)"
        ),
    ] = None,
    emb_dims: Annotated[
        int | None, typer.Option(help="Point embedding size. (default: 1024)")
    ] = None,
    image_size: Annotated[
        int | None, typer.Option(help="Image side, pixels. (default: 224)")
    ] = None,
    loss: Annotated[Loss | None, typer.Option(help="Loss terms. (default: both)")] = None,
    amp: Annotated[
        Amp | None,
        typer.Option(
            help="Mixed precision (CUDA only): off trains in float32 as the paper; auto is "
            "bf16 where the GPU supports it, else fp16 (faster). (default: off)"
        ),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            help="DataLoader workers, at most one per shard and per CPU (fewer are started, "
            "with a note). (default: 4)"
        ),
    ] = None,
    splits: Annotated[
        str | None,
        typer.Option(
            help="Shard splits to pretrain on, comma-separated: 'train,val' reads both (the "
            "published code pretrains on every object; xpt shard puts every object in train "
            "unless given --val-fraction). (default: train)"
        ),
    ] = None,
    shuffle: Annotated[
        Shuffle | None,
        typer.Option(
            help="full: a fresh permutation of every sample each epoch, read by position "
            "from local shards (the published code's reshuffle); buffer: shard order plus a "
            "1000-sample buffer (streams, remote shards); auto: full where the shards are "
            "local files. (default: auto)"
        ),
    ] = None,
    samples_per_epoch: Annotated[
        int | None, typer.Option(help="Epoch length in objects; by default the manifest's count.")
    ] = None,
    skip_missing_shards: Annotated[
        bool | None,
        typer.Option(
            "--skip-missing-shards",
            help="Train without the shards that the manifest lists (or a brace pattern names) "
            "but that are not there, their samples left out of the epoch, with a note; "
            "without it a missing shard is an error.",
        ),
    ] = None,
    max_steps: Annotated[
        int | None, typer.Option(help="Stop after this many optimiser steps in total.")
    ] = None,
    checkpoint_every: Annotated[
        int | None, typer.Option(help="Write last.pt every N steps. (default: 500)")
    ] = None,
    checkpoint_every_epochs: Annotated[
        int | None, typer.Option(help="Write epoch_XXX.pt every M epochs. (default: 10)")
    ] = None,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume",
            help="Continue the run in --out from its last.pt. '--resume auto': continue when "
            "last.pt exists, else start afresh (one job script for the first start and every "
            "requeue).",
        ),
    ] = False,
    resume_auto: Annotated[bool, typer.Option("--resume-auto", hidden=True)] = False,
    seed: Annotated[int | None, typer.Option(help="Seed. (default: 0)")] = None,
    probe: Annotated[
        str | None,
        typer.Option(
            help="Evaluation dataset for a linear probe after each epoch (as xpt benchmark "
            "--dataset: procedural, procedural-scan, modelnet40, scanobjectnn, shards); "
            "keeps best.pt."
        ),
    ] = None,
    probe_data: Annotated[
        Path | None, typer.Option(help="The probe dataset's folder (as xpt benchmark --data).")
    ] = None,
    probe_variant: Annotated[
        str | None, typer.Option(help="The probe dataset's variant (as xpt benchmark --variant).")
    ] = None,
    probe_per_category: Annotated[
        int | None, typer.Option(help="Objects per category of a generated procedural probe set.")
    ] = None,
    probe_every: Annotated[
        int | None, typer.Option(help="Probe every E epochs (and after the last). (default: 1)")
    ] = None,
    probe_split: Annotated[
        ProbeSplit | None,
        typer.Option(
            help="val: score on a stratified 20 % of the probe set's train split (leakage-free). "
            "test: the release's selection on the test split, labelled as such. (default: val)"
        ),
    ] = None,
    probe_protocol: Annotated[
        ProbeProtocol | None,
        typer.Option(
            help="The probe's linear SVM: xpt (BatchNorm statistics re-estimated, "
            "standardised features, C cross-validated on the fit split) or crosspoint (the "
            "release's: raw features, C=0.1, stored statistics). (default: xpt)"
        ),
    ] = None,
    device: Annotated[Device | None, typer.Option(help="Training device. (default: auto)")] = None,
    global_negatives: Annotated[
        bool | None,
        typer.Option(
            "--global-negatives/--local-negatives",
            help="Under torchrun: NT-Xent over the embeddings gathered from every process "
            "(the negatives grow with the process count), or over each process's own batch "
            "(--local-negatives, the default: one GPU's batch, as in the paper).",
        ),
    ] = None,
    sync_bn: Annotated[
        bool | None,
        typer.Option(
            "--sync-bn/--no-sync-bn",
            help="Under torchrun on GPUs: BatchNorm statistics over every process's batch "
            "(SyncBatchNorm). Off by default, as in the one-GPU release.",
        ),
    ] = None,
    tensorboard: Annotated[
        bool | None,
        typer.Option(
            "--tensorboard/--no-tensorboard",
            help="Also write TensorBoard event files under OUT/tb (needs the tensorboard "
            "package). OUT/curves.png is drawn at every epoch end either way.",
        ),
    ] = None,
    channels_last: Annotated[
        bool | None,
        typer.Option(
            "--channels-last/--no-channels-last",
            help="Image encoder weights and inputs in NHWC memory layout (faster convolutions "
            "on recent GPUs, same checkpoints). Off by default.",
        ),
    ] = None,
    compile_models: Annotated[
        bool | None,
        typer.Option(
            "--compile/--no-compile",
            help="torch.compile both encoders (slower start, faster steps; needs a C++ "
            "compiler on CPU, Triton on CUDA). Off by default.",
        ),
    ] = None,
    json_path: Annotated[
        str | None, typer.Option("--json", help="Write the summary as JSON ('-' for stdout).")
    ] = None,
) -> None:
    """Pretrain point and image encoders with CrossPoint (IMID + CMID) on shards.

    Settings: paper defaults, then --replay-release, then --config, then the options given.

    With --resume the run's config.json replaces the defaults, less its max_steps.

    Ctrl-C, SIGTERM or SIGUSR1 finishes the current step, writes last.pt and exits
    130 / 143 / 138; --resume then continues exactly (a second signal stops at once, keeping
    the last complete checkpoint). A fresh run refuses a --out holding checkpoints and
    removes the leftovers of a run stopped before its first checkpoint.

    Several processes: torchrun --nproc-per-node N --no-python xpt pretrain ... (or
    torchrun ... -m xpt pretrain ...); --batch-size is per process, rank 0 alone writes.
    """
    from xpt.train.settings import pretrain_from_options

    overrides = {
        "backbone": backbone,
        "image_encoder": image_encoder,
        "epochs": epochs,
        "batch_size": batch_size,
        "lr": lr,
        "weight_decay": weight_decay,
        "lr_schedule": lr_schedule,
        "points": points,
        "k": k,
        "edgeconv": edgeconv,
        "emb_dims": emb_dims,
        "image_size": image_size,
        "loss": loss,
        "amp": amp,
        "workers": workers,
        "splits": splits,
        "shuffle": shuffle,
        "samples_per_epoch": samples_per_epoch,
        "skip_missing_shards": skip_missing_shards,
        "max_steps": max_steps,
        "checkpoint_every_steps": checkpoint_every,
        "checkpoint_every_epochs": checkpoint_every_epochs,
        "seed": seed,
        "device": device,
        "probe": probe,
        "probe_data": probe_data,
        "probe_variant": probe_variant,
        "probe_per_category": probe_per_category,
        "probe_every": probe_every,
        "probe_split": probe_split,
        "probe_protocol": probe_protocol,
        "global_negatives": global_negatives,
        "sync_bn": sync_bn,
        "tensorboard": tensorboard,
        "channels_last": channels_last,
        "compile": compile_models,
    }
    pretrain_from_options(
        shards,
        out,
        overrides,
        config_file=config_file,
        replay_release=replay_release,
        resume=resume,
        resume_auto=resume_auto,
        json_path=json_path,
    )
