"""``xpt export``: a checkpoint as a Hub-style folder (safetensors, config.json, model card)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def export(
    source: Annotated[
        Path,
        typer.Argument(
            help="A pretraining run folder (its best.pt, else last.pt), an xpt checkpoint "
            "or a CrossPoint release state dict."
        ),
    ],
    out: Annotated[Path, typer.Option(help="The folder to write (replaced if it exists).")],
    with_image: Annotated[
        bool, typer.Option("--with-image", help="Also export the image encoder.")
    ] = False,
    benchmark: Annotated[
        Path | None,
        typer.Option(help="An `xpt benchmark --json` report whose tables go into the model card."),
    ] = None,
    shards: Annotated[
        Path | None, typer.Option(help="The shard set pretraining read, summarised in the card.")
    ] = None,
) -> None:
    """Write OUT/model.safetensors, OUT/config.json and OUT/README.md (a model card).

    `xpt.load_encoder(OUT)` loads it back. Nothing is uploaded: share it with, for example,
    `huggingface-cli upload USER/NAME OUT`.
    """
    from xpt.toolkit.console import err, error_exit
    from xpt.toolkit.export import export_encoder
    from xpt.toolkit.shards.manifest import ManifestError
    from xpt.train.encoder import EncoderLoadError

    try:
        folder = export_encoder(
            source, out, with_image=with_image, benchmark=benchmark, shards=shards
        )
    except (EncoderLoadError, ManifestError, ValueError) as error:
        raise error_exit(str(error)) from error
    err.print(f"exported to {folder}", markup=False, highlight=False, soft_wrap=True)
