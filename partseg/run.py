"""``xpt finetune --task partseg``: options to a config, the data, the runs, the report."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from xpt.partseg.compare import (
    PICTURE_FILE,
    arms,
    category_rows,
    run_arms,
    table_rows,
)
from xpt.partseg.config import FAST_PER_CATEGORY, FinetuneConfig, fast
from xpt.partseg.data import PartSet, load_part_set
from xpt.partseg.finetune import PREDICTIONS_FILE
from xpt.partseg.pictures import write_partseg_picture


def finetune_config(
    options: dict[str, Any], *, fast_sizes: bool, checkpoint: Path | None
) -> FinetuneConfig:
    """The run's settings: the release's defaults, ``--fast`` sizes, then the options given
    (None: not given); ``emb_dims`` is the checkpoint encoder's."""
    config = FinetuneConfig()
    if fast_sizes:
        config = fast(config)
    config = replace(
        config, **{name: value for name, value in options.items() if value is not None}
    )
    if checkpoint is not None:
        from xpt.partseg.weights import encoder_emb_dims

        width = encoder_emb_dims(checkpoint)
        if options.get("emb_dims") not in (None, width):
            raise ValueError(
                f"--emb-dims {options['emb_dims']}: {checkpoint} holds an encoder of width "
                f"{width}; leave --emb-dims out to use it"
            )
        config = replace(config, emb_dims=width)
    return config


def with_data(config: FinetuneConfig, part_set: PartSet) -> FinetuneConfig:
    """``config`` with the data's category and part counts (the network's widths)."""
    return replace(config, parts=part_set.num_parts, categories=len(part_set.categories))


def finetune_from_options(
    options: dict[str, Any],
    *,
    data: Path | None,
    out: Path,
    checkpoint: Path | None,
    baseline: bool,
    seeds: list[int],
    fast_sizes: bool,
    resume: bool,
    json_path: str | None,
) -> None:
    """Resolve, read the data, fine-tune every (init, seed), print and write the report;
    user errors exit 1 in one line."""
    from xpt.partseg.data import PartSetError
    from xpt.partseg.weights import WeightsError
    from xpt.toolkit.console import error_exit, write_json_report
    from xpt.toolkit.fsio import check_writable, make_folder, removed_if_left_empty
    from xpt.train.checkpoint import CheckpointError
    from xpt.train.errors import TrainingError

    try:
        config = finetune_config(options, fast_sizes=fast_sizes, checkpoint=checkpoint)
        with removed_if_left_empty(out):
            make_folder(out)
            check_writable(json_path)
            part_set = load_part_set(
                config.dataset, data, points=config.points, seed=config.seed,
                per_category=FAST_PER_CATEGORY if fast_sizes else None,
            )  # fmt: skip
            config = with_data(config, part_set)
            _say_data(part_set)
            report = run_arms(config, part_set, out, arms(checkpoint, baseline), seeds, resume)
    except (ValueError, TrainingError, CheckpointError, PartSetError, WeightsError) as error:
        raise error_exit(str(error)) from error
    report["picture"] = str(_picture(out, part_set, report, config.points))
    _print(report)
    write_json_report(json_path, report)


def _say_data(part_set: PartSet) -> None:
    from xpt.partseg.data import standard_note
    from xpt.toolkit.console import err

    sizes = " / ".join(f"{len(split)} {name}" for name, split in part_set.splits.items())
    err.print(
        f"data: {part_set.name} ({part_set.source}): {sizes} shapes, "
        f"{len(part_set.categories)} categories, {part_set.num_parts} part ids",
        markup=False,
    )
    note = standard_note(part_set)
    if note:
        err.print(f"note {note}", markup=False)


def _picture(out: Path, part_set: PartSet, report: dict[str, Any], points: int) -> Path:
    """Test shapes coloured by true part and by each arm's first seed's prediction."""
    predictions = {
        name: np.load(Path(arm["run_dirs"][0]) / PREDICTIONS_FILE)
        for name, arm in report["arms"].items()
    }
    return write_partseg_picture(out / PICTURE_FILE, part_set, predictions, points)


def _print(report: dict[str, Any]) -> None:
    from xpt.toolkit.console import err, print_table

    card = report["card"]
    standard = " (non-standard)" if report["standard"] is False else ""
    title = f"part segmentation, {report['dataset']}{standard} test split, card {card['name']}"
    title += ", SELECTED ON TEST" if card["selected_on_test"] else ""
    print_table(title, table_rows(report))
    print_table("per-category IoU % (test, mean over seeds)", category_rows(report))
    if "margin" in report:
        margin = report["margin"]
        err.print(
            f"pretrained - random init: {100 * margin['mean']:+.1f} ± {100 * margin['std']:.1f} "
            f"instance mIoU points (paired by seed: "
            + ", ".join(f"{100 * v:+.1f}" for v in margin["runs"])
            + ")",
            highlight=False,
        )
    err.print(f"card: {json.dumps(card)}", markup=False, soft_wrap=True)
    err.print(f"picture: {report['picture']}", markup=False)
