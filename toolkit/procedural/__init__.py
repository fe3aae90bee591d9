"""The procedural shape library: xpt's embedded default mesh source.

Deterministic, multi-part, coloured meshes of everyday objects, built from primitives
(:mod:`.parts`) with continuous per-instance parameters (:mod:`.params`) by one
builder per category (:mod:`.furniture`, :mod:`.vessels`, :mod:`.vehicles`,
:mod:`.devices`). Every object is upright (+Y up), faces +Z, stands on y = 0,
is centred in x and z, and has a largest extent of exactly 1. Each part is one node
of the returned ``trimesh.Scene`` with its own ``SimpleMaterial`` colour, so OBJ
export writes ``Kd`` colours to the MTL and pyrender gets a ``baseColorFactor``.

Same ``(category, seed, wide)`` gives the same arrays, so exported OBJ bytes are
identical; ``wide=True`` draws every parameter from a wider range (the evaluation
set's domain shift). Only numpy and trimesh; randomness only from a
``np.random.Generator`` seeded per object.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import trimesh

from xpt.toolkit.meshes.objects import MeshObject
from xpt.toolkit.procedural import devices, furniture, vehicles, vessels
from xpt.toolkit.procedural.params import Draw
from xpt.toolkit.procedural.parts import Part, Piece
from xpt.toolkit.seeding import derive_seed

__all__ = [
    "ALL_CATEGORIES",
    "CATEGORIES",
    "EVAL_ONLY_CATEGORIES",
    "SOURCE",
    "EVAL_SOURCE",
    "build_parts",
    "category_id",
    "generate",
    "objects",
    "to_scene",
]

SOURCE = "procedural"
EVAL_SOURCE = "procedural-eval"

#: Pretraining categories; an object's ``label`` is its index here.
CATEGORIES: tuple[str, ...] = (
    "chair",
    "table",
    "lamp",
    "mug",
    "bottle",
    "airplane",
    "car",
    "bench",
    "bookshelf",
    "sofa",
    "bed",
    "monitor",
    "vase",
    "bowl",
)

#: Categories that appear only in the evaluation set (labels continue after CATEGORIES).
EVAL_ONLY_CATEGORIES: tuple[str, ...] = ("stool", "cabinet", "cup", "guitar", "plant")

ALL_CATEGORIES: tuple[str, ...] = CATEGORIES + EVAL_ONLY_CATEGORIES

BUILDERS: dict[str, Callable[[Draw], list[Part]]] = {
    "chair": furniture.chair,
    "table": furniture.table,
    "lamp": vessels.lamp,
    "mug": vessels.mug,
    "bottle": vessels.bottle,
    "airplane": vehicles.airplane,
    "car": vehicles.car,
    "bench": furniture.bench,
    "bookshelf": furniture.bookshelf,
    "sofa": furniture.sofa,
    "bed": furniture.bed,
    "monitor": devices.monitor,
    "vase": vessels.vase,
    "bowl": vessels.bowl,
    "stool": furniture.stool,
    "cabinet": furniture.cabinet,
    "cup": vessels.cup,
    "guitar": devices.guitar,
    "plant": vessels.plant,
}

#: Prefix of procedural category ids; real ShapeNet synsets are 8-digit numbers.
CATEGORY_ID_PREFIX = "proc-"


def _check_category(name: str) -> None:
    if name not in BUILDERS:
        raise ValueError(
            f"unknown procedural category {name!r}; valid: {', '.join(ALL_CATEGORIES)}"
        )


def category_id(name: str) -> str:
    """The category id of a procedural category, e.g. ``"proc-chair"`` (never a synset)."""
    _check_category(name)
    return CATEGORY_ID_PREFIX + name


def objects(
    per_category: int,
    seed: int = 0,
    categories: Sequence[str] | None = None,
    *,
    eval: bool = False,
) -> list[MeshObject]:
    """``per_category`` objects of each category, in category order, then index order.

    Pretraining objects (``eval=False``): source ``"procedural"``, model ids
    ``chair-000003``, seeds ``derive_seed(seed, category, index)``, no split; only
    :data:`CATEGORIES` are allowed. Evaluation objects (``eval=True``): source
    ``"procedural-eval"``, generated with ``wide=True``, model ids
    ``chair-eval-000003``, seeds ``derive_seed(seed, "eval", category, index)`` (so
    they never repeat a pretraining instance); :data:`ALL_CATEGORIES` are allowed
    and are the default. ``label`` is the index in :data:`ALL_CATEGORIES` (= in
    CATEGORIES for the pretraining ones) whatever subset is asked for. No object
    carries a split: consumers split (e.g. :func:`xpt.toolkit.evalset.split_objects`).
    """
    if per_category < 0:
        raise ValueError(f"per_category must be >= 0, got {per_category}")
    valid = ALL_CATEGORIES if eval else CATEGORIES
    names = list(dict.fromkeys(valid if categories is None else categories))
    unknown = [name for name in names if name not in valid]
    if unknown:
        kind = "evaluation" if eval else "pretraining"
        raise ValueError(
            f"unknown {kind} categor{'y' if len(unknown) == 1 else 'ies'} "
            f"{', '.join(map(repr, unknown))}; valid: {', '.join(valid)}"
        )
    result = []
    for name in names:
        for index in range(per_category):
            if eval:
                model_id = f"{name}-eval-{index:06d}"
                obj_seed = derive_seed(seed, "eval", name, index)
            else:
                model_id, obj_seed = f"{name}-{index:06d}", derive_seed(seed, name, index)
            result.append(
                MeshObject(
                    source=EVAL_SOURCE if eval else SOURCE,
                    category_id=category_id(name),
                    category_name=name,
                    model_id=model_id,
                    label=ALL_CATEGORIES.index(name),
                    seed=obj_seed,
                )
            )
    return result


def _normalise(parts: list[Part]) -> list[Part]:
    """Stand the object on y = 0, centre it in x and z, scale its largest extent to 1."""
    vertices = np.concatenate([part.piece.vertices for part in parts])
    lo, hi = vertices.min(axis=0), vertices.max(axis=0)
    shift = -0.5 * (lo + hi)
    shift[1] = -lo[1]
    scale = 1.0 / float(np.max(hi - lo))
    return [
        Part(p.name, Piece((p.piece.vertices + shift) * scale, p.piece.faces), p.colour)
        for p in parts
    ]


def build_parts(category: str, seed: int, *, wide: bool = False) -> list[Part]:
    """The normalised parts of one object (what :func:`generate` turns into a scene)."""
    _check_category(category)
    draw = Draw(np.random.default_rng(int(seed)), wide=wide)
    return _normalise(BUILDERS[category](draw))


def to_scene(parts: list[Part]) -> trimesh.Scene:
    """One scene node per part, named after it, carrying a ``SimpleMaterial`` colour."""
    scene = trimesh.Scene()
    for part in parts:
        material = trimesh.visual.material.SimpleMaterial(
            name=part.name,
            diffuse=part.colour.rgba,
            ambient=part.colour.rgba,
            specular=(40, 40, 40, 255),
            glossiness=part.colour.glossiness,
        )
        mesh = trimesh.Trimesh(
            vertices=part.piece.vertices,
            faces=np.ascontiguousarray(part.piece.faces),
            visual=trimesh.visual.TextureVisuals(material=material),
            process=False,
            validate=False,
        )
        scene.add_geometry(mesh, node_name=part.name, geom_name=part.name)
    return scene


def generate(category: str, seed: int, *, wide: bool = False) -> trimesh.Scene:
    """One object of ``category`` as a ``trimesh.Scene`` (deterministic in its arguments).

    ``wide=True`` draws from the wider evaluation parameter range. Raises
    ``ValueError`` for an unknown category.
    """
    return to_scene(build_parts(category, seed, wide=wide))
