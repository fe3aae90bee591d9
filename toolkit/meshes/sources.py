"""Mesh sources: every supported dataset layout as one sorted list of MeshObject.

Layouts (detected from the tree, see :func:`detect_layout`):

- ``shapenet-v2``: ``<synset>/<model_id>/models/model_normalized.obj``
- ``shapenet-v1``: ``<synset>/<model_id>/model.obj``
  (both: category names from ``taxonomy.json`` at the root when present)
- ``modelnet``: ``<class>/{train,test}/<name>.off``, with the split
- ``folder``: any tree of mesh files; the category is the parent folder's name
- the word ``procedural`` (or ``procedural-eval``, the evaluation set): the
  embedded procedural shape library, generated in memory

A path may also be a single ShapeNet v2 synset folder or ModelNet class folder
(read as the whole dataset restricted to that category) or a single mesh file.

Labels are the index of the category in the sorted category ids of the whole
source, so they do not change when a category filter is applied. Every model
folder of a ShapeNet category is listed even when its mesh file is missing, so the
loader reports it instead of it vanishing silently.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path

from xpt.toolkit.meshes.load import MESH_SUFFIXES
from xpt.toolkit.meshes.objects import MeshObject

LAYOUTS = ("shapenet-v2", "shapenet-v1", "modelnet", "folder")
PROCEDURAL = "procedural"
PROCEDURAL_EVAL = "procedural-eval"
SHAPENET_FILES = {
    "shapenet-v2": ("models", "model_normalized.obj"),
    "shapenet-v1": ("model.obj",),
}
MODELNET_SPLITS = ("test", "train")
TAXONOMY = "taxonomy.json"


class SourceError(ValueError):
    """A source that cannot be opened, or filters that match nothing in it."""


def open_source(
    spec: str | Path = PROCEDURAL,
    *,
    categories: Sequence[str] | str | None = None,
    split: str | None = None,
    limit: int | None = None,
    per_category: int = 8,
    seed: int = 0,
) -> list[MeshObject]:
    """All objects of a source, filtered, in a deterministic sorted order.

    ``spec`` is ``"procedural"`` (``per_category`` objects per category from
    ``seed``), ``"procedural-eval"`` (the evaluation set) or a path whose layout is
    detected. ``categories`` match a category id or name (a string may list them
    comma-separated); ``split`` keeps objects of that split; ``limit`` keeps the
    first objects after sorting by (category id, model id).
    """
    if isinstance(categories, str):
        categories = [c.strip() for c in categories.split(",") if c.strip()]
    if limit is not None and limit < 1:
        raise SourceError(f"limit must be at least 1, got {limit}")
    if isinstance(spec, str) and spec in (PROCEDURAL, PROCEDURAL_EVAL):
        objects = _procedural(spec, categories, per_category, seed)
        where = spec
    else:
        layout, root, only = _locate(Path(spec))
        objects = list(_ITERATORS[layout](root))
        _check_unique(objects, root)
        if only is not None:
            objects = [o for o in objects if o.category_id == only]
        objects = _select_categories(objects, categories, str(spec))
        where = f"{spec} ({layout})"
    objects = _select_split(objects, split, where)
    objects.sort(key=_order)
    if limit is not None:
        objects = objects[:limit]
    return objects


def detect_layout(path: str | Path) -> str:
    """The layout of ``path``: one of :data:`LAYOUTS`, or :class:`SourceError`.

    A single ShapeNet synset folder or ModelNet class folder counts as that layout.
    """
    return _locate(Path(path))[0]


def read_taxonomy(root: str | Path) -> dict[str, str]:
    """Synset id -> category name from ShapeNet's ``taxonomy.json`` (empty when absent).

    ShapeNet names list synonyms ("chair" or "table,tabular array"); the first is used.
    """
    path = Path(root) / TAXONOMY
    if not path.is_file():
        return {}
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SourceError(f"{path}: cannot read taxonomy: {exc}") from exc
    names = {}
    if not isinstance(entries, list):
        raise SourceError(f"{path}: expected a list of {{synsetId, name}} entries")
    for entry in entries:
        if not isinstance(entry, dict) or "synsetId" not in entry or "name" not in entry:
            raise SourceError(f"{path}: entry without synsetId and name: {str(entry)[:80]}")
        names[str(entry["synsetId"])] = str(entry["name"]).split(",")[0].strip()
    return names


def iter_shapenet(root: str | Path, layout: str = "shapenet-v2") -> Iterator[MeshObject]:
    """ShapeNetCore objects under ``root`` (``layout`` is shapenet-v2 or shapenet-v1)."""
    root = _absolute(root)
    parts = SHAPENET_FILES[layout]
    names = read_taxonomy(root)
    synsets = [d for d in _subdirs(root) if _has_shapenet_model(d, parts)]
    for label, synset in enumerate(synsets):
        for model in _subdirs(synset):
            yield MeshObject(
                source=layout,
                category_id=synset.name,
                category_name=names.get(synset.name, synset.name),
                model_id=model.name,
                label=label,
                path=model.joinpath(*parts),
            )


def iter_modelnet(root: str | Path) -> Iterator[MeshObject]:
    """ModelNet objects: ``<class>/{train,test}/<name>.off`` with their split."""
    root = _absolute(root)
    classes = [d for d in _subdirs(root) if _has_modelnet_split(d)]
    for label, folder in enumerate(classes):
        files = [(s, p) for s in MODELNET_SPLITS for p in _files(folder / s, (".off",))]
        stems = Counter(p.stem for _, p in files)
        for split, path in files:
            yield MeshObject(
                source="modelnet",
                category_id=folder.name,
                category_name=folder.name,
                model_id=path.stem if stems[path.stem] == 1 else f"{path.stem}-{split}",
                label=label,
                path=path,
                split=split,
            )


def iter_folder(root: str | Path) -> Iterator[MeshObject]:
    """Every mesh file under ``root`` (or ``root`` itself); category = parent folder name.

    Model ids are file stems; where two files would get the same key (same category
    and stem), their paths relative to ``root`` are used instead.
    """
    root = _absolute(root)
    paths = [root] if root.is_file() else _walk_meshes(root)
    labels = {name: i for i, name in enumerate(sorted({p.parent.name for p in paths}))}
    objects = [
        MeshObject(
            source="folder",
            category_id=path.parent.name,
            category_name=path.parent.name,
            model_id=path.stem,
            label=labels[path.parent.name],
            path=path,
        )
        for path in paths
    ]
    keys = Counter(o.key for o in objects)
    for obj in objects:
        if keys[obj.key] > 1:
            relative = obj.path.relative_to(root).with_suffix("").as_posix().replace("/", "-")
            obj = replace(obj, model_id=f"{relative}-{obj.path.suffix[1:].lower()}")
        yield obj


_ITERATORS = {
    "shapenet-v2": lambda root: iter_shapenet(root, "shapenet-v2"),
    "shapenet-v1": lambda root: iter_shapenet(root, "shapenet-v1"),
    "modelnet": iter_modelnet,
    "folder": iter_folder,
}


def _locate(path: Path) -> tuple[str, Path, str | None]:
    """(layout, dataset root, the one category when ``path`` is a category folder)."""
    path = _absolute(path)
    if not path.exists():
        raise SourceError(f"{path}: no such file or folder")
    if path.is_file():
        if path.suffix.lower() not in MESH_SUFFIXES:
            raise SourceError(f"{path}: not a mesh file (expected {', '.join(MESH_SUFFIXES)})")
        return "folder", path, None
    for layout, parts in SHAPENET_FILES.items():
        if any(_has_shapenet_model(d, parts) for d in _subdirs(path)):
            return layout, path, None
    # one synset folder; v1's generic "model.obj" is too ambiguous to guess this for
    if _has_shapenet_model(path, SHAPENET_FILES["shapenet-v2"]):
        return "shapenet-v2", path.parent, path.name
    if any(_has_modelnet_split(d) for d in _subdirs(path)):
        return "modelnet", path, None
    if _has_modelnet_split(path):
        return "modelnet", path.parent, path.name
    if not _walk_meshes(path, first=True):
        raise SourceError(f"{path}: no mesh files found (looked for {', '.join(MESH_SUFFIXES)})")
    return "folder", path, None


def _procedural(
    spec: str, categories: Sequence[str] | None, per_category: int, seed: int
) -> list[MeshObject]:
    from xpt.toolkit import procedural

    if per_category < 1:
        raise SourceError(f"per_category must be at least 1, got {per_category}")
    evaluation = spec == PROCEDURAL_EVAL
    names = None
    if categories:
        known = list(procedural.CATEGORIES) + list(procedural.EVAL_ONLY_CATEGORIES)
        by_id = {procedural.category_id(n): n for n in known}
        unknown = [c for c in categories if c not in known and c not in by_id]
        if unknown:
            raise SourceError(
                f"{spec}: unknown categories {', '.join(unknown)} "
                f"(available: {', '.join(sorted(known))})"
            )
        names = [by_id.get(c, c) for c in categories]
    try:
        return list(procedural.objects(per_category, seed, names, eval=evaluation))
    except (KeyError, ValueError) as exc:
        raise SourceError(f"{spec}: {exc}") from exc


def _select_categories(
    objects: list[MeshObject], categories: Sequence[str] | None, where: str
) -> list[MeshObject]:
    if not categories:
        return objects
    ids = {o.category_id for o in objects}
    names = {o.category_name.lower() for o in objects}
    unknown = [c for c in categories if c not in ids and c.lower() not in names]
    if unknown:
        shown = sorted({f"{o.category_id} ({o.category_name})" for o in objects})
        more = f", … {len(shown) - 20} more" if len(shown) > 20 else ""
        raise SourceError(
            f"{where}: unknown categories {', '.join(unknown)} "
            f"(available: {', '.join(shown[:20])}{more})"
        )
    wanted = set(categories)
    lowered = {c.lower() for c in categories}
    return [o for o in objects if o.category_id in wanted or o.category_name.lower() in lowered]


def _select_split(objects: list[MeshObject], split: str | None, where: str) -> list[MeshObject]:
    if not objects:
        raise SourceError(f"{where}: no objects")
    if split is None:
        return objects
    splits = sorted({o.split for o in objects if o.split is not None})
    if not splits:
        raise SourceError(f"{where}: this source has no splits; cannot select split '{split}'")
    if split not in splits:
        raise SourceError(f"{where}: no split '{split}' (available: {', '.join(splits)})")
    return [o for o in objects if o.split == split]


def _check_unique(objects: list[MeshObject], root: Path) -> None:
    """Keys must identify objects; two files that map to one key are a user error."""
    seen: dict[str, MeshObject] = {}
    for obj in objects:
        other = seen.setdefault(obj.key, obj)
        if other is not obj:
            raise SourceError(
                f"{root}: {other.where} and {obj.where} map to the same key '{obj.key}'; "
                "rename one of them"
            )


def _absolute(path: str | Path) -> Path:
    """An absolute path without resolving symlinks (so paths stay as the user wrote them)."""
    return Path(os.path.abspath(path))


def _order(obj: MeshObject) -> tuple[str, str, str, str]:
    return (obj.category_id, obj.model_id, obj.split or "", obj.where or "")


def _visible(name: str) -> bool:
    return not name.startswith((".", "__MACOSX"))


def _subdirs(folder: Path) -> list[Path]:
    """Visible sub-folders of ``folder``, sorted by name."""
    try:
        with os.scandir(folder) as entries:
            return sorted(
                (Path(e.path) for e in entries if e.is_dir() and _visible(e.name)),
                key=lambda p: p.name,
            )
    except (NotADirectoryError, FileNotFoundError):
        return []


def _files(folder: Path, suffixes: Sequence[str]) -> list[Path]:
    """Visible files of ``folder`` with one of ``suffixes`` (any case), sorted by name."""
    try:
        with os.scandir(folder) as entries:
            return sorted(
                (
                    Path(e.path)
                    for e in entries
                    if e.is_file() and _visible(e.name) and Path(e.name).suffix.lower() in suffixes
                ),
                key=lambda p: p.name,
            )
    except (NotADirectoryError, FileNotFoundError):
        return []


def _walk_meshes(root: Path, first: bool = False) -> list[Path]:
    """Mesh files under ``root`` in sorted path order (only the first one if ``first``)."""
    found = []
    for folder, dirs, _ in os.walk(root):
        dirs[:] = sorted(d for d in dirs if _visible(d))
        for path in _files(Path(folder), MESH_SUFFIXES):
            found.append(path)
            if first:
                return found
    return sorted(found)


def _has_shapenet_model(synset: Path, parts: tuple[str, ...]) -> bool:
    return any(model.joinpath(*parts).is_file() for model in _subdirs(synset))


def _has_modelnet_split(folder: Path) -> bool:
    return any(_files(folder / split, (".off",)) for split in MODELNET_SPLITS)
