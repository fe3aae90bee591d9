"""Multi-process training with ``torch.distributed``, as launched by ``torchrun``.

``torchrun`` sets ``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE`` in every process it starts;
:func:`environment` reads them (one process, rank 0 of 1, when they are absent), and
:func:`process_group` joins the group (``nccl`` on CUDA, ``gloo`` on CPU) for the length of a
run. The helpers below are no-ops in a one-process run, so the training loop calls them
unconditionally: object broadcast and gather from rank 0, an element-wise maximum of a few
integers (how every rank agrees to stop at the same step), the mean of the logged losses,
DistributedDataParallel wrapping, and :func:`gather_with_grad`, the all-gather that NT-Xent
with negatives from every rank (``--global-negatives``) differentiates through.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

# Rank 0 may probe (minutes on a large evaluation set) while the others wait in a barrier.
TIMEOUT = timedelta(minutes=60)


class DistributedError(RuntimeError):
    """The launcher's environment or the settings do not allow a multi-process run."""


@dataclass(frozen=True)
class DistEnv:
    """This process's place in the run: ``rank`` of ``world_size`` processes, and the
    ``local_rank`` among those of its machine (its GPU index)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def active(self) -> bool:
        """More than one process: the collectives below communicate."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that logs, probes and writes files."""
        return self.rank == 0

    def barrier(self) -> None:
        if self.active:
            dist.barrier()

    def broadcast(self, value: Any) -> Any:
        """Rank 0's ``value`` (any picklable object) on every rank."""
        if not self.active:
            return value
        box = [value if self.is_main else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def all_gather(self, value: Any) -> list[Any]:
        """Every rank's ``value`` (picklable), in rank order, on every rank."""
        if not self.active:
            return [value]
        values: list[Any] = [None] * self.world_size
        dist.all_gather_object(values, value)
        return values

    def all_max(self, values: list[int]) -> list[int]:
        """The element-wise maximum of ``values`` over the ranks."""
        if not self.active:
            return list(values)
        tensor = torch.tensor(values, dtype=torch.int64, device=_comm_device())
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
        return [int(v) for v in tensor.tolist()]

    def mean(self, values: dict[str, float]) -> dict[str, float]:
        """The mean over the ranks of each value (float64; NaN anywhere gives NaN)."""
        if not self.active:
            return dict(values)
        tensor = torch.tensor(list(values.values()), dtype=torch.float64, device=_comm_device())
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return {k: v / self.world_size for k, v in zip(values, tensor.tolist(), strict=True)}


def environment() -> DistEnv:
    """The DistEnv that ``torchrun`` (or any launcher setting the same variables) describes."""
    try:
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local_rank = int(os.environ.get("LOCAL_RANK", str(rank)))
    except ValueError as exc:
        raise DistributedError(f"RANK / LOCAL_RANK / WORLD_SIZE must be integers: {exc}") from None
    if world_size < 1 or not 0 <= rank < world_size or local_rank < 0:
        raise DistributedError(
            f"RANK={rank}, LOCAL_RANK={local_rank}, WORLD_SIZE={world_size} do not describe a "
            "process of the run"
        )
    return DistEnv(rank, world_size, local_rank)


def _comm_device() -> torch.device:
    """Where collective tensors must live for the group's backend (CUDA for nccl)."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def device_for(env: DistEnv, device: torch.device) -> torch.device:
    """This rank's training device: CUDA device ``local_rank`` (made current) when training
    on CUDA with several processes, else ``device`` as it is."""
    if not env.active or device.type != "cuda":
        return device
    if env.local_rank >= torch.cuda.device_count():
        raise DistributedError(
            f"LOCAL_RANK {env.local_rank} but only {torch.cuda.device_count()} CUDA device(s): "
            "start at most one process per GPU (torchrun --nproc-per-node)"
        )
    torch.cuda.set_device(env.local_rank)
    return torch.device("cuda", env.local_rank)


@contextlib.contextmanager
def process_group(env: DistEnv, device: torch.device) -> Iterator[None]:
    """Join the default process group for the body (``nccl`` when training on CUDA, else
    ``gloo``; the rendezvous from ``MASTER_ADDR`` / ``MASTER_PORT`` as torchrun sets them) and
    leave it afterwards. Nothing happens for one process or when a group already exists
    (then its owner leaves it)."""
    if not env.active or dist.is_initialized():
        yield
        return
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend, rank=env.rank, world_size=env.world_size, timeout=TIMEOUT)
    try:
        yield
    finally:
        dist.destroy_process_group()


def convert_sync_bn(model: nn.Module) -> nn.Module:
    """``model`` with every BatchNorm computing its statistics over all ranks' batches
    (``torch.nn.SyncBatchNorm``; same parameters, buffers and state-dict names)."""
    return nn.SyncBatchNorm.convert_sync_batchnorm(model)


def wrap(model: nn.Module, env: DistEnv, device: torch.device) -> nn.Module:
    """``model`` in DistributedDataParallel (gradients averaged over the ranks during
    backward), or as it is for one process. Keep the bare model for state dicts: the
    wrapper's names carry a ``module.`` prefix."""
    if not env.active:
        return model
    # The 1x1 convolutions' gradients can come with other strides on their size-1 dims
    # than DDP's buckets: the same memory layout, one copy, and one warning per rank.
    warnings.filterwarnings("ignore", "Grad strides do not match bucket view", UserWarning)
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids)


class _GatherWithGrad(torch.autograd.Function):
    """All-gather along dim 0 whose backward sums the gradient over the ranks and keeps
    this rank's slice (a reduce-scatter, written as all-reduce so that gloo runs it too)."""

    @staticmethod
    def forward(ctx: Any, tensor: Tensor) -> Tensor:  # type: ignore[override]
        world, rank = dist.get_world_size(), dist.get_rank()
        parts = [torch.empty_like(tensor) for _ in range(world)]
        dist.all_gather(parts, tensor.contiguous())
        ctx.rows, ctx.rank = tensor.shape[0], rank
        return torch.cat(parts)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:  # type: ignore[override]
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad[ctx.rank * ctx.rows : (ctx.rank + 1) * ctx.rows]


def gather_with_grad(tensor: Tensor) -> Tensor:
    """(B, ...) on each of W ranks -> (W * B, ...), rank r's rows at [r * B, (r + 1) * B),
    on every rank; gradients flow back to every rank's input. Every rank must pass the same
    B. Without a process group (one process) the tensor is returned as it is.

    When every rank computes the same loss L of the gathered tensor, rank r's input gets
    ``W * dL/dz_r`` and DistributedDataParallel's averaging over the W ranks turns that into
    exactly the gradient of L: the loss of one process on the whole global batch.
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return tensor
    return _GatherWithGrad.apply(tensor)
