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


def _good_checkpoint(path: Path) -> Path:
    model, optimizer, scaler, generator = _parts(0)
    state = make_checkpoint(
        models={"point": model},
        optimizer=optimizer,
        scaler=scaler,
        schedule={"kind": "epoch", "base_lr": 1e-3, "t_max": 2, "unit": "epoch"},
        position={"step": 1, "epoch": 0, "batch": 1},
        generator=generator,
        config={"backbone": "pointnet", "emb_dims": 4, "proj_dim": 2},
        metrics={"loss": 1.0},
    )
    return save_checkpoint(state, path)


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("empty", "not a readable PyTorch checkpoint: an empty file (0 bytes)"),
        ("truncated", "not a readable PyTorch checkpoint: truncated ("),
        ("text", "not a readable PyTorch checkpoint: a text file (it starts 'not a checkpoint')"),
        ("bytes", "not a readable PyTorch checkpoint: unknown bytes (it starts b'\\x00\\x01"),
        ("pickled", "Python objects that weights-only loading refuses (Unsupported global"),
        ("plain", "a PyTorch file, but not an xpt checkpoint (a state dict of 1 tensor(s): w)"),
        ("list", "a PyTorch file, but not an xpt checkpoint (a list)"),
        ("incomplete", "an incomplete xpt checkpoint (no optimizer, rng)"),
        ("folder", "a folder, not a file"),
    ],
)
def test_unusable_files_are_named_and_described(tmp_path: Path, kind: str, message: str) -> None:
    path = tmp_path / "last.pt"
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":
        data = _good_checkpoint(path).read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif kind == "text":
        path.write_text("not a checkpoint\nat all\n")
    elif kind == "bytes":
        path.write_bytes(bytes(range(64)))
    elif kind == "pickled":
        torch.save({"format": "xpt-pretrain", "obj": _Unsafe()}, path)
    elif kind == "plain":
        torch.save({"w": torch.zeros(1)}, path)
    elif kind == "list":
        torch.save([1, 2], path)
    elif kind == "incomplete":
        state = torch.load(_good_checkpoint(path), weights_only=True)
        del state["optimizer"], state["rng"]
        torch.save(state, path)
    else:
        path.mkdir()
    with pytest.raises(CheckpointError) as caught:
        load_checkpoint(path)
    said = str(caught.value)
    assert said.startswith(f"{path}: ") and message in said, said
    assert "\n" not in said
    assert epoch_checkpoint_name(7) == "epoch_007.pt"


def test_weights_that_do_not_fit_name_the_first_mismatch(tmp_path: Path) -> None:
    state = load_checkpoint(_good_checkpoint(tmp_path / "last.pt"))
    model = nn.Sequential(nn.Linear(3, 5), nn.BatchNorm1d(5), nn.Linear(5, 2))  # 5, not 4
    _, optimizer, scaler, generator = _parts(0)
    with pytest.raises(CheckpointError) as caught:
        restore_checkpoint(
            state,
            models={"point": model},
            optimizer=optimizer,
            scaler=scaler,
            generator=generator,
            path=tmp_path / "last.pt",
        )
    said = str(caught.value)
    assert said.startswith(
        f"{tmp_path / 'last.pt'}: its point encoder weights do not fit the "
        "model settings (backbone 'pointnet', emb_dims 4, proj_dim 2): "
        "size mismatch for 0.weight"
    ), said


class _Unsafe:
    pass
