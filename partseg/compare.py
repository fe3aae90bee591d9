"""Pretrained beside random init: fine-tuning runs over initialisations and seeds, summarised.

``OUT/pretrained/seed0``, ``OUT/random-init/seed0``, ... are one :func:`finetune` run each
(resumable one by one: a finished run is read back, not trained again); ``OUT/partseg.json``
holds every run's result and the summary (mean, population std and every seed's figure per
arm, the paired margin), ``OUT/partseg.png`` test shapes coloured by predicted and true part.
No part-segmentation figure of CrossPoint's is recorded in ../shared/reference, so the
paper's column is a dash.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from xpt.partseg.config import FinetuneConfig, card
from xpt.partseg.data import PartSet, is_standard
from xpt.partseg.finetune import RESULT_FILE, finetune
from xpt.toolkit.console import err
from xpt.toolkit.fsio import atomic_write_json

REPORT_FILE = "partseg.json"
PICTURE_FILE = "partseg.png"


@dataclass(frozen=True)
class Arm:
    """One initialisation: a checkpoint's encoder, or random weights (``checkpoint`` None)."""

    name: str
    checkpoint: Path | None


def arms(checkpoint: Path | None, baseline: bool) -> list[Arm]:
    """The pretrained arm (with a checkpoint), and the random-init one beside it unless
    ``baseline`` is False; random init alone without a checkpoint."""
    found = [Arm("pretrained", checkpoint)] if checkpoint is not None else []
    if baseline or checkpoint is None:
        found.append(Arm("random-init", None))
    return found


def run_arms(
    config: FinetuneConfig,
    part_set: PartSet,
    out: Path,
    chosen: Sequence[Arm],
    seeds: Sequence[int],
    resume: bool = False,
) -> dict[str, Any]:
    """Every (arm, seed) run in turn, then the report (``OUT/partseg.json``)."""
    runs: dict[str, list[dict[str, Any]]] = {}
    for arm in chosen:
        for seed in seeds:
            run_dir = out / arm.name / f"seed{seed}"
            done = run_dir / RESULT_FILE
            if resume and done.exists():
                result = json.loads(done.read_text(encoding="utf-8"))
            else:
                err.print(f"fine-tuning from {arm.name}, seed {seed} -> {run_dir}", markup=False)
                result = finetune(
                    replace(config, seed=seed), part_set, run_dir, checkpoint=arm.checkpoint,
                    resume="auto" if resume else False,
                )  # fmt: skip
            result["run_dir"] = str(run_dir)
            runs.setdefault(arm.name, []).append(result)
    report = summarise(config, part_set, runs)
    atomic_write_json(out / REPORT_FILE, report)
    return report


def _spread(values: Sequence[float]) -> dict[str, Any]:
    array = np.asarray(values, dtype=np.float64)
    return {
        "mean": float(array.mean()),
        "std": float(array.std()),
        "runs": [float(v) for v in array],
    }


def summarise(
    config: FinetuneConfig, part_set: PartSet, runs: dict[str, list[dict[str, Any]]]
) -> dict[str, Any]:
    """Per arm: test instance and class mIoU over seeds, per-category IoU means, the
    selected epochs; the paired margin of pretrained over random init when both ran."""
    arms_out = {}
    for name, results in runs.items():
        tests = [r["test"] for r in results]
        arms_out[name] = {
            "init": results[0]["init"],
            "seeds": [r["seed"] for r in results],
            "instance_miou": _spread([t["instance_miou"] for t in tests]),
            "class_miou": _spread([t["class_miou"] for t in tests]),
            "per_category": {
                category: float(np.mean([t["per_category"][category] for t in tests]))
                for category in tests[0]["per_category"]
            },
            "selected_epochs": [r["selected_epoch"] for r in results],
            "run_dirs": [r["run_dir"] for r in results],
        }
    report: dict[str, Any] = {
        "task": "partseg",
        "dataset": part_set.name,
        "data": part_set.source,
        "standard": is_standard(part_set),  # None: a set named as no published one
        "shapes": {split: len(data) for split, data in part_set.splits.items()},
        "categories": list(part_set.categories),
        "label_fraction": config.label_fraction,
        "card": card(config),
        "paper": None,  # no CrossPoint part-segmentation figure is recorded
        "arms": arms_out,
        "runs": runs,
    }
    if "pretrained" in runs and "random-init" in runs:
        pairs = zip(runs["pretrained"], runs["random-init"], strict=True)
        report["margin"] = _spread(
            [p["test"]["instance_miou"] - r["test"]["instance_miou"] for p, r in pairs]
        )
    return report


def table_rows(report: dict[str, Any]) -> list[dict[str, str]]:
    """One row per arm: instance and class mIoU (mean ± std over seeds), the paper's dash."""
    rows = []
    for name, arm in report["arms"].items():
        instance, klass = arm["instance_miou"], arm["class_miou"]
        rows.append(
            {
                "init": name,
                "seeds": ", ".join(str(s) for s in arm["seeds"]),
                "instance_mIoU": _pm(instance),
                "class_mIoU": _pm(klass),
                "selected_epochs": ", ".join(str(e) for e in arm["selected_epochs"]),
                "paper": "-",
            }
        )
    return rows


def category_rows(report: dict[str, Any]) -> list[dict[str, str]]:
    """Per-category test IoU (mean over seeds) of every arm, one row per category."""
    names = list(report["arms"])
    categories = list(report["arms"][names[0]]["per_category"])
    return [
        {"category": c, **{n: f"{100 * report['arms'][n]['per_category'][c]:.1f}" for n in names}}
        for c in categories
    ]


def _pm(spread: dict[str, Any]) -> str:
    return f"{100 * spread['mean']:.1f} ± {100 * spread['std']:.1f}"
