"""``xpt export``: a pretrained encoder as a Hub-style folder anyone can load.

The folder holds ``model.safetensors`` (clean state-dict names: ``point.*`` and, with the
image encoder, ``image.*``; never ``module.``), ``config.json`` (architecture, pretraining
settings, where the weights come from) and ``README.md``, a model card. Nothing is uploaded:
``huggingface-cli upload USER/NAME DIR`` is the user's step.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from xpt import __version__
from xpt.toolkit.fsio import atomic_directory, atomic_write_json, not_a_folder
from xpt.toolkit.locks import carry_lock, folder_lock
from xpt.train.encoder import (
    CONFIG_FILE,
    EXPORT_FORMAT,
    EXPORT_FORMAT_VERSION,
    WEIGHTS_FILE,
    Encoder,
    load_encoder,
)

CITATION = "\n".join(
    [
        "@inproceedings{afham2022crosspoint,",
        "  title     = {CrossPoint: Self-Supervised Cross-Modal Contrastive Learning for",
        "               3D Point Cloud Understanding},",
        "  author    = {Afham, Mohamed and Dissanayake, Isuru and Dissanayake, Dinithi and",
        "               Dharmasiri, Amaya and Thilakarathna, Kanchana and Rodrigo, Ranga},",
        "  booktitle = {CVPR},",
        "  year      = {2022}",
        "}",
    ]
)


def resolve_checkpoint(source: str | os.PathLike) -> Path:
    """A run folder means its ``best.pt`` (when probing kept one), else its ``last.pt``."""
    source = Path(source)
    if not source.is_dir():
        return source
    for name in ("best.pt", "last.pt"):
        if (source / name).is_file():
            return source / name
    raise ValueError(f"{source}: a folder without best.pt or last.pt (not a pretraining run)")


def export_encoder(
    source: str | os.PathLike,
    out: str | os.PathLike,
    *,
    with_image: bool = False,
    benchmark: str | os.PathLike | None = None,
    shards: str | os.PathLike | None = None,
) -> Path:
    """Write the export folder ``out`` for the checkpoint (or run folder) ``source``.

    ``benchmark``: an ``xpt benchmark --json`` report whose tables go into the model card;
    ``shards``: the shard set pretraining read, summarised in the card. A second export
    into ``out`` while this one writes is refused (:func:`~xpt.toolkit.locks.folder_lock`).
    """
    from safetensors.torch import save_file

    if reason := not_a_folder(out):  # before loading anything
        raise ValueError(f"{out}: {reason}")
    checkpoint = resolve_checkpoint(source)
    encoder = load_encoder(checkpoint, device="cpu")
    if with_image and encoder.image is None:
        raise ValueError(f"{checkpoint}: has no image encoder to export (a release state dict)")
    report = _read_json(benchmark) if benchmark is not None else None
    data = _shard_summary(shards) if shards is not None else None
    # (clones: dgcnn_seg registers each BatchNorm twice, and safetensors refuses shared storage)
    tensors = {f"point.{k}": v.detach().clone() for k, v in encoder.point.state_dict().items()}
    if with_image:
        tensors |= {f"image.{k}": v for k, v in encoder.image.state_dict().items()}
    architecture = dict(encoder.settings)
    if not with_image:
        architecture = {
            k: v for k, v in architecture.items() if k not in ("image_encoder", "image_size")
        }
    source_info = {k: v for k, v in encoder.source.items() if k != "pretraining"}
    config = {
        "format": EXPORT_FORMAT,
        "format_version": EXPORT_FORMAT_VERSION,
        "xpt_version": __version__,
        "architecture": architecture,
        "pretraining": encoder.source.get("pretraining"),
        "source": source_info,
        "data": data,
    }
    with folder_lock(out, "xpt export"), atomic_directory(out) as tmp:
        carry_lock(out, tmp)  # the lock stays on ``out`` when ``tmp`` replaces it
        save_file(
            {k: v.detach().contiguous().cpu() for k, v in tensors.items()},
            str(tmp / WEIGHTS_FILE),
            metadata={"format": EXPORT_FORMAT},
        )
        atomic_write_json(tmp / CONFIG_FILE, config)
        (tmp / "README.md").write_text(model_card(encoder, config, report), encoding="utf-8")
    return Path(out)


def model_card(encoder: Encoder, config: dict[str, Any], report: dict | None) -> str:
    """The README.md of an export: method, data, settings, benchmark tables (verbatim)."""
    arch = config["architecture"]
    lines = [
        "---",
        "library_name: xpt",
        "tags: [point-cloud, self-supervised, crosspoint, 3d]",
        "---",
        "",
        f"# CrossPoint {arch['backbone'].upper()} encoder (xpt export)",
        "",
        "A point-cloud encoder pretrained with CrossPoint (intra-modal and cross-modal "
        "contrastive learning between point clouds and rendered views), exported by "
        f"xpt {__version__}.",
        "",
        "## Use",
        "",
        "```python",
        "import xpt",
        "encoder = xpt.load_encoder('THIS_FOLDER')",
        "features = encoder.features(points)  # (N, 3) or (B, N, 3) -> global features",
        "```",
        "",
        "## Architecture",
        "",
        *[f"- {key}: {value}" for key, value in arch.items()],
        "",
        "## Weights",
        "",
    ]
    source = config["source"]
    lines += [f"- {key}: {value}" for key, value in source.items() if value is not None]
    pretraining = config.get("pretraining")
    if pretraining:
        lines += ["", "## Pretraining settings", ""]
        lines += [f"- {key}: {value}" for key, value in sorted(pretraining.items())]
    lines += ["", "## Data", ""]
    data = config.get("data")
    if data:
        lines += [f"- {key}: {value}" for key, value in data.items()]
    else:
        lines.append("Not recorded (pass `--shards` to `xpt export`).")
    lines += ["", "## Benchmarks", ""]
    lines += _benchmark_section(report) if report else ["No benchmark report was given."]
    lines += ["", "## Citation", "", "```bibtex", CITATION, "```", ""]
    return "\n".join(lines)


def _benchmark_section(report: dict) -> list[str]:
    """The report's tables and margin lines as printed by ``xpt benchmark``, no other number."""
    protocol = report.get("protocol", {})
    lines = [f"Protocol card `{protocol.get('name')}`:", ""]
    lines += [f"    {line}" for line in _card_text(protocol)]
    for dataset in report.get("datasets", []):
        title = dataset.get("dataset", {}).get("title") or dataset.get("dataset", {}).get("name")
        for kind, table in dataset.get("tables", {}).items():
            if table:
                lines += ["", f"### {title}: {kind}", "", *_markdown_table(table)]
        if dataset.get("margin"):
            lines += ["", dataset["margin"]]
    return lines


def _card_text(protocol: dict) -> list[str]:
    return [
        str(protocol[key])
        for key in ("encoder_text", "linear_text", "fewshot_text")
        if key in protocol
    ]


def _markdown_table(rows: list[dict]) -> list[str]:
    columns = sorted(rows[0], key=lambda column: column != "encoder")  # the row name first
    out = ["| " + " | ".join(columns) + " |", "| " + " | ".join("---" for _ in columns) + " |"]
    out += ["| " + " | ".join(str(row.get(c, "")) for c in columns) + " |" for row in rows]
    return out


def _shard_summary(shards: str | os.PathLike) -> dict[str, Any]:
    from xpt.toolkit.shards.manifest import read_manifest

    manifest = read_manifest(shards)
    settings = manifest.get("settings", {})
    return {
        "shards": str(shards),
        "source": settings.get("source"),
        "objects": manifest.get("samples"),
        "categories": len(manifest.get("categories", {})),
        "train_samples": manifest["splits"].get("train", {}).get("samples"),
    }


def _read_json(path: str | os.PathLike) -> dict:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path}: not a JSON benchmark report: {error}") from None
