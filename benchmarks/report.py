"""The outputs of ``xpt benchmark``: rich tables, the ``--json`` report and the picture.

Every output starts from the protocol card. Tables show percentages as mean ± std over
a row's runs, the random-init and hand-crafted baselines under the pretrained encoder,
and the paper's figure where one is recorded (a dash otherwise, never a guess). The JSON
holds every number a table shows plus every single run, the card, the seeds, the
checkpoint's sha256 and each dataset's fingerprint.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from xpt import __version__
from xpt.benchmarks.run import PRETRAINED, RANDOM_INIT, BenchmarkReport, DatasetResult, RowResult

DASH = "–"


def percent(summary: dict[str, Any] | None) -> str:
    """``87.4 ± 0.5`` from a :func:`~xpt.benchmarks.run.spread` of fractions (no ± for one run)."""
    if summary is None:
        return DASH
    text = f"{100 * summary['mean']:.1f}"
    return text + (f" ± {100 * summary['std']:.1f}" if summary["n"] > 1 else "")


def fewshot_names(result: DatasetResult) -> list[str]:
    names: dict[str, None] = {}
    for row in result.rows:
        names.update(dict.fromkeys(row.fewshot))
        names.update(dict.fromkeys(row.fewshot_errors))
    return list(names)


def _encoder_name(row: RowResult) -> str:
    return f"{row.name} x{len(row.encoders)}" if len(row.encoders) > 1 else row.name


def _paper_name(result: DatasetResult) -> str:
    confirmed = result.paper["confirmed"] in (True, None)
    return "paper (release protocol)" + ("" if confirmed else ", unconfirmed")


def linear_rows(result: DatasetResult) -> list[dict[str, str]]:
    """The linear-SVM table of one dataset, as printed (percent strings)."""
    rows = []
    for row in result.rows:
        linear = row.linear_summary()
        if linear is None:
            continue
        rows.append(
            {
                "encoder": _encoder_name(row),
                "overall_acc_pct": percent(linear["accuracy"]),
                "mean_class_acc_pct": percent(linear["class_accuracy"]),
                "c": ", ".join(f"{c:g}" for c in linear["C"]),
            }
        )
    if rows:
        figure = result.paper["linear_accuracy_percent"]
        rows.append(
            {
                "encoder": _paper_name(result),
                "overall_acc_pct": DASH if figure is None else f"{figure:.1f}",
                "mean_class_acc_pct": DASH,
                "c": DASH,
            }
        )
    return rows


def fewshot_rows(result: DatasetResult, protocol_std: str) -> list[dict[str, str]]:
    """The few-shot table of one dataset (mean ± std over episodes), as printed."""
    settings = fewshot_names(result)
    if not settings:
        return []
    rows = []
    for row in result.rows:
        summary = row.fewshot_summary(protocol_std)
        cells = {"encoder": _encoder_name(row)}
        for name in settings:
            unavailable = name in row.fewshot_errors
            cells[f"{name}_pct"] = "n/a" if unavailable else percent(summary.get(name))
        rows.append(cells)
    rows.append({"encoder": _paper_name(result), **{f"{name}_pct": DASH for name in settings}})
    return rows


def variant_rows(results: list[DatasetResult]) -> list[dict[str, str]]:
    """Linear overall accuracy per encoder and dataset variant, side by side."""
    rows: dict[str, dict[str, str]] = {}
    for result in results:
        column = result.dataset["variant"] or result.dataset["name"]
        for row in result.rows:
            linear = row.linear_summary()
            cells = rows.setdefault(row.name, {"encoder": _encoder_name(row)})
            cells[f"{column} %"] = percent(linear["accuracy"] if linear else None)
    return list(rows.values())


def margin_line(result: DatasetResult) -> str | None:
    """``pretrained − random init`` in linear OA, with the random-init spread beside it."""
    rows = {row.name: row.linear_summary() for row in result.rows}
    if not rows.get(PRETRAINED) or not rows.get(RANDOM_INIT):
        return None
    ours, base = rows[PRETRAINED]["accuracy"], rows[RANDOM_INIT]["accuracy"]
    margin = 100 * (ours["mean"] - base["mean"])
    best_random = 100 * max(base["runs"])
    return (
        f"linear OA margin over random init: {margin:+.1f} points (random init: "
        f"{100 * base['mean']:.1f} ± {100 * base['std']:.1f} over {base['n']} runs, "
        f"best {best_random:.1f})"
    )


def print_report(report: BenchmarkReport) -> None:
    """The card, the encoder and one table per dataset, to stdout."""
    from rich.markup import escape

    from xpt.toolkit.console import out, summary_table

    card = report.config.protocol
    for line in card.lines():
        out.print(escape(line), highlight=False)
    arch = report.architecture
    encoder = report.encoder.label if report.encoder else "none (random init only)"
    out.print(
        escape(
            f"encoder: {encoder}; {arch['backbone']} (k={arch['k']}, emb_dims={arch['emb_dims']}); "
            f"evaluation seeds {', '.join(map(str, report.config.seeds))}"
        ),
        highlight=False,
    )
    for note in report.notes:
        out.print(f"[yellow]note[/yellow] {escape(note)}", highlight=False)
    if len(report.results) > 1 and "linear" in report.config.tasks:
        out.print(
            summary_table(
                "linear SVM overall accuracy by dataset variant", variant_rows(report.results)
            )
        )
    for result in report.results:
        data = result.dataset
        title = (
            f"{data['title']}: {data['train']} train / {data['test']} test, "
            f"{data['classes']} classes, protocol {card.name}"
        )
        if "linear" in report.config.tasks:
            out.print(summary_table(f"{title}: linear SVM", linear_rows(result)))
            line = margin_line(result)
            if line:
                out.print(escape(line), highlight=False)
        if "fewshot" in report.config.tasks:
            out.print(summary_table(f"{title}: few-shot", fewshot_rows(result, card.fewshot.std)))
        legend = "; ".join(f"{_encoder_name(row)} = {row.label}" for row in result.rows)
        out.print(f"[dim]{escape(legend)}[/dim]", highlight=False)
        for note in data["notes"]:
            out.print(f"[dim]{escape(note)}[/dim]", highlight=False)


def _row_json(row: RowResult, protocol_std: str) -> dict[str, Any]:
    linear = row.linear_summary()
    return {
        "encoder": row.name,
        "label": row.label,
        "encoders": row.encoders,
        "linear": None
        if linear is None
        else {
            "accuracy": linear["accuracy"],
            "class_accuracy": linear["class_accuracy"],
            "per_class": [None if np.isnan(a) else float(a) for a in linear["per_class"]],
            "c": linear["C"],
            "runs": [r.to_dict() for r in row.linear],
        },
        "fewshot": {
            name: {**summary, "seeds": [r.to_dict() for r in row.fewshot[name]]}
            for name, summary in row.fewshot_summary(protocol_std).items()
        },
        "fewshot_unavailable": row.fewshot_errors,
    }


def report_json(report: BenchmarkReport) -> dict[str, Any]:
    """Every number of the report (fractions, not percentages), with its card and inputs."""
    config = report.config
    card = config.protocol
    return {
        "xpt_version": __version__,
        "protocol": card.to_dict(),
        "seeds": list(config.seeds),
        "baseline_inits": config.baseline_inits,
        "tasks": list(config.tasks),
        "encoder": report.encoder.to_dict() if report.encoder else None,
        "checkpoint_sha256": report.encoder.sha256 if report.encoder else None,
        "architecture": report.architecture,
        "notes": report.notes,
        "seconds": report.seconds,
        "datasets": [
            {
                "dataset": result.dataset,
                "rows": [_row_json(row, card.fewshot.std) for row in result.rows],
                "tables": {
                    "linear": linear_rows(result),
                    "fewshot": fewshot_rows(result, card.fewshot.std),
                },
                "margin": margin_line(result),
                "paper": result.paper,
                "seconds": result.seconds,
            }
            for result in report.results
        ],
    }


def plot_paths(path: Path, report: BenchmarkReport) -> list[Path]:
    """``path`` for a single dataset, else ``<stem>-<dataset>[-<variant>].png`` per dataset."""
    if len(report.results) == 1:
        return [path]
    names = []
    for result in report.results:
        data = result.dataset
        suffix = data["name"] + (f"-{data['variant']}" if data["variant"] else "")
        names.append(path.with_name(f"{path.stem}-{suffix}{path.suffix or '.png'}"))
    return names


def write_plots(path: Path, report: BenchmarkReport) -> list[Path]:
    """One PNG per dataset: test features of the pretrained and first random-init encoder
    projected to 2-D, and the per-class linear accuracy of every row."""
    from xpt.benchmarks.plots import write_benchmark_plot

    written = []
    for target, result in zip(plot_paths(path, report), report.results, strict=True):
        panels = [
            (f"{row.name}: {row.encoders[0]['label']}", row.test_features, result.test_labels)
            for row in result.rows
            if row.encoders and row.test_features is not None
        ]
        per_class = {
            row.name: row.linear_summary()["per_class"] for row in result.rows if row.linear
        }
        if not panels or not per_class:
            continue
        title = f"{result.dataset['title']}: linear SVM, protocol {report.config.protocol.name}"
        written.append(
            write_benchmark_plot(
                target,
                panels=panels,
                class_names=result.class_names,
                per_class_accuracy=per_class,
                title=title,
            )
        )
    return written
