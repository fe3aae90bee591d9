"""Part IoU against a hand-computed example and against the release's loop written out."""

from __future__ import annotations

import numpy as np
import pytest

from xpt.partseg.metrics import part_scores, shape_ious

RANGES = ((0, 2), (2, 5))  # category 0: parts 0-1; category 1: parts 2-4
CATEGORIES = ("mug", "lamp")


def test_a_hand_computed_example_with_an_absent_part() -> None:
    true = np.array([[0, 0, 1, 1], [2, 2, 3, 3], [4, 4, 4, 4]])
    pred = np.array([[0, 1, 1, 1], [2, 2, 3, 0], [4, 4, 4, 4]])
    category = np.array([0, 1, 1])
    # shape 0: part 0 1/2, part 1 2/3; shape 1: part 2 2/2, part 3 1/2, part 4 absent -> 1;
    # shape 2: parts 2 and 3 absent -> 1 each, part 4 4/4
    expected = [(1 / 2 + 2 / 3) / 2, (1 + 1 / 2 + 1) / 3, 1.0]
    assert shape_ious(pred, true, category, RANGES) == pytest.approx(expected, abs=1e-12)
    scores = part_scores(pred, true, category, RANGES, CATEGORIES)
    assert scores.instance_miou == pytest.approx(sum(expected) / 3, abs=1e-12)
    assert scores.per_category == pytest.approx({"mug": expected[0], "lamp": 11 / 12})
    assert scores.class_miou == pytest.approx((expected[0] + 11 / 12) / 2, abs=1e-12)
    assert scores.shapes == {"mug": 1, "lamp": 2}
    assert scores.point_accuracy == pytest.approx(10 / 12)


def _release_shape_ious(pred_np, seg_np, label, index_start, seg_num):
    """The release's calculate_shape_IoU (train_partseg.py), written out as it loops."""
    out = []
    for shape in range(seg_np.shape[0]):
        start, num = index_start[label[shape]], seg_num[label[shape]]
        part_ious = []
        for part in range(start, start + num):
            inter = np.sum(np.logical_and(pred_np[shape] == part, seg_np[shape] == part))
            union = np.sum(np.logical_or(pred_np[shape] == part, seg_np[shape] == part))
            part_ious.append(1 if union == 0 else inter / float(union))
        out.append(np.mean(part_ious))
    return out


def test_matches_the_release_loop_on_random_predictions() -> None:
    rng = np.random.default_rng(0)
    category = rng.integers(0, 2, size=40)
    true = np.stack([rng.integers(*RANGES[c], size=64) for c in category])
    pred = rng.integers(0, 5, size=(40, 64))  # ids of the other category too, as argmax gives
    ours = shape_ious(pred, true, category, RANGES)
    release = _release_shape_ious(pred, true, category, [0, 2], [2, 3])
    assert ours == pytest.approx(release, abs=1e-12)


def test_shapes_must_agree() -> None:
    with pytest.raises(ValueError, match="must be equal"):
        shape_ious(np.zeros((2, 3)), np.zeros((2, 4)), np.zeros(2, dtype=int), RANGES)
