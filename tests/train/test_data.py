"""The streaming pipeline: shard resolution, decoding, batches, determinism, bad input."""

from __future__ import annotations

import io
import pickle
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from xpt.train.data import (
    DecodeError,
    LoaderConfig,
    ShardLoader,
    ShardSpecError,
    decode_points,
    decode_view,
    loader_workers,
    resample_points,
    resolve_shards,
)


def _loader(spec, **overrides) -> ShardLoader:
    options = dict(batch_size=4, points=48, image_size=24, shuffle_buffer=8, workers=0)
    options.update(overrides)
    return ShardLoader(resolve_shards(spec), LoaderConfig(**options), on_error=None)


def _stored(shard_dir: Path) -> dict[str, dict[str, bytes]]:
    """Every train sample's raw members, by key."""
    samples: dict[str, dict[str, bytes]] = {}
    for tar_path in sorted(shard_dir.glob("train-*.tar")):
        with tarfile.open(tar_path) as tar:
            for member in tar:
                key, _, suffix = member.name.partition(".")
                samples.setdefault(key, {})[suffix] = tar.extractfile(member).read()
    return samples


def test_resolve_folder_manifest_brace_pipe_and_lists(tiny_shards: Path, tmp_path: Path) -> None:
    names = (str(tiny_shards / "train-000000.tar"), str(tiny_shards / "train-000001.tar"))
    folder = resolve_shards(tiny_shards)
    assert folder.urls == names and folder.samples == 12
    assert resolve_shards(tiny_shards / "manifest.json").urls == names
    assert resolve_shards(tiny_shards, split="val").samples == 2

    brace = resolve_shards(f"{tiny_shards}/train-{{000000..000001}}.tar")
    assert brace.urls == names and brace.samples == 12  # counts from the manifest beside them
    assert resolve_shards([names[0], names[1]]).samples == 12

    piped = resolve_shards(f"pipe:cat {tiny_shards}/train-00000{{0,1}}.tar")
    assert piped.urls == tuple(f"pipe:cat {n}" for n in names) and piped.samples is None

    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(names[1], bare / "train-000000.tar")
    scanned = resolve_shards(bare)  # no manifest: the split's tars, counted from tar headers
    assert scanned.urls == (str(bare / "train-000000.tar"),) and scanned.samples == 6

    with pytest.raises(ShardSpecError, match="nope.tar: no such shard"):
        resolve_shards(tmp_path / "nope.tar")
    with pytest.raises(ShardSpecError, match="lists no 'test' shards"):
        resolve_shards(tiny_shards, split="test")


def test_resolve_a_folder_of_parts(make_shards, tmp_path: Path) -> None:
    make_shards(tmp_path / "part-000-of-002", train_shards=(3,), val_samples=0)
    make_shards(tmp_path / "part-001-of-002", train_shards=(2, 2), val_samples=0)
    parts = resolve_shards(tmp_path)
    assert parts.samples == 7
    assert [Path(u).relative_to(tmp_path).as_posix() for u in parts.urls] == [
        "part-000-of-002/train-000000.tar",
        "part-001-of-002/train-000000.tar",
        "part-001-of-002/train-000001.tar",
    ]


def test_decoders_give_rgb_uint8_and_float32_and_never_unpickle(tmp_path: Path) -> None:
    rgba = np.random.default_rng(0).integers(0, 255, (5, 7, 4), dtype=np.uint8)
    for fmt, ext in (("PNG", "png"), ("WEBP", "webp")):
        buffer = io.BytesIO()
        Image.fromarray(rgba).save(buffer, format=fmt, lossless=True)
        decoded = decode_view(f"view_00.{ext}", buffer.getvalue())
        assert decoded.dtype == np.uint8 and np.array_equal(decoded, rgba[..., :3])
    buffer = io.BytesIO()
    np.save(buffer, np.arange(6, dtype=np.float16).reshape(2, 3))
    points = decode_points(buffer.getvalue())
    assert points.dtype == np.float32 and points.tolist() == [[0, 1, 2], [3, 4, 5]]
    with pytest.raises(DecodeError, match="view_01.png: not a readable image"):
        decode_view("view_01.png", b"garbage")
    with pytest.raises(DecodeError, match="non-finite"):
        buffer = io.BytesIO()
        np.save(buffer, np.array([[0, np.nan, 0]], dtype=np.float32))
        decode_points(buffer.getvalue())

    marker = tmp_path / "unpickled"
    with pytest.raises(DecodeError, match="pickle"):
        decode_view("view_00.pickle", pickle.dumps(_Touch(marker)))
    buffer = io.BytesIO()
    np.save(buffer, np.array([_Touch(marker)], dtype=object), allow_pickle=True)
    with pytest.raises(DecodeError, match="allow_pickle"):
        decode_points(buffer.getvalue())
    assert not marker.exists()


class _Touch:
    """Unpickling this creates ``path``: proof that something was unpickled."""

    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self):
        return (open, (str(self.path), "w"))


def test_resample_points() -> None:
    rng = np.random.default_rng(0)
    cloud = np.arange(30, dtype=np.float32).reshape(10, 3)
    fewer = resample_points(cloud, 4, rng)
    assert fewer.shape == (4, 3) and len({tuple(p) for p in fewer}) == 4
    assert {tuple(p) for p in fewer} <= {tuple(p) for p in cloud}
    more = resample_points(cloud, 13, rng)
    assert more.shape == (13, 3) and {tuple(p) for p in more} == {tuple(p) for p in cloud}
    assert resample_points(cloud, 10, rng) is cloud


def test_batches_follow_the_schema(tiny_shards: Path) -> None:
    stored = _stored(tiny_shards)
    loader = _loader(tiny_shards)
    assert loader.steps_per_epoch == 3
    batches = list(loader.epoch(0))
    assert len(batches) == 3
    keys = [key for batch in batches for key in batch.keys]
    assert len(set(keys)) == 12 and set(keys) == set(stored)  # every object once per epoch
    for batch in batches:
        assert batch.points.shape == (4, 48, 3) and batch.points.dtype == torch.float32
        assert batch.images.shape == (4, 24, 24, 3) and batch.images.dtype == torch.uint8
        for key, points, image in zip(batch.keys, batch.points, batch.images, strict=True):
            cloud = decode_points(stored[key]["points.npy"])
            rows = {tuple(p) for p in cloud.tolist()}
            assert {tuple(p) for p in points.tolist()} <= rows  # a subset of the stored cloud
            views = [
                np.array(
                    Image.fromarray(decode_view(name, data)).resize(
                        (24, 24), Image.Resampling.BILINEAR
                    )
                )
                for name, data in stored[key].items()
                if name.startswith("view_")
            ]
            assert any(np.array_equal(image.numpy(), view) for view in views)
    assert loader.failure_count == 0


def test_epochs_are_deterministic_and_views_vary(tiny_shards: Path) -> None:
    loader = _loader(tiny_shards)
    first = list(loader.epoch(0))
    again = list(loader.epoch(0))
    for a, b in zip(first, again, strict=True):
        assert a.keys == b.keys
        assert torch.equal(a.points, b.points) and torch.equal(a.images, b.images)
    assert [b.keys for b in loader.epoch(1)] != [b.keys for b in first]  # reshuffled

    # One view per object, redrawn every epoch: over 6 epochs both views show up.
    seen: dict[str, set[bytes]] = {}
    for epoch in range(6):
        for batch in loader.epoch(epoch):
            for key, image in zip(batch.keys, batch.images, strict=True):
                seen.setdefault(key, set()).add(image.numpy().tobytes())
    assert sum(len(views) == 2 for views in seen.values()) >= 10

    skipped = list(loader.epoch(0, skip=2))
    assert len(skipped) == 1 and skipped[0].keys == first[2].keys


def test_workers_split_shards_deterministically(tiny_shards: Path) -> None:
    in_process = [b.keys for b in _loader(tiny_shards).epoch(0)]
    one_worker = [b.keys for b in _loader(tiny_shards, workers=1).epoch(0)]
    assert one_worker == in_process
    two = _loader(tiny_shards, workers=2)
    runs = [[b.keys for b in two.epoch(0)] for _ in range(2)]
    assert runs[0] == runs[1]
    assert sorted(k for keys in runs[0] for k in keys) == sorted(k for b in in_process for k in b)


def test_loader_workers_at_most_one_per_cpu_when_any_worker_reads_any_sample() -> None:
    assert loader_workers(2, None, cpus=2) == (2, None)
    workers, note = loader_workers(3, None, cpus=2)
    assert workers == 2
    assert note == (
        "--workers 3 > 2 CPUs: using 2 data workers (the batches are the same with any "
        "count); pass --workers 2 to silence this"
    )


def test_loader_workers_at_most_one_per_shard() -> None:
    assert loader_workers(2, shards=4, cpus=8) == (2, None)
    assert loader_workers(0, shards=1, cpus=1) == (0, None)
    workers, note = loader_workers(4, shards=1, cpus=2)
    assert workers == 1
    assert note.startswith("--workers 4 > 1 shard: using 1 data worker (")
    assert note.endswith("; pass --workers 1 to silence this") and "\n" not in note
    # more workers than CPUs are kept: the batch order must not depend on the machine
    assert loader_workers(8, shards=20, cpus=3) == (
        8,
        "8 data workers share 3 CPUs (kept: the batch order follows --workers); "
        "pass --workers 3 for a faster run",
    )


def test_more_workers_than_shards_start_one_per_shard_silently(
    tiny_shards: Path, recwarn: pytest.WarningsRecorder
) -> None:
    """A worker without a shard would only idle: none is started, the batches are the same
    and no Python warning is raised (the training loop prints a note)."""
    many = _loader(tiny_shards, workers=5)
    assert many.workers == 2  # tiny_shards has 2 train shards
    keys = [b.keys for b in many.epoch(0)]
    assert keys == [b.keys for b in _loader(tiny_shards, workers=2).epoch(0)]
    assert not recwarn.list, [str(w.message) for w in recwarn.list]


def test_fewer_stored_points_than_asked_are_noted_once(tiny_shards: Path) -> None:
    notes: list[str] = []
    config = LoaderConfig(batch_size=4, points=100, image_size=24, shuffle_buffer=8)
    loader = ShardLoader(resolve_shards(tiny_shards), config, on_error=None, on_note=notes.append)
    for epoch in range(2):
        assert all(b.points.shape[1:] == (100, 3) for b in loader.epoch(epoch))
    assert len(notes) == 1 and loader.fewest_points == 64
    assert "clouds of 64 stored points, fewer than --points 100" in notes[0]
    with pytest.warns(UserWarning, match="fewer than --points 100"):  # the default on_note
        next(iter(ShardLoader(resolve_shards(tiny_shards), config, on_error=None).epoch(0)))

    enough = ShardLoader(
        resolve_shards(tiny_shards),
        LoaderConfig(batch_size=4, points=64, image_size=24),
        on_note=notes.append,
    )
    list(enough.epoch(0))
    assert len(notes) == 1 and enough.fewest_points == 64


def test_an_epoch_with_workers_is_one_pass_over_every_object(make_shards, tmp_path: Path) -> None:
    """Workers holding fewer shards must not go round again while others still have unread
    objects: with a known epoch length every object is seen exactly once per epoch."""
    shards = make_shards(tmp_path / "shards", train_shards=(4, 4, 4), val_samples=0)
    loader = _loader(shards, batch_size=2, shuffle_buffer=1, workers=2)
    for epoch in range(2):
        keys = [k for b in loader.epoch(epoch) for k in b.keys]
        assert sorted(keys) == sorted(_stored(shards)), epoch


def test_pipe_urls_stream(tiny_shards: Path) -> None:
    spec = f"pipe:cat {tiny_shards}/train-00000{{0,1}}.tar"
    loader = _loader(spec)
    assert loader.steps_per_epoch is None  # unknown length: one pass, full batches only
    keys = [k for b in loader.epoch(0) for k in b.keys]
    assert len(keys) == 12 and set(keys) == set(_stored(tiny_shards))


def test_epoch_length_override(tiny_shards: Path) -> None:
    loader = _loader(tiny_shards, samples_per_epoch=20)
    batches = list(loader.epoch(0))
    assert loader.steps_per_epoch == 5 and len(batches) == 5  # goes round the shards again
    keys = [k for b in batches for k in b.keys]
    assert set(keys[:12]) == set(_stored(tiny_shards)) and len(set(keys[12:])) == 8
    with pytest.raises(ValueError, match="no full batch"):
        _loader(tiny_shards, samples_per_epoch=3)


def _rewrite(src: Path, dst: Path, edit) -> None:
    """Copy a tar member by member, letting ``edit(name, data)`` change or drop members."""
    with tarfile.open(src) as tar_in, tarfile.open(dst, "w") as tar_out:
        for member in tar_in:
            data = edit(member.name, tar_in.extractfile(member).read())
            if data is not None:
                info = tarfile.TarInfo(member.name)
                info.size = len(data)
                tar_out.addfile(info, io.BytesIO(data))


def test_corrupt_shards_and_samples_are_skipped_and_counted(make_shards, tmp_path: Path) -> None:
    shards = make_shards(tmp_path / "shards", train_shards=(6, 6, 6))
    stored = _stored(shards)
    keys0 = {k for k in stored if int(k[-4:]) < 6}
    keys1 = {k for k in stored if 6 <= int(k[-4:]) < 12}
    marker = tmp_path / "unpickled"
    bad_points, bad_view = sorted(keys1)[:2]

    def garble(name: str, data: bytes) -> bytes:
        if name == f"{bad_points}.points.npy":
            return b"\x93NUMPY garbage"
        if name.startswith(bad_view) and name.endswith(".png"):
            return b"not a png"
        return data

    _rewrite(shards / "train-000001.tar", tmp_path / "garbled.tar", garble)
    with tarfile.open(tmp_path / "garbled.tar", "a") as tar:  # a pickle nobody may load
        payload = pickle.dumps(_Touch(marker))
        info = tarfile.TarInfo(f"{sorted(keys1)[2]}.pyd")
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
    shutil.move(tmp_path / "garbled.tar", shards / "train-000001.tar")
    whole = (shards / "train-000002.tar").read_bytes()
    (shards / "train-000002.tar").write_bytes(whole[: len(whole) // 2])  # truncated
    (shards / "train-000003.tar").write_bytes(b"this is no tar file" * 64)  # garbage shard

    seen = []
    loader = ShardLoader(
        resolve_shards(f"{shards}/train-{{000000..000004}}.tar"),  # 000004 does not exist
        LoaderConfig(batch_size=2, points=32, image_size=16, shuffle_buffer=4),
        on_error=seen.append,
    )
    keys = [k for batch in loader.epoch(0) for k in batch.keys]
    assert set(keys) >= keys0 | (keys1 - {bad_points, bad_view})
    assert not {bad_points, bad_view} & set(keys)
    by_id = {f.id: f for f in loader.failures}
    assert seen == loader.failures and loader.failure_count == len(loader.failures)
    assert by_id[bad_points].reason.startswith("points.npy: ValueError")
    assert by_id[bad_points].path == str(shards / "train-000001.tar")
    assert by_id[bad_view].reason.endswith(": not a readable image")
    assert {"train-000002.tar", "train-000003.tar", "train-000004.tar"} <= set(by_id)
    assert "FileNotFoundError" in by_id["train-000004.tar"].reason
    assert not marker.exists()


def test_local_shards_read_only_the_chosen_view(tiny_shards: Path, monkeypatch) -> None:
    """A local shard is read by headers first and only the chosen view is read; the views
    (and batches) are those of the stream reader, which reads every member."""
    streamed = ShardLoader(
        resolve_shards(f"pipe:cat {tiny_shards}/train-00000{{0,1}}.tar"),
        LoaderConfig(batch_size=4, points=48, image_size=24, shuffle_buffer=8),
        on_error=None,
    )
    read: list[str] = []
    extract = tarfile.TarFile.extractfile

    def counting(self, member):
        read.append(member.name if isinstance(member, tarfile.TarInfo) else member)
        return extract(self, member)

    for epoch in range(3):
        read.clear()
        monkeypatch.setattr(tarfile.TarFile, "extractfile", counting)
        local = list(_loader(tiny_shards).epoch(epoch))
        monkeypatch.setattr(tarfile.TarFile, "extractfile", extract)
        keys = [k for batch in local for k in batch.keys]
        assert sorted(read) == sorted(
            name for key in keys for name in read if name.startswith(f"{key}.")
        )
        assert len(read) == 2 * len(keys)  # the points and one view per object
        assert sum(name.endswith("points.npy") for name in read) == len(keys)
        for a, b in zip(local, streamed.epoch(epoch), strict=True):
            assert a.keys == b.keys
            assert torch.equal(a.points, b.points) and torch.equal(a.images, b.images)


def test_augmentation_in_workers_equals_the_main_process(tiny_shards: Path) -> None:
    """Each object draws from its own seed: augmented in 2 workers, in the main process, or
    afterwards from the raw batch (as on a GPU), the inputs are the same."""
    from xpt.train.augment import ImageAugmentConfig, augment_pair

    raw = {
        k: (b, i) for b in _loader(tiny_shards, workers=2).epoch(1) for i, k in enumerate(b.keys)
    }
    for workers in (0, 2):
        batches = list(_loader(tiny_shards, workers=workers, augment=True).epoch(1))
        assert len(batches) == 3
        for batch in batches:
            assert batch.pair.shape == (4, 2, 48, 3) and batch.views.shape == (4, 3, 24, 24)
            for i, key in enumerate(batch.keys):
                plain, j = raw[key]
                assert plain.seeds[j] == batch.seeds[i]
                assert torch.equal(plain.images[j], batch.images[i])
                pair, views = augment_pair(
                    plain.points[j : j + 1],
                    plain.images[j : j + 1],
                    [torch.Generator().manual_seed(plain.seeds[j])],
                    None,
                    ImageAugmentConfig(size=24),
                )
                torch.testing.assert_close(pair[0], batch.pair[i])
                torch.testing.assert_close(views[0], batch.views[i])
    assert not torch.equal(batches[0].pair[:, 0], batches[0].pair[:, 1])
    points_only = next(iter(_loader(tiny_shards, augment=True, augment_images=False).epoch(0)))
    assert points_only.views is None and points_only.pair is not None


@pytest.mark.parametrize(
    ("fmt", "mode"),
    [
        (tarfile.USTAR_FORMAT, "w"),
        (tarfile.GNU_FORMAT, "w"),
        (tarfile.PAX_FORMAT, "w"),
        (tarfile.PAX_FORMAT, "w:gz"),
    ],
)
def test_local_member_headers_match_tarfile(tmp_path: Path, fmt: int, mode: str) -> None:
    """The header-only reader lists the members and data tarfile does: plain, pax (long
    names), GNU long names (handed to tarfile from there on) and compressed shards."""
    from xpt.train.tar_members import local_members

    path = tmp_path / "shard.tar"
    rng = np.random.default_rng(0)
    with tarfile.open(path, mode, format=fmt) as tar:
        names = ["a.points.npy", "a.view_00.png", "b/", "b.points.npy"]
        if fmt != tarfile.USTAR_FORMAT:
            names += [f"{'x' * 120}.view_01.png", "é.points.npy"]
        names += ["c.view_00.png"]
        for name in names:
            info = tarfile.TarInfo(name)
            data = b"" if name.endswith("/") else rng.bytes(int(rng.integers(0, 1500)))
            info.type = tarfile.DIRTYPE if name.endswith("/") else tarfile.REGTYPE
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    with tarfile.open(path) as tar:
        expected = [
            (m.name, m.isreg(), m.offset, m.offset_data, m.size, _data(tar, m)) for m in tar
        ]
    with open(path, "rb") as file:
        members = [(*m[:5], m.read() if m.regular else b"") for m in local_members(file)]
    assert members == expected
    if mode == "w":  # from any member's header on: the same members from there
        with open(path, "rb") as file:
            for i, (_, _, at, data, size, content) in enumerate(expected):
                rest = [(*m[:5], m.read() if m.regular else b"") for m in local_members(file, at)]
                assert rest == expected[i:]
                file.seek(data)
                assert file.read(size) == content  # the data lies where the member says

    if mode != "w":
        return
    whole = path.read_bytes()
    for cut in range(100, len(whole), 397):  # cut anywhere: the same members, then error or not
        path.write_bytes(whole[:cut])
        assert _outcome(lambda: local_members(open(path, "rb"))) == _outcome(
            lambda: _tarfile_members(path)
        )


def _data(tar: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    return tar.extractfile(member).read() if member.isreg() else b""  # type: ignore[union-attr]


def _tarfile_members(path: Path):
    tar = tarfile.open(path)
    for m in tar:
        yield m.name, m.isreg(), lambda m=m: tar.extractfile(m).read()


def _outcome(members) -> list:
    out = []
    try:
        for name, regular, *_, read in members():
            out.append((name, regular, read() if regular else b""))
    except tarfile.ReadError:  # (the messages may differ: "empty header" after a pax one)
        out.append("ReadError")
    return out


def test_batches_stitched_from_chunks_are_pinned_as_the_chunks(
    tiny_shards: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With pin_memory (CUDA) a batch joined from several chunks (batch 5 over shards of 6)
    is pinned again, so its copy to the GPU stays non-blocking (here nothing is pinned: no
    accelerator, so every batch goes through Batch.pin_memory)."""
    from xpt.train.data import Batch

    pinned: list[list[str]] = []

    def pin(batch: Batch) -> Batch:
        pinned.append(batch.keys)
        return batch

    monkeypatch.setattr(Batch, "pin_memory", pin)
    monkeypatch.setattr(torch.Tensor, "is_pinned", lambda self: False)
    with pytest.warns(UserWarning, match="pin_memory"):  # no accelerator: torch says so
        batches = list(_loader(tiny_shards, batch_size=5, pin_memory=True).epoch(0))
    assert [b.keys for b in batches] == pinned and len(batches) == 2
