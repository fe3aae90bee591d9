"""The :class:`Batch` of objects the loader yields: made from decoded samples, seeded and
augmented per object (so an object's augmentations follow it, not its batch).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from xpt.toolkit.seeding import derive_seed
from xpt.train.augment import ImageAugmentConfig, augment_pair


@dataclass
class Batch:
    """``points`` float32 (B, N, 3), ``images`` uint8 (B, H, W, 3), ``keys`` (B,).

    ``seeds`` (B,): each object's augmentation seed for this epoch and pass (see
    :func:`augment_seed`); ``pair`` float32 (B, 2, N, 3) and ``views`` float32
    (B, 3, S, S): the augmented inputs, when the loader augments (else None).
    """

    points: torch.Tensor
    images: torch.Tensor
    keys: list[str] = field(default_factory=list)
    seeds: list[int] = field(default_factory=list)
    pair: torch.Tensor | None = None
    views: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.keys)

    def _map(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> Batch:
        return Batch(
            fn(self.points),
            fn(self.images),
            self.keys,
            self.seeds,
            None if self.pair is None else fn(self.pair),
            None if self.views is None else fn(self.views),
        )

    def to(self, device: torch.device | str) -> Batch:
        return self._map(lambda t: t.to(device, non_blocking=True))

    def pin_memory(self) -> Batch:
        """Page-locked copies (DataLoader's ``pin_memory`` calls this on each chunk)."""
        return self._map(lambda t: t.pin_memory())

    def generators(self) -> list[torch.Generator]:
        """One CPU generator per object, seeded with its ``seeds`` entry."""
        return [torch.Generator().manual_seed(seed) for seed in self.seeds]


def augment_seed(seed: int, epoch: int, rep: int, key: str) -> int:
    """The seed of an object's augmentations in one epoch and pass: they depend on the
    object, not on its batch, worker or rank, so a resumed run draws the same ones."""
    return derive_seed(seed, "augment", epoch, rep, key)


def augment_batch(batch: Batch, image_config: ImageAugmentConfig | None) -> Batch:
    """``batch`` with ``pair`` and (with an ``image_config``) ``views`` filled in by
    :func:`~xpt.train.augment.augment_pair`, each object drawing from its own seed."""
    images = batch.images if image_config is not None else None
    pair, views = augment_pair(batch.points, images, batch.generators(), None, image_config)
    return Batch(batch.points, batch.images, batch.keys, batch.seeds, pair, views)


def collate(samples: Sequence[dict]) -> Batch:
    """Stack decoded samples (all already ``points`` x 3 and ``image_size`` square)."""
    return Batch(
        torch.stack([torch.as_tensor(s["points"], dtype=torch.float32) for s in samples]),
        torch.stack([torch.as_tensor(s["image"], dtype=torch.uint8) for s in samples]),
        [s["key"] for s in samples],
    )
