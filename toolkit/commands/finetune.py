"""``xpt finetune``: fine-tune a pretrained point encoder on a downstream task."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from xpt.toolkit.commands.benchmark import Protocol
from xpt.toolkit.commands.pretrain import Device


class Task(str, Enum):
    partseg = "partseg"


class PartDataset(str, Enum):
    procedural_parts = "procedural-parts"
    shapenetpart = "shapenetpart"


def finetune(
    out: Annotated[
        Path, typer.Option(help="Output folder: one run per init and seed, the report.")
    ],
    task: Annotated[Task, typer.Option(help="Downstream task.")] = Task.partseg,
    checkpoint: Annotated[
        Path | None,
        typer.Option(
            help="Pretrained dgcnn_seg encoder: an xpt checkpoint (last.pt, best.pt) or a "
            "CrossPoint release state dict; loaded strictly, what loaded and what is new said."
        ),
    ] = None,
    random_init: Annotated[
        bool, typer.Option("--random-init", help="Fine-tune from random weights only.")
    ] = False,
    baseline: Annotated[
        bool,
        typer.Option(
            help="With --checkpoint, fine-tune random init with the same seeds beside it."
        ),
    ] = True,
    dataset: Annotated[PartDataset, typer.Option(help="Part-labelled set.")] = (
        PartDataset.procedural_parts
    ),
    data: Annotated[
        Path | None,
        typer.Option(
            help="The set's folder: DGCNN's shapenet_part_seg_hdf5_data or "
            "shapenetcore_partanno_segmentation_benchmark_v0_normal for shapenetpart; for "
            "procedural-parts, `xpt synth --eval --parts` output (generated into the cache "
            "when omitted)."
        ),
    ] = None,
    protocol: Annotated[
        Protocol,
        typer.Option(
            help="xpt: select the epoch on val, report test; crosspoint: the release's recipe "
            "(train+val, selects on TEST; labelled so)."
        ),
    ] = Protocol.xpt,
    seed: Annotated[
        list[int] | None, typer.Option(help="Seed; repeat for several runs (mean ± std).")
    ] = None,
    label_fraction: Annotated[
        float | None,
        typer.Option(help="Fraction of the training shapes used, seeded, per category (0-1]."),
    ] = None,
    epochs: Annotated[int | None, typer.Option(help="Epochs (release 300).")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Shapes a step (release 8).")] = None,
    points: Annotated[int | None, typer.Option(help="Points per shape (release 2048).")] = None,
    k: Annotated[int | None, typer.Option(help="DGCNN neighbours (release 40).")] = None,
    emb_dims: Annotated[
        int | None,
        typer.Option(help="Encoder width (release 1024); a checkpoint's encoder sets its own."),
    ] = None,
    lr: Annotated[float | None, typer.Option(help="SGD learning rate (release 0.1).")] = None,
    device: Annotated[Device, typer.Option(help="Training device.")] = Device.auto,
    fast: Annotated[
        bool,
        typer.Option(
            "--fast",
            help="CPU sizes: 256 points, k 10, emb_dims 128 (without a checkpoint), 10 epochs, "
            "batch 16, procedural-parts at 24 objects per category: 1-2 minutes a run on 2 cores.",
        ),
    ] = False,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue the runs in --out; finished ones are read.")
    ] = False,
    json_path: Annotated[
        str | None, typer.Option("--json", help="Also write the report as JSON ('-': stdout).")
    ] = None,
) -> None:
    """Fine-tune a pretrained encoder for part segmentation and compare it with random init.

    Trains the DGCNN part-segmentation network (the CrossPoint release's, k=40, SGD, cosine,
    300 epochs by default) from a dgcnn_seg checkpoint and from random weights for each seed;
    reports test instance and class mIoU and per-category IoU under a protocol card, and draws
    test shapes coloured by predicted and true part.
    """
    from xpt.partseg.run import finetune_from_options
    from xpt.toolkit.console import error_exit

    if (checkpoint is None) != random_init:
        raise error_exit("give --checkpoint CKPT or --random-init (one of them)")
    options = {
        "task": task.value,
        "dataset": dataset.value,
        "protocol": protocol.value,
        "label_fraction": label_fraction,
        "epochs": epochs,
        "batch_size": batch_size,
        "points": points,
        "k": k,
        "emb_dims": emb_dims,
        "lr": lr,
        "device": device.value,
    }
    finetune_from_options(
        options,
        data=data,
        out=out,
        checkpoint=checkpoint,
        baseline=baseline,
        seeds=seed or [0],
        fast_sizes=fast,
        resume=resume,
        json_path=json_path,
    )
