"""``xpt synth``: write the procedural shape library as a ShapeNet-v2-like tree."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def synth(
    out: Annotated[
        Path, typer.Argument(help="Output folder (created; an existing one is resumed).")
    ],
    per_category: Annotated[
        int, typer.Option("--per-category", min=1, help="Objects per category.")
    ] = 8,
    categories: Annotated[
        str | None,
        typer.Option(help="Comma-separated category names, e.g. chair,table (default: all)."),
    ] = None,
    seed: Annotated[int, typer.Option(help="Base seed; every object derives its own from it.")] = 0,
    eval_set: Annotated[
        bool,
        typer.Option(
            "--eval",
            help="Write the evaluation set instead: wider parameter ranges, instances disjoint "
            "from pretraining, eval-only categories included.",
        ),
    ] = False,
    scan: Annotated[
        bool,
        typer.Option(
            "--scan",
            help="With --eval: write procedural-scan instead (partial, cluttered, noisy scans "
            "from rendered depth; OUT/upright and OUT/rotated in the h5 layout, "
            "OUT/preview.png; no meshes).",
        ),
    ] = False,
    parts: Annotated[
        bool,
        typer.Option(
            "--parts",
            help="With --eval: write procedural-parts instead (part-labelled clouds in "
            "ShapeNetPart's DGCNN h5 layout: OUT/hdf5_data, OUT/parts.json; no meshes).",
        ),
    ] = False,
    json_path: Annotated[
        Path | None, typer.Option("--json", help="Write the summary as JSON ('-' for stdout).")
    ] = None,
) -> None:
    """Generate procedural meshes into OUT/<category_id>/<model_id>/models/model_normalized.obj."""
    from rich.markup import escape

    from xpt.toolkit.console import err, error_exit, write_json_report
    from xpt.toolkit.fsio import check_writable
    from xpt.toolkit.synth import SynthConfig, print_summary, synthesize

    names = None
    if categories is not None:
        names = tuple(name.strip() for name in categories.split(",") if name.strip())
    if scan and not eval_set:
        raise error_exit("--scan writes an evaluation set: add --eval")
    if parts and not eval_set:
        raise error_exit("--parts writes an evaluation set: add --eval")
    if scan and parts:
        raise error_exit("--scan and --parts write different sets: give one of them")
    check_writable(json_path)  # now, not after the work (OUT is made before any object)
    if scan:
        _synth_scan(out, per_category, seed, names, json_path)
        return
    if parts:
        _synth_parts(out, per_category, seed, names, json_path)
        return
    config = SynthConfig(out, per_category, names, seed, eval_set)
    try:
        result = synthesize(config)
    except ValueError as error:
        raise error_exit(str(error)) from error
    report = result.to_json()
    if eval_set:  # the labelled h5 set (modelnet40_ply_hdf5_2048 layout) beside the meshes
        from xpt.toolkit.evalset import write_eval_set

        report["eval_h5"] = write_eval_set(out, per_category, seed, categories=names).summary()
    if str(json_path) != "-":
        print_summary(result)
        if eval_set:
            from xpt.toolkit.console import print_table

            print_table("evaluation set (modelnet40_ply_hdf5_2048 layout)", report["eval_h5"])
    if result.failed:
        where = escape(str(out / "failures.jsonl"))
        err.print(f"[red]{result.failed} objects failed[/red]; see {where}", highlight=False)
    write_json_report(json_path, report)


def _synth_scan(
    out: Path, per_category: int, seed: int, names: tuple[str, ...] | None, json_path: Path | None
) -> None:
    """``xpt synth --eval --scan``: the procedural-scan set, both variants."""
    from rich.markup import escape

    from xpt.benchmarks.scanset import write_scan_preview, write_scan_set
    from xpt.render.gl import RenderError
    from xpt.toolkit.console import err, error_exit, print_table, write_json_report

    try:
        counts = write_scan_set(
            out, per_category, seed, categories=None if names is None else list(names)
        )
        preview = write_scan_preview(out, out / "preview.png")
    except (ValueError, RenderError) as error:
        raise error_exit(str(error)) from error
    except OSError as error:
        where = error.filename or out
        raise error_exit(f"{where}: {error.strerror}") from error
    rows = [
        {"variant": variant, **split_counts, "folder": str(out / variant)}
        for variant, split_counts in counts.items()
    ]
    if str(json_path) != "-":
        print_table("procedural-scan (modelnet40_ply_hdf5_2048 layout)", rows)
        err.print(f"preview: {escape(str(preview))}", highlight=False)
    write_json_report(json_path, {"out": str(out), "variants": rows})


def _synth_parts(
    out: Path, per_category: int, seed: int, names: tuple[str, ...] | None, json_path: Path | None
) -> None:
    """``xpt synth --eval --parts``: the procedural-parts set."""
    from rich.markup import escape

    from xpt.partseg.procedural import write_parts_set
    from xpt.toolkit.console import err, error_exit, print_table, write_json_report

    try:
        summary = write_parts_set(out, per_category, seed, categories=names)
    except ValueError as error:
        raise error_exit(str(error)) from error
    except OSError as error:
        where = error.filename or out
        raise error_exit(f"{where}: {error.strerror}") from error
    if str(json_path) != "-":
        print_table("procedural-parts (shapenet_part_seg_hdf5_data layout)", summary)
        failed = summary["failed"]
        if failed:
            where = escape(str(out / "failures.jsonl"))
            err.print(f"[red]{failed} objects failed[/red]; see {where}", highlight=False)
    write_json_report(json_path, summary)
