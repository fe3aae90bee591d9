"""The fast EdgeConv is the plain (reference) one: features, gradients, BN statistics, ties."""

from __future__ import annotations

import pytest
import torch

from xpt.train.models.dgcnn import DGCNN, load_reference_state_dict
from xpt.train.models.edgeconv import EdgeConv, knn


def _cloud(b: int, n: int, seed: int) -> torch.Tensor:
    """(b, n, 3) random points, some of them coincident (tied neighbours)."""
    points = torch.randn(b, n, 3, generator=torch.Generator().manual_seed(seed))
    points[:, 1] = points[:, 0]
    points[:, 2] = points[:, 0]
    points[:, 10:14] = points[:, 20:21]
    return points


def _pair(seed: int = 0, **kwargs: object) -> tuple[DGCNN, DGCNN]:
    torch.manual_seed(seed)
    plain = DGCNN(edgeconv="plain", **kwargs)  # type: ignore[arg-type]
    with torch.no_grad():  # exercise negative and zero BN scales (max becomes min / all tie)
        plain.conv2.bn.weight[:5].neg_()
        plain.conv3.bn.weight[0] = 0
        for layer in (plain.conv1, plain.conv2, plain.conv3, plain.conv4):
            layer.bn.bias.normal_(0, 0.3)
    fast = DGCNN(edgeconv="fast", **kwargs)  # type: ignore[arg-type]
    fast.load_state_dict(plain.state_dict())
    return plain, fast


def _run(model: DGCNN, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, dict]:
    points = points.clone().requires_grad_(True)
    feat, z = model(points)
    (z.square().sum() + feat.sin().sum()).backward()
    grads = {name: p.grad for name, p in model.named_parameters()}
    return feat.detach(), points.grad, grads


def _close(actual: torch.Tensor, expected: torch.Tensor, rel: float, name: str) -> None:
    err = (actual - expected).norm().item()
    assert err <= rel * expected.norm().item() + 1e-5, (name, err, expected.norm().item())


@pytest.mark.parametrize("seed", [0, 1])
def test_training_step_matches_plain(seed: int) -> None:
    plain, fast = _pair(seed, k=8, emb_dims=32, proj_dim=16)
    points = _cloud(4, 96, seed)
    feat_p, dpoints_p, grads_p = _run(plain, points)
    feat_f, dpoints_f, grads_f = _run(fast, points)
    torch.testing.assert_close(feat_f, feat_p, atol=1e-5, rtol=0)
    _close(dpoints_f, dpoints_p, 1e-4, "points")
    for name, grad in grads_p.items():
        if name != "head.fc1.bias":  # feeds a BatchNorm: 0 up to rounding noise in both
            _close(grads_f[name], grad, 1e-3 if name.startswith("head.") else 1e-4, name)
    buffers_p = dict(plain.named_buffers())
    for name, value in fast.named_buffers():
        torch.testing.assert_close(value, buffers_p[name], atol=1e-6, rtol=1e-5, msg=name)


def test_running_statistics_follow_momentum_none_and_no_grad() -> None:
    plain, fast = _pair(2, k=6, emb_dims=16, proj_dim=8)
    for model in (plain, fast):
        model.conv2.bn.momentum = None  # cumulative average
    for step in range(3):
        points = _cloud(3, 64, 10 + step)
        for model in (plain, fast):
            with torch.no_grad():
                model(points)
    for (name, value), expected in zip(fast.named_buffers(), plain.buffers(), strict=True):
        torch.testing.assert_close(value, expected, atol=1e-6, rtol=1e-5, msg=name)
    assert int(fast.conv2.bn.num_batches_tracked) == 3


def test_eval_features_and_gradients_match_plain() -> None:
    plain, fast = _pair(3, k=10, emb_dims=32, proj_dim=16)
    plain(_cloud(4, 64, 5))  # non-trivial running statistics, shared: the fast ones agree
    fast.load_state_dict(plain.state_dict())  # to rounding only, and a 1-ulp change can flip
    for model in (plain, fast):  # a near-tied arg-max here (the training tests check them)
        model.eval()
    points = _cloud(4, 128, 6)
    with torch.no_grad():
        torch.testing.assert_close(
            fast.forward_features(points), plain.forward_features(points), atol=1e-5, rtol=0
        )
    feat_p, dpoints_p, grads_p = _run(plain, points)
    feat_f, dpoints_f, grads_f = _run(fast, points)
    torch.testing.assert_close(feat_f, feat_p, atol=1e-5, rtol=0)
    _close(dpoints_f, dpoints_p, 1e-4, "points")
    for name, grad in grads_p.items():
        if name != "head.fc1.bias":
            _close(grads_f[name], grad, 1e-3 if name.startswith("head.") else 1e-4, name)


@pytest.mark.parametrize("gamma", [1.0, -1.0, 0.0])
def test_tied_neighbours_share_the_gradient_evenly(gamma: float) -> None:
    """Coincident neighbours tie for the max: like torch.amax in the plain layer, each of
    the t tied slots gets 1/t of the gradient (all k slots when gamma = 0)."""
    torch.manual_seed(0)
    layers = {impl: EdgeConv(2, 3, 4, impl=impl) for impl in ("plain", "fast")}
    layers["fast"].load_state_dict(layers["plain"].state_dict())
    x = torch.tensor([[[0.0, 0.0, 0.0, 1.0, 3.0, 3.0], [0.0, 0.0, 1.0, 0.0, 2.0, 2.0]]])
    grads = {}
    for impl, layer in layers.items():
        with torch.no_grad():
            layer.bn.weight.fill_(gamma)
        xi = x.clone().requires_grad_(True)
        out = layer(xi)
        out.backward(torch.arange(out.numel(), dtype=torch.float32).view_as(out))
        grads[impl] = (out.detach(), xi.grad, layer.conv.weight.grad, layer.bn.weight.grad)
    for fast, plain in zip(grads["fast"], grads["plain"], strict=True):
        torch.testing.assert_close(fast, plain, atol=1e-5, rtol=1e-5)


def test_reference_vector_and_state_dict_names(dgcnn_reference: dict) -> None:
    k, emb = dgcnn_reference["k"], dgcnn_reference["emb_dims"]
    models = {impl: DGCNN(k=k, emb_dims=emb, edgeconv=impl) for impl in ("fast", "plain")}
    assert list(models["fast"].state_dict()) == list(models["plain"].state_dict())
    assert DGCNN(k=k, emb_dims=emb).edgeconv == "fast"
    for model in models.values():
        load_reference_state_dict(model, dgcnn_reference["state_dict"])
        model.eval()
        with torch.no_grad():
            feat, z = model(dgcnn_reference["points_bnc"].float())
        torch.testing.assert_close(feat, dgcnn_reference["expected_feat"], atol=1e-4, rtol=0)
        torch.testing.assert_close(z, dgcnn_reference["expected_inv_feat"], atol=1e-4, rtol=0)
    with torch.no_grad():
        points = dgcnn_reference["points_bnc"].float()
        torch.testing.assert_close(
            models["fast"].forward_features(points),
            models["plain"].forward_features(points),
            atol=1e-5,
            rtol=0,
        )


def test_knn_in_blocks_is_the_same_and_detached() -> None:
    x = torch.randn(2, 5, 200, generator=torch.Generator().manual_seed(0)).requires_grad_(True)
    x.data[:, :, 7] = x.data[:, :, 3]  # an exact tie
    whole = knn(x, 12)
    assert not whole.requires_grad and whole.dtype == torch.long
    assert torch.equal(knn(x, 12, block_bytes=2 * 200 * 4 * 7), whole)  # 7 rows a block
    assert torch.equal(knn(x, 12, block_bytes=1), whole)


@pytest.mark.parametrize("channels", [3, 64, 130])
def test_knn_distances_are_the_references_bit_for_bit(channels: int) -> None:
    """The distances k-NN ranks are the reference's ``-xx - inner - xx^T`` with
    ``inner = -2 x^T x`` exactly (so its ties and neighbour order), at several scales."""
    from xpt.train.models.edgeconv import _pairwise_block

    g = torch.Generator().manual_seed(channels)
    for scale in (1e-2, 1.0, 30.0):
        x = torch.randn(2, channels, 300, generator=g) * scale
        x[:, :, 11] = x[:, :, 5]  # coincident points
        inner = -2 * torch.matmul(x.transpose(2, 1), x)
        xx = torch.sum(x**2, dim=1, keepdim=True)
        reference = -xx - inner - xx.transpose(2, 1)
        ours = _pairwise_block(x.transpose(2, 1), x, xx.transpose(2, 1), xx)
        assert torch.equal(ours, reference)
        assert torch.equal(knn(x, 16), reference.topk(k=16, dim=-1)[1])


def test_pretrain_config_picks_the_edgeconv() -> None:
    from xpt.train.config import PretrainConfig
    from xpt.train.crosspoint import build_models
    from xpt.train.loop import RESUME_EXACT_FIELDS

    assert PretrainConfig().edgeconv == "fast" and "edgeconv" in RESUME_EXACT_FIELDS
    config = PretrainConfig(edgeconv="plain", k=4, emb_dims=16, image_encoder="resnet18")
    point, _ = build_models(config)
    assert point.edgeconv == "plain" and point.conv4.impl == "plain"
    with pytest.raises(ValueError, match="edgeconv"):
        PretrainConfig(edgeconv="slow")


def test_unknown_edgeconv_is_refused() -> None:
    with pytest.raises(ValueError, match="'fastest'"):
        DGCNN(edgeconv="fastest")
    with pytest.raises(ValueError, match="k=9"):
        EdgeConv(3, 4, 9)(torch.randn(1, 3, 5))


def _layer_pair(in_ch: int, out_ch: int, k: int) -> dict[str, EdgeConv]:
    torch.manual_seed(0)
    layers = {impl: EdgeConv(in_ch, out_ch, k, impl=impl) for impl in ("plain", "fast")}
    layers["fast"].load_state_dict(layers["plain"].state_dict())
    return layers


def test_batch_statistics_are_two_pass_where_the_mean_dominates() -> None:
    """Edge values with a mean ~100x their spread (points far from the origin): a one-pass
    E[e^2] - E[e]^2 in float32 would lose the variance; the running statistics match."""
    layers = _layer_pair(3, 16, 8)
    x = torch.randn(2, 3, 128, generator=torch.Generator().manual_seed(1)) + 100
    for layer in layers.values():
        layer(x)
    for name in ("running_mean", "running_var"):
        torch.testing.assert_close(
            getattr(layers["fast"].bn, name), getattr(layers["plain"].bn, name), atol=0, rtol=1e-4
        )


def test_more_than_255_tied_neighbours() -> None:
    """Tie counts past 255 (all k = 270 neighbours of a coincident point tie)."""
    layers = _layer_pair(2, 4, 270)
    x = torch.randn(1, 2, 300, generator=torch.Generator().manual_seed(2))
    x[:, :, :280] = 0.5
    grads = {}
    for impl, layer in layers.items():
        xi = x.clone().requires_grad_(True)
        out = layer(xi)
        out.backward(torch.linspace(-1, 1, out.numel()).view_as(out))
        grads[impl] = (out.detach(), xi.grad, layer.conv.weight.grad, layer.bn.weight.grad)
    torch.testing.assert_close(grads["fast"][0], grads["plain"][0], atol=1e-5, rtol=0)
    names = ("x", "weight", "gamma")
    for name, fast, plain in zip(names, grads["fast"][1:], grads["plain"][1:], strict=True):
        _close(fast, plain, 1e-4, name)
