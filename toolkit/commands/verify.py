"""``xpt verify``: re-read a shard set and report every problem by name."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def verify(
    spec: Annotated[
        str,
        typer.Argument(
            help="A local shard folder (or one holding part-* sets).",
            show_default=False,
            metavar="DIRECTORY",
        ),
    ],
    json_path: Annotated[
        Path | None, typer.Option("--json", help="Write the report as JSON ('-' for stdout).")
    ] = None,
) -> None:
    """Check checksums, counts and sample schema of every shard; exit 1 on any problem."""

    from xpt.toolkit.console import error_exit, print_table, write_json_report
    from xpt.toolkit.fsio import check_writable
    from xpt.toolkit.shards.manifest import find_shard_sets
    from xpt.toolkit.shards.remote import is_remote, local_only
    from xpt.toolkit.shards.verify import verify_shards

    if is_remote(spec):
        raise error_exit(local_only(spec, "verify"))
    directory = Path(spec)

    if not directory.is_dir():
        raise error_exit(f"{directory}: not a folder")
    check_writable(json_path)  # now, not after reading every shard
    sets = find_shard_sets(directory) or [directory]
    reports = [verify_shards(folder) for folder in sets]
    problems = [
        {"set": str(r.directory), "file": p.name, "problem": p.reason}
        for r in reports
        for p in r.problems
    ]
    if str(json_path) != "-":  # stdout then carries the JSON alone
        print_table(
            "xpt verify",
            [
                {
                    "set": str(r.directory),
                    "shards": r.shards,
                    "samples": r.samples,
                    "bytes": r.bytes,
                    "problems": len(r.problems),
                    "status": "ok" if r.ok else "FAILED",
                }
                for r in reports
            ],
        )
        if problems:
            print_table("problems", problems)
    write_json_report(json_path, {"ok": not problems, "sets": [r.to_json() for r in reports]})
    if problems:
        raise typer.Exit(code=1)
