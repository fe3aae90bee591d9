"""EdgeConv (Wang et al., "Dynamic Graph CNN for Learning on Point Clouds", 2019): k-NN in
feature space and ``max_j LeakyReLU(BN(W cat(x_j - x_i, x_i)))`` over the neighbours j of
each point i; (B, C, N) -> (B, out_ch, N).

Two formulations of the same function with the same parameters (``conv.weight`` of shape
(out, 2C, 1, 1), ``bn.*``):

- ``"plain"``: the reference's, a ``Conv2d`` on the materialised edge tensor (B, 2C, N, k)
  under autograd. Kept as the test oracle and speed baseline.
- ``"fast"``: by linearity ``W cat(x_j - x_i, x_i) = W_a x_j + (W_b - W_a) x_i`` with
  ``W = [W_a | W_b]``, so every point is projected once, ``y = W_a x`` and
  ``c = (W_b - W_a) x`` (B, N, out), and only the projections are gathered. BatchNorm is a
  per-channel affine map ``s e + t`` (batch or running statistics) and LeakyReLU is
  monotone, so the max over neighbours is taken on ``e`` (the min where ``s < 0``) and BN
  and the activation are applied to (B, N, out) only. No (B, N, k, out) tensor is formed:
  the extreme, the BN batch statistics (two-pass) and, in training, a custom autograd
  function's backward work one neighbour slot at a time on (B*N, out) tensors (gathers
  and ``index_add_``); it keeps y, c, the neighbour indices, the extreme, the batch
  statistics and a per-(point, channel) tie count. The gradient of tied maxima is split
  evenly among the tied neighbours, as ``torch.amax`` does in the plain formulation (ties
  are decided on the activated values, so gamma = 0 ties all k).

The two agree to float32 rounding (features ~1e-6, gradients ~1e-6 relative); where two
neighbours' edge values are within rounding of each other the arg-max may differ, and where
two candidates sit at the k-th nearest distance within rounding a later layer's k-NN may
pick the other one (k-NN is discontinuous): one point of one cloud in 16 random clouds of
1024 points at k=15, giving 1e-4 in one global feature.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

EDGECONV_IMPLS = ("fast", "plain")
# Largest (B, n, N) float32 distance block k-NN materialises at once; more is done in
# chunks of query points (the neighbours found are the same).
KNN_BLOCK_BYTES = 1 << 30


def _pairwise_block(xt_q: Tensor, x: Tensor, xx_q: Tensor, xx: Tensor) -> Tensor:
    """``-|x_j|^2 + 2 x_i.x_j - |x_i|^2`` (B, n, N) for query rows ``xt_q`` (B, n, C),
    bit-identical to the reference's ``-xx - inner - xx^T`` with ``inner = -2 x^T x`` (and so
    are its ties): one BLAS call forms ``2 x_i.x_j - |x_j|^2`` (the scaling by 2 and the
    negation are exact, one rounding for the sum, as the reference's ``-xx - inner``), then
    ``- |x_i|^2`` in place. (``xx_q``: the query rows' squared norms (B, n, 1); ``xx``: all
    points' (B, 1, N).)"""
    return torch.baddbmm(xx, xt_q, x, beta=-1, alpha=2).sub_(xx_q)


def knn(x: Tensor, k: int, *, block_bytes: int = KNN_BLOCK_BYTES) -> Tensor:
    """Indices (B, N, k) int64 of the k nearest neighbours of each point of ``x`` (B, C, N).

    Top-k of the negative squared distance, formed exactly as in the reference
    (``-|x_i|^2 + 2 x_i.x_j - |x_j|^2``), so ties and the order of the neighbours are the
    reference's (each point normally its own first neighbour). Always float32 and without
    autograd (neighbour choice must not flip under bf16/fp16 autocast); the (B, N, N)
    distances are formed in blocks of query points when larger than ``block_bytes``.
    """
    with torch.no_grad(), torch.autocast(device_type=x.device.type, enabled=False):
        x = x.detach().float()
        b, _, n = x.shape
        xt = x.transpose(2, 1)
        xx = torch.sum(x**2, dim=1, keepdim=True)  # (B, 1, N)
        xx_t = xx.transpose(2, 1)  # (B, N, 1)
        rows = max(1, block_bytes // max(1, 4 * b * n))
        if rows >= n:
            return _pairwise_block(xt, x, xx_t, xx).topk(k=k, dim=-1)[1]
        out = torch.empty(b, n, k, dtype=torch.long, device=x.device)
        for start in range(0, n, rows):
            stop = min(n, start + rows)
            block = _pairwise_block(xt[:, start:stop], x, xx_t[:, start:stop], xx)
            out[:, start:stop] = block.topk(k=k, dim=-1)[1]
        return out


def edge_features(x: Tensor, k: int) -> Tensor:
    """EdgeConv input (B, 2C, N, k) = ``cat(x_j - x_i, x_i)`` for x (B, C, N).

    Neighbour minus centre first, centre second, as in the reference.
    """
    b, c, n = x.shape
    _check_k(k, n)
    idx = knn(x, k) + torch.arange(b, device=x.device).view(-1, 1, 1) * n
    points = x.transpose(2, 1).contiguous()  # (B, N, C)
    neighbours = points.view(b * n, c)[idx.view(-1)].view(b, n, k, c)
    centre = points.view(b, n, 1, c).expand(b, n, k, c)
    return torch.cat((neighbours - centre, centre), dim=3).permute(0, 3, 1, 2).contiguous()


def _check_k(k: int, n: int) -> None:
    if k > n:
        raise ValueError(f"k={k} neighbours requested but the cloud has only {n} points")


def _flat_neighbours(x: Tensor, k: int) -> Tensor:
    """k-NN of x (B, C, N) as row indices (B*N*k,) into a (B*N, ...) point-major table."""
    b, _, n = x.shape
    idx = knn(x, k) + torch.arange(b, device=x.device).view(-1, 1, 1) * n
    return idx.view(-1)


def _split_weight(weight: Tensor) -> Tensor:
    """(out, 2C, 1, 1) ``[W_a | W_b]`` -> (2*out, C) ``[W_a ; W_b - W_a]``."""
    w = weight.flatten(1)
    w_a, w_b = w.chunk(2, dim=1)
    return torch.cat((w_a, w_b - w_a), dim=0)


def _project(x: Tensor, weight: Tensor) -> tuple[Tensor, Tensor]:
    """Point-major projections y = W_a x and c = (W_b - W_a) x, each (B*N, out)."""
    b, c, n = x.shape
    out_ch = weight.shape[0]
    proj = x.transpose(2, 1).reshape(b * n, c) @ _split_weight(weight).t()
    return proj[:, :out_ch], proj[:, out_ch:]


def _extreme(values: Tensor, take_max: Tensor) -> Tensor:
    """Max over dim 1 of ``values`` (R, k, out) for the channels where ``take_max``, min for
    the others; (R, out)."""
    if bool(take_max.all()):
        return values.amax(dim=1)
    return torch.where(take_max, values.amax(dim=1), values.amin(dim=1))


def _extreme_by_slot(y: Tensor, idx_t: Tensor, take_max: Tensor) -> Tensor:
    """``_extreme(y[idx])`` (R, out) for neighbour rows ``idx_t`` (k, R), one neighbour slot
    at a time: no (R, k, out) tensor, and ~5x faster on CPU (the max is exact either way)."""
    use_min = not bool(take_max.all())
    hi = y.index_select(0, idx_t[0])
    lo = hi.clone() if use_min else None
    buf = torch.empty_like(hi)
    for row in idx_t[1:]:
        torch.index_select(y, 0, row, out=buf)
        torch.maximum(hi, buf, out=hi)
        if lo is not None:
            torch.minimum(lo, buf, out=lo)
    return hi if lo is None else torch.where(take_max, hi, lo)


def _tie_dtype(k: int) -> torch.dtype:
    """Smallest integer dtype that counts up to k tied neighbours."""
    return torch.uint8 if k <= torch.iinfo(torch.uint8).max else torch.int32


def _slot_statistics(
    y: Tensor, c: Tensor, idx_t: Tensor, extreme: Tensor, mean: Tensor, keep_sums: bool
) -> tuple[Tensor, Tensor, Tensor | None]:
    """One pass over the neighbour slots of the edges ``e = y[idx_t[s]] + c``: the sum of
    squared deviations from ``mean`` (out,), the number of slots equal to ``extreme``
    (R, out; integer) and, if ``keep_sums``, ``sum_s e_s`` (R, out)."""
    squares = torch.zeros_like(mean, dtype=torch.float64)  # sums k per-slot partial sums
    ties = torch.zeros(c.shape, dtype=_tie_dtype(idx_t.shape[0]), device=c.device)
    sums = torch.zeros_like(c) if keep_sums else None
    buf = torch.empty_like(c)
    hit = torch.empty(c.shape, dtype=torch.bool, device=c.device)
    for row in idx_t:
        torch.index_select(y, 0, row, out=buf).add_(c)
        if sums is not None:
            sums.add_(buf)
        ties.add_(torch.eq(buf, extreme, out=hit))
        squares.add_(buf.sub_(mean).square_().sum(dim=0))
    return squares, ties, sums


class _EdgeConvTrain(torch.autograd.Function):
    """Training-mode fast EdgeConv (batch statistics); see the module docstring.

    Inputs: x (B, C, N), weight (out, 2C, 1, 1), gamma, beta (out,), flat neighbour indices
    (B*N*k,), k, eps, slope, and the running statistics to update in place (or None) with
    their factor. Returns (B, out, N).
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        x: Tensor,
        weight: Tensor,
        gamma: Tensor,
        beta: Tensor,
        flat_idx: Tensor,
        k: int,
        eps: float,
        slope: float,
        running_mean: Tensor | None,
        running_var: Tensor | None,
        factor: float,
    ) -> Tensor:
        b, _, n = x.shape
        y, c = (t.contiguous() for t in _project(x, weight))
        idx_t = flat_idx.view(-1, k).t().contiguous()  # (k, B*N): one row per slot
        # BN is s*e + t per channel (s = gamma / std, same sign as gamma) and LeakyReLU is
        # monotone: the max over neighbours is at the max of e where s >= 0, the min where
        # s < 0; max_s (y_s + c) = max_s y_s + c exactly (rounding is monotone).
        extreme = _extreme_by_slot(y, idx_t, gamma >= 0).add_(c)  # (B*N, out)
        # Batch statistics over the B*N*k edges, two-pass and accumulated in float64: the
        # mean from how often each point is a neighbour, then the squared deviations slot by
        # slot.
        count = flat_idx.numel()
        hits = torch.bincount(flat_idx, minlength=y.shape[0]).double()
        mean64 = (hits @ y.double()).add_(c.sum(dim=0, dtype=torch.float64), alpha=k)
        mean64.div_(count)
        mean = mean64.to(y.dtype)
        keep_sums = bool((gamma == 0).any())  # needed for d/dgamma where gamma = 0
        squares, ties, sums = _slot_statistics(y, c, idx_t, extreme, mean, keep_sums)
        var64 = squares.div_(count)
        var = var64.to(y.dtype)
        if running_mean is not None and running_var is not None:  # in float64 too
            unbiased = var64 * (count / max(count - 1, 1))
            running_mean.copy_(running_mean.double().mul_(1 - factor).add_(mean64, alpha=factor))
            running_var.copy_(running_var.double().mul_(1 - factor).add_(unbiased, alpha=factor))
        rstd = torch.rsqrt(var + eps)
        scale = gamma * rstd
        z = torch.addcmul(beta - mean * scale, extreme, scale)
        ctx.save_for_backward(x, weight, gamma, beta, y, c, idx_t, mean, rstd, extreme, ties, sums)
        ctx.slope, ctx.shape = slope, (b, n)
        return F.leaky_relu(z, slope).view(b, n, -1).transpose(2, 1)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        x, weight, gamma, beta, y, c, idx_t, mean, rstd, extreme, ties, sums = ctx.saved_tensors
        b, n = ctx.shape
        k, rows = idx_t.shape
        count = k * rows
        out_ch = y.shape[1]
        scale = gamma * rstd
        z = torch.addcmul(beta - mean * scale, extreme, scale)  # as in forward
        g = grad_out.transpose(2, 1).reshape(rows, out_ch)
        g = torch.where(z > 0, g, g * ctx.slope)  # through LeakyReLU at the extreme
        # BN backward, with the upstream gradient non-zero only at the tied slots (whose
        # normalised values are all xhat(extreme), or all k slots where gamma = 0).
        gz_xhat = g * ((extreme - mean) * rstd)
        if sums is not None:  # some gamma = 0
            xhat_sum = (sums - k * mean) * rstd
            gz_xhat = torch.where(gamma == 0, g / k * xhat_sum, gz_xhat)
        grad_gamma = gz_xhat.sum(dim=0)
        grad_beta = g.sum(dim=0)
        # de_{i,s} = -a (e_{i,s} - mean) - b' + [e_{i,s} tied] share_i s (0 where s = 0);
        # d/dc_i sums it over the slots of i, d/dy_j over the edges whose neighbour is j.
        a = scale * grad_gamma / count * rstd
        b_ = scale * grad_beta / count
        hits = torch.bincount(idx_t.view(-1), minlength=rows).to(y.dtype).unsqueeze(1)
        grad_y = (y - mean).mul_(-a).sub_(b_).mul_(hits)
        untied_term = (a * c).neg_()
        tie_share = g / ties * scale  # tied slots share the gradient evenly (torch.amax)
        edge_sums = torch.zeros_like(y)
        buf = torch.empty_like(y)
        hit = torch.empty_like(y)  # 0./1.: eq into float and addcmul beat bool and where
        for row in idx_t:
            edge_sums.add_(torch.index_select(y, 0, row, out=buf).add_(c))
            torch.eq(buf, extreme, out=hit)
            grad_y.index_add_(0, row, torch.addcmul(untied_term, hit, tie_share, out=buf))
        grad_c = (edge_sums - k * mean).mul_(-a).sub_(k * b_).addcmul_(g, scale)
        grad_proj = torch.cat((grad_y, grad_c), dim=1)  # (B*N, 2 out)
        w = _split_weight(weight)
        grad_x = grad_weight = None
        if ctx.needs_input_grad[0]:
            grad_x = (grad_proj @ w).view(b, n, -1).transpose(2, 1)
        if ctx.needs_input_grad[1]:
            xt = x.transpose(2, 1).reshape(b * n, -1)
            gw = grad_proj.t() @ xt  # (2 out, C): d[W_a ; W_b - W_a]
            gw_a, gw_d = gw.chunk(2, dim=0)
            grad_weight = torch.cat((gw_a - gw_d, gw_d), dim=1).view_as(weight)
        return grad_x, grad_weight, grad_gamma, grad_beta, None, None, None, None, None, None, None


def _bn_factor(bn: nn.BatchNorm2d) -> float:
    """The running-statistics factor of ``bn`` for this step, counting the step as
    ``nn.BatchNorm2d.forward`` does (training, tracked statistics)."""
    if bn.num_batches_tracked is not None:
        bn.num_batches_tracked.add_(1)
    if bn.momentum is None:
        return 1.0 / float(bn.num_batches_tracked)
    return bn.momentum


def edgeconv_fast(x: Tensor, conv: nn.Conv2d, bn: nn.BatchNorm2d, slope: float, k: int) -> Tensor:
    """Fast EdgeConv (B, C, N) -> (B, out, N) with ``conv``/``bn``'s parameters; the same
    function, statistics updates included, as ``LeakyReLU(bn(conv(edge_features)))`` + max.

    Computed in float32 (autocast off).
    """
    _check_k(k, x.shape[2])
    with torch.autocast(device_type=x.device.type, enabled=False):
        x = x.float()
        flat_idx = _flat_neighbours(x, k)
        batch_stats = bn.training or bn.running_mean is None
        if batch_stats:
            update = bn.training and bn.track_running_stats and bn.running_mean is not None
            factor = _bn_factor(bn) if update else 0.0
            return _EdgeConvTrain.apply(
                x,
                conv.weight,
                bn.weight,
                bn.bias,
                flat_idx,
                k,
                bn.eps,
                slope,
                bn.running_mean if update else None,
                bn.running_var if update else None,
                factor,
            )
        # Running statistics: BN is a fixed affine map; plain autograd on (B, N, k, out)
        # gathered projections, only max/min and (B, N, out) arithmetic after.
        scale = bn.weight * torch.rsqrt(bn.running_var + bn.eps)
        shift = bn.bias - bn.running_mean * scale
        y, c = _project(x, conv.weight)
        if not (torch.is_grad_enabled() and (x.requires_grad or conv.weight.requires_grad)):
            ext = _extreme_by_slot(y.contiguous(), flat_idx.view(-1, k).t(), scale >= 0)
            z = torch.addcmul(shift, ext.add_(c), scale)
            b, _, n = x.shape
            return F.leaky_relu(z, slope).view(b, n, -1).transpose(2, 1)
        gathered = y[flat_idx].view(c.shape[0], k, c.shape[1])
        ext = _extreme(gathered, scale >= 0)
        flat = scale == 0
        if torch.is_grad_enabled() and bool(flat.any()):
            # gamma = 0 ties all k neighbours: torch.amax shares d/dgamma over all of them
            ext = torch.where(flat, gathered.mean(dim=1), ext)
        z = torch.addcmul(shift, ext + c, scale)
        b, _, n = x.shape
        return F.leaky_relu(z, slope).view(b, n, -1).transpose(2, 1)


class EdgeConv(nn.Module):
    """EdgeConv layer ``max_j LeakyReLU(BN(W cat(x_j - x_i, x_i)))``; (B, C, N) -> (B, out, N).

    ``impl`` "fast" (default) or "plain" (see the module docstring); both have the
    parameters ``conv.weight`` (a ``Conv2d(2C, out, 1, bias=False)``) and ``bn.*``, so
    state dicts are interchangeable. ``k`` may be changed after construction.
    """

    def __init__(self, in_ch: int, out_ch: int, k: int, *, impl: str = "fast") -> None:
        super().__init__()
        if impl not in EDGECONV_IMPLS:
            raise ValueError(f"unknown edgeconv {impl!r}; valid: {', '.join(EDGECONV_IMPLS)}")
        self.k = k
        self.impl = impl
        self.conv = nn.Conv2d(2 * in_ch, out_ch, kernel_size=1, bias=False)
        self.bn = nn.BatchNorm2d(out_ch)
        self.act = nn.LeakyReLU(0.2)

    def forward(self, x: Tensor) -> Tensor:
        if self.impl == "plain":
            return self.act(self.bn(self.conv(edge_features(x, self.k)))).amax(dim=-1)
        return edgeconv_fast(x, self.conv, self.bn, self.act.negative_slope, self.k)

    def extra_repr(self) -> str:
        return f"k={self.k}, impl={self.impl!r}"
