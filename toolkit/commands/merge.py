"""``xpt merge``: the part sets of one ``xpt shard --part i/n`` job array -> one shard set."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def merge(
    parts: Annotated[
        list[Path],
        typer.Argument(
            help="The part folders (OUT/part-III-of-NNN ...), or the OUT folder holding them.",
            show_default=False,
            metavar="PARTS",
        ),
    ],
    out: Annotated[
        Path, typer.Option("--out", help="The merged shard set (a new or empty folder).")
    ],
    json_path: Annotated[
        Path | None, typer.Option("--json", help="Write the summary as JSON ('-' for stdout).")
    ] = None,
) -> None:
    """Merge the parts of a partitioned `xpt shard` run into one shard set.

    Shards are hard-linked under new names (no tar data is copied; a copy only where a
    link is impossible, e.g. across file systems), failures.jsonl files are merged, and a
    manifest for the whole set is written, which `xpt verify` checks. The samples equal an
    unpartitioned run's; their order is the parts' order (part 0 first). Refuses parts that
    are incomplete, missing, overlapping or made with different settings.
    """
    from rich.markup import escape

    from xpt.toolkit.console import err, error_exit, print_table, write_json_report
    from xpt.toolkit.fsio import check_writable
    from xpt.toolkit.shards.merge import MergeError, merge_parts

    check_writable(json_path)
    try:
        result = merge_parts(parts, out)
    except MergeError as error:
        raise error_exit(str(error)) from None
    if str(json_path) != "-":  # stdout then carries the JSON alone
        print_table("xpt merge", result.summary())
    if result.copied:
        err.print(
            f"[yellow]note[/yellow] {result.copied} shards copied: {escape(str(out))} is on "
            "another file system than the parts (hard links need the same one)",
            highlight=False,
            soft_wrap=True,
        )
    write_json_report(json_path, {**result.summary(), "manifest": result.manifest})
