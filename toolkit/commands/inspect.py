"""``xpt inspect``: summary table of a shard set, optional preview sheet."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def inspect(
    directory: Annotated[Path, typer.Argument(help="A shard folder (or one holding part-* sets).")],
    preview: Annotated[
        Path | None,
        typer.Option(help="Write a PNG sheet: a few samples' views next to their point clouds."),
    ] = None,
    samples: Annotated[int, typer.Option(help="Samples in the preview.")] = 6,
    json_path: Annotated[
        Path | None, typer.Option("--json", help="Write the summary as JSON ('-' for stdout).")
    ] = None,
) -> None:
    """Summarise a shard set: samples, categories, bytes, views and points per sample."""
    from xpt.toolkit.console import err, print_table, write_json_report
    from xpt.toolkit.shards.inspect import category_rows, summarize, write_preview
    from xpt.toolkit.shards.manifest import ManifestError, find_shard_sets

    sets = find_shard_sets(directory)
    if not sets:
        err.print(
            f"[red]error[/red] {directory}: no manifest.json (not a shard set)",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(code=1)
    try:
        summaries = [summarize(folder) for folder in sets]
        categories = [row for folder in sets for row in category_rows(folder)]
        if str(json_path) != "-":  # stdout then carries the JSON alone
            for summary in summaries:
                print_table("xpt inspect", summary)
            if categories:
                print_table("categories", categories)
        if preview is not None:
            write_preview(sets[0], preview, samples=samples)
            err.print(f"preview written to {preview}", highlight=False, soft_wrap=True)
    except (ManifestError, ValueError, OSError) as error:
        err.print(f"[red]error[/red] {error}", highlight=False, soft_wrap=True)
        raise typer.Exit(code=1) from error
    write_json_report(json_path, {"sets": summaries, "categories": categories})
