"""The default pretraining settings are the paper's (DESIGN.md, "Method"), field by field."""

from __future__ import annotations

import pytest

from xpt.toolkit.shards.build import ShardConfig
from xpt.train.config import RELEASE_PRESET, PretrainConfig, resolve_config

PAPER = [  # (field, the paper's / published code's value, where it is stated)
    ("backbone", "dgcnn", "DGCNN point encoder"),
    ("k", 15, "k=15 for DGCNN"),
    ("emb_dims", 1024, "DGCNN embedding 1024 (global feature 2048)"),
    ("proj_dim", 256, "projection heads to 256"),
    ("image_encoder", "resnet50", "ResNet-50 image encoder"),
    ("image_size", 224, "resize 224"),
    ("points", 2048, "2048 points"),
    ("batch_size", 20, "batch 20"),
    ("epochs", 100, "100 epochs"),
    ("lr", 1e-3, "Adam, lr 1e-3"),
    ("weight_decay", 1e-6, "weight decay 1e-6"),
    ("temperature", 0.1, "NT-Xent temperature 0.1"),
    ("loss", "both", "IMID + CMID"),
    ("amp", "off", "float32 training"),
    ("lr_schedule", "epoch", "cosine by epoch, first epoch at the base lr"),
    ("global_negatives", False, "one GPU's batch as negatives"),
    ("sync_bn", False, "one process, plain BatchNorm"),
    ("splits", "train", "every object (xpt shard's default --val-fraction 0 puts all in train)"),
    ("shuffle", "auto", "the whole dataset reshuffled every epoch (local shards)"),
]


@pytest.mark.parametrize(("name", "value", "source"), PAPER, ids=[row[0] for row in PAPER])
def test_defaults_are_the_paper_settings(name: str, value: object, source: str) -> None:
    assert getattr(PretrainConfig(), name) == value, source


def test_shards_hold_out_nothing_by_default() -> None:
    """The published code pretrains on every ShapeNet object: no val split unless asked."""
    assert ShardConfig().val_fraction == 0.0


@pytest.mark.parametrize("name", sorted(RELEASE_PRESET))
def test_replay_release_sets_each_switch(name: str) -> None:
    """--replay-release: every switch at the published code's value, recorded as the preset;
    a file or an option given with it still wins."""
    config = resolve_config(preset="release")
    assert getattr(config, name) == RELEASE_PRESET[name]
    assert config.preset == "release"
    assert resolve_config(preset="release", overrides={"lr_schedule": "epoch"}).lr_schedule == (
        "epoch"
    )
    with pytest.raises(ValueError, match="preset must be one of release, got 'nope'"):
        resolve_config(preset="nope")


def test_the_release_preset_covers_every_known_difference() -> None:
    """The switches where the defaults differ from the published code (docs/REPRODUCE.md)."""
    assert RELEASE_PRESET == {
        "splits": "train,val",
        "shuffle": "full",
        "lr_schedule": "release",
        "probe_split": "test",
        "probe_protocol": "crosspoint",
        "amp": "off",
        "global_negatives": False,
        "sync_bn": False,
    }
    defaults = PretrainConfig()
    differ = {name for name, value in RELEASE_PRESET.items() if getattr(defaults, name) != value}
    assert differ == {"splits", "shuffle", "lr_schedule", "probe_split", "probe_protocol"}
