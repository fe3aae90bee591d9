"""The ``xpt`` command line.

Each command lives in its own module under ``xpt.toolkit.commands``; those modules
import only typer and the standard library at top level, and import the heavy
machinery (trimesh, pyrender, torch) inside the command body, so ``xpt --help`` and
``xpt --version`` stay instant.
"""

from __future__ import annotations

import typer

from xpt import __version__
from xpt.toolkit.commands import benchmark, demo, inspect, pretrain, render, shard, synth, verify

app = typer.Typer(
    name="xpt",
    help="Cross-modal self-supervised 3D learning: meshes → renders + point clouds → "
    "WebDataset shards → CrossPoint pretraining → benchmarks.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"xpt {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False,
        "--version",
        help="Print the version and exit.",
        callback=_print_version,
        is_eager=True,
    ),
) -> None:
    """Cross-modal self-supervised 3D learning (CrossPoint)."""


# In pipeline order, which is the order `xpt --help` lists them in.
app.command("synth")(synth.synth)
app.command("render")(render.render)
app.command("shard")(shard.shard)
app.command("verify")(verify.verify)
app.command("inspect")(inspect.inspect)
app.command("pretrain")(pretrain.pretrain)
app.command("benchmark")(benchmark.benchmark)
app.command("demo")(demo.demo)


def main() -> None:
    app()
