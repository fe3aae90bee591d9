"""The part-segmentation picture: test shapes coloured by predicted and by true part."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from xpt.partseg.data import PartSet
from xpt.partseg.metrics import shape_ious
from xpt.toolkit.fsio import atomic_write_bytes

MAX_SHAPES = 6
OTHER_CATEGORY = (0.6, 0.6, 0.6, 1.0)  # grey: a part id of another category (the argmax is free)


def picked_shapes(part_set: PartSet, limit: int = MAX_SHAPES) -> list[int]:
    """The first test shape of each category, in category order, at most ``limit``."""
    category = part_set.splits["test"].category
    firsts = [int(np.flatnonzero(category == c)[0]) for c in np.unique(category)]
    return firsts[:limit]


def write_partseg_picture(
    path: Path, part_set: PartSet, predictions: dict[str, np.ndarray], points: int
) -> Path:
    """One row per picked test shape: its true parts, then each arm's prediction
    (``predictions``: arm name -> (S, points) part ids), the shape IoU in each title; a
    point predicted as another category's part is grey."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    test = part_set.splits["test"]
    shapes = picked_shapes(part_set)
    columns = ["true", *predictions]
    figure = plt.figure(figsize=(2.6 * len(columns), 2.6 * len(shapes)))
    for row, shape in enumerate(shapes):
        cloud, category = test.points[shape, :points], int(test.category[shape])
        start, stop = part_set.part_ranges[category]
        labels = {"true": test.parts[shape, :points]}
        labels.update({name: pred[shape] for name, pred in predictions.items()})
        for column, name in enumerate(columns):
            axes = figure.add_subplot(len(shapes), len(columns), row * len(columns) + column + 1,
                                      projection="3d")  # fmt: skip
            own = np.asarray(labels[name]) - start  # a part of this category: 0 .. parts - 1
            colours = plt.get_cmap("tab10")(own % 10)
            colours[(own < 0) | (own >= stop - start)] = OTHER_CATEGORY
            # +Y up in the data, +Z up in matplotlib's 3-D axes
            axes.scatter(cloud[:, 0], cloud[:, 2], cloud[:, 1], c=colours, s=4, linewidths=0)
            for limits in (axes.set_xlim, axes.set_ylim, axes.set_zlim):
                limits(-0.8, 0.8)  # the clouds lie in the unit sphere; one scale for all
            axes.set_axis_off()
            axes.view_init(elev=20, azim=-60)
            title = part_set.categories[category] if name == "true" else name
            if name != "true":
                iou = shape_ious(labels[name][None], labels["true"][None], [category],
                                 part_set.part_ranges)[0]  # fmt: skip
                title += f" ({100 * iou:.0f} %)"
            axes.set_title(title, fontsize=8)
    figure.suptitle(f"{part_set.name}: test shapes, true and predicted parts", fontsize=9)
    figure.subplots_adjust(left=0, right=1, bottom=0, top=0.95, wspace=0, hspace=0.08)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    plt.close(figure)
    return atomic_write_bytes(path, buffer.getvalue(), "the picture")
