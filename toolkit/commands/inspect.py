"""``xpt inspect``: summary table of a shard set, optional preview sheet."""

from __future__ import annotations

import tarfile
from pathlib import Path
from typing import Annotated

import typer


def inspect(
    spec: Annotated[
        str,
        typer.Argument(
            help="A local shard folder (or one holding part-* sets).",
            show_default=False,
            metavar="DIRECTORY",
        ),
    ],
    preview: Annotated[
        Path | None,
        typer.Option(help="Write a PNG sheet: a few samples' views next to their point clouds."),
    ] = None,
    samples: Annotated[int, typer.Option(help="Samples in the preview.")] = 6,
    json_path: Annotated[
        Path | None, typer.Option("--json", help="Write the summary as JSON ('-' for stdout).")
    ] = None,
) -> None:
    """Summarise a shard set: samples, categories, bytes, views and points per sample.

    Also checks that every shard file the manifest lists exists with its recorded size
    (exit 1 naming each that does not); `xpt verify` reads and checks the contents.
    """
    from rich.markup import escape

    from xpt.toolkit.console import err, error_exit, print_table, write_json_report
    from xpt.toolkit.fsio import check_writable
    from xpt.toolkit.shards.inspect import (
        category_rows,
        shard_file_problems,
        summarize,
        write_preview,
    )
    from xpt.toolkit.shards.manifest import ManifestError, find_shard_sets
    from xpt.toolkit.shards.remote import is_remote, local_only

    if is_remote(spec):
        raise error_exit(local_only(spec, "inspect"))
    directory = Path(spec)

    if not directory.exists():
        raise error_exit(f"{directory}: no such file or folder")
    if not directory.is_dir():
        raise error_exit(f"{directory}: a file, not a shard folder")
    sets = find_shard_sets(directory)
    if not sets:
        raise error_exit(f"{directory}: no manifest.json (not a shard set)")
    check_writable(preview, json_path)
    try:
        summaries = [summarize(folder) for folder in sets]
        categories = [row for folder in sets for row in category_rows(folder)]
        problems = [problem for folder in sets for problem in shard_file_problems(folder)]
        if str(json_path) != "-":  # stdout then carries the JSON alone
            for summary in summaries:
                print_table("xpt inspect", summary)
            if categories:
                print_table("categories", categories)
        if preview is not None:
            write_preview(sets[0], preview, samples=samples)
            err.print(
                f"preview written to {preview}", markup=False, highlight=False, soft_wrap=True
            )
    except (ManifestError, ValueError, EOFError) as error:  # (OSError: see xpt.toolkit.cli)
        raise error_exit(str(error)) from error
    except tarfile.TarError as error:
        raise error_exit(f"{directory}: damaged shard ({error}); run `xpt verify`") from error
    write_json_report(
        json_path, {"sets": summaries, "categories": categories, "problems": problems}
    )
    for problem in problems:
        err.print(f"[red]damaged[/red] {escape(str(problem))}", highlight=False, soft_wrap=True)
    if problems:
        raise error_exit(
            f"{directory}: {len(problems)} shard file(s) damaged; `xpt verify` checks contents"
        )
