"""``xpt demo``: run the pipeline end to end on the embedded procedural library."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer

from xpt.toolkit.commands.benchmark import DataFormat, UpAxis


def demo(
    out: Annotated[Path, typer.Option(help="Folder for every output of the demo.")] = Path(
        "demo-out"
    ),
    fast: Annotated[
        bool,
        typer.Option(
            "--fast", help="Toy sizes (about a minute): checks the chain, proves nothing."
        ),
    ] = False,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes for render and shard.")] = 2,
    per_category: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Procedural objects per category to pretrain on (default 100; 14 categories). "
            "Another size needs another --out.",
        ),
    ] = None,
    epochs: Annotated[
        int | None, typer.Option(min=1, help="Pretraining epochs (default 5).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed for every stage.")] = 0,
    json_path: Annotated[
        str | None,
        typer.Option("--json", help="Also write demo.json's content here ('-' for stdout)."),
    ] = None,
    eval_data: Annotated[
        Path | None,
        typer.Option(
            help="A real ModelNet10/40 point set (h5, PointNet++'s normal_resampled, or a "
            "<class>/{train,test}/ tree of point files): best.pt and the baselines are also "
            "benchmarked on it, one more row of the final table."
        ),
    ] = None,
    eval_format: Annotated[
        DataFormat | None,
        typer.Option(help="--eval-data's layout (default: detected)."),
    ] = None,
    eval_up_axis: Annotated[
        UpAxis,
        typer.Option(help="--eval-data's up axis, turned to +Y (raw ModelNet files: +Z)."),
    ] = UpAxis.pos_y,
) -> None:
    """Run synth → render → shard → eval set → pretrain (with probe) → benchmark on CPU.

    Outputs land in OUT: meshes/, renders/ (+ renders-preview.png), shards/
    (+ shards-preview.png), eval-scan/ (the procedural-scan evaluation set), pretrain/
    (checkpoints, best.pt, metrics.jsonl), benchmark.json, benchmark-*.png and demo.json
    (pretrained vs random init); with --eval-data also benchmark-real.json and its pictures.
    Run it again to resume; finished stages are skipped.
    """

    from xpt.benchmarks.datasets import DatasetError
    from xpt.benchmarks.features import EncoderError
    from xpt.benchmarks.pointsets import modelnet_name
    from xpt.toolkit.console import error_exit
    from xpt.toolkit.demo import DemoConfig, run_demo
    from xpt.toolkit.fsio import check_writable, make_folder, removed_if_left_empty
    from xpt.train.errors import TrainingError

    config = (
        DemoConfig.fast(out, seed, workers) if fast else DemoConfig(out, seed=seed, workers=workers)
    )
    sizes = {"per_category": per_category, "epochs": epochs}
    config = replace(
        config,
        **{name: value for name, value in sizes.items() if value is not None},
        eval_data=eval_data,
        eval_format=None if eval_format is None else eval_format.value,
        eval_up_axis=eval_up_axis.value,
    )
    with removed_if_left_empty(out):  # a failed start leaves no empty --out
        make_folder(out)  # before any stage: a file in the way or a read-only place fail here
        check_writable(json_path)
        try:
            if eval_data is not None:  # a wrong path fails now, not after pretraining
                modelnet_name(eval_data, config.eval_format)
            run_demo(config, json_path)
        except (DatasetError, EncoderError, TrainingError, ValueError) as error:
            raise error_exit(str(error)) from None
