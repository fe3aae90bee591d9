"""procedural-parts: labels that follow the visible surface on every category, the tie rule
where parts share a surface, determinism, the DGCNN h5 layout read back, the cache, failures,
bad input, and ``xpt synth --eval --parts``."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import trimesh
from typer.testing import CliRunner

from xpt.partseg import procedural as pp
from xpt.partseg.data import PartSetError, load_part_set
from xpt.toolkit.cli import app
from xpt.toolkit.failures import read_failures
from xpt.toolkit.procedural import ALL_CATEGORIES, build_parts
from xpt.toolkit.procedural.params import Colour
from xpt.toolkit.procedural.parts import Part, box

GREY = Colour((128, 128, 128, 255), 10.0)
ON_SURFACE = 1e-7  # a sampled point lies on a triangle up to rounding
INSIDE_SLACK = 1e-3  # "strictly inside": deeper than this (the brief's 1e-3 of the extent)


def reference_winding(points: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """Sum of the triangles' signed solid angles over 4 pi, written out plainly."""
    a, b, c = (triangles[None, :, i] - points[:, None] for i in range(3))
    la, lb, lc = (np.linalg.norm(v, axis=2) for v in (a, b, c))
    det = np.einsum("pfi,pfi->pf", a, np.cross(b, c))
    dot = lambda u, v: np.einsum("pfi,pfi->pf", u, v)  # noqa: E731
    den = la * lb * lc + dot(a, b) * lc + dot(b, c) * la + dot(c, a) * lb
    return (2.0 * np.arctan2(det, den)).sum(axis=1) / (4.0 * np.pi)


def distances(points: np.ndarray, triangles: np.ndarray, reach: float) -> np.ndarray:
    """Distance from each point to the nearest triangle; inf where none is within ``reach``
    (pairs whose boxes are farther apart cannot be, so they are not measured)."""
    lo, hi = triangles.min(axis=1) - reach, triangles.max(axis=1) + reach
    near = ((points[:, None] >= lo[None]) & (points[:, None] <= hi[None])).all(axis=2)
    which, face = np.nonzero(near)
    result = np.full(len(points), np.inf)
    if len(which):
        gap = points[which] - trimesh.triangles.closest_point(triangles[face], points[which])
        np.minimum.at(result, which, np.linalg.norm(gap, axis=1))
    return result


def triangles_of(part: Part) -> np.ndarray:
    return np.asarray(part.piece.vertices, dtype=np.float64)[part.piece.faces]


def check_labels_follow_surfaces(category: str, parts: list[Part], points, labels) -> None:
    """(a) no point lies strictly inside a part of another label; (b) each point lies on a
    part of its own label, and no part of an earlier vocabulary label comes within the tie
    distance (that label would have won the shared surface)."""
    part_label = pp.part_labels(category, parts)
    for part, label in zip(parts, part_label, strict=True):
        triangles = triangles_of(part)
        other = labels != label
        winding = reference_winding(points[other], triangles)
        depth_free = distances(points[other], triangles, INSIDE_SLACK) <= INSIDE_SLACK
        inside = (winding > 0.5) & ~depth_free
        assert not inside.any(), f"{category}: {inside.sum()} points inside its {part.name}"
    for label in np.unique(part_label):
        triangles = np.concatenate(
            [triangles_of(p) for p, lab in zip(parts, part_label, strict=True) if lab == label]
        )
        gap = distances(points, triangles, pp.SURFACE_EPS)
        own = labels == label
        assert (gap[own] <= ON_SURFACE).all(), f"{category}: a point off its part {label}"
        later = labels > label
        assert (gap[later] > 0.99 * pp.SURFACE_EPS).all(), (
            f"{category}: a point labelled after {label} on the surface of {label}"
        )


@pytest.mark.parametrize("category", ALL_CATEGORIES)
def test_labels_follow_the_visible_surface(category: str) -> None:
    for obj in pp.part_objects(2, seed=5, categories=[category]):
        parts = build_parts(category, int(obj.seed), wide=True)
        points, labels = pp.sample_labelled_parts(category, parts, 160, int(obj.seed))
        assert points.shape == (160, 3) and labels.shape == (160,)
        check_labels_follow_surfaces(category, parts, points, labels)


def test_the_vocabulary_covers_the_library() -> None:
    """Every library part maps into its category's fixed vocabulary of 2-6 parts, and every
    vocabulary part occurs in some of 40 objects."""
    assert set(pp.PART_VOCABULARY) == set(ALL_CATEGORIES) == set(pp.PART_OF)
    for category in ALL_CATEGORIES:
        vocabulary = pp.PART_VOCABULARY[category]
        assert 2 <= len(vocabulary) <= 6 and len(set(vocabulary)) == len(vocabulary)
        assert set(pp.PART_OF[category].values()) == set(vocabulary)
        seen: set[int] = set()
        for obj in pp.part_objects(40, categories=[category]):
            seen |= set(pp.part_labels(category, build_parts(category, obj.seed, wide=True)))
        assert seen == set(range(len(vocabulary))), category
    ranges = pp.part_ranges(ALL_CATEGORIES)
    assert ranges[0] == (0, 4) and ranges[-1] == (62, 65)
    assert pp.global_part_names(ALL_CATEGORIES)[:2] == ("chair/back", "chair/seat")
    with pytest.raises(ValueError, match="'wheels' has no entry"):
        pp.part_labels("chair", [Part("wheels", box((1, 1, 1)), GREY)])


def test_a_shared_surface_gets_one_label_and_a_pressed_face_none() -> None:
    """A sofa's arm flush with the side, front, back and bottom of its base (arm is listed
    first: the shared faces are the arm's, sampled once), a cushion lying on the base (the
    faces pressed together are not visible: no point there)."""
    parts = [
        Part("base", box((1.0, 0.4, 0.6), (0.0, 0.2, 0.0)), GREY),
        Part("arms", box((0.1, 0.6, 0.6), (0.45, 0.3, 0.0)), GREY),
        Part("cushions", box((0.6, 0.1, 0.4), (-0.1, 0.45, 0.0)), GREY),
    ]
    points, labels = pp.sample_labelled_parts("sofa", parts, 6000, seed=0)
    arm, cushion, base = (pp.PART_VOCABULARY["sofa"].index(n) for n in ("arm", "cushion", "base"))
    assert (points[labels == base, 0] <= 0.4 + 1e-9).all()  # none on the arm's faces
    side = np.abs(points[:, 0] - 0.5) < 1e-9
    shared, arm_only = side & (points[:, 1] < 0.4), side & (points[:, 1] > 0.4)
    assert set(labels[shared]) == {arm}
    # the shared 0.4 x 0.6 face is sampled as densely as the arm's own 0.2 x 0.6, not twice
    assert 1.5 < shared.sum() / arm_only.sum() < 2.6, (shared.sum(), arm_only.sum())
    pressed = (
        (np.abs(points[:, 1] - 0.4) < 1e-9)
        & (np.abs(points[:, 0] + 0.1) < 0.3 - 1e-3)
        & (np.abs(points[:, 2]) < 0.2 - 1e-3)
    )
    assert not pressed.any()
    assert (labels == cushion).sum() > 0 and (labels == base).sum() > 0
    check_labels_follow_surfaces("sofa", parts, points[:600], labels[:600])


def test_a_part_inside_another_gets_no_points_and_too_little_surface_is_refused(
    monkeypatch,
) -> None:
    outer = Part("base", box((1.0, 1.0, 1.0), (0.0, 0.5, 0.0)), GREY)
    inner = Part("cushions", box((0.9, 0.9, 0.9), (0.0, 0.5, 0.0)), GREY)
    _, labels = pp.sample_labelled_parts("sofa", [outer, inner], 300, seed=1)
    assert set(labels) == {pp.PART_VOCABULARY["sofa"].index("base")}
    monkeypatch.setattr(pp, "_MAX_DRAWS", 1)  # one draw cannot replace the 45 % hidden
    with pytest.raises(ValueError, match=r"^only \d+ of 300 points fell on the visible surface$"):
        pp.sample_labelled_parts("sofa", [outer, inner], 300, seed=1)


def h5_arrays(folder, split: str) -> dict[str, np.ndarray]:
    with h5py.File(folder / "hdf5_data" / f"ply_data_{split}0.h5", "r") as handle:
        return {key: handle[key][()] for key in handle}


def test_same_seed_same_bytes_other_seed_other_clouds(tmp_path) -> None:
    def write(name: str, seed: int) -> dict[str, np.ndarray]:
        pp.write_parts_set(tmp_path / name, 3, seed, categories=["sofa", "chair"], points=96)
        return h5_arrays(tmp_path / name, "train")

    first, again, other = write("a", 3), write("b", 3), write("c", 4)
    for key in ("data", "label", "pid"):
        assert first[key].tobytes() == again[key].tobytes()
    assert first["data"].tobytes() != other["data"].tobytes()


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("parts") / "set"
    return out, pp.write_parts_set(out, 3, seed=0, points=128)


def test_the_set_is_written_in_dgcnn_h5_layout(written) -> None:
    out, summary = written
    assert summary == {
        "out": str(out), "categories": 19, "parts": 65, "train": 19, "val": 19, "test": 19,
        "points": 128, "files": 3, "failed": 0,
    }  # fmt: skip
    folder = out / "hdf5_data"
    record = json.loads((out / "parts.json").read_text())
    assert (record["version"], record["seed"], record["points"]) == (pp.VERSION, 0, 128)
    assert record["categories"] == list(ALL_CATEGORIES)
    assert record["vocabulary"]["sofa"] == ["arm", "back", "cushion", "base", "leg"]
    assert record["part_of"]["car"]["hubs"] == "wheel" and record["part_ranges"][-1] == [62, 65]
    lines = (folder / "all_object_categories.txt").read_text().splitlines()
    assert lines[0] == "Chair\tproc-chair" and lines[-1] == "Plant\tproc-plant" and len(lines) == 19
    for split in ("train", "val", "test"):
        listing = (folder / f"{split}_hdf5_file_list.txt").read_text()
        assert listing == f"ply_data_{split}0.h5\n"
        arrays = h5_arrays(out, split)
        assert {k: (v.dtype, v.shape) for k, v in arrays.items()} == {
            "data": (np.float32, (19, 128, 3)),
            "label": (np.uint8, (19, 1)),
            "pid": (np.uint8, (19, 128)),
        }
        assert sorted(arrays["label"][:, 0]) == list(range(19))  # one object a category
        ranges = np.asarray(record["part_ranges"])[arrays["label"][:, 0]]
        assert ((arrays["pid"] >= ranges[:, :1]) & (arrays["pid"] < ranges[:, 1:])).all()
        radius = np.linalg.norm(arrays["data"], axis=2)
        assert np.allclose(radius.max(axis=1), 1.0, atol=1e-6)
        assert np.abs(arrays["data"].mean(axis=1)).max() < 1e-5
        names = json.loads((folder / f"ply_data_{split}_0_id2file.json").read_text())
        category = [ALL_CATEGORIES[label] for label in arrays["label"][:, 0]]
        assert [name.split("/")[0] for name in names] == category
        assert all(
            name.split("/")[1].startswith(f"{c}-parts-")
            for name, c in zip(names, category, strict=True)
        )


def test_the_set_reads_back_as_a_part_set(written) -> None:
    out, _ = written
    part_set = load_part_set("procedural-parts", out, points=64)
    assert part_set.name == "procedural-parts" and part_set.categories == ALL_CATEGORIES
    assert part_set.num_parts == 65 and part_set.part_names[62:] == (
        "plant/pot", "plant/stem", "plant/leaf",
    )  # fmt: skip
    stored = h5_arrays(out, "test")
    test = part_set.splits["test"]
    assert test.points.shape == (19, 64, 3) and test.parts.dtype == np.int64
    assert np.array_equal(test.parts, stored["pid"][:, :64].astype(np.int64))
    assert np.array_equal(test.points, stored["data"][:, :64])
    names = json.loads((out / "hdf5_data" / "ply_data_test_0_id2file.json").read_text())
    assert test.shape_ids == tuple(names)
    assert set(pp.read_parts_set(out / "hdf5_data").splits) == {"train", "val", "test"}
    with pytest.raises(PartSetError, match="fewer than the 512 asked for"):
        pp.read_parts_set(out, points=512)


def test_bad_sets_are_refused_in_one_line(written, tmp_path) -> None:
    with pytest.raises(PartSetError, match="no parts.json") as error:
        pp.read_parts_set(tmp_path)
    assert "\n" not in str(error.value)
    out, _ = written
    bad = tmp_path / "bad"
    (bad / "hdf5_data").mkdir(parents=True)
    for file in (out / "hdf5_data").iterdir():
        (bad / "hdf5_data" / file.name).write_bytes(file.read_bytes())
    (bad / "parts.json").write_bytes((out / "parts.json").read_bytes())
    with h5py.File(bad / "hdf5_data" / "ply_data_val0.h5", "r+") as handle:
        handle["pid"][0, 0] = 64  # a plant part on whatever shape 0 is
    with pytest.raises(PartSetError, match=r"ply_data_val0.h5: 1 part ids outside") as error:
        pp.read_parts_set(bad)
    assert "\n" not in str(error.value)


def test_a_generated_set_is_cached_and_reused(tmp_path, monkeypatch) -> None:
    first = pp.load_procedural_parts(None, points=32, seed=1, per_category=2, cache_dir=tmp_path)
    assert (tmp_path / f"procedural-parts-pc2-p32-s1-v{pp.VERSION}" / "parts.json").is_file()
    assert len(first.splits["train"]) == 19 and "val" not in first.splits

    def refuse(*args, **kwargs):
        raise AssertionError("regenerated a complete cached set")

    monkeypatch.setattr(pp, "write_parts_set", refuse)
    again = pp.load_procedural_parts(None, points=32, seed=1, per_category=2, cache_dir=tmp_path)
    assert np.array_equal(again.splits["test"].points, first.splits["test"].points)


def test_a_failing_object_is_recorded_and_left_out(tmp_path, monkeypatch) -> None:
    real = pp.sample_labelled_parts
    broken = pp.part_objects(3, seed=0, categories=["mug"])[1]

    def flaky(category, parts, points, seed):
        if seed == pp.derive_seed(0, "parts-points", broken.key):
            raise ValueError("only 3 of 32 points fell on the visible surface")
        return real(category, parts, points, seed)

    monkeypatch.setattr(pp, "sample_labelled_parts", flaky)
    for _ in range(2):  # a rerun does not record the same failure twice
        summary = pp.write_parts_set(tmp_path, 3, categories=["mug", "cup"], points=32)
    assert summary["failed"] == 1 and summary["train"] + summary["val"] + summary["test"] == 5
    failures = read_failures(tmp_path / "failures.jsonl")
    assert [(f.id, f.stage) for f in failures] == [(broken.key, "part-set")]
    read = pp.read_parts_set(tmp_path)
    every_name = [name for split in read.splits.values() for name in split.shape_ids]
    assert broken.display not in every_name and len(every_name) == 5


def test_synth_eval_parts_writes_the_set_and_refuses_without_eval(tmp_path) -> None:
    runner = CliRunner()
    out = tmp_path / "parts"
    result = runner.invoke(app, ["synth", str(out), "--eval", "--parts", "--per-category", "2"])
    assert result.exit_code == 0, result.output
    assert "procedural-parts" in result.output and "65" in result.output
    record = json.loads((out / "parts.json").read_text())
    assert record["counts"] == {"train": 19, "val": 0, "test": 19}
    train = h5_arrays(out, "train")
    assert train["data"].shape == (19, 2048, 3)
    assert min(len(np.unique(pid)) for pid in train["pid"]) >= 2  # two parts on every object
    assert not (out / "hdf5_data" / "ply_data_val0.h5").exists()
    for args, message in (
        (["--parts"], "--parts writes an evaluation set: add --eval"),
        (["--eval", "--scan", "--parts"], "--scan and --parts"),
        (["--eval", "--parts", "--per-category", "1"], "per_category must be >= 2"),
    ):
        refused = runner.invoke(app, ["synth", str(tmp_path / "no"), *args])
        assert refused.exit_code == 1 and message in refused.output
        assert len(refused.output.strip().splitlines()) == 1, refused.output


def test_every_finetuning_seed_reads_the_same_cached_set(tmp_path, monkeypatch) -> None:
    """Without a folder the set is generated once into the cache (seed 0) and read back: the
    fine-tuning seed draws the runs, not the data."""
    monkeypatch.setenv("XPT_CACHE", str(tmp_path / "cache"))
    first = load_part_set("procedural-parts", None, points=32, seed=5, per_category=2)
    again = load_part_set("procedural-parts", None, points=32, seed=6, per_category=2)
    assert [p.name for p in (tmp_path / "cache").iterdir()] == ["procedural-parts-pc2-p32-s0-v1"]
    for split in ("train", "test"):
        assert np.array_equal(first.splits[split].points, again.splits[split].points)
        assert np.array_equal(first.splits[split].parts, again.splits[split].parts)
