"""Part-segmentation scores: per-shape IoU, instance mIoU, class mIoU, per-category IoU.

A shape's IoU is the mean, over the parts of its category, of |pred ∩ true| / |pred ∪ true|
counted in points; a part that is neither predicted nor present (an empty union) counts as 1,
as in the CrossPoint release (``calculate_shape_IoU``) and PointNet's evaluation. Instance
mIoU averages the shape IoUs over shapes; class mIoU averages them within each category,
then over the categories present (the release reports instance mIoU only).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


def shape_ious(
    predicted: np.ndarray,
    true: np.ndarray,
    category: np.ndarray,
    part_ranges: Sequence[tuple[int, int]],
) -> np.ndarray:
    """(S,) float64: each shape's mean part IoU over its category's parts.

    ``predicted`` and ``true`` (S, P) global part ids; ``category`` (S,) indices into
    ``part_ranges`` ([start, stop) of each category's global ids). A predicted id outside
    the category's range matches no part of it, so it only lowers that point's true part.
    """
    predicted, true = np.asarray(predicted), np.asarray(true)
    if predicted.shape != true.shape or predicted.ndim != 2:
        raise ValueError(f"predicted {predicted.shape} and true {true.shape} must be equal (S, P)")
    out = np.empty(len(true), dtype=np.float64)
    for index, (pred, gold, cat) in enumerate(zip(predicted, true, category, strict=True)):
        start, stop = part_ranges[int(cat)]
        parts = np.arange(start, stop)[:, None]  # (parts, 1) against (P,)
        is_pred, is_true = pred[None, :] == parts, gold[None, :] == parts
        intersection = np.logical_and(is_pred, is_true).sum(axis=1)
        union = np.logical_or(is_pred, is_true).sum(axis=1)
        ious = np.where(union == 0, 1.0, intersection / np.maximum(union, 1))
        out[index] = ious.mean()
    return out


@dataclass(frozen=True)
class PartScores:
    """The scores of one evaluation: fractions in [0, 1]; ``per_category`` maps each
    category present to its mean shape IoU and ``shapes`` to its shape count."""

    instance_miou: float
    class_miou: float
    per_category: dict[str, float]
    shapes: dict[str, int]
    point_accuracy: float

    def as_dict(self) -> dict[str, object]:
        return {
            "instance_miou": self.instance_miou,
            "class_miou": self.class_miou,
            "point_accuracy": self.point_accuracy,
            "per_category": dict(self.per_category),
            "shapes": dict(self.shapes),
        }


def part_scores(
    predicted: np.ndarray,
    true: np.ndarray,
    category: np.ndarray,
    part_ranges: Sequence[tuple[int, int]],
    categories: Sequence[str],
) -> PartScores:
    """Instance and class mIoU, per-category IoU and point accuracy of one split."""
    ious = shape_ious(predicted, true, category, part_ranges)
    category = np.asarray(category)
    per_category, shapes = {}, {}
    for index, name in enumerate(categories):
        mine = ious[category == index]
        if len(mine):
            per_category[name] = float(mine.mean())
            shapes[name] = len(mine)
    return PartScores(
        instance_miou=float(ious.mean()),
        class_miou=float(np.mean(list(per_category.values()))),
        per_category=per_category,
        shapes=shapes,
        point_accuracy=float((np.asarray(predicted) == np.asarray(true)).mean()),
    )
