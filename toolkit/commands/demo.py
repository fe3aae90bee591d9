"""``xpt demo``: run the pipeline end to end on the embedded procedural library."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def demo(
    out: Annotated[Path, typer.Option(help="Folder for every output of the demo.")] = Path(
        "demo-out"
    ),
    per_category: Annotated[
        int, typer.Option("--per-category", min=1, help="Procedural objects per category.")
    ] = 3,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes for render and shard.")] = 2,
    seed: Annotated[int, typer.Option(help="Seed for every stage.")] = 0,
) -> None:
    """Run synth → render → shard → inspect → pretrain on a small procedural set (CPU, minutes).

    Outputs land in OUT: meshes/, renders/ (+ renders-preview.png), shards/
    (+ shards-preview.png), pretrain/ (checkpoints, metrics.jsonl). Run it again to
    resume; finished stages are skipped.
    """
    from xpt.toolkit.demo import DemoConfig, run_demo

    run_demo(DemoConfig(out, per_category, seed, workers))
