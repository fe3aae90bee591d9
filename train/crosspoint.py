"""What is CrossPoint's in a pretraining run (Afham et al., CVPR 2022; ../shared/DESIGN.md).

The point and image encoders and their seeded initialisation, the generator behind every
augmentation, the loss of one batch (two augmented copies of each cloud through the point
encoder as one batch of 2B, as the release does, so BatchNorm sees both views together;
one augmented view through the image encoder; IMID + CMID, ``xpt.train.losses``), and the
state that trains (both encoders under one Adam). :func:`loss_fn` puts the encoders in
DistributedDataParallel (and ``torch.compile``) for the :class:`~xpt.train.trainer.Trainer`.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable

import torch
from torch import Tensor, nn

from xpt.toolkit.seeding import derive_seed
from xpt.train.augment import ImageAugmentConfig, PointAugmentConfig, augment_pair
from xpt.train.checkpointer import TrainingState
from xpt.train.config import PretrainConfig
from xpt.train.data import Batch
from xpt.train.devices import compile_model
from xpt.train.distributed import DistEnv, convert_sync_bn, gather_with_grad, wrap
from xpt.train.losses import crosspoint_loss
from xpt.train.models import build_image_encoder, build_point_encoder

POINT_AUGMENT = PointAugmentConfig()


def build_models(config: PretrainConfig) -> tuple[nn.Module, nn.Module]:
    """Point and image encoders, initialised from ``config.seed`` (global RNG restored)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(config.seed, "init"))
        point = build_point_encoder(
            config.backbone,
            k=config.k,
            emb_dims=config.emb_dims,
            proj_dim=config.proj_dim,
            edgeconv=config.edgeconv,
        )
        image = build_image_encoder(config.image_encoder, proj_dim=config.proj_dim)
    return point, image


def augment_generator(config: PretrainConfig, rank: int = 0) -> torch.Generator:
    """The CPU generator that drives every augmentation (device-independent draws); each
    rank of a multi-process run draws its own (rank 0 the same as one process)."""
    parts = ("augment",) if rank == 0 else ("augment", "rank", rank)
    return torch.Generator().manual_seed(derive_seed(config.seed, *parts))


def _autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def compute_loss(
    point_model: nn.Module,
    image_model: nn.Module,
    batch: Batch,
    generator: torch.Generator,
    config: PretrainConfig,
    amp_dtype: torch.dtype | None = None,
    gather: Callable[[Tensor], Tensor] | None = None,
) -> dict[str, Tensor]:
    """The CrossPoint loss of one batch: {"loss", "imid", "cmid"} float32 scalars.

    Uses the batch's augmented inputs when the loader made them (``batch.pair``); else
    draws, in this order, two point augmentations and (unless ``loss`` is "imid", which
    leaves the image encoder out) one image augmentation, on the model's device, from each
    object's own generator (``batch.seeds``, the loader's draws) or, for a batch without
    seeds, from ``generator``. ``gather``: see :func:`embedding_loss`.
    """
    device = next(point_model.parameters()).device
    batch = batch.to(device)
    with_images = config.loss != "imid"
    if batch.pair is None:
        image_config = ImageAugmentConfig(size=config.image_size) if with_images else None
        two, images = augment_pair(
            batch.points,
            batch.images if with_images else None,
            batch.generators() if batch.seeds else generator,
            POINT_AUGMENT,
            image_config,
        )
    else:
        two, images = batch.pair, batch.views if with_images else None
    pair = torch.cat([two[:, 0], two[:, 1]])
    return embedding_loss(point_model, image_model, pair, images, config, amp_dtype, gather)


def embedding_loss(
    point_model: nn.Module,
    image_model: nn.Module,
    pair: Tensor,
    images: Tensor | None,
    config: PretrainConfig,
    amp_dtype: torch.dtype | None = None,
    gather: Callable[[Tensor], Tensor] | None = None,
) -> dict[str, Tensor]:
    """The CrossPoint loss of augmented inputs: ``pair`` float32 (2B, N, 3), the two views
    of B clouds one batch after the other (so BatchNorm sees both together, as in the
    release), and ``images`` float32 (B, 3, H, W) or None (loss "imid").

    ``gather`` (e.g. :func:`xpt.train.distributed.gather_with_grad`) maps each (B, D)
    embedding to the (W * B, D) embeddings of every rank before the loss: NT-Xent with the
    negatives of the global batch.
    """
    device = pair.device
    b = pair.shape[0] // 2
    with _autocast(device, amp_dtype):
        z_points = point_model(pair)[1].float()
        if images is not None and config.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        z_image = image_model(images)[1].float() if images is not None else None
    z_a, z_b = z_points[:b], z_points[b:]
    if gather is not None:
        z_a, z_b = gather(z_a), gather(z_b)
        z_image = gather(z_image) if z_image is not None else None
    return crosspoint_loss(z_a, z_b, z_image, mode=config.loss, temperature=config.temperature)


def training_state(
    config: PretrainConfig, env: DistEnv, device: torch.device, amp_dtype: torch.dtype | None
) -> TrainingState:
    """The two encoders on ``device`` (bare: clean state-dict names), Adam over both, the
    loss scaler (float16 only) and this rank's augmentation generator."""
    point_model, image_model = build_models(config)
    if env.active and config.sync_bn:
        point_model, image_model = convert_sync_bn(point_model), convert_sync_bn(image_model)
    point_model.to(device)
    image_model.to(device)
    if config.channels_last:  # NHWC weights (same state dict); inputs follow in embedding_loss
        image_model.to(memory_format=torch.channels_last)
    models = {"point": point_model, "image": image_model}
    parameters = [p for model in models.values() for p in model.parameters()]
    optimizer = torch.optim.Adam(parameters, lr=config.lr, weight_decay=config.weight_decay)
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)
    return TrainingState(models, optimizer, scaler, augment_generator(config, env.rank))


def loss_fn(
    config: PretrainConfig,
    state: TrainingState,
    env: DistEnv,
    device: torch.device,
    amp_dtype: torch.dtype | None,
) -> Callable[[Batch], dict[str, Tensor]]:
    """Batch -> the CrossPoint loss, through the modules that train.

    Those are the encoders in DistributedDataParallel with several processes (and compiled
    with ``compile``); ``state.models`` keeps the bare ones for checkpoints and the probe.
    An unused image encoder (loss "imid") stays unwrapped: DDP would wait for its gradients
    forever.
    """
    point_model, image_model = state.models["point"], state.models["image"]
    point_net = wrap(point_model, env, device)
    image_net = wrap(image_model, env, device) if config.loss != "imid" else image_model
    if config.compile:
        point_net, image_net = compile_model(point_net, device), compile_model(image_net, device)
    gather = gather_with_grad if env.active and config.global_negatives else None
    return functools.partial(
        compute_loss,
        point_net,
        image_net,
        generator=state.generator,
        config=config,
        amp_dtype=amp_dtype,
        gather=gather,
    )
