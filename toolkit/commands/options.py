"""Options that several commands share (render and shard read the same mesh sources)."""

from __future__ import annotations

from enum import Enum
from typing import Annotated

import typer


class Rig(str, Enum):
    r2n2 = "r2n2"
    ring = "ring"
    sphere = "sphere"


class Layout(str, Enum):
    shapenet_v2 = "shapenet-v2"
    shapenet_v1 = "shapenet-v1"
    modelnet = "modelnet"
    folder = "folder"


class UpAxis(str, Enum):
    auto = "auto"
    pos_y = "+Y"
    neg_y = "-Y"
    pos_z = "+Z"
    neg_z = "-Z"
    pos_x = "+X"
    neg_x = "-X"


SplitOption = Annotated[
    str | None,
    typer.Option(help="Only this split of a source that has splits (ModelNet: train, test)."),
]
LayoutOption = Annotated[
    Layout | None,
    typer.Option(
        help="Read SOURCE in this layout instead of detecting it (detection picks a "
        "dataset layout only when every mesh file fits it, else 'folder')."
    ),
]
UpAxisOption = Annotated[
    UpAxis,
    typer.Option(
        case_sensitive=False,
        help="Up axis of the mesh files, rotated to xpt's +Y up before anything else. "
        "auto: ShapeNet +Y, ModelNet +Z, a folder +Y. glTF/GLB files are +Y by their "
        "spec and never rotated; the procedural library is +Y.",
    ),
]
StrictOption = Annotated[
    bool,
    typer.Option(
        "--strict",
        help="Exit with status 1 if any object failed or any mesh file was not read "
        "(without it: only when every object failed).",
    ),
]
MaxFacesOption = Annotated[
    int,
    typer.Option(
        help="Most faces drawn per object: a mesh over it is simplified (quadric decimation; "
        "materials, colours and UVs kept; counts in the object's json), a file declaring "
        "over 5x it is refused unread. 0: no limit. A worker peaks at about 3.5 KB per face of "
        "the budget (1.36 KB per face drawn, the rest loading a file of up to 5x): 6.9 GB at "
        "the default 2,000,000, for a 24 GB machine at the default 1 worker, or 2 "
        "(docs/MESHES.md).",
    ),
]
