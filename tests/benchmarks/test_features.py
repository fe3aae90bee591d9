"""Encoders for evaluation: xpt checkpoints, CrossPoint release state dicts, random init;
point selection and the feature cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from xpt.benchmarks import features as features_module
from xpt.benchmarks.features import (
    EncoderError,
    FeatureCache,
    encoder_feature_pair,
    load_point_encoder,
    random_point_encoder,
    recalibrate_batchnorm,
    select_points,
    with_k,
)
from xpt.benchmarks.protocols import PointsSpec


@pytest.fixture(scope="module")
def reference(dgcnn_reference: dict) -> dict:
    return dgcnn_reference


def _features(model: torch.nn.Module, points: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return model.forward_features(points)


@pytest.mark.parametrize("wrap", ["plain", "module", "state_dict"])
def test_release_state_dicts_are_recognised_and_reproduce_the_reference(
    reference: dict, tmp_path: Path, wrap: str
) -> None:
    weights = reference["state_dict"]
    if wrap == "module":  # what DataParallel training saves
        weights = {f"module.{k}": v for k, v in weights.items()}
    saved = {"state_dict": weights} if wrap == "state_dict" else weights
    path = tmp_path / "best_model.pth"
    torch.save(saved, path)
    model, info = load_point_encoder(path)
    assert info.kind == "reference" and info.backbone == "dgcnn"
    assert info.emb_dims == reference["emb_dims"] and info.k == 15 and len(info.sha256) == 64
    assert not model.training
    feat = _features(model, reference["points_bnc"].float())
    torch.testing.assert_close(feat, reference["expected_feat"], atol=1e-4, rtol=0)


def test_xpt_checkpoints_load_their_point_encoder(tmp_path: Path) -> None:
    from xpt.train.checkpoint import make_checkpoint, save_checkpoint
    from xpt.train.config import PretrainConfig
    from xpt.train.crosspoint import augment_generator, build_models

    config = PretrainConfig(backbone="pointnet", image_encoder="resnet18", emb_dims=32)
    point, image = build_models(config)
    optimizer = torch.optim.Adam(point.parameters())
    state = make_checkpoint(
        models={"point": point, "image": image},
        optimizer=optimizer,
        scaler=torch.amp.GradScaler("cuda", enabled=False),
        schedule={},
        position={"step": 7, "epoch": 1, "batch": 0},
        generator=augment_generator(config),
        config=config.to_dict(),
        metrics={},
        selection={"split": "test"},
    )
    save_checkpoint(state, tmp_path / "best.pt")
    model, info = load_point_encoder(tmp_path / "best.pt")
    assert (info.kind, info.backbone, info.emb_dims, info.step) == ("checkpoint", "pointnet", 32, 7)
    assert info.selected_on == "test" and info.label == "best.pt (step 7)"
    points = torch.rand(2, 64, 3)
    point.eval()
    torch.testing.assert_close(_features(model, points), _features(point, points))


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "not a readable PyTorch checkpoint"),
        (b"hello, not a checkpoint\n", "not a readable PyTorch checkpoint"),
        ("tensors", "not a CrossPoint DGCNN one"),
        ("list", "neither an xpt checkpoint nor a state dict"),
    ],
)
def test_unusable_files_are_refused_naming_the_file(tmp_path: Path, content, reason: str) -> None:
    path = tmp_path / "weights.pt"
    if content == "tensors":
        torch.save({"encoder.weight": torch.zeros(3)}, path)
    elif content == "list":
        torch.save([1, 2, 3], path)
    else:
        path.write_bytes(content)
    with pytest.raises(EncoderError) as caught:
        load_point_encoder(path)
    message = str(caught.value)
    assert message.startswith(str(path)) and reason in message and "\n" not in message
    with pytest.raises(EncoderError, match="no such checkpoint file"):
        load_point_encoder(tmp_path / "missing.pt")


def test_a_release_state_dict_of_the_wrong_shape_is_refused(reference: dict, tmp_path: Path):
    weights = dict(reference["state_dict"])
    weights["conv2.0.weight"] = torch.zeros(64, 64, 1, 1)  # the reference has (64, 128, 1, 1)
    torch.save(weights, tmp_path / "bad.pth")
    with pytest.raises(EncoderError, match=r"bad.pth: .*conv2.conv.weight.*\(64, 64, 1, 1\)"):
        load_point_encoder(tmp_path / "bad.pth")


def test_random_init_is_seeded_and_leaves_global_rng_alone() -> None:
    torch.manual_seed(123)
    before = torch.get_rng_state()
    a, info = random_point_encoder("dgcnn", k=5, emb_dims=16, seed=0)
    assert torch.equal(torch.get_rng_state(), before)
    b, _ = random_point_encoder("dgcnn", k=5, emb_dims=16, seed=0)
    c, _ = random_point_encoder("dgcnn", k=5, emb_dims=16, seed=1)
    assert info.label == "random init (seed 0)" and info.kind == "random-init"
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert torch.equal(x, y), name
    assert not torch.equal(a.conv1.conv.weight, c.conv1.conv.weight)


def test_with_k_keeps_the_weights_and_changes_the_neighbours() -> None:
    model, info = random_point_encoder("dgcnn", k=15, emb_dims=16, seed=0)
    five, five_info = with_k(model, info, 5)
    assert five_info.k == 5 and model.conv1.k == 15 and five.conv4.k == 5
    assert all(
        torch.equal(x, y) for x, y in zip(model.parameters(), five.parameters(), strict=True)
    )
    points = torch.rand(2, 64, 3)
    assert not torch.allclose(_features(model, points), _features(five, points))
    pointnet, pointnet_info = random_point_encoder("pointnet", emb_dims=16)
    assert with_k(pointnet, pointnet_info, 5)[0] is pointnet


def test_select_points() -> None:
    clouds = np.random.default_rng(0).normal(size=(3, 50, 3)).astype(np.float32)
    first = select_points(clouds, PointsSpec(20))
    assert np.array_equal(first, clouds[:, :20])
    assert select_points(clouds, PointsSpec(None)) is not None and select_points(
        clouds, PointsSpec(None)
    ).shape == (3, 50, 3)
    for resample in ("fps", "random"):
        chosen = select_points(clouds, PointsSpec(20, resample), seed=1)
        assert chosen.shape == (3, 20, 3)
        assert np.array_equal(chosen, select_points(clouds, PointsSpec(20, resample), seed=1))
        for cloud, subset in zip(clouds, chosen, strict=True):  # rows of the original cloud
            assert all((cloud == row).all(axis=1).any() for row in subset)
    with pytest.raises(ValueError, match="first 60 points of clouds of 50"):
        select_points(clouds, PointsSpec(60))


def test_features_are_cached_and_a_damaged_cache_file_is_recomputed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model, info = random_point_encoder("pointnet", emb_dims=8, seed=0)
    rng = np.random.default_rng(0)
    train, test = rng.normal(size=(2, 5, 32, 3)).astype(np.float32)
    cache = FeatureCache(tmp_path)
    kwargs = {"fingerprint": "abc", "spec": PointsSpec(16), "seed": 0, "cache": cache}
    first = encoder_feature_pair(model, info, train, test, **kwargs)
    assert first[0].shape == (5, 8) and len(list(tmp_path.glob("*.npz"))) == 2

    calls = []
    real = features_module.extract_features
    monkeypatch.setattr(
        features_module, "extract_features", lambda *a, **k: calls.append(1) or real(*a, **k)
    )
    again = encoder_feature_pair(model, info, train, test, **kwargs)
    assert all(np.array_equal(a, b) for a, b in zip(again, first, strict=True))
    assert calls == []  # read back, not recomputed
    encoder_feature_pair(model, info, train, test, **{**kwargs, "fingerprint": "other"})
    assert calls == [1, 1]  # another dataset: other entries
    for path in tmp_path.glob("*.npz"):
        path.write_bytes(b"damaged")
    again = encoder_feature_pair(model, info, train, test, **kwargs)
    assert np.allclose(again[1], first[1]) and len(calls) == 4


def test_batchnorm_recalibration_changes_statistics_only_on_a_copy() -> None:
    model, info = random_point_encoder("pointnet", emb_dims=8, seed=0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    clouds = np.random.default_rng(1).normal(size=(20, 32, 3)).astype(np.float32) * 3 + 1
    calibrated = recalibrate_batchnorm(model, clouds, batch_size=10, device=torch.device("cpu"))
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())  # untouched
    assert not calibrated.training
    layer = calibrated.mlp[0].bn
    assert not torch.allclose(layer.running_mean, torch.zeros_like(layer.running_mean))
    for name, value in calibrated.named_parameters():
        assert torch.equal(value, dict(model.named_parameters())[name])  # no weight changed
    # the statistics are the data's: the first layer's running mean is the mean pre-activation
    with torch.no_grad():
        pre = calibrated.mlp[0].conv(torch.from_numpy(clouds).transpose(2, 1))
    torch.testing.assert_close(layer.running_mean, pre.mean(dim=(0, 2)), atol=1e-5, rtol=1e-5)
    again = recalibrate_batchnorm(model, clouds, batch_size=10, device=torch.device("cpu"))
    assert torch.equal(again.mlp[3].bn.running_var, calibrated.mlp[3].bn.running_var)
    train, test = clouds[:12], clouds[12:]
    kwargs = {"fingerprint": "x", "spec": PointsSpec(None), "seed": 0, "cache": FeatureCache(None)}
    raw = encoder_feature_pair(model, info, train, test, **kwargs)
    fitted = encoder_feature_pair(model, info, train, test, bn_stats="train", **kwargs)
    assert not np.allclose(raw[1], fitted[1])
