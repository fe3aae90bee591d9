"""``xpt render``: headless multi-view rendering of a mesh source (ShapeNetRendering layout)."""

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


class Background(str, Enum):
    white = "white"
    grey = "grey"
    transparent = "transparent"


class Backend(str, Enum):
    egl = "egl"
    osmesa = "osmesa"


def render(
    source: Annotated[
        str,
        typer.Argument(
            help="'procedural' (the built-in shape library), 'procedural-eval', or a folder "
            "of meshes (ShapeNet v1/v2, ModelNet or any tree of mesh files)."
        ),
    ] = "procedural",
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("renders"),
    rig: Annotated[
        Rig, typer.Option(help="Camera rig: r2n2 (3D-R2N2's random views), ring or sphere.")
    ] = Rig.r2n2,
    views: Annotated[
        int | None, typer.Option(help="Views per object (preset: r2n2 24, ring 12, sphere 20).")
    ] = None,
    size: Annotated[int, typer.Option(help="Image size in pixels (square).")] = 137,
    fov: Annotated[
        float | None,
        typer.Option(help="Field of view in degrees (preset: R2N2's 49.13, focal 2.1875)."),
    ] = None,
    background: Annotated[
        Background,
        typer.Option(
            help="white, grey (sRGB 128: keeps white and light objects apart from the "
            "background), or transparent (RGBA PNG with alpha)."
        ),
    ] = Background.white,
    depth: Annotated[
        bool, typer.Option("--depth", help="Also write 16-bit depth PNGs (see cameras.json).")
    ] = False,
    mask: Annotated[
        bool,
        typer.Option("--mask", help="Also write object masks (mask/NN.png beside each view)."),
    ] = False,
    antialias: Annotated[
        bool, typer.Option(help="2x2 supersampling (off: about 1.6x faster on a CPU).")
    ] = True,
    workers: Annotated[int, typer.Option(help="Worker processes (one GL context each).")] = 1,
    part: Annotated[
        str | None,
        typer.Option(
            help="Render only part i of n ('i/n'), for job arrays; its failures go to "
            "failures-part-III-of-NNN.jsonl."
        ),
    ] = None,
    limit: Annotated[
        int | None, typer.Option(help="Only the first N objects of the source.")
    ] = None,
    categories: Annotated[
        str | None, typer.Option(help="Comma-separated category names or ids to keep.")
    ] = None,
    split: SplitOption = None,
    layout: LayoutOption = None,
    up_axis: UpAxisOption = UpAxis.auto,
    per_category: Annotated[
        int, typer.Option(help="Objects per category of the procedural source.")
    ] = 8,
    seed: Annotated[int, typer.Option(help="Seed of the random views (r2n2 rig).")] = 0,
    source_seed: Annotated[
        int, typer.Option(help="Seed of the procedural source (which objects exist).")
    ] = 0,
    backend: Annotated[
        Backend, typer.Option(help="OpenGL back-end: egl (GPU or Mesa) or osmesa.")
    ] = Backend.egl,
    time_limit: Annotated[
        float, typer.Option(help="Seconds one object may take before it is recorded as failed.")
    ] = 120.0,
    max_faces: MaxFacesOption = DEFAULT_MAX_FACES,
    preview: Annotated[
        Path | None, typer.Option(help="Write a contact sheet PNG of a few objects and views.")
    ] = None,
    strict: StrictOption = False,
    json_path: Annotated[
        Path | None, typer.Option("--json", help="Write the summary as JSON ('-' for stdout).")
    ] = None,
) -> None:
    """Render every object of SOURCE from several views into OUT (ShapeNetRendering layout).

    Run it again to resume: finished objects are skipped. Ctrl-C or SIGTERM lets the
    workers finish the objects they hold and exits 130 / 143 (a second signal stops at once).
    """
    from rich.markup import escape

    from xpt.render.config import RenderConfig
    from xpt.render.gl import RenderError
    from xpt.render.pool import run_render
    from xpt.toolkit.console import err, error_exit, print_table, write_json_report
    from xpt.toolkit.fsio import check_writable

    check_writable(preview, json_path)  # now, not after the renders
    try:
        config = RenderConfig(
            rig=rig.value,
            views=views,
            size=size,
            fov=fov,
            background=background.value,
            depth=depth,
            mask=mask,
            antialias=antialias,
            seed=seed,
            backend=backend.value,
            time_limit=time_limit,
            up_axis=up_axis.value,
            max_faces=max_faces,
        )
        summary = run_render(
            source,
            out,
            config,
            workers=workers,
            part=part,
            limit=limit,
            categories=categories,
            split=split,
            layout=None if layout is None else layout.value,
            per_category=per_category,
            source_seed=source_seed,
            preview=preview,
        )
    except (ValueError, RenderError) as exc:
        raise error_exit(str(exc)) from None
    report = summary.to_json()
    rows = {k: v for k, v in report.items() if k not in ("failures", "note")}
    if preview is not None:
        rows["preview"] = str(preview)
    if str(json_path) != "-":
        print_table("xpt render", rows)
    for note in (summary.note or "").splitlines():
        err.print(f"[yellow]note[/yellow] {escape(note)}", highlight=False, soft_wrap=True)
    write_json_report(json_path, report)
    if summary.all_failed:
        raise error_exit(f"every object failed: see {out}/failures*.jsonl")
    if strict and (summary.failed or summary.unread):
        raise typer.Exit(code=1)
