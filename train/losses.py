"""CrossPoint losses: NT-Xent over positive pairs, intra-modal (IMID) and cross-modal (CMID).

Afham et al., "CrossPoint: Self-Supervised Cross-Modal Contrastive Learning for 3D Point
Cloud Understanding", CVPR 2022; NT-Xent from Chen et al., "A Simple Framework for
Contrastive Learning of Visual Representations" (SimCLR), ICML 2020.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

LOSS_MODES = ("both", "imid", "cmid")


def _check_temperature(temperature: float) -> float:
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    return float(temperature)


def nt_xent(z_a: Tensor, z_b: Tensor, temperature: float = 0.1) -> Tensor:
    """Symmetric NT-Xent loss of B positive pairs ``(z_a[i], z_b[i])``.

    z_a, z_b: (B, D) embeddings (any float dtype; computed in float32, outside autocast).
    Rows are L2-normalised and stacked into 2B embeddings; for each one the positive is
    its pair and the negatives are the other 2B - 2 embeddings (self-similarity masked).
    Returns the mean over all 2B anchors of ``-log softmax(cos / temperature)[positive]``,
    a scalar float32 tensor; the same value as lightly's ``NTXentLoss`` used by the
    CrossPoint release.
    """
    temperature = _check_temperature(temperature)
    if z_a.ndim != 2 or z_a.shape != z_b.shape:
        raise ValueError(
            f"z_a and z_b must both be (B, D), got {tuple(z_a.shape)} and {tuple(z_b.shape)}"
        )
    batch = z_a.shape[0]
    with torch.autocast(device_type=z_a.device.type, enabled=False):
        z = F.normalize(torch.cat((z_a, z_b)).float(), dim=1)
        logits = z @ z.T / temperature
        self_mask = torch.eye(2 * batch, dtype=torch.bool, device=z.device)
        logits = logits.masked_fill(self_mask, float("-inf"))
        index = torch.arange(batch, device=z.device)
        positives = torch.cat((index + batch, index))
        return F.cross_entropy(logits, positives)


class NTXentLoss(nn.Module):
    """Module form of :func:`nt_xent`: ``forward(z_a (B, D), z_b (B, D)) -> scalar``."""

    def __init__(self, temperature: float = 0.1) -> None:
        super().__init__()
        self.temperature = _check_temperature(temperature)

    def forward(self, z_a: Tensor, z_b: Tensor) -> Tensor:
        return nt_xent(z_a, z_b, self.temperature)


def crosspoint_loss(
    z_a: Tensor,
    z_b: Tensor,
    z_img: Tensor | None,
    mode: str = "both",
    temperature: float = 0.1,
) -> dict[str, Tensor]:
    """CrossPoint objective for one batch.

    z_a, z_b: (B, D) projections of two augmented point views; z_img: (B, D) projection
    of one rendered view (may be None in "imid" mode, which does not use it).
    IMID = NT-Xent(z_a, z_b); CMID = NT-Xent(mean(z_a, z_b), z_img). ``mode`` "both" |
    "imid" | "cmid" picks the terms summed into "loss" (the paper's ablation); an inactive
    term is reported as a float32 zero. All values are float32 scalars.
    """
    if mode not in LOSS_MODES:
        raise ValueError(f"unknown loss mode {mode!r}; valid: {', '.join(LOSS_MODES)}")
    _check_temperature(temperature)
    if z_img is None and mode != "imid":
        raise ValueError(f"loss mode {mode!r} needs image embeddings, got None")
    zero = torch.zeros((), dtype=torch.float32, device=z_a.device)
    imid = nt_xent(z_a, z_b, temperature) if mode in ("both", "imid") else zero
    if mode in ("both", "cmid"):
        with torch.autocast(device_type=z_a.device.type, enabled=False):
            z_points = torch.stack((z_a.float(), z_b.float())).mean(dim=0)
        cmid = nt_xent(z_points, z_img, temperature)
    else:
        cmid = zero
    return {"loss": imid + cmid, "imid": imid, "cmid": cmid}
