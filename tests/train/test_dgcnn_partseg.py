"""The part-segmentation DGCNN: the release's state-dict layout, a naive reference forward,
category forms, equivariance, and the ``dgcnn_seg`` pretraining backbone."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from typer.testing import CliRunner

from xpt.toolkit.cli import app
from xpt.train.config import PretrainConfig
from xpt.train.models import build_point_encoder
from xpt.train.models.dgcnn_partseg import HEAD_MODULES, DGCNNPartSeg, DGCNNSegEncoder

pytestmark = pytest.mark.usefixtures("one_thread")


def _bn(name: str, channels: int) -> dict[str, tuple[int, ...]]:
    """The five state-dict entries of a BatchNorm."""
    shapes = {f"{name}.{p}": (channels,) for p in ("weight", "bias", "running_mean", "running_var")}
    return shapes | {f"{name}.num_batches_tracked": ()}


def _block(name: str, conv_shape: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
    """``Sequential(conv, bn, act)`` whose BatchNorm is also registered as ``bnN``."""
    return {f"{name}.0.weight": conv_shape} | _bn(f"{name}.1", conv_shape[0])


def _release_pretrain_keys(emb: int) -> dict[str, tuple[int, ...]]:
    """``DGCNN_partseg(args, pretrain=True).state_dict()`` key -> shape, read off the
    release's ``models/dgcnn.py`` (Transform_Net's bn3 re-assigned to 512; conv3 keeps its
    BatchNorm1d(1024)); bn7..bn10 are created there even in pretraining."""
    t = "transform_net"
    keys = _bn(f"{t}.bn1", 64) | _bn(f"{t}.bn2", 128) | _bn(f"{t}.bn3", 512)
    keys |= _block(f"{t}.conv1", (64, 6, 1, 1)) | _block(f"{t}.conv2", (128, 64, 1, 1))
    keys |= _block(f"{t}.conv3", (1024, 128, 1))
    keys |= {f"{t}.linear1.weight": (512, 1024), f"{t}.linear2.weight": (256, 512)}
    keys |= _bn(f"{t}.bn4", 256) | {f"{t}.transform.weight": (9, 256), f"{t}.transform.bias": (9,)}
    for n in range(1, 6):
        keys |= _bn(f"bn{n}", 64)
    keys |= _bn("bn6", emb) | _bn("bn7", 64) | _bn("bn8", 256) | _bn("bn9", 256)
    keys |= _bn("bn10", 128)
    convs = {1: (64, 6, 1, 1), 2: (64, 64, 1, 1), 3: (64, 128, 1, 1), 4: (64, 64, 1, 1)}
    convs |= {5: (64, 128, 1, 1), 6: (emb, 192, 1)}
    for n, shape in convs.items():
        keys |= _block(f"conv{n}", shape)
    keys |= {"inv_head.0.weight": (emb, emb), "inv_head.0.bias": (emb,)}
    keys |= _bn("inv_head.1", emb) | {"inv_head.3.weight": (256, emb), "inv_head.3.bias": (256,)}
    return keys


def _release_finetune_keys(parts: int, emb: int) -> dict[str, tuple[int, ...]]:
    """``DGCNN_partseg(args, parts, pretrain=False).state_dict()`` key -> shape."""
    keys = _release_pretrain_keys(emb)
    keys |= _block("conv7", (64, 16, 1)) | _block("conv8", (256, emb + 64 + 192, 1))
    keys |= _block("conv9", (256, 256, 1)) | _block("conv10", (128, 256, 1))
    return keys | {"conv11.weight": (parts, 128, 1)}


def _shapes(model: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    return {key: tuple(value.shape) for key, value in model.state_dict().items()}


def _randomise(model: torch.nn.Module, seed: int = 0) -> None:
    """Non-trivial weights and BatchNorm statistics, so eval-mode outputs test the wiring."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for key, value in model.state_dict().items():
            if not value.is_floating_point():
                continue
            noise = torch.rand(value.shape, generator=generator)
            if value.ndim > 1:  # a weight matrix: zero mean, variance ~2 / fan-in
                value.copy_((noise - 0.5) * (24 / value[0].numel()) ** 0.5)
            elif key.endswith(("running_var", ".weight")):  # BatchNorm scales
                value.copy_(0.5 + noise)
            else:  # biases and running means
                value.copy_(noise - 0.5)


def test_partseg_state_dict_is_the_releases() -> None:
    model = DGCNNPartSeg(parts=50, categories=16, emb_dims=1024)
    assert _shapes(model) == _release_finetune_keys(50, 1024)
    assert model.bn1 is model.conv1[1] and model.bn10 is model.conv10[1]
    assert model.transform_net.bn3.num_features == 512
    assert model.transform_net.conv3[1].num_features == 1024


def test_transform_net_starts_as_the_identity() -> None:
    net = DGCNNPartSeg(parts=4, k=8, emb_dims=32).transform_net.eval()
    edges = torch.randn(2, 6, 20, 8)
    assert torch.equal(net(edges), torch.eye(3).expand(2, 3, 3))


def test_encoder_keys_are_the_releases_pretrain_keys_and_load_into_the_partseg_net() -> None:
    encoder = DGCNNSegEncoder(k=15, emb_dims=1024)
    release = _release_pretrain_keys(1024)
    unused = {key for key in release if key.split(".")[0] in ("bn7", "bn8", "bn9", "bn10")}
    assert len(unused) == 20
    assert _shapes(encoder) == {key: s for key, s in release.items() if key not in unused}
    assert encoder.feature_dim == 1024

    _randomise(encoder)
    model = DGCNNPartSeg(parts=50, emb_dims=1024)
    missing, unexpected = model.load_state_dict(encoder.state_dict(), strict=False)
    assert unexpected == []
    assert {key.split(".")[0] for key in missing} == set(HEAD_MODULES)
    loaded = model.state_dict()
    assert all(torch.equal(loaded[key], value) for key, value in encoder.state_dict().items())


def _naive_edges(x: torch.Tensor, k: int) -> torch.Tensor:
    """cat(x_j - x_i, x_i) (B, 2C, N, k) over the k nearest (Euclidean, the point itself
    first) of x (B, C, N), one cloud and one point at a time."""
    clouds = []
    for cloud in x.transpose(2, 1):  # (N, C)
        rows = []
        for centre in cloud:
            nearest = ((cloud - centre) ** 2).sum(dim=1).argsort()[:k]
            rows.append(torch.cat((cloud[nearest] - centre, centre.expand(k, -1)), dim=1))
        clouds.append(torch.stack(rows))  # (N, k, 2C)
    return torch.stack(clouds).permute(0, 3, 1, 2)


def _reference_logits(model: DGCNNPartSeg, points: torch.Tensor, one_hot: torch.Tensor):
    """The release's fine-tuning forward, step by step, on ``model``'s layers (eval mode)."""
    k, t = model.k, model.transform_net
    x = points.transpose(2, 1)
    h = t.conv2(t.conv1(_naive_edges(x, k))).max(dim=-1)[0]
    h = t.conv3(h).max(dim=-1)[0]
    h = F.leaky_relu(t.bn4(t.linear2(F.leaky_relu(t.bn3(t.linear1(h)), 0.2))), 0.2)
    x = (points @ t.transform(h).view(-1, 3, 3)).transpose(2, 1)
    x1 = model.conv2(model.conv1(_naive_edges(x, k))).max(dim=-1)[0]
    x2 = model.conv4(model.conv3(_naive_edges(x1, k))).max(dim=-1)[0]
    x3 = model.conv5(_naive_edges(x2, k)).max(dim=-1)[0]
    g = model.conv6(torch.cat((x1, x2, x3), dim=1)).max(dim=-1, keepdim=True)[0]
    g = torch.cat((g, model.conv7(one_hot.unsqueeze(-1))), dim=1).repeat(1, 1, points.shape[1])
    x = model.conv8(torch.cat((g, x1, x2, x3), dim=1))
    return model.conv11(model.conv10(model.conv9(x)))


def test_forward_equals_a_naive_reference_and_both_category_forms_agree() -> None:
    torch.manual_seed(0)
    model = DGCNNPartSeg(parts=6, categories=4, k=6, emb_dims=32)
    _randomise(model)
    model.eval()
    points = torch.rand(2, 40, 3) * 2 - 1
    category = torch.tensor([3, 0])
    one_hot = F.one_hot(category, 4).float()
    with torch.no_grad():
        by_index, by_one_hot = model(points, category), model(points, one_hot)
        expected = _reference_logits(model, points, one_hot)
    assert by_index.shape == (2, 6, 40)
    assert torch.equal(by_index, by_one_hot)
    torch.testing.assert_close(by_index, expected, atol=1e-4, rtol=1e-5)
    assert expected.abs().max() > 1  # the comparison is not between zeros


def test_permuting_the_points_permutes_the_logits_and_a_batch_of_one_works() -> None:
    torch.manual_seed(1)
    model = DGCNNPartSeg(parts=5, categories=3, k=8, emb_dims=32)
    _randomise(model, seed=1)
    model.eval()
    points = torch.rand(2, 48, 3)
    order = torch.randperm(48)
    category = torch.tensor([2, 1])
    with torch.no_grad():
        logits = model(points, category)
        permuted = model(points[:, order], category)
        single = model(points[:1], category[:1])
    torch.testing.assert_close(permuted, logits[:, :, order], atol=1e-5, rtol=1e-5)
    assert single.shape == (1, 5, 48)
    torch.testing.assert_close(single, logits[:1], atol=1e-5, rtol=1e-5)

    encoder = DGCNNSegEncoder(k=8, emb_dims=32, proj_dim=16).eval()
    with torch.no_grad():
        feat, z = encoder(points[:1])
    assert feat.shape == (1, 32) and z.shape == (1, 16)  # the release's squeeze() drops B


def test_encoder_is_the_max_over_points_and_every_parameter_gets_a_gradient() -> None:
    torch.manual_seed(2)
    encoder = DGCNNSegEncoder(k=8, emb_dims=32, proj_dim=16)
    points = torch.rand(4, 32, 3)
    feat, z = encoder(points)
    per_point = encoder.conv6(torch.cat(encoder.encode(points)[1:], dim=1))
    torch.testing.assert_close(feat, per_point.amax(dim=-1))
    torch.testing.assert_close(z, encoder.forward_head(feat))
    (feat.sum() + z.square().sum()).backward()
    starved = [name for name, p in encoder.named_parameters() if p.grad is None]
    assert starved == []  # DistributedDataParallel needs a gradient for every parameter


@pytest.mark.parametrize(
    ("points", "category", "message"),
    [
        (torch.rand(2, 3, 16), torch.tensor([0, 1]), "points must be (B, N, 3)"),
        (torch.rand(2, 16, 3), torch.tensor([0, 4]), "category indices must be in [0, 4)"),
        (torch.rand(2, 16, 3), torch.zeros(2, 5), "category must be (2,) indices or a (2, 4)"),
        (torch.rand(2, 4, 3), torch.tensor([0, 1]), "k=6 neighbours requested"),
    ],
)
def test_bad_inputs_are_refused_in_one_line(points, category, message: str) -> None:
    model = DGCNNPartSeg(parts=3, categories=4, k=6, emb_dims=16).eval()
    with pytest.raises(ValueError) as caught:
        model(points, category)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_dgcnn_seg_is_a_registered_point_encoder_and_backbone() -> None:
    encoder = build_point_encoder("dgcnn_seg", k=10, emb_dims=48, proj_dim=24, edgeconv="fast")
    assert isinstance(encoder, DGCNNSegEncoder)
    assert (encoder.k, encoder.feature_dim, encoder.inv_head[3].out_features) == (10, 48, 24)
    config = PretrainConfig(backbone="dgcnn_seg", k=10, points=32, emb_dims=48)
    assert config.backbone == "dgcnn_seg"
    with pytest.raises(ValueError, match="k=40 neighbours need at least as many points"):
        PretrainConfig(backbone="dgcnn_seg", k=40, points=32)


TOML = """
backbone = "dgcnn_seg"
image_encoder = "resnet18"
epochs = 1
batch_size = 4
points = 32
k = 8
emb_dims = 32
image_size = 16
workers = 0
shuffle_buffer = 8
"""


def test_pretrain_runs_one_step_with_the_dgcnn_seg_backbone(
    tiny_shards: Path, tmp_path: Path
) -> None:
    (tmp_path / "run.toml").write_text(TOML)
    run = tmp_path / "run"
    args = ["pretrain", str(tiny_shards), "--out", str(run), "--config", str(tmp_path / "run.toml")]
    result = CliRunner().invoke(app, [*args, "--max-steps", "1", "--json", "-"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout[result.stdout.index("{") :])
    assert summary["steps"] == 1
    state = torch.load(run / "last.pt", weights_only=True)
    assert state["config"]["backbone"] == "dgcnn_seg"
    reference = DGCNNSegEncoder(k=8, emb_dims=32)
    assert _shapes(reference) == {k: tuple(v.shape) for k, v in state["models"]["point"].items()}
