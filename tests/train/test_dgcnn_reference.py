"""Our DGCNN loads reference-release checkpoints and reproduces the reference test vector."""

from __future__ import annotations

import pytest
import torch

from xpt.train.models.dgcnn import (
    DGCNN,
    checkpoint_filter_fn,
    edge_features,
    knn,
    load_reference_state_dict,
)


@pytest.fixture(scope="module")
def fixture(dgcnn_reference: dict) -> dict:
    return dgcnn_reference


def _model(fixture: dict) -> DGCNN:
    return DGCNN(k=fixture["k"], emb_dims=fixture["emb_dims"])


def test_reference_test_vector_is_reproduced(fixture: dict) -> None:
    model = _model(fixture)
    report = load_reference_state_dict(model, fixture["state_dict"])
    assert report.missing == [] and report.unexpected == []
    model.eval()
    with torch.no_grad():
        feat, z = model(fixture["points_bnc"].float())
    assert feat.shape == (2, 2 * fixture["emb_dims"]) and z.shape == (2, 256)
    torch.testing.assert_close(feat, fixture["expected_feat"], atol=1e-4, rtol=0)
    torch.testing.assert_close(z, fixture["expected_inv_feat"], atol=1e-4, rtol=0)
    torch.testing.assert_close(model.forward_head(feat), z)


def test_clean_names_have_no_duplicated_batchnorm(fixture: dict) -> None:
    keys = list(_model(fixture).state_dict())
    assert not any(k.startswith("bn") for k in keys)
    assert {"conv1.conv.weight", "conv5.bn.running_var", "head.fc1.bias", "head.fc2.bias"} <= set(
        keys
    )
    assert len(keys) == len(fixture["state_dict"]) - 5 * 5  # the five bnN copies dropped


def test_filter_maps_every_reference_key(fixture: dict) -> None:
    renamed = checkpoint_filter_fn(fixture["state_dict"])
    assert set(renamed) == set(_model(fixture).state_dict())
    assert torch.equal(renamed["conv2.bn.running_mean"], fixture["state_dict"]["bn2.running_mean"])
    assert torch.equal(renamed["head.bn.weight"], fixture["state_dict"]["inv_head.1.weight"])


def test_wrong_shape_is_refused_naming_the_key(fixture: dict) -> None:
    state = dict(fixture["state_dict"])
    state["conv5.0.weight"] = torch.zeros(128, 512, 1)
    with pytest.raises(ValueError, match=r"conv5\.conv\.weight.*\(128, 512, 1\).*\(256, 512, 1\)"):
        load_reference_state_dict(_model(fixture), state)
    with pytest.raises(ValueError, match="conv5"):
        load_reference_state_dict(_model(fixture), state, strict=False)


def test_missing_and_unexpected_keys_are_named(fixture: dict) -> None:
    state = dict(fixture["state_dict"])
    del state["inv_head.3.bias"]
    state["linear1.weight"] = torch.zeros(512, 512)
    with pytest.raises(
        ValueError, match=r"missing keys: head\.fc2\.bias.*unexpected keys: linear1"
    ):
        load_reference_state_dict(_model(fixture), state)
    model = _model(fixture)
    report = load_reference_state_dict(model, state, strict=False)
    assert report.missing == ["head.fc2.bias"] and report.unexpected == ["linear1.weight"]
    assert torch.equal(model.conv1.conv.weight, fixture["state_dict"]["conv1.0.weight"])


def test_differing_duplicate_batchnorm_is_refused(fixture: dict) -> None:
    state = dict(fixture["state_dict"])
    state["bn3.running_var"] = state["bn3.running_var"] + 1
    with pytest.raises(ValueError, match=r"bn3\.running_var.*conv3\.1\.running_var"):
        load_reference_state_dict(_model(fixture), state)


def test_dataparallel_prefix_and_bn_only_checkpoints_load(fixture: dict) -> None:
    state = {
        f"module.{k}": v for k, v in fixture["state_dict"].items() if not k.startswith("conv4.1.")
    }
    model = _model(fixture)
    assert load_reference_state_dict(model, state).missing == []
    assert torch.equal(model.conv4.bn.weight, fixture["state_dict"]["bn4.weight"])


def test_knn_includes_the_point_itself_and_the_nearest_ones() -> None:
    x = torch.tensor([[[0.0, 1.0, 3.0, 7.0, 7.5]]])  # (1, C=1, N=5)
    idx = knn(x, 2)
    assert idx[0].tolist() == [[0, 1], [1, 0], [2, 1], [3, 4], [4, 3]]


def test_edge_features_match_a_direct_loop() -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 4, 9, generator=gen)
    k = 3
    feats = edge_features(x, k)
    assert feats.shape == (2, 8, 9, k)
    for b in range(2):
        for i in range(9):
            dist = ((x[b] - x[b, :, i : i + 1]) ** 2).sum(dim=0)
            for slot, j in enumerate(dist.argsort()[:k].tolist()):
                expected = torch.cat((x[b, :, j] - x[b, :, i], x[b, :, i]))
                torch.testing.assert_close(feats[b, :, i, slot], expected)
    with pytest.raises(ValueError, match="k=10"):
        edge_features(x, 10)
