"""The procedural shape library: API, determinism, geometry sanity, wide range, colours."""

from __future__ import annotations

import os
import re

import numpy as np
import pytest
import trimesh

from xpt.toolkit import procedural
from xpt.toolkit.procedural import (
    ALL_CATEGORIES,
    CATEGORIES,
    EVAL_ONLY_CATEGORIES,
    build_parts,
    category_id,
    generate,
    objects,
)
from xpt.toolkit.procedural.params import Draw
from xpt.toolkit.procedural.parts import (
    Piece,
    box,
    column,
    lathe,
    mirror_x,
    torus,
    tube,
    vessel,
)
from xpt.toolkit.seeding import derive_seed
from xpt.toolkit.synth import export_obj

SEEDS = (0, 1, 2)


def _signed_volume(piece: Piece) -> float:
    tri = piece.vertices[piece.faces]
    return float(np.einsum("ij,ij->i", tri[:, 0], np.cross(tri[:, 1], tri[:, 2])).sum() / 6.0)


def _vertices(scene: trimesh.Scene) -> np.ndarray:
    return np.concatenate([g.vertices for g in scene.geometry.values()])


def _part(parts, name):
    return next(p for p in parts if p.name == name)


# --- the pinned API -------------------------------------------------------------------


def test_category_lists_and_ids():
    needed = {
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
    }
    assert needed <= set(CATEGORIES)
    assert len(EVAL_ONLY_CATEGORIES) >= 3
    assert not set(EVAL_ONLY_CATEGORIES) & set(CATEGORIES)
    ids = [category_id(name) for name in ALL_CATEGORIES]
    assert len(set(ids)) == len(ids)
    assert ids[0] == "proc-chair"
    # ShapeNet synsets are 8-digit numbers: no procedural id may look like one
    assert not any(re.fullmatch(r"\d+", i) for i in ids)
    with pytest.raises(ValueError, match="unknown procedural category 'spaceship'.*chair"):
        category_id("spaceship")
    with pytest.raises(ValueError, match="spaceship"):
        generate("spaceship", 0)


def test_objects_ids_labels_and_seeds():
    objs = objects(3, seed=7, categories=["mug", "chair"])
    assert [o.model_id for o in objs] == [
        f"{c}-{i:06d}" for c in ("mug", "chair") for i in range(3)
    ]
    assert {o.source for o in objs} == {"procedural"}
    assert [o.label for o in objs] == [3, 3, 3, 0, 0, 0]
    assert objs[4].category_id == "proc-chair" and objs[4].category_name == "chair"
    assert objs[4].seed == derive_seed(7, "chair", 1)
    assert objs[4].key == "procedural_proc-chair_chair-000001"
    assert objects(3, seed=7, categories=["mug", "chair"]) == objs
    assert len(objects(2)) == 2 * len(CATEGORIES)
    assert all(o.split is None and o.path is None for o in objs)


def test_eval_objects_are_a_disjoint_wider_set():
    pre = objects(4, seed=0)
    ev = objects(4, seed=0, eval=True)
    assert {o.category_name for o in ev} == set(ALL_CATEGORIES)
    assert {o.source for o in ev} == {"procedural-eval"}
    assert not {o.seed for o in pre} & {o.seed for o in ev}
    assert not {o.key for o in pre} & {o.key for o in ev}
    stool = next(o for o in ev if o.category_name == "stool")
    assert stool.label == ALL_CATEGORIES.index("stool") == len(CATEGORIES) + 0
    assert stool.model_id == "stool-eval-000000"
    assert stool.seed == derive_seed(0, "eval", "stool", 0)
    # eval-only categories are refused for pretraining, with the valid names listed
    with pytest.raises(ValueError, match="'stool'.*valid: chair"):
        objects(1, categories=["stool"])
    with pytest.raises(ValueError, match="per_category"):
        objects(-1)


# --- determinism ----------------------------------------------------------------------


@pytest.mark.parametrize("wide", [False, True])
def test_same_seed_same_bytes_every_category(wide):
    for name in ALL_CATEGORIES:
        first = export_obj(generate(name, 11, wide=wide))
        second = export_obj(generate(name, 11, wide=wide))
        assert first == second, name
        assert first[0].count(b"\nusemtl ") >= 2


def test_different_seed_different_meshes_every_category():
    for name in ALL_CATEGORIES:
        a, b = _vertices(generate(name, 1)), _vertices(generate(name, 2))
        assert a.shape != b.shape or not np.allclose(a, b), name
        c = _vertices(generate(name, 1, wide=True))
        assert a.shape != c.shape or not np.allclose(a, c), name


# --- geometry sanity ------------------------------------------------------------------


@pytest.mark.parametrize("wide", [False, True])
def test_every_category_is_sane(wide):
    for name in ALL_CATEGORIES:
        for seed in SEEDS:
            scene = generate(name, seed, wide=wide)
            assert len(scene.geometry) >= 2, (name, seed)
            assert len(scene.graph.nodes_geometry) == len(scene.geometry)
            vertices = _vertices(scene)
            assert np.isfinite(vertices).all()
            lo, hi = vertices.min(axis=0), vertices.max(axis=0)
            # standing on the floor, centred in x and z, largest extent exactly 1
            assert lo[1] == pytest.approx(0.0, abs=1e-9), (name, seed)
            assert (lo + hi)[[0, 2]] == pytest.approx([0.0, 0.0], abs=1e-9)
            assert (hi - lo).max() == pytest.approx(1.0)
            assert (hi - lo).min() > 0.02, (name, seed)
            for part_name, mesh in scene.geometry.items():
                assert len(mesh.faces) > 0
                assert mesh.faces.max() < len(mesh.vertices)
                # every part is closed and wound outward
                assert mesh.volume > 0, (name, seed, part_name)
                assert mesh.area_faces.sum() > 0
            total = sum(len(m.faces) for m in scene.geometry.values())
            assert 24 <= total <= 5000, (name, seed, total)


def test_upright_and_facing_front():
    for seed in SEEDS:
        chair = build_parts("chair", seed)
        seat, back = _part(chair, "seat"), _part(chair, "back")
        # the back rises above the seat and sits behind it (front is +Z)
        assert back.piece.vertices[:, 1].max() > seat.piece.vertices[:, 1].max() + 0.1
        assert back.piece.vertices[:, 2].mean() < seat.piece.vertices[:, 2].mean()
        monitor = build_parts("monitor", seed)
        display, panel = _part(monitor, "display"), _part(monitor, "panel")
        assert display.piece.vertices[:, 2].max() > panel.piece.vertices[:, 2].max()
        assert display.piece.vertices[:, 1].min() > 0.05
        table = build_parts("table", seed)
        top = _part(table, "top")
        assert top.piece.vertices[:, 1].max() == pytest.approx(
            np.concatenate([p.piece.vertices for p in table])[:, 1].max()
        )
        for tall in ("bottle", "lamp", "guitar"):
            extent = np.ptp(np.concatenate([p.piece.vertices for p in build_parts(tall, seed)]), 0)
            assert extent[1] == pytest.approx(1.0), (tall, seed)
        for flat in ("bed", "car", "airplane", "bench", "bowl"):
            extent = np.ptp(np.concatenate([p.piece.vertices for p in build_parts(flat, seed)]), 0)
            assert extent[1] < 0.75, (flat, seed)
        airplane = build_parts("airplane", seed)
        fuselage = _part(airplane, "fuselage").piece.vertices
        nose = fuselage[np.argmax(fuselage[:, 2])]
        assert abs(nose[0]) < 0.01 and nose[2] > 0.3


def test_similar_categories_differ_in_proportions():
    def ratio(name: str, a: int, b: int) -> float:
        ext = [
            np.ptp(np.concatenate([p.piece.vertices for p in build_parts(name, s)]), 0)
            for s in range(8)
        ]
        return float(np.mean([e[a] / e[b] for e in ext]))

    # table / bench / bed share a top on legs: depth over width tells them apart
    assert ratio("bench", 2, 0) < ratio("table", 2, 0) < 1.0 < ratio("bed", 2, 0)
    # bottle / vase / bowl share revolved bodies: height over width
    assert ratio("bottle", 1, 0) > ratio("vase", 1, 0) > 1.0 > ratio("bowl", 1, 0)
    names = {c: {p.name for s in range(8) for p in build_parts(c, s)} for c in CATEGORIES}
    assert all("legs" in names[c] for c in ("table", "bench", "bed", "chair", "sofa"))
    assert {"mattress", "headboard", "pillows"} <= names["bed"] - names["table"] - names["bench"]
    assert "cap" in names["bottle"] and "cap" not in names["vase"]
    assert "handle" in names["mug"] and "handle" not in names["bowl"]


def test_wide_range_is_wider():
    def spread(name: str, wide: bool) -> float:
        ratios = []
        for seed in range(24):
            ext = np.ptp(
                np.concatenate([p.piece.vertices for p in build_parts(name, seed, wide=wide)]), 0
            )
            ratios.append(ext[1] / max(ext[0], ext[2]))
        return float(np.std(np.log(ratios)))

    for name in ("chair", "bottle", "table"):
        assert spread(name, True) > 1.2 * spread(name, False), name


def test_draw_ranges():
    normal = Draw(np.random.default_rng(0))
    wide = Draw(np.random.default_rng(0), wide=True)
    a = np.array([normal.uniform(1.0, 2.0) for _ in range(400)])
    b = np.array([wide.uniform(1.0, 2.0) for _ in range(400)])
    assert a.min() >= 1.0 and a.max() <= 2.0
    assert b.min() < 0.9 and b.max() > 2.1 and b.min() >= 0.5
    assert {normal.integer(2, 4) for _ in range(200)} == {2, 3, 4}
    assert {wide.integer(2, 4) for _ in range(300)} == {1, 2, 3, 4, 5}
    assert wide.integer(3, 3, floor=3) in (3, 4)
    picks = [normal.choice(["a", "b"], [0.9, 0.1]) for _ in range(1000)]
    assert 0.85 < picks.count("a") / 1000 < 0.95
    colour = normal.colour("wood")
    assert colour.rgba[3] == 255 and all(0 <= c <= 255 for c in colour.rgba)


# --- primitives -----------------------------------------------------------------------


def test_primitives_are_closed_and_outward():
    b = box((1.0, 2.0, 3.0), (5.0, 0.0, 0.0))
    assert _signed_volume(b) == pytest.approx(6.0)
    n = 16
    cyl = column((0, 0, 0), (0, 2.0, 0), 1.0, sides=n)  # diameter 1, height 2
    assert _signed_volume(cyl) == pytest.approx(2.0 * 0.5 * n * np.sin(2 * np.pi / n) * 0.25)
    square = column((0, 0, 0), (0, 1.0, 0), 0.5, 0.25, sides=4)
    assert _signed_volume(square) == pytest.approx((0.25 + 0.0625 + 0.125) / 3)
    ring = torus(1.0, 0.1, sides=64, bands=32)
    assert _signed_volume(ring) == pytest.approx(2 * np.pi**2 * 1.0 * 0.01, rel=0.02)
    solid = lathe([[1.0, 0.0], [1.0, 1.0]], sides=64)
    cup = vessel([[1.0, 0.0], [1.0, 1.0]], 0.1, sides=64)
    assert 0 < _signed_volume(cup) < _signed_volume(solid)
    assert _signed_volume(cup) == pytest.approx(np.pi * (1.0 - 0.81 * 0.9), rel=0.02)
    path = np.array([[0, 0, 0], [0, 1, 0], [1, 2, 0], [2, 2, 1.0]])
    pipe = tube(path, 0.05, sides=12)
    assert _signed_volume(pipe) > 0
    assert _signed_volume(mirror_x(pipe)) == pytest.approx(_signed_volume(pipe))
    for piece in (b, cyl, ring, cup, pipe):
        mesh = trimesh.Trimesh(piece.vertices, piece.faces, process=True)
        assert mesh.is_watertight and mesh.is_winding_consistent


# --- colours: OBJ/MTL and pyrender ----------------------------------------------------


def test_colours_survive_obj_round_trip(tmp_path):
    parts = build_parts("chair", 3)
    obj_bytes, mtl_bytes = export_obj(procedural.to_scene(parts))
    (tmp_path / "model_normalized.obj").write_bytes(obj_bytes)
    (tmp_path / "model_normalized.mtl").write_bytes(mtl_bytes)
    loaded = trimesh.load(tmp_path / "model_normalized.obj", force="scene")
    assert set(loaded.geometry) == {p.name for p in parts}
    for part in parts:
        mesh = loaded.geometry[part.name]
        assert len(mesh.faces) == len(part.piece.faces)
        assert np.abs(mesh.vertices.max(0) - part.piece.vertices.max(0)).max() < 1e-5
        diffuse = np.asarray(mesh.visual.material.diffuse[:3], dtype=int)
        assert np.abs(diffuse - part.colour.rgba[:3]).max() <= 1
    assert mtl_bytes.count(b"\nKd ") == len(parts)


def test_pyrender_gets_part_colours():
    os.environ.setdefault("PYOPENGL_PLATFORM", "egl")
    pyrender = pytest.importorskip("pyrender")
    scene = generate("car", 5)
    for name, mesh in scene.geometry.items():
        expected = np.asarray(mesh.visual.material.diffuse, dtype=np.float32) / 255.0
        material = pyrender.Mesh.from_trimesh(mesh).primitives[0].material
        assert np.allclose(material.baseColorFactor, expected), name
    colours = {tuple(m.visual.material.diffuse) for m in scene.geometry.values()}
    assert len(colours) >= 2
