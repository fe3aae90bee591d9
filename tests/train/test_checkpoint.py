"""Checkpoints: atomic writes, weights_only loading, exact RNG restore."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from xpt.train.checkpoint import (
    CheckpointError,
    epoch_checkpoint_name,
    load_checkpoint,
    make_checkpoint,
    restore_checkpoint,
    save_checkpoint,
)


def _parts(seed: int):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-6)
    scaler = torch.amp.GradScaler("cuda", enabled=False)
    generator = torch.Generator().manual_seed(seed)
    return model, optimizer, scaler, generator


def _train_step(model: nn.Module, optimizer: torch.optim.Optimizer, g: torch.Generator) -> None:
    loss = model(torch.randn(8, 3, generator=g)).square().mean()
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()


def test_roundtrip_with_weights_only_restores_training_exactly(tmp_path: Path) -> None:
    model, optimizer, scaler, generator = _parts(0)
    for _ in range(3):
        _train_step(model, optimizer, generator)
    state = make_checkpoint(
        models={"point": model},
        optimizer=optimizer,
        scaler=scaler,
        schedule={"kind": "release", "base_lr": 1e-3, "t_max": 100, "unit": "epoch"},
        position={"step": 3, "epoch": 0, "batch": 3},
        generator=generator,
        config={"seed": 0, "backbone": "dgcnn"},
        metrics={"loss": 1.5},
    )
    path = save_checkpoint(state, tmp_path / "run" / "last.pt")
    assert [p.name for p in path.parent.iterdir()] == ["last.pt"]  # no temporary left over
    raw = torch.load(path, weights_only=True)  # plain tensors and containers only
    assert raw["position"] == {"step": 3, "epoch": 0, "batch": 3}
    assert raw["config"]["backbone"] == "dgcnn" and raw["metrics"] == {"loss": 1.5}
    assert set(raw["models"]["point"]) == set(model.state_dict())  # clean parameter names

    # Continue the original for 2 steps; a fresh copy restored from disk must match it.
    _train_step(model, optimizer, generator)
    _train_step(model, optimizer, generator)
    other, other_opt, other_scaler, other_gen = _parts(1)
    position = restore_checkpoint(
        load_checkpoint(path),
        models={"point": other},
        optimizer=other_opt,
        scaler=other_scaler,
        generator=other_gen,
    )
    assert position["step"] == 3
    _train_step(other, other_opt, other_gen)
    _train_step(other, other_opt, other_gen)
    for (name, a), b in zip(model.state_dict().items(), other.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


def test_failed_save_keeps_the_previous_file(tmp_path: Path) -> None:
    path = save_checkpoint({"format": "xpt-pretrain", "value": torch.ones(2)}, tmp_path / "last.pt")
    before = path.read_bytes()
    with pytest.raises(Exception):  # noqa: B017 - whatever torch.save raises for a lambda
        save_checkpoint({"bad": lambda: None}, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_load_refuses_foreign_files(tmp_path: Path) -> None:
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="junk.pt: cannot load"):
        load_checkpoint(tmp_path / "junk.pt")
    torch.save({"weights": torch.zeros(1)}, tmp_path / "plain.pt")
    with pytest.raises(CheckpointError, match="plain.pt: not an xpt"):
        load_checkpoint(tmp_path / "plain.pt")
    torch.save({"format": "xpt-pretrain", "obj": _Unsafe()}, tmp_path / "pickled.pt")
    with pytest.raises(CheckpointError, match="pickled.pt: cannot load"):  # weights_only refuses
        load_checkpoint(tmp_path / "pickled.pt")
    assert epoch_checkpoint_name(7) == "epoch_007.pt"


class _Unsafe:
    pass
