"""``--shuffle full``: a fresh permutation of every sample each epoch, read from an index."""

from __future__ import annotations

import gzip
import shutil
import tarfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from xpt.train.data import (
    LoaderConfig,
    ShardLoader,
    ShardSpecError,
    _member_key,
    resolve_shards,
)
from xpt.train.sample_index import build_index, epoch_positions

from .conftest import write_shard_set


def _loader(spec, **overrides) -> ShardLoader:
    options = dict(batch_size=4, points=48, image_size=24, workers=0, shuffle="full")
    options.update(overrides)
    return ShardLoader(resolve_shards(spec), LoaderConfig(**options), on_error=None)


def _train_keys(shards: Path) -> list[str]:
    keys = []
    for path in sorted(shards.glob("train-*.tar")):
        with tarfile.open(path) as tar:
            keys += sorted({m.name.partition(".")[0] for m in tar})
    return keys


def _epoch_keys(loader: ShardLoader, epoch: int) -> list[str]:
    return [key for batch in loader.epoch(epoch) for key in batch.keys]


def test_each_epoch_visits_every_sample_once_in_a_new_order(tmp_path: Path) -> None:
    shards = write_shard_set(tmp_path / "s", train_shards=(7, 5, 8))  # 20 objects
    stored = _train_keys(shards)
    loader = _loader(shards)
    assert loader.steps_per_epoch == 5
    orders = [_epoch_keys(loader, epoch) for epoch in range(3)]
    for order in orders:
        assert sorted(order) == sorted(stored)  # each sample exactly once
        assert len(set(order)) == len(order) == 20
    assert len({tuple(order) for order in orders}) == 3  # a new order every epoch
    # not the shard order, nor shard-local: neighbours in the file are spread over the epoch
    assert orders[0] != stored
    assert _epoch_keys(_loader(shards), 1) == orders[1]  # the same epoch reads the same


def test_batches_do_not_depend_on_the_worker_count(tmp_path: Path) -> None:
    shards = write_shard_set(tmp_path / "s", train_shards=(6, 6))
    by_workers = {}
    for workers in (0, 1, 3):  # 3 workers > 2 shards: any worker reads any sample
        batches = list(_loader(shards, workers=workers, augment=True).epoch(2))
        by_workers[workers] = batches
        assert [len(b) for b in batches] == [4, 4, 4]
    for workers in (1, 3):
        for ours, alone in zip(by_workers[workers], by_workers[0], strict=True):
            assert ours.keys == alone.keys
            assert torch.equal(ours.points, alone.points)
            assert torch.equal(ours.images, alone.images)
            assert torch.allclose(ours.views, alone.views)


def test_resuming_skips_exactly_the_batches_already_trained(tmp_path: Path) -> None:
    shards = write_shard_set(tmp_path / "s", train_shards=(6, 6))
    whole = [b.keys for b in _loader(shards).epoch(1)]
    assert [b.keys for b in _loader(shards).epoch(1, skip=2)] == whole[2:]


def test_ranks_share_the_permutation_without_overlap() -> None:
    count = 23
    shares = [
        np.concatenate(epoch_positions(count, 5, 0, 0, rank=r, world_size=3, chunk=4))
        for r in range(3)
    ]
    assert [len(s) for s in shares] == [7, 7, 7]  # 23 // 3 each; 2 wait for another epoch
    seen = np.concatenate(shares)
    assert len(set(seen.tolist())) == 21
    workers = [epoch_positions(count, 5, 0, 0, worker=w, workers=2, chunk=4) for w in range(2)]
    assert [len(c) for c in workers[0]] == [4, 4, 4]  # chunks 0, 2, 4
    assert [len(c) for c in workers[1]] == [4, 4, 3]  # chunks 1, 3, 5
    interleaved = [c for pair in zip(workers[0], workers[1], strict=True) for c in pair]
    assert (
        np.concatenate(interleaved).tolist()
        == np.concatenate(epoch_positions(count, 5, 0, 0, chunk=4)).tolist()
    )


def test_a_truncated_shard_keeps_its_complete_samples_and_is_reported_once(
    tmp_path: Path,
) -> None:
    shards = write_shard_set(tmp_path / "s", train_shards=(6, 6))
    second = shards / "train-000001.tar"
    with tarfile.open(second) as tar:
        members = tar.getmembers()
    keys = [m.name.partition(".")[0] for m in members]
    cut_inside = next(m for m in members if keys[members.index(m)] == keys[-1])  # last sample
    data = second.read_bytes()
    second.write_bytes(data[: cut_inside.offset_data + 10])  # inside the last sample's first member
    failures = []
    loader = ShardLoader(
        resolve_shards(shards),
        LoaderConfig(batch_size=4, points=48, image_size=24, shuffle="full"),
        on_error=failures.append,
    )
    assert [f.id for f in failures] == ["train-000001.tar"]
    assert "truncated" in failures[0].reason
    indexed = set(loader.index.keys)
    assert len(indexed) == 11
    assert keys[-1] not in indexed and keys[0] in indexed
    for epoch in range(2):
        assert len(_epoch_keys(loader, epoch)) == 8  # 11 // 4 full batches
    assert len(failures) == 1  # reported when indexed, not again when read


def test_a_sample_that_breaks_when_read_is_skipped_and_recorded(tmp_path: Path) -> None:
    shards = write_shard_set(tmp_path / "s", train_shards=(4, 4))
    failures = []
    loader = ShardLoader(
        resolve_shards(shards),
        LoaderConfig(batch_size=4, points=48, image_size=24, shuffle="full"),
        on_error=failures.append,
    )
    (shards / "train-000000.tar").write_bytes(b"")  # gone after indexing
    keys = _epoch_keys(loader, 0)
    # 2 steps per epoch: the intact shard's 4 objects, then again in the next pass
    assert len(keys) == 8 and len(set(keys)) == 4
    assert {f.path for f in failures} == {str(shards / "train-000000.tar")}
    assert len({f.id for f in failures}) == 4  # each lost object named


def test_index_matches_tarfile(tmp_path: Path) -> None:
    shards = write_shard_set(tmp_path / "s", train_shards=(5,))
    path = str(shards / "train-000000.tar")
    index = build_index([path], lambda url, exn: pytest.fail(str(exn)), _member_key)
    with tarfile.open(path) as tar:
        members: dict[str, list] = {}
        for member in tar:
            key, entry = _member_key(member.name, member.isreg())
            sample = members.setdefault(member.name.partition(".")[0], [])
            if key is not None:
                data = tar.extractfile(member).read()  # type: ignore[union-attr]
                sample.append((entry, member.offset_data, member.size, data))
    assert list(index.keys) == list(members)
    with open(path, "rb") as file:
        for i, expected in enumerate(members.values()):
            assert index.members(i) == [m[:3] for m in expected]
            for (_, offset, size), (*_, data) in zip(index.members(i), expected, strict=True):
                file.seek(offset)
                assert file.read(size) == data
    # only what training reads is recorded: points and views, never the json
    assert set(index.entries) == {e for m in members.values() for e, *_ in m}
    assert not any(entry.endswith("json") for entry in index.entries)


def test_full_shuffle_needs_local_uncompressed_shards(tmp_path: Path) -> None:
    shards = write_shard_set(tmp_path / "s", train_shards=(4, 4))
    with pytest.raises(ShardSpecError, match="local shard files.*--shuffle buffer"):
        _loader(f"pipe:cat {shards}/train-00000{{0,1}}.tar")
    packed = tmp_path / "gz"
    packed.mkdir()
    for path in shards.glob("train-*.tar"):
        with open(path, "rb") as raw, gzip.open(packed / path.name, "wb") as out:
            shutil.copyfileobj(raw, out)
    with pytest.raises(ShardSpecError, match="compressed"):
        _loader(str(packed / "train-00000{0,1}.tar"))


def test_every_object_equally_often_over_epochs(tmp_path: Path) -> None:
    """Unlike a shuffle buffer, no object is read twice in an epoch or missed."""
    shards = write_shard_set(tmp_path / "s", train_shards=(6, 6))
    loader = _loader(shards)
    counts = Counter(key for epoch in range(4) for key in _epoch_keys(loader, epoch))
    assert set(counts.values()) == {4}


def test_ranks_read_disjoint_equal_shares_of_each_epoch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two ranks (RANK / WORLD_SIZE as torchrun sets them) over 14 objects, batches of 3:
    2 steps each, no object on both ranks, a different split every epoch."""
    shards = write_shard_set(tmp_path / "s", train_shards=(7, 7))
    monkeypatch.setenv("WORLD_SIZE", "2")
    per_epoch = []
    for epoch in range(2):
        shares = []
        for rank in (0, 1):
            monkeypatch.setenv("RANK", str(rank))
            loader = _loader(shards, batch_size=3, workers=1 if rank else 0)
            assert loader.steps_per_epoch == 2  # 14 // (3 * 2)
            shares.append(_epoch_keys(loader, epoch))
        assert [len(share) for share in shares] == [6, 6]
        assert not set(shares[0]) & set(shares[1])
        per_epoch.append(shares)
    assert set(per_epoch[0][0]) != set(per_epoch[1][0])


def test_time_loader_times_one_epoch_after_building_the_index(tmp_path: Path) -> None:
    from xpt.train.data import time_loader

    shards = write_shard_set(tmp_path / "s", train_shards=(7, 5, 8))  # 20 objects
    config = LoaderConfig(batch_size=4, points=48, image_size=24, shuffle="full", augment=True)
    figures = time_loader(shards, config, epoch=1)
    assert figures["samples"] == 20  # one epoch: 5 batches of 4
    assert figures["samples_per_s"] == pytest.approx(20 / figures["seconds"])
    assert 0 < figures["first_batch_s"] <= figures["seconds"]
    assert figures["setup_s"] > 0  # the index, built before the epoch's clock starts
