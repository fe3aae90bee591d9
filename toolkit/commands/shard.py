"""``xpt shard``: point clouds + views into verified WebDataset shards."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from xpt.toolkit.commands.options import (
    LayoutOption,
    MaxFacesOption,
    Rig,
    SplitOption,
    StrictOption,
    UpAxis,
    UpAxisOption,
)
from xpt.toolkit.meshes.budget import DEFAULT_MAX_FACES


class Format(str, Enum):
    meshes = "meshes"
    crosspoint = "crosspoint"


class Sampler(str, Enum):
    uniform = "uniform"
    fps = "fps"


class ImageFormat(str, Enum):
    png = "png"
    jpg = "jpg"
    webp = "webp"


class Alpha(str, Enum):
    white = "white"
    drop = "drop"


class PointsDtype(str, Enum):
    float32 = "float32"
    float16 = "float16"


def shard(
    source: Annotated[
        str,
        typer.Argument(
            help="'procedural' (the built-in shape library), a mesh folder (ShapeNet, ModelNet, "
            "any folder), or with --format crosspoint the CrossPoint release's data folder."
        ),
    ] = "procedural",
    out: Annotated[Path, typer.Option(help="Output folder for the shards.")] = Path("shards"),
    renders: Annotated[
        Path | None,
        typer.Option(help="Views from this `xpt render` output; without it, render on the fly."),
    ] = None,
    format: Annotated[
        Format, typer.Option("--format", help="meshes, or the CrossPoint release layout.")
    ] = Format.meshes,
    points: Annotated[int, typer.Option(help="Points per sample.")] = 2048,
    sampler: Annotated[
        Sampler, typer.Option(help="Uniform area-weighted, or farthest points of 4x as many.")
    ] = Sampler.uniform,
    val_fraction: Annotated[
        float,
        typer.Option(
            help="Share of objects held out in a val split (taken from the source's train "
            "split, or from all objects of a source without splits; a source's own test "
            "split goes to the test shards, never to train or val). By default none: "
            "pretraining reads every object, as the paper's."
        ),
    ] = 0.0,
    image_format: Annotated[ImageFormat, typer.Option(help="How views are stored.")] = (
        ImageFormat.png
    ),
    quality: Annotated[int, typer.Option(help="JPEG/WebP quality (1-100).")] = 90,
    points_dtype: Annotated[PointsDtype, typer.Option(help="Stored point dtype.")] = (
        PointsDtype.float32
    ),
    normals: Annotated[bool, typer.Option(help="Store float16 normals (meshes only).")] = True,
    max_views: Annotated[
        int | None, typer.Option(help="Keep at most this many views per object.")
    ] = None,
    alpha: Annotated[
        Alpha | None,
        typer.Option(
            help="--format crosspoint: composite the RGBA views on white, or drop alpha as "
            "the published loader's Image.convert('RGB') does (keeping the colour under "
            "transparent pixels). Recorded in the manifest. (default: white; drop with "
            "--replay-release)"
        ),
    ] = None,
    replay_release: Annotated[
        bool,
        typer.Option(
            "--replay-release",
            help="Replay the published code where xpt's defaults differ: --alpha drop for "
            "--format crosspoint (every object in train is already the default). Options "
            "given still win.",
        ),
    ] = False,
    max_shard_mb: Annotated[float, typer.Option(help="Maximum shard size in MiB.")] = 256.0,
    max_samples: Annotated[
        int | None, typer.Option(help="Maximum samples per shard (default: no limit).")
    ] = None,
    workers: Annotated[int, typer.Option(help="Worker processes building samples.")] = 1,
    part: Annotated[
        str | None,
        typer.Option(help="Only part i/n of the objects (writes OUT/part-III-of-NNN)."),
    ] = None,
    limit: Annotated[int | None, typer.Option(help="Only the first N objects.")] = None,
    categories: Annotated[
        str | None, typer.Option(help="Comma-separated category ids or names.")
    ] = None,
    split: SplitOption = None,
    layout: LayoutOption = None,
    up_axis: UpAxisOption = UpAxis.auto,
    max_faces: MaxFacesOption = DEFAULT_MAX_FACES,
    per_category: Annotated[int, typer.Option(help="Procedural objects per category.")] = 8,
    rig: Annotated[Rig, typer.Option(help="Camera rig when rendering on the fly.")] = Rig.r2n2,
    views: Annotated[
        int | None, typer.Option(help="Views per object when rendering on the fly.")
    ] = None,
    size: Annotated[int, typer.Option(help="View size in pixels when rendering on the fly.")] = 137,
    seed: Annotated[int, typer.Option(help="Seed for order, split and point sampling.")] = 0,
    source_seed: Annotated[
        int, typer.Option(help="Seed of the procedural source (as `xpt render --source-seed`).")
    ] = 0,
    strict: StrictOption = False,
    json_path: Annotated[
        Path | None, typer.Option("--json", help="Write the summary as JSON ('-' for stdout).")
    ] = None,
) -> None:
    """Pack point clouds and views into WebDataset shards with a checksummed manifest.

    Run it again to resume after the last complete shard. Ctrl-C or SIGTERM finishes the
    objects in hand, closes the open shards and exits 130 / 143 (a second signal stops at
    once, dropping the open shards).
    """
    from rich.markup import escape

    from xpt.toolkit.console import err, error_exit, print_table, write_json_report
    from xpt.toolkit.fsio import check_writable
    from xpt.toolkit.partition import parse_part
    from xpt.toolkit.shards.build import ShardConfig, run_shard

    check_writable(json_path)  # now, not after the shards
    if alpha is None:
        release = replay_release and format is Format.crosspoint
        alpha = Alpha.drop if release else Alpha.white
    if replay_release:
        err.print(
            "replaying the published code (--replay-release): "
            + (
                f"alpha {alpha.value}, val_fraction {val_fraction:g}"
                if format is Format.crosspoint
                else f"val_fraction {val_fraction:g} (views rendered from meshes have no "
                "published counterpart: the release read 3D-R2N2's renders, --format crosspoint)"
            ),
            highlight=False,
            soft_wrap=True,
        )
    try:
        config = ShardConfig(
            out=out,
            source=source,
            format=format.value,
            renders=renders,
            categories=[c.strip() for c in categories.split(",")] if categories else None,
            split=split,
            layout=None if layout is None else layout.value,
            up_axis=up_axis.value,
            max_faces=max_faces,
            per_category=per_category,
            limit=limit,
            num_points=points,
            sampler=sampler.value,
            normals=normals,
            val_fraction=val_fraction,
            image_format=image_format.value,
            quality=quality,
            points_dtype=points_dtype.value,
            max_views=max_views,
            alpha=alpha.value,
            max_shard_mb=max_shard_mb,
            max_samples=max_samples,
            part=parse_part(part),
            seed=seed,
            source_seed=source_seed,
            workers=workers,
            render={"rig": rig.value, "views": views, "size": size, "seed": seed},
        )
        result = run_shard(config)
    except (ValueError, RuntimeError) as error:  # settings, sources, GL
        raise error_exit(str(error)) from error
    if str(json_path) != "-":  # stdout then carries the JSON alone
        print_table("xpt shard", result.summary())
    for note in (result.note or "").splitlines():
        err.print(f"[yellow]note[/yellow] {escape(note)}", highlight=False, soft_wrap=True)
    if result.failures:
        err.print(
            f"{len(result.failures)} objects or files left out: see "
            f"{escape(str(result.out / 'failures.jsonl'))}",
            highlight=False,
            soft_wrap=True,
        )
    write_json_report(json_path, {**result.summary(), "manifest": result.manifest})
    if result.all_failed:
        raise error_exit("every object failed: the shard set is empty")
    if strict and result.failures:
        raise typer.Exit(code=1)
