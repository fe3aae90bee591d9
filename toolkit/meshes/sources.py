"""Mesh sources: every supported dataset layout as one sorted list of MeshObject.

Layouts (detected from the whole tree, see :func:`detect_layout`, or forced by name):

- ``shapenet-v2``: ``<synset>/<model_id>/models/model_normalized.obj``
- ``shapenet-v1``: ``<synset>/<model_id>/model.obj``
  (both: category names from ``taxonomy.json`` at the root when present)
- ``modelnet``: ``<class>/{train,test}/<name>.off``, with the split
- ``folder``: any tree of mesh files; the category is the parent folder's name, or the
  one above a folder named ``train``/``test``/``val``, which then gives the split
- the word ``procedural`` (or ``procedural-eval``, the evaluation set): the
  embedded procedural shape library, generated in memory

A path may also be a single ShapeNet v2 synset folder or ModelNet class folder
(read as the whole dataset restricted to that category) or a single mesh file.

A dataset layout is detected only when it explains every mesh file in the tree;
otherwise the tree is a ``folder`` source, so a stray ``<a>/<b>/model.obj`` never hides
the other meshes. Whatever the layout, every entry named like a mesh that it does not
read (a file outside a forced layout, a broken symlink, a folder called ``x.obj``, a
folder that cannot be listed, a second path to a file already read, through a symbolic
link) is returned as :class:`Unread`, for the failure record.

Labels are the index of the category in the sorted category ids of the whole
source, so they do not change when a category filter is applied. Every model
folder of a ShapeNet category is listed even when its mesh file is missing, so the
loader reports it instead of it vanishing silently.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from xpt.toolkit.failures import Failure
from xpt.toolkit.fsio import printable
from xpt.toolkit.meshes.load import MESH_SUFFIXES
from xpt.toolkit.meshes.objects import MeshObject, short_hash

LAYOUTS = ("shapenet-v2", "shapenet-v1", "modelnet", "folder")
PROCEDURAL = "procedural"
PROCEDURAL_EVAL = "procedural-eval"
SHAPENET_FILES = {
    "shapenet-v2": ("models", "model_normalized.obj"),
    "shapenet-v1": ("model.obj",),
}
MODELNET_SPLITS = ("test", "train")
SPLIT_FOLDERS = ("train", "test", "val")
"""Folder names a ``folder`` source reads as a split, not a category (any letter case)."""
TAXONOMY = "taxonomy.json"


class SourceError(ValueError):
    """A source that cannot be opened, or filters that match nothing in it."""


@dataclass(frozen=True)
class Unread:
    """An entry named like a mesh file that the source does not read, and why.

    ``id`` is its path relative to the source root (valid Unicode): it stands in for an
    object key in failure records and ``--part`` partitioning.
    """

    id: str
    path: Path
    reason: str

    def failure(self) -> Failure:
        return Failure(self.id, printable(self.path), "source", self.reason)


@dataclass
class Source:
    """What :func:`scan_source` found: the objects, the layout, the entries left unread."""

    objects: list[MeshObject]
    layout: str
    unread: list[Unread] = field(default_factory=list)
    note: str | None = None  # one line per note, e.g. "3 of 40 mesh files are in the ..."


def open_source(spec: str | Path = PROCEDURAL, **options: Any) -> list[MeshObject]:
    """All objects of a source, filtered, in a deterministic sorted order: the objects of
    :func:`scan_source` (same options), for callers that need no record of unread files."""
    return scan_source(spec, **options).objects


def scan_source(
    spec: str | Path = PROCEDURAL,
    *,
    categories: Sequence[str] | str | None = None,
    split: str | None = None,
    limit: int | None = None,
    per_category: int = 8,
    seed: int = 0,
    layout: str | None = None,
) -> Source:
    """The objects of a source, filtered and sorted, with the mesh entries it cannot read.

    ``spec`` is ``"procedural"`` (``per_category`` objects per category from
    ``seed``), ``"procedural-eval"`` (the evaluation set) or a path whose layout is
    detected (or forced: ``layout`` is one of :data:`LAYOUTS`). ``categories`` match a
    category id or name (a string may list them comma-separated); ``split`` keeps
    objects of that split; ``limit`` keeps the first objects after sorting by
    (category id, model id). The unread entries do not depend on the filters.
    """
    if isinstance(categories, str):
        categories = [c.strip() for c in categories.split(",") if c.strip()]
    if limit is not None and limit < 1:
        raise SourceError(f"limit must be at least 1, got {limit}")
    if layout is not None and layout not in LAYOUTS:
        raise SourceError(f"unknown layout {layout!r} (expected one of {', '.join(LAYOUTS)})")
    if isinstance(spec, str) and spec in (PROCEDURAL, PROCEDURAL_EVAL):
        if layout is not None:
            raise SourceError(f"{spec}: --layout applies to a folder of meshes only")
        objects = _procedural(spec, categories, per_category, seed)
        found = Source(objects, spec)
        where = spec
    else:
        found = _scan_path(Path(spec), layout)
        found.objects = _select_categories(found.objects, categories, str(spec))
        where = f"{spec} ({found.layout})"
    objects = _select_split(found.objects, split, where)
    objects.sort(key=_order)
    if limit is not None:
        objects = objects[:limit]
    found.objects = objects
    return found


def detect_layout(path: str | Path) -> str:
    """The layout of ``path``: one of :data:`LAYOUTS`, or :class:`SourceError`.

    A dataset layout is chosen only when it explains every mesh file under ``path``;
    a single ShapeNet v2 synset folder or ModelNet class folder counts as that layout.
    """
    return _scan_path(Path(path), None).layout


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
        category = printable(synset.name)
        for model in _subdirs(synset):
            yield MeshObject(
                source=layout,
                category_id=category,
                category_name=names.get(category, category),
                model_id=printable(model.name),
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
        category = printable(folder.name)
        for split, path in files:
            stem = printable(path.stem)
            yield MeshObject(
                source="modelnet",
                category_id=category,
                category_name=category,
                model_id=stem if stems[path.stem] == 1 else f"{stem}-{split}",
                label=label,
                path=path,
                split=split,
            )


def iter_folder(root: str | Path) -> Iterator[MeshObject]:
    """Every mesh file under ``root`` (or ``root`` itself), each real file once;
    category and split by :func:`_folder_place`.

    Model ids are file stems; where two files would get the same key (same category
    and stem), their paths relative to ``root`` are used instead.
    """
    root = _absolute(root)
    paths = [root] if root.is_file() else _read_once(_walk(root)[0], root)[0]
    yield from _folder_objects(root, paths)


def _folder_place(path: Path, root: Path) -> tuple[str, str | None]:
    """(category, split) of a file in a ``folder`` source: its folder's name, no split; but
    a folder named like a split (``chairs/train/ball.off``) names the split, and the
    folder above it the category, as in ModelNet (a ``test`` file stays out of training)."""
    folder = path.parent
    if folder.name.lower() in SPLIT_FOLDERS and folder != root and folder.parent.name:
        return printable(folder.parent.name), folder.name.lower()
    return printable(folder.name), None


def _folder_objects(root: Path, paths: Sequence[Path]) -> Iterator[MeshObject]:
    places = {path: _folder_place(path, root) for path in paths}
    labels = {name: i for i, name in enumerate(sorted({c for c, _ in places.values()}))}
    objects = [
        MeshObject(
            source="folder",
            category_id=places[path][0],
            category_name=places[path][0],
            model_id=printable(path.stem),
            label=labels[places[path][0]],
            path=path,
            split=places[path][1],
        )
        for path in paths
    ]
    keys = Counter(o.key for o in objects)
    for obj in objects:
        if keys[obj.key] > 1:
            relative = printable(obj.path.relative_to(root).with_suffix("").as_posix())
            suffix = printable(obj.path.suffix[1:].lower())
            obj = replace(obj, model_id=f"{relative.replace('/', '-')}-{suffix}")
        yield obj


_ITERATORS = {
    "shapenet-v2": lambda root: iter_shapenet(root, "shapenet-v2"),
    "shapenet-v1": lambda root: iter_shapenet(root, "shapenet-v1"),
    "modelnet": iter_modelnet,
}


def _shapenet_v2_file(parts: tuple[str, ...]) -> bool:
    return len(parts) == 4 and parts[2:] == SHAPENET_FILES["shapenet-v2"]


def _shapenet_v1_file(parts: tuple[str, ...]) -> bool:
    return len(parts) == 3 and parts[2:] == SHAPENET_FILES["shapenet-v1"]


def _modelnet_file(parts: tuple[str, ...]) -> bool:
    return len(parts) == 3 and parts[1] in MODELNET_SPLITS and parts[2].lower().endswith(".off")


@dataclass(frozen=True)
class _Candidate:
    """A dataset layout read from the given folder (or from its parent: one category)."""

    layout: str
    category: bool  # the folder is one category of the dataset
    matches: Callable[[tuple[str, ...]], bool]  # path parts relative to the folder
    detected: bool = True  # False: only when forced (v1's "model.obj" is too generic)
    expected: str = ""


_CANDIDATES = (
    _Candidate(
        "shapenet-v2",
        False,
        _shapenet_v2_file,
        expected="<synset>/<model_id>/models/model_normalized.obj",
    ),
    _Candidate("shapenet-v1", False, _shapenet_v1_file, expected="<synset>/<model_id>/model.obj"),
    _Candidate(
        "shapenet-v2",
        True,
        lambda parts: _shapenet_v2_file(("", *parts)),
        expected="<model_id>/models/model_normalized.obj",
    ),
    _Candidate(
        "shapenet-v1",
        True,
        lambda parts: _shapenet_v1_file(("", *parts)),
        detected=False,
        expected="<model_id>/model.obj",
    ),
    _Candidate("modelnet", False, _modelnet_file, expected="<class>/{train,test}/<name>.off"),
    _Candidate(
        "modelnet",
        True,
        lambda parts: _modelnet_file(("", *parts)),
        expected="{train,test}/<name>.off",
    ),
)


def _scan_path(path: Path, forced: str | None) -> Source:
    """The objects of a folder (or mesh file) in its detected or ``forced`` layout."""
    path = _absolute(path)
    if not path.exists():
        raise SourceError(f"{path}: no such file or folder")
    if path.is_file():
        if path.suffix.lower() not in MESH_SUFFIXES:
            raise SourceError(f"{path}: not a mesh file (expected {', '.join(MESH_SUFFIXES)})")
        if forced not in (None, "folder"):
            raise SourceError(f"{path}: a single mesh file cannot be read as {forced}")
        return Source(list(_folder_objects(path, [path])), "folder")
    files, unread = _walk(path)
    files, twice = _read_once(files, path)
    unread = sorted([*unread, *twice], key=lambda u: u.id)
    if not files:
        bad = f"; {len(unread)} entries named like meshes cannot be read" if unread else ""
        raise SourceError(
            f"{path}: no mesh files found (looked for {', '.join(MESH_SUFFIXES)}){bad}"
        )
    parts = [f.relative_to(path).parts for f in files]
    scores = [(sum(map(c.matches, parts)), c) for c in _CANDIDATES]
    note = None
    if forced is None:
        fits = [c for n, c in scores if c.detected and n == len(files)]
        chosen = fits[0] if fits else None
        n, best = max(scores, key=lambda s: s[0])
        if chosen is None and n > 0 and best.detected:
            odd = next(f for f, p in zip(files, parts, strict=True) if not best.matches(p))
            note = (
                f"{n} of {len(files)} mesh files are in the {best.layout} layout, but not e.g. "
                f"{printable(odd.relative_to(path))}; read as a folder of meshes "
                f"(--layout {best.layout} reads the {best.layout} files only)"
            )
    elif forced == "folder":
        chosen = None
    else:
        n, chosen = max(((n, c) for n, c in scores if c.layout == forced), key=lambda s: s[0])
        if n == 0:
            expected = " or ".join(c.expected for _, c in scores if c.layout == forced)
            raise SourceError(f"{path}: no {forced} files found (expected {expected})")
    if chosen is None:
        objects = list(_folder_objects(path, files))
        notes = "\n".join(n for n in (note, _split_note(objects, path)) if n) or None
        return Source(_unique_keys(objects, path), "folder", unread, notes)
    root = path.parent if chosen.category else path
    objects = _without(list(_ITERATORS[chosen.layout](root)), {u.path for u in twice})
    if chosen.category:
        objects = [o for o in objects if o.category_id == printable(path.name)]
    read = {o.path for o in objects}
    unread += [
        Unread(
            printable(f.relative_to(path).as_posix()),
            f,
            f"not in the {chosen.layout} layout ({chosen.expected}), so not read",
        )
        for f in files
        if f not in read
    ]
    unread.sort(key=lambda u: u.id)
    return Source(_unique_keys(objects, root), chosen.layout, unread, note)


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


def _unique_keys(objects: list[MeshObject], root: Path) -> list[MeshObject]:
    """Objects whose keys would collide get ``-<hash of their path>`` in their model id.

    Keys are unique per name by construction, so this only happens when names differ
    in characters a key cannot hold (``a b`` and ``a_b``); only those objects change.
    """
    counts = Counter(o.key for o in objects)
    if all(n == 1 for n in counts.values()):
        return objects
    result = []
    for obj in objects:
        if counts[obj.key] > 1 and obj.path is not None:
            relative = obj.path.relative_to(root).as_posix()
            obj = replace(obj, model_id=f"{obj.model_id}-{short_hash(relative)}")
        result.append(obj)
    return result


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


def _walk(root: Path) -> tuple[list[Path], list[Unread]]:
    """Mesh files under ``root`` (sorted), and the entries named like meshes that are not.

    Follows symlinked folders, except one that leads back into a folder it is in (a
    loop). Hidden entries and ``__MACOSX`` are skipped, as everywhere in the sources.
    """
    files: list[Path] = []
    unread: list[Unread] = []
    stack: list[tuple[Path, frozenset[tuple[int, int]]]] = [(root, frozenset())]
    while stack:
        folder, above = stack.pop()
        try:
            info = folder.stat()
            here = (info.st_dev, info.st_ino)
            if here in above:
                continue
            above = above | {here}
            with os.scandir(folder) as listing:
                entries = sorted(listing, key=lambda e: e.name)
        except OSError as error:
            reason = f"folder cannot be listed: {error.strerror or error}"
            unread.append(Unread(_relative(folder, root), folder, reason))
            continue
        subfolders = []
        for entry in entries:
            if not _visible(entry.name):
                continue
            path = Path(entry.path)
            is_dir = entry.is_dir()
            if is_dir:
                subfolders.append(path)
            if Path(entry.name).suffix.lower() not in MESH_SUFFIXES:
                continue
            if entry.is_file():
                files.append(path)
            elif is_dir:
                reason = "a folder named like a mesh file, not a mesh file"
                unread.append(Unread(_relative(path, root), path, reason))
            elif entry.is_symlink():
                reason = "broken symbolic link (its target does not exist)"
                unread.append(Unread(_relative(path, root), path, reason))
            else:
                reason = "not a regular file"
                unread.append(Unread(_relative(path, root), path, reason))
        stack.extend((sub, above) for sub in reversed(subfolders))
    return sorted(files), sorted(unread, key=lambda u: u.id)


def _relative(path: Path, root: Path) -> str:
    return printable(path.relative_to(root).as_posix())


def _read_once(files: Sequence[Path], root: Path) -> tuple[list[Path], list[Unread]]:
    """``files`` (sorted) with each real file once, and an :class:`Unread` for every other path
    to one of them (a symlinked folder or file reaches it twice).

    The path that follows no link is kept (else the first by name), so a linked folder never
    renders its files a second time under another category.
    """
    real_root = Path(os.path.realpath(root))
    real = {path: Path(os.path.realpath(path)) for path in files}
    kept: dict[Path, Path] = {}
    twice = []
    for path in sorted(files, key=lambda p: (real[p] != real_root / p.relative_to(root), p)):
        first = kept.setdefault(real[path], path)
        if first != path:
            reason = (
                f"duplicate of {_relative(first, root)} "
                "(the same file, reached through a symbolic link)"
            )
            twice.append(Unread(_relative(path, root), path, reason))
    return sorted(kept.values()), twice


def _without(objects: list[MeshObject], dropped: set[Path]) -> list[MeshObject]:
    """``objects`` but those at a ``dropped`` path, labelled again if any was dropped, so a
    linked folder's category (never read) takes no label."""
    if not dropped:
        return objects
    kept = [o for o in objects if o.path not in dropped]
    labels = {c: i for i, c in enumerate(sorted({o.category_id for o in kept}))}
    return [replace(o, label=labels[o.category_id]) for o in kept]


def _split_note(objects: Sequence[MeshObject], root: Path) -> str | None:
    """One line on the files whose folder is named like a split (:func:`_folder_place`)."""
    split = [o for o in objects if o.split is not None]
    if not split:
        return None
    first, many = split[0], len(split) > 1
    return (
        f"{len(split)} mesh file{'s are' if many else ' is'} in a folder named like a split "
        f"(e.g. {_relative(first.path, root)}): category = the folder above "
        f"({first.category_id}), split = the folder's name ({first.split})"
    )


def _has_shapenet_model(synset: Path, parts: tuple[str, ...]) -> bool:
    return any(model.joinpath(*parts).is_file() for model in _subdirs(synset))


def _has_modelnet_split(folder: Path) -> bool:
    return any(_files(folder / split, (".off",)) for split in MODELNET_SPLITS)
