"""NT-Xent and the CrossPoint objective against a slow reference and closed forms."""

from __future__ import annotations

import math

import pytest
import torch

from xpt.train.losses import NTXentLoss, crosspoint_loss, nt_xent


def _slow_nt_xent(z_a: torch.Tensor, z_b: torch.Tensor, t: float) -> float:
    """SimCLR's definition, one anchor at a time, in float64."""
    z = torch.cat((z_a, z_b)).double()
    z = [v / v.norm() for v in z]
    n, b = len(z), len(z_a)
    total = 0.0
    for i in range(n):
        positive = (i + b) % n
        denominator = sum(math.exp(float(z[i] @ z[j]) / t) for j in range(n) if j != i)
        total += -math.log(math.exp(float(z[i] @ z[positive]) / t) / denominator)
    return total / n


def _random(b: int, d: int, seed: int) -> torch.Tensor:
    return torch.randn(b, d, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("temperature", [0.1, 0.5, 2.0])
def test_matches_slow_loop(temperature: float) -> None:
    z_a, z_b = _random(5, 8, 0), _random(5, 8, 1)
    value = nt_xent(z_a, z_b, temperature)
    assert value.dtype == torch.float32 and value.shape == ()
    assert value.item() == pytest.approx(_slow_nt_xent(z_a, z_b, temperature), rel=1e-5)
    assert NTXentLoss(temperature)(z_a, z_b).item() == pytest.approx(value.item(), rel=1e-6)


def test_symmetric_and_scale_invariant() -> None:
    z_a, z_b = _random(4, 6, 2), _random(4, 6, 3)
    torch.testing.assert_close(nt_xent(z_a, z_b), nt_xent(z_b, z_a))
    torch.testing.assert_close(nt_xent(3.0 * z_a, z_b), nt_xent(z_a, z_b))


@pytest.mark.parametrize(("batch", "temperature"), [(2, 0.1), (4, 0.1), (3, 0.5), (4, 1.0)])
def test_closed_form_for_coinciding_orthogonal_pairs(batch: int, temperature: float) -> None:
    # Positive cosine 1, all 2B - 2 negatives cosine 0: loss = log(1 + (2B - 2) e^(-1/t)).
    z = torch.eye(batch, 8)
    expected = math.log(1 + (2 * batch - 2) * math.exp(-1 / temperature))
    # float32 log-softmax of logits ~1/t: absolute error ~1e-7 / t.
    value = nt_xent(z, z.clone(), temperature).item()
    assert value == pytest.approx(expected, rel=1e-5, abs=1e-6)


def test_minimal_when_pairs_coincide_and_negatives_are_far() -> None:
    z = torch.eye(4, 8)
    best = nt_xent(z, z.clone()).item()
    assert best < 1e-3
    gen = torch.Generator().manual_seed(4)
    for _ in range(5):
        noisy = z + 0.3 * torch.randn(4, 8, generator=gen)
        assert nt_xent(z, noisy).item() > best
    swapped = z[[1, 0, 2, 3]]  # wrong partners: the positive is now a negative
    assert nt_xent(z, swapped).item() > 4.5  # ~(1/2) * 10: half the anchors miss


def test_gradients_are_finite() -> None:
    z_a = _random(3, 4, 5).requires_grad_(True)
    nt_xent(z_a, _random(3, 4, 6)).backward()
    assert z_a.grad is not None and torch.isfinite(z_a.grad).all() and z_a.grad.abs().sum() > 0


@pytest.mark.parametrize("temperature", [0.0, -0.1, float("nan")])
def test_bad_temperature_is_refused(temperature: float) -> None:
    with pytest.raises(ValueError, match="temperature"):
        NTXentLoss(temperature)
    with pytest.raises(ValueError, match="temperature"):
        crosspoint_loss(_random(2, 4, 0), _random(2, 4, 1), _random(2, 4, 2), "both", temperature)


def test_shape_mismatch_is_refused() -> None:
    with pytest.raises(ValueError, match=r"\(2, 4\) and \(3, 4\)"):
        nt_xent(_random(2, 4, 0), _random(3, 4, 1))


def test_crosspoint_modes() -> None:
    z_a, z_b, z_img = _random(4, 6, 7), _random(4, 6, 8), _random(4, 6, 9)
    imid = nt_xent(z_a, z_b)
    cmid = nt_xent((z_a + z_b) / 2, z_img)
    both = crosspoint_loss(z_a, z_b, z_img)
    torch.testing.assert_close(both["imid"], imid)
    torch.testing.assert_close(both["cmid"], cmid)
    torch.testing.assert_close(both["loss"], imid + cmid)
    only_imid = crosspoint_loss(z_a, z_b, z_img, mode="imid")
    assert only_imid["cmid"].item() == 0.0 and only_imid["loss"].item() == pytest.approx(
        imid.item()
    )
    only_cmid = crosspoint_loss(z_a, z_b, z_img, mode="cmid")
    assert only_cmid["imid"].item() == 0.0 and only_cmid["loss"].item() == pytest.approx(
        cmid.item()
    )
    slow = _slow_nt_xent(z_a, z_b, 0.1) + _slow_nt_xent((z_a + z_b) / 2, z_img, 0.1)
    assert both["loss"].item() == pytest.approx(slow, rel=1e-5)
    with pytest.raises(ValueError, match="both, imid, cmid"):
        crosspoint_loss(z_a, z_b, z_img, mode="all")
    no_image = crosspoint_loss(z_a, z_b, None, mode="imid")
    torch.testing.assert_close(no_image["loss"], imid)
    with pytest.raises(ValueError, match="needs image embeddings"):
        crosspoint_loss(z_a, z_b, None, mode="both")


def test_float32_under_autocast() -> None:
    z_a, z_b, z_img = (_random(4, 6, s).bfloat16() for s in (10, 11, 12))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = crosspoint_loss(z_a, z_b, z_img)
    assert all(v.dtype == torch.float32 for v in out.values())
    expected = crosspoint_loss(z_a.float(), z_b.float(), z_img.float())
    torch.testing.assert_close(out["loss"], expected["loss"])
