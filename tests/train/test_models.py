"""Encoders: shapes, gradients, permutation invariance, torchvision names, reference loading."""

from __future__ import annotations

import pytest
import torch

from xpt.train.models import build_image_encoder, build_point_encoder
from xpt.train.models.resnet import load_reference_state_dict


def _points(b: int, n: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(b, n, 3, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize(
    ("name", "kwargs", "feature_dim"),
    [
        ("pointnet", {}, 1024),
        ("pointnet", {"emb_dims": 64}, 64),
        ("dgcnn", {"k": 4, "emb_dims": 32}, 64),
    ],
)
def test_point_encoder_forward_backward(name: str, kwargs: dict, feature_dim: int) -> None:
    torch.manual_seed(0)
    model = build_point_encoder(name, proj_dim=16, **kwargs)
    assert model.feature_dim == feature_dim
    points = _points(2, 64).requires_grad_(True)
    feat, z = model(points)
    assert feat.shape == (2, feature_dim) and z.shape == (2, 16)
    z.square().sum().backward()
    first = next(model.parameters())
    assert (
        first.grad is not None and torch.isfinite(first.grad).all() and first.grad.abs().sum() > 0
    )
    assert points.grad is not None and points.grad.abs().sum() > 0


@pytest.mark.parametrize("name", ["pointnet", "dgcnn"])
def test_point_features_ignore_point_order(name: str) -> None:
    torch.manual_seed(0)
    model = build_point_encoder(name, k=5, emb_dims=32).eval()
    points = _points(2, 48, seed=1)
    order = torch.randperm(48, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        torch.testing.assert_close(
            model.forward_features(points), model.forward_features(points[:, order])
        )


@pytest.mark.parametrize(("name", "feature_dim"), [("resnet18", 512), ("resnet50", 2048)])
def test_image_encoder_forward_backward(name: str, feature_dim: int) -> None:
    torch.manual_seed(0)
    model = build_image_encoder(name)
    assert model.feature_dim == feature_dim
    images = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    feat, z = model(images)
    assert feat.shape == (2, feature_dim) and z.shape == (2, 256)
    z.square().sum().backward()
    assert model.conv1.weight.grad is not None and model.conv1.weight.grad.abs().sum() > 0
    assert model.head.fc1.bias is None and model.head.fc2.bias is None
    assert tuple(model.head.fc1.weight.shape) == (512, feature_dim)


def test_resnet_names_and_sizes_match_torchvision() -> None:
    r50 = build_image_encoder("resnet50").state_dict()
    r18 = build_image_encoder("resnet18").state_dict()
    for key, shape in {
        "conv1.weight": (64, 3, 7, 7),
        "bn1.running_mean": (64,),
        "layer1.0.downsample.0.weight": (256, 64, 1, 1),
        "layer1.0.downsample.1.num_batches_tracked": (),
        "layer2.0.conv2.weight": (128, 128, 3, 3),
        "layer4.2.conv3.weight": (2048, 512, 1, 1),
        "layer4.2.bn3.bias": (2048,),
    }.items():
        assert tuple(r50[key].shape) == shape, key
    assert tuple(r18["layer4.1.bn2.weight"].shape) == (512,)
    assert tuple(r18["layer2.0.downsample.0.weight"].shape) == (128, 64, 1, 1)
    assert "layer1.0.downsample.0.weight" not in r18
    assert not any(k.startswith("fc.") for k in (*r50, *r18))
    # torchvision: 320 / 122 state-dict entries and 25,557,032 / 11,689,512 parameters,
    # of which fc holds 2 entries and 2,049,000 / 513,000 parameters.
    for sd, entries, params in ((r50, 318, 23_508_032), (r18, 120, 11_176_512)):
        backbone = {k: v for k, v in sd.items() if not k.startswith("head.")}
        assert len(backbone) == entries
        assert (
            sum(v.numel() for k, v in backbone.items() if "running" not in k and "num_" not in k)
            == params
        )


def test_reference_image_checkpoint_loads() -> None:
    torch.manual_seed(0)
    source = build_image_encoder("resnet18")
    with torch.no_grad():  # non-trivial BatchNorm statistics so a wrong mapping shows
        for name, buf in source.named_buffers():
            if name.endswith("running_var"):
                buf.uniform_(0.5, 2.0)
    head = {"head.fc1.": "inv_head.0.", "head.bn.": "inv_head.1.", "head.fc2.": "inv_head.3."}
    reference = {}
    for key, value in source.state_dict().items():
        prefix = next((p for p in head if key.startswith(p)), None)
        new = head[prefix] + key[len(prefix) :] if prefix else "resnet." + key
        reference[new] = value.clone()
    assert "resnet.layer1.0.conv1.weight" in reference and "inv_head.3.weight" in reference
    torch.manual_seed(1)
    target = build_image_encoder("resnet18")
    assert load_reference_state_dict(target, reference).ok
    for key, value in source.state_dict().items():
        assert torch.equal(target.state_dict()[key], value), key
    images = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    source.eval(), target.eval()
    with torch.no_grad():
        torch.testing.assert_close(target(images)[1], source(images)[1])

    reference["resnet.fc.weight"] = torch.zeros(1000, 512)
    with pytest.raises(ValueError, match=r"unexpected keys: fc\.weight"):
        load_reference_state_dict(target, reference)
    reference.pop("resnet.fc.weight")
    reference["inv_head.0.weight"] = torch.zeros(512, 2048)
    with pytest.raises(ValueError, match=r"head\.fc1\.weight.*\(512, 2048\).*\(512, 512\)"):
        load_reference_state_dict(target, reference)


def test_unknown_names_list_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="dgcnn, pointnet"):
        build_point_encoder("pointnet++")
    with pytest.raises(ValueError, match="resnet50, resnet18"):
        build_image_encoder("vit")
    with pytest.raises(ValueError, match="points must be"):
        build_point_encoder("pointnet", emb_dims=8)(torch.zeros(2, 3, 10))
