"""Strict initialisation of the part-segmentation network from pretraining files: xpt
checkpoints, export folders and the release's raw state dicts, and every refusal."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from xpt.partseg.weights import WeightsError, init_from_checkpoint
from xpt.train.checkpoint import make_checkpoint, save_checkpoint
from xpt.train.config import PretrainConfig
from xpt.train.models import DGCNN
from xpt.train.models.dgcnn_partseg import HEAD_MODULES, DGCNNPartSeg, DGCNNSegEncoder

EMB = 32


def _encoder(*, emb_dims: int = EMB, proj_dim: int = 256, seed: int = 0) -> DGCNNSegEncoder:
    """A pretrained-looking encoder: every float tensor random, so loads are checkable."""
    torch.manual_seed(seed)
    encoder = DGCNNSegEncoder(k=20, emb_dims=emb_dims, proj_dim=proj_dim)
    with torch.no_grad():
        for value in encoder.state_dict().values():
            if value.is_floating_point():
                value.uniform_(0.5, 1.5)
            else:
                value.fill_(7)  # num_batches_tracked
    return encoder


def _xpt_checkpoint(path: Path, point: nn.Module, backbone: str, emb_dims: int = EMB) -> Path:
    """Written as ``xpt pretrain`` writes ``last.pt`` (make_checkpoint + save_checkpoint)."""
    config = PretrainConfig(backbone=backbone, image_encoder="resnet18", k=20, emb_dims=emb_dims)
    image = nn.Linear(4, 4)  # stands in for the image encoder; init reads only "point"
    state = make_checkpoint(
        models={"point": point, "image": image},
        optimizer=torch.optim.Adam([*point.parameters(), *image.parameters()]),
        scaler=torch.amp.GradScaler("cuda", enabled=False),
        schedule={"kind": "cosine", "base_lr": 1e-3, "t_max": 100, "unit": "epoch"},
        position={"step": 3, "epoch": 0, "batch": 3},
        generator=torch.Generator().manual_seed(0),
        config=config.to_dict(),
        metrics={"loss": 1.0},
    )
    save_checkpoint(state, path)
    return path


def _release_state_dict(encoder: DGCNNSegEncoder) -> dict[str, torch.Tensor]:
    """What the release's ``DGCNN_partseg(args)`` (pretrain=True) state dict holds: the
    encoder's tensors plus bn7..bn10, created there at their initial values and never used."""
    weights = dict(encoder.state_dict())
    for name, channels in (("bn7", 64), ("bn8", 256), ("bn9", 256), ("bn10", 128)):
        weights |= {f"{name}.{k}": v for k, v in nn.BatchNorm1d(channels).state_dict().items()}
    return weights


def _head_keys(model: DGCNNPartSeg, modules: tuple[str, ...] = HEAD_MODULES) -> tuple[str, ...]:
    return tuple(sorted(key for key in model.state_dict() if key.split(".")[0] in modules))


def _model() -> DGCNNPartSeg:
    torch.manual_seed(1)
    return DGCNNPartSeg(parts=50, categories=16, k=40, emb_dims=EMB)


def _assert_loaded(model: DGCNNPartSeg, weights: dict[str, torch.Tensor], keys) -> None:
    state = model.state_dict()
    assert all(torch.equal(state[key], weights[key]) for key in keys)


def test_an_xpt_checkpoint_loads_its_encoder_and_leaves_the_head_new(tmp_path: Path) -> None:
    encoder = _encoder()
    path = _xpt_checkpoint(tmp_path / "last.pt", encoder, "dgcnn_seg")
    model = _model()
    head_before = {key: model.state_dict()[key].clone() for key in _head_keys(model)}

    report = init_from_checkpoint(model, path)

    assert report.source == "checkpoint"
    assert report.loaded == tuple(sorted(encoder.state_dict()))
    assert report.new == _head_keys(model) and len(report.new) == 45  # bnN 4x5, convN 4x6, conv11
    assert report.ignored == ()
    _assert_loaded(model, encoder.state_dict(), report.loaded)
    _assert_loaded(model, head_before, report.new)  # the head keeps its initialisation
    assert model.k == 40  # k is the fine-tuning setting, not the checkpoint's


def test_a_release_state_dict_from_ddp_loads_and_reports_the_unused_batchnorms(
    tmp_path: Path,
) -> None:
    encoder = _encoder(seed=2)
    weights = _release_state_dict(encoder)
    path = tmp_path / "best_model.pth"  # dist_train_crosspoint.py saves the DDP state dict
    torch.save({f"module.{key}": value for key, value in weights.items()}, path)
    model = _model()

    report = init_from_checkpoint(model, path)

    assert report.source == "reference"
    assert report.loaded == tuple(sorted(encoder.state_dict()))
    assert report.new == _head_keys(model)
    assert report.ignored == tuple(sorted(set(weights) - set(encoder.state_dict())))
    assert {key.split(".")[0] for key in report.ignored} == {"bn7", "bn8", "bn9", "bn10"}
    _assert_loaded(model, encoder.state_dict(), report.loaded)


def test_a_projection_head_of_another_width_is_ignored_not_half_loaded(tmp_path: Path) -> None:
    encoder = _encoder(proj_dim=128)
    torch.save(encoder.state_dict(), tmp_path / "ckpt_epoch_last.pth")
    model = _model()
    head_before = {key: model.state_dict()[key].clone() for key in _head_keys(model, ("inv_head",))}

    report = init_from_checkpoint(model, tmp_path / "ckpt_epoch_last.pth")

    assert report.ignored == _head_keys(model, ("inv_head",))
    assert report.new == _head_keys(model, (*HEAD_MODULES, "inv_head"))
    assert not any(key.startswith("inv_head.") for key in report.loaded)
    _assert_loaded(model, head_before, report.ignored)  # inv_head.0 fitted, but kept too


def test_an_export_folder_loads(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    from xpt.train.encoder import CONFIG_FILE, EXPORT_FORMAT, WEIGHTS_FILE

    encoder = _encoder(seed=3)
    folder = tmp_path / "export"
    folder.mkdir()
    tensors = {f"point.{k}": v.clone() for k, v in encoder.state_dict().items()}
    save_file(tensors, str(folder / WEIGHTS_FILE), metadata={"format": EXPORT_FORMAT})
    architecture = {"backbone": "dgcnn_seg", "k": 15, "emb_dims": EMB, "proj_dim": 256}
    config = {"format": EXPORT_FORMAT, "format_version": 1, "architecture": architecture}
    (folder / CONFIG_FILE).write_text(json.dumps(config))
    model = _model()

    report = init_from_checkpoint(model, folder)

    assert report.source == "export" and report.loaded == tuple(sorted(encoder.state_dict()))
    _assert_loaded(model, encoder.state_dict(), report.loaded)


def _refusal(model: DGCNNPartSeg, path: Path) -> str:
    before = {key: value.clone() for key, value in model.state_dict().items()}
    with pytest.raises(WeightsError) as caught:
        init_from_checkpoint(model, path)
    message = str(caught.value)
    assert "\n" not in message and str(path) in message
    _assert_loaded(model, before, before)  # nothing was loaded
    return message


def test_a_renamed_key_is_refused_naming_both_names(tmp_path: Path) -> None:
    weights = _release_state_dict(_encoder())
    weights["tnet.conv1.0.weight"] = weights.pop("transform_net.conv1.0.weight")
    torch.save(weights, tmp_path / "renamed.pth")
    message = _refusal(_model(), tmp_path / "renamed.pth")
    assert "1 key (tnet.conv1.0.weight) not in the model" in message
    assert "1 model key (transform_net.conv1.0.weight) missing" in message


def test_a_missing_encoder_key_is_refused(tmp_path: Path) -> None:
    weights = dict(_encoder().state_dict())
    del weights["conv6.0.weight"]
    torch.save(weights, tmp_path / "short.pth")
    message = _refusal(_model(), tmp_path / "short.pth")
    assert "1 model key (conv6.0.weight) missing from the file" in message


def test_another_emb_dims_is_refused_naming_the_key(tmp_path: Path) -> None:
    path = _xpt_checkpoint(tmp_path / "last.pt", _encoder(emb_dims=64), "dgcnn_seg", 64)
    message = _refusal(_model(), path)
    assert "of another shape than the model's" in message
    assert "conv6.0.weight (64, 192, 1) (model (32, 192, 1))" in message


def test_a_dgcnn_classification_checkpoint_is_refused_with_the_pretrain_hint(
    tmp_path: Path,
) -> None:
    path = _xpt_checkpoint(tmp_path / "last.pt", DGCNN(k=20, emb_dims=EMB), "dgcnn")
    assert _refusal(_model(), path) == (
        f"{path} holds a dgcnn encoder; part segmentation fine-tunes a dgcnn_seg encoder "
        "(xpt pretrain --backbone dgcnn_seg)"
    )


def test_a_release_dgcnn_classification_state_dict_is_refused(tmp_path: Path) -> None:
    # The release's DGCNN (not DGCNN_partseg): conv5 is Conv1d(512, emb_dims).
    weights = {
        "conv1.0.weight": torch.zeros(64, 6, 1, 1),
        "conv5.0.weight": torch.zeros(EMB, 512, 1),
    }
    torch.save(weights, tmp_path / "best_model.pth")
    message = _refusal(_model(), tmp_path / "best_model.pth")
    assert "a release DGCNN (classification) state dict" in message


def test_aliased_batchnorm_entries_that_differ_are_refused(tmp_path: Path) -> None:
    weights = {k: v.clone() for k, v in _encoder().state_dict().items()}
    weights["bn2.running_mean"] += 1  # conv2.1.running_mean is the same tensor in the model
    torch.save(weights, tmp_path / "edited.pth")
    message = _refusal(_model(), tmp_path / "edited.pth")
    assert "bn2.running_mean and conv2.1.running_mean" in message


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ("text", "not a readable PyTorch checkpoint: a text file"),
        ("missing", "no such file"),
        ("list", "neither an xpt checkpoint nor a state dict (list)"),
    ],
)
def test_files_that_are_not_weights_are_one_line(tmp_path: Path, content: str, reason: str) -> None:
    path = tmp_path / "weights.pt"
    if content == "text":
        path.write_text("epoch,loss\n1,0.5\n")
    elif content == "list":
        torch.save([1, 2, 3], path)
    assert reason in _refusal(_model(), path)
