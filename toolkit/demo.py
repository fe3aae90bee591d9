"""``xpt demo``: the whole pipeline on a small procedural set, on CPU, in a few minutes.

Each stage calls the same library code as its own command, on the outputs of the
stage before, so the demo is also an end-to-end check of the data contracts.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from xpt.toolkit.console import out


@dataclass(frozen=True)
class DemoConfig:
    """Sizes of the demo run; the defaults finish in a few minutes on two CPU cores."""

    out: Path
    per_category: int = 3
    seed: int = 0


def _stage(title: str) -> None:
    out.rule(f"[bold]{title}")


def run_demo(config: DemoConfig) -> None:
    """Run every stage in turn under ``config.out``; finished stages resume instantly."""
    from xpt.toolkit.synth import SynthConfig, print_summary, synthesize

    meshes = config.out / "meshes"
    _stage(f"1. synth: the procedural library as a ShapeNet-v2 tree → {meshes}")
    print_summary(synthesize(SynthConfig(meshes, config.per_category, seed=config.seed)))
