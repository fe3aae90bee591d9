"""``xpt demo``: the whole pipeline on a small procedural set, on CPU, in a few minutes.

Each stage calls the same library code as its own command, on the outputs of the
stage before, so the demo is also an end-to-end check of the data contracts:
synth writes a ShapeNet-v2 tree, render reads it back through the ShapeNet reader,
shard samples points in the frame the renders recorded, pretrain streams the shards.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from xpt.toolkit.console import out, print_table

if TYPE_CHECKING:
    from xpt.train.config import PretrainConfig


@dataclass(frozen=True)
class DemoConfig:
    """Sizes of the demo run; the defaults finish in a few minutes on two CPU cores."""

    out: Path
    per_category: int = 3
    seed: int = 0
    workers: int = 2
    points: int = 1024
    epochs: int = 10

    @property
    def meshes(self) -> Path:
        return self.out / "meshes"

    @property
    def renders(self) -> Path:
        return self.out / "renders"

    @property
    def shards(self) -> Path:
        return self.out / "shards"

    @property
    def run(self) -> Path:
        return self.out / "pretrain"


def _stage(title: str) -> None:
    out.rule(f"[bold]{title}")


def synth_stage(config: DemoConfig) -> None:
    from xpt.toolkit.synth import SynthConfig, print_summary, synthesize

    _stage(f"1. synth: the procedural library as a ShapeNet-v2 tree → {config.meshes}")
    print_summary(synthesize(SynthConfig(config.meshes, config.per_category, seed=config.seed)))


def render_stage(config: DemoConfig) -> None:
    from xpt.render.config import RenderConfig
    from xpt.render.pool import run_render

    preview = config.out / "renders-preview.png"
    _stage(f"2. render: 24 views per object, 137 px (3D-R2N2 rig) → {config.renders}")
    summary = run_render(
        config.meshes,
        config.renders,
        RenderConfig(seed=config.seed),
        workers=config.workers,
        preview=preview,
    )
    rows = {k: v for k, v in summary.to_json().items() if k != "failures"}
    print_table("xpt render", {**rows, "preview": str(preview)})


def shard_stage(config: DemoConfig) -> None:
    from xpt.toolkit.shards.build import ShardConfig, run_shard
    from xpt.toolkit.shards.inspect import category_rows, summarize, write_preview

    preview = config.out / "shards-preview.png"
    _stage(f"3. shard: {config.points} points + the views per object → {config.shards}")
    shard_config = ShardConfig(
        out=config.shards,
        source=str(config.meshes),
        renders=config.renders,
        num_points=config.points,
        seed=config.seed,
        workers=config.workers,
    )
    print_table("xpt shard", run_shard(shard_config).summary())
    print_table("xpt inspect", summarize(config.shards))
    print_table("categories", category_rows(config.shards))
    write_preview(config.shards, preview)
    out.print(f"views next to their point clouds: {preview}")


def pretrain_config(config: DemoConfig) -> PretrainConfig:
    """The paper's method and optimiser at CPU-demo sizes (fewer points, a light image
    encoder at 64 px, a narrower DGCNN); everything else keeps the paper's defaults."""
    from xpt.train.config import PretrainConfig

    return PretrainConfig(
        image_encoder="resnet18",
        epochs=config.epochs,
        batch_size=12,
        points=256,
        k=10,
        emb_dims=128,
        image_size=64,
        device="cpu",
        workers=0,
        seed=config.seed,
        shuffle_buffer=64,
        checkpoint_every_epochs=config.epochs,
        log_every_steps=3,
    )


def epoch_losses(run: Path) -> list[dict]:
    """Mean loss, IMID and CMID per epoch from ``metrics.jsonl``."""
    sums: dict[int, dict[str, float]] = {}
    for line in (run / "metrics.jsonl").read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        acc = sums.setdefault(row["epoch"], {"steps": 0, "loss": 0.0, "imid": 0.0, "cmid": 0.0})
        acc["steps"] += 1
        for name in ("loss", "imid", "cmid"):
            acc[name] += row[name]
    return [
        {"epoch": epoch, **{k: acc[k] / acc["steps"] for k in ("loss", "imid", "cmid")}}
        for epoch, acc in sorted(sums.items())
    ]


def pretrain_stage(config: DemoConfig) -> None:
    from xpt.train.loop import pretrain

    train = pretrain_config(config)
    _stage(
        f"4. pretrain: CrossPoint, DGCNN + ResNet-18, {train.epochs} epochs on CPU → {config.run}"
    )
    finished = (config.run / "last.pt").exists()
    if not finished:
        print_table("xpt pretrain", pretrain(train, config.shards, config.run))
    rows = epoch_losses(config.run)
    print_table("loss per epoch (IMID + CMID)", rows)
    first, last = rows[0]["loss"], rows[-1]["loss"]
    out.print(f"loss {first:.3f} → {last:.3f} over {len(rows)} epochs; checkpoints in {config.run}")


def run_demo(config: DemoConfig) -> None:
    """Run every stage in turn under ``config.out``; finished stages resume instantly."""
    synth_stage(config)
    render_stage(config)
    shard_stage(config)
    pretrain_stage(config)
