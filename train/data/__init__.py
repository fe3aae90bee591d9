"""Streaming training data: WebDataset shards -> batches of (point cloud, one view) per object.

One module per job:

- :mod:`~xpt.train.data.shard_sets`: SHARDS -> shard URLs and the epoch's sample count;
- :mod:`~xpt.train.data.decode`: shard members -> arrays;
- :mod:`~xpt.train.data.failures`: a corrupt shard or sample -> one recorded failure;
- :mod:`~xpt.train.data.batch`: the :class:`Batch` the loader yields, and its augmentation;
- :mod:`~xpt.train.data.pipeline`: the WebDataset stages each DataLoader worker runs;
- :mod:`~xpt.train.data.loader`: :class:`ShardLoader`, epochs of full batches from them;
- :mod:`~xpt.train.data.opening`: a shard set and its loader opened for a pretraining run.

The names below are the package's interface; import them from ``xpt.train.data``.
"""

from __future__ import annotations

from xpt.train.data.batch import Batch, augment_batch, augment_seed, collate
from xpt.train.data.decode import DecodeError, decode_points, decode_view, resample_points
from xpt.train.data.failures import STAGE, FailureRecorder, SampleError
from xpt.train.data.loader import (
    LoaderConfig,
    ShardLoader,
    index_shards,
    loader_workers,
    resolve_shuffle,
    time_epoch,
    time_loader,
    warn_failure,
    warn_note,
)
from xpt.train.data.opening import open_shards, training_loader
from xpt.train.data.pipeline import EpochStream, FewestPoints
from xpt.train.data.pipeline import _member_key as _member_key  # the full-shuffle tests' key
from xpt.train.data.shard_sets import ShardSet, ShardSpecError, resolve_shards

__all__ = [
    "STAGE",
    "Batch",
    "DecodeError",
    "EpochStream",
    "FailureRecorder",
    "FewestPoints",
    "LoaderConfig",
    "SampleError",
    "ShardLoader",
    "ShardSet",
    "ShardSpecError",
    "augment_batch",
    "augment_seed",
    "collate",
    "decode_points",
    "decode_view",
    "index_shards",
    "loader_workers",
    "open_shards",
    "resample_points",
    "resolve_shards",
    "resolve_shuffle",
    "time_epoch",
    "time_loader",
    "training_loader",
    "warn_failure",
    "warn_note",
]
