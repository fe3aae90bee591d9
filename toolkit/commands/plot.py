"""``xpt plot``: training curves of one or several pretraining runs, side by side."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def plot(
    runs: Annotated[
        list[Path], typer.Argument(help="Pretraining run folders (with metrics.jsonl).")
    ],
    out: Annotated[Path, typer.Option(help="The PNG to write.")] = Path("curves.png"),
) -> None:
    """Draw loss, IMID, CMID, learning rate and probe accuracy of RUNS into one PNG.

    Each run is a line in every panel, so ablations compare at a glance. `xpt pretrain` also
    writes RUN/curves.png for its own run at every epoch end.
    """
    from xpt.toolkit.console import err, error_exit
    from xpt.train.curves import write_curves

    try:
        written = write_curves(list(runs), out)
    except FileNotFoundError as error:
        raise error_exit(str(error)) from error
    err.print(
        f"curves of {len(runs)} run(s) written to {written}",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )
