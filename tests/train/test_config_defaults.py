"""The default pretraining settings are the paper's (DESIGN.md, "Method"), field by field."""

from __future__ import annotations

import pytest

from xpt.train.config import PretrainConfig

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
]


@pytest.mark.parametrize(("name", "value", "source"), PAPER, ids=[row[0] for row in PAPER])
def test_defaults_are_the_paper_settings(name: str, value: object, source: str) -> None:
    assert getattr(PretrainConfig(), name) == value, source
