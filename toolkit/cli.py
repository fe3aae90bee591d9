"""The ``xpt`` command line.

Each command lives in its own module under ``xpt.toolkit.commands``; those modules
import only typer and the standard library at top level, and import the heavy
machinery (trimesh, pyrender, torch) inside the command body, so ``xpt --help`` and
``xpt --version`` stay instant.
"""

from __future__ import annotations

import errno
import functools
import os
from collections.abc import Callable
from typing import Any

import typer

from xpt import __version__
from xpt.toolkit.commands import (
    benchmark,
    demo,
    export,
    finetune,
    inspect,
    merge,
    plot,
    pretrain,
    render,
    shard,
    synth,
    verify,
)

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


def os_error_line(error: OSError) -> str:
    """``<path>: <reason>`` (or the reason alone) for an ``OSError``; "Not a directory" says
    which file is in the way (``out/x: out is a file, not a folder``)."""
    from xpt.toolkit.fsio import not_a_folder

    reason = error.strerror or str(error)
    if error.errno == errno.ENOTDIR and error.filename is not None and error.filename2 is None:
        reason = not_a_folder(os.fsdecode(error.filename)) or reason
    paths = [os.fsdecode(p) for p in (error.filename, error.filename2) if p is not None]
    return ": ".join([" -> ".join(paths), reason] if paths else [reason])


def guarded(command: Callable[..., Any]) -> Callable[..., Any]:
    """``command`` with the last line of defence every command shares: an ``OSError``
    nobody handled (an output that cannot be written, an input that cannot be read)
    becomes ``error <path>: <reason>`` and exit 1, and Ctrl-C / SIGTERM one line and
    exit 130 / 143, never a traceback."""
    from xpt.toolkit.interrupts import Interrupted

    @functools.wraps(command)
    def run(*args: Any, **kwargs: Any) -> Any:
        from rich.markup import escape

        from xpt.toolkit.console import err, error_exit

        try:
            return command(*args, **kwargs)
        except OSError as error:
            raise error_exit(os_error_line(error)) from None
        except Interrupted as stopped:
            err.print(escape(str(stopped)), highlight=False, soft_wrap=True)
            raise typer.Exit(code=stopped.exit_code) from None
        except KeyboardInterrupt:
            err.print("interrupted", highlight=False)
            raise typer.Exit(code=130) from None

    return run


# In pipeline order, which is the order `xpt --help` lists them in.
app.command("synth")(guarded(synth.synth))
app.command("render")(guarded(render.render))
app.command("shard")(guarded(shard.shard))
app.command("merge")(guarded(merge.merge))
app.command("verify")(guarded(verify.verify))
app.command("inspect")(guarded(inspect.inspect))
app.command("pretrain", cls=pretrain.PretrainCommand)(guarded(pretrain.pretrain))
app.command("benchmark")(guarded(benchmark.benchmark))
app.command("finetune")(guarded(finetune.finetune))
app.command("export")(guarded(export.export))
app.command("plot")(guarded(plot.plot))
app.command("demo")(guarded(demo.demo))


def main() -> None:
    app()
