"""Fine-tuning on the training loop's parts: the loss, selection that never reads test,
exact resume, and the run's result."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from xpt.partseg.config import FinetuneConfig
from xpt.partseg.data import PartSet, PartSplit
from xpt.partseg.finetune import (
    RESULT_FILE,
    PartLoader,
    finetune,
    smoothed_cross_entropy,
    training_split,
)

pytestmark = pytest.mark.usefixtures("one_thread")

RANGES = ((0, 2), (2, 5))
POINTS = 32


def _split(count: int, seed: int) -> PartSplit:
    """Clouds whose part is read off their height: category 0 splits at y = 0 into two
    parts, category 1 into three bands."""
    rng = np.random.default_rng(seed)
    points = rng.uniform(-1, 1, size=(count, POINTS, 3)).astype(np.float32)
    category = np.arange(count) % 2
    y = points[..., 1]
    parts = np.where(
        category[:, None] == 0, (y > 0).astype(np.int64), 2 + np.digitize(y, [-1 / 3, 1 / 3])
    )
    return PartSplit(points, category.astype(np.int64), parts.astype(np.int64))


def _part_set(test_parts: np.ndarray | None = None) -> PartSet:
    test = _split(8, 2)
    if test_parts is not None:
        test = replace(test, parts=test_parts)
    splits = {"train": _split(16, 0), "val": _split(8, 1), "test": test}
    return PartSet("toy-parts", ("mug", "lamp"), RANGES, splits, source="toy")


TINY = FinetuneConfig(
    points=POINTS, k=4, emb_dims=16, epochs=3, batch_size=4, eval_batch_size=8, lr=0.05,
    parts=5, categories=2, device="cpu", checkpoint_every_steps=3, log_every_steps=100,
)  # fmt: skip


def test_label_smoothing_is_the_releases() -> None:
    """1 - eps on the true part, eps / (C - 1) on the others: torch's label smoothing with
    eps * C / (C - 1)."""
    logits = torch.randn(3, 5, 7, generator=torch.Generator().manual_seed(0))
    target = torch.randint(0, 5, (3, 7), generator=torch.Generator().manual_seed(1))
    ours = smoothed_cross_entropy(logits, target, 0.2)
    torchs = F.cross_entropy(logits, target, label_smoothing=0.2 * 5 / 4)
    assert ours.item() == pytest.approx(torchs.item(), abs=1e-6)
    plain = smoothed_cross_entropy(logits, target, 0.0)
    assert plain.item() == pytest.approx(F.cross_entropy(logits, target).item(), abs=1e-6)


def test_loader_order_is_seeded_per_epoch_and_resumable() -> None:
    loader = PartLoader(_split(16, 0), batch_size=4, points=POINTS, seed=3)
    whole = list(loader.epoch(1))
    assert loader.steps_per_epoch == 4 and len(whole) == 4
    resumed = list(loader.epoch(1, skip=2))
    assert all(torch.equal(a.points, b.points) for a, b in zip(whole[2:], resumed, strict=True))
    assert not torch.equal(whole[0].points, next(iter(loader.epoch(2))).points)
    # each cloud's points are reordered with their labels
    batch = whole[0]
    assert sorted(batch.points[0, :, 1].tolist()) != batch.points[0, :, 1].tolist()


def test_crosspoint_card_trains_on_train_and_val_and_label_fraction_subsets() -> None:
    part_set = _part_set()
    assert len(training_split(part_set, TINY)) == 16
    assert len(training_split(part_set, replace(TINY, protocol="crosspoint"))) == 24
    half = training_split(part_set, replace(TINY, label_fraction=0.5))
    assert len(half) == 8 and sorted(np.bincount(half.category)) == [4, 4]


def _probe_lines(run: Path) -> list[dict]:
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [line for line in lines if "probe_accuracy" in line]


def test_selection_never_reads_test(tmp_path: Path) -> None:
    """Permuting the test labels changes the test figure, not a single selection figure."""
    plain = finetune(TINY, _part_set(), tmp_path / "a")
    shuffled_parts = np.random.default_rng(9).permutation(_part_set().splits["test"].parts)
    perturbed = finetune(TINY, _part_set(shuffled_parts), tmp_path / "b")
    assert _probe_lines(tmp_path / "a") == _probe_lines(tmp_path / "b")
    assert len(_probe_lines(tmp_path / "a")) == 3
    assert plain["selected_epoch"] == perturbed["selected_epoch"]
    assert plain["test"]["instance_miou"] != perturbed["test"]["instance_miou"]
    assert plain["card"]["selected_on_test"] is False
    assert plain["card"]["selection"].endswith("on val")


def test_a_stopped_run_resumes_to_the_same_weights(tmp_path: Path) -> None:
    whole = finetune(TINY, _part_set(), tmp_path / "whole")
    finetune(replace(TINY, max_steps=5), _part_set(), tmp_path / "part")
    resumed = finetune(TINY, _part_set(), tmp_path / "part", resume=True)
    a = torch.load(tmp_path / "whole" / "last.pt", weights_only=False)["models"]["seg"]
    b = torch.load(tmp_path / "part" / "last.pt", weights_only=False)["models"]["seg"]
    assert all(torch.equal(a[key], b[key]) for key in a)
    assert resumed["test"] == whole["test"]
    saved = json.loads((tmp_path / "part" / RESULT_FILE).read_text())
    assert saved["selected_epoch"] == whole["selected_epoch"]


def test_a_run_folder_in_use_is_refused(tmp_path: Path) -> None:
    finetune(replace(TINY, epochs=1), _part_set(), tmp_path / "run")
    from xpt.train.errors import TrainingError

    with pytest.raises(TrainingError, match="already holds a run"):
        finetune(replace(TINY, epochs=1), _part_set(), tmp_path / "run")


def test_the_crosspoint_card_selects_on_test_and_says_so(tmp_path: Path) -> None:
    config = replace(TINY, protocol="crosspoint", epochs=2)
    result = finetune(config, _part_set(), tmp_path / "run")
    assert [line["probe_split"] for line in _probe_lines(tmp_path / "run")] == ["test", "test"]
    assert result["card"]["selected_on_test"] is True
    assert "TEST" in result["card"]["note"] and result["card"]["train"] == "train+val"
    best = max(_probe_lines(tmp_path / "run"), key=lambda line: line["probe_accuracy"])
    assert result["selection_miou"] == best["probe_accuracy"]
    assert result["test"]["instance_miou"] == pytest.approx(best["probe_accuracy"])


def test_a_last_batch_of_one_cloud_is_not_an_epoch_step() -> None:
    """17 shapes at batch 4: four full batches; the 17th cloud alone would break BatchNorm,
    so the epoch has 4 steps and yields 4 batches (not 5 counted and 4 given)."""
    loader = PartLoader(_split(17, 0), batch_size=4, points=POINTS, seed=0)
    assert loader.steps_per_epoch == 4
    assert [len(batch) for batch in loader.epoch(0)] == [4, 4, 4, 4]
    assert PartLoader(_split(18, 0), batch_size=4, points=POINTS, seed=0).steps_per_epoch == 5
