"""A full disk (issue 22): every writer ends with one line naming the file, the reason and the
space left, removes its temporary file and keeps what was there before; checkpoints get the
file mode of the run's other files (the umask), not mkstemp's 0600.

The disk is filled at the file layer (a file object that takes some bytes and then raises
ENOSPC, with ``shutil.disk_usage`` answering 12.3 MB), and, where the tests run as root and
may mount a tmpfs, for real on a tiny one.
"""

from __future__ import annotations

import errno
import io
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import pytest
import torch
from typer.testing import CliRunner

from xpt.toolkit import fsio
from xpt.toolkit.cli import app

os.environ.setdefault("PYOPENGL_PLATFORM", "egl")
os.environ.setdefault("XPT_NO_PROGRESS", "1")

TINY_PRETRAIN = [
    "--backbone", "pointnet", "--image-encoder", "resnet18", "--points", "32",
    "--emb-dims", "32", "--image-size", "16", "--workers", "0", "--batch-size", "2",
]  # fmt: skip
FREE = shutil._ntuple_diskusage(10**9, 10**9 - 12_345_678, 12_345_678)  # "12.3 MB" free
FULL = "no space left on device"


class FullDisk(io.RawIOBase):
    """A writable file that takes ``room`` bytes into ``inner``, then fails as a full disk."""

    def __init__(self, inner: BinaryIO, room: int):
        self.inner, self.room = inner, room

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        data = bytes(data)
        if len(data) > self.room:
            self.inner.write(data[: self.room])
            self.room = 0
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.room -= len(data)
        return self.inner.write(data)

    def close(self) -> None:
        self.inner.close()
        super().close()


def _invoke(args: list) -> Any:
    return CliRunner().invoke(app, [str(a) for a in args])


def _last_line(result: Any) -> str:
    return result.output.strip().splitlines()[-1]


def _mount(path: Path) -> Path:
    path = path.resolve()
    while not os.path.ismount(path):
        path = path.parent
    return path


def _free_12mb(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fsio.shutil, "disk_usage", lambda path: FREE)


def _temporary(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.name.startswith(fsio.TMP_PREFIX)]


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """6 procedural objects in shards of 2 (16-px views, 32 points), written by xpt shard."""
    out = tmp_path_factory.mktemp("shards") / "set"
    result = _invoke(_shard_args(out))
    assert result.exit_code == 0, result.output
    return out


def _shard_args(out: Path) -> list:
    return [
        "shard", "procedural", "--out", out, "--categories", "mug,chair", "--per-category",
        "3", "--points", "32", "--views", "2", "--size", "16", "--max-samples", "2",
        "--workers", "1",
    ]  # fmt: skip


# ---------------------------------------------------------------- checkpoints


def test_a_full_disk_at_a_checkpoint_keeps_the_previous_last_pt(
    shards: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The second checkpoint meets a full disk: torch raises RuntimeError around ENOSPC."""
    real_save, calls = torch.save, []

    def save(state: dict, handle: BinaryIO) -> None:
        calls.append(handle)
        real_save(state, handle if len(calls) == 1 else FullDisk(handle, 1 << 20))

    monkeypatch.setattr(torch, "save", save)
    _free_12mb(monkeypatch)
    run = tmp_path / "run"
    args = ["pretrain", shards, "--out", run, *TINY_PRETRAIN, "--max-steps", "2"]
    result = _invoke([*args, "--checkpoint-every", "1"])
    assert result.exit_code == 1, result.output
    assert len(calls) == 2 and "Traceback" not in result.output
    assert _last_line(result) == (
        f"error {run}/last.pt: cannot write the checkpoint: {FULL} (12.3 MB free on "
        f"{_mount(run)}); the previous last.pt is kept"
    )
    assert _temporary(run) == []
    assert torch.load(run / "last.pt", weights_only=True)["position"]["step"] == 1
    # Item 7: the checkpoint follows the umask like config.json, not mkstemp's 0600.
    assert (run / "last.pt").stat().st_mode & 0o777 == (run / "config.json").stat().st_mode & 0o777


def test_checkpoints_follow_the_umask(tmp_path: Path) -> None:
    from xpt.train.checkpoint import save_checkpoint

    before = os.umask(0o027)
    try:
        save_checkpoint({"step": 1}, tmp_path / "last.pt")
        save_checkpoint({"step": 2}, tmp_path / "best.pt")
    finally:
        os.umask(before)
    assert {p.name: p.stat().st_mode & 0o777 for p in tmp_path.iterdir()} == {
        "last.pt": 0o640,
        "best.pt": 0o640,
    }


# ---------------------------------------------------------------- shards, renders, reports


def test_a_full_disk_while_sharding_removes_the_open_shard_and_names_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from xpt.toolkit.shards import writer

    def full_second_shard(path: Path, mode: str) -> BinaryIO:
        handle = open(path, mode)  # noqa: SIM115 (closed by the shard writer)
        if Path(path).name == f"{fsio.TMP_PREFIX}train-000001.tar":
            return io.BufferedWriter(FullDisk(handle, 1000))
        return handle

    monkeypatch.setattr(writer, "open", full_second_shard, raising=False)
    _free_12mb(monkeypatch)
    out = tmp_path / "set"
    result = _invoke(_shard_args(out))
    assert result.exit_code == 1, result.output
    assert _last_line(result) == (
        f"error {out}/train-000001.tar: cannot write the shard: {FULL} (12.3 MB free on "
        f"{_mount(out)})"
    )
    assert _temporary(out) == []
    manifest = json.loads((out / "manifest.json").read_text())
    assert [s["name"] for s in manifest["splits"]["train"]["shards"]] == ["train-000000.tar"]


RENDER_JOB = """
import errno
import os
import pathlib
import shutil

from xpt.render.pool import render_job


def full_disk(self, data):
    self.open("wb").close()
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def job(renderer, obj, out, config):
    shutil.disk_usage = lambda path: shutil._ntuple_diskusage(10**9, 0, 12_345_678)
    if obj.category_name == "table":
        pathlib.Path.write_bytes = full_disk
    return render_job(renderer, obj, out, config)
"""


def test_a_full_disk_stops_the_render_run_and_records_the_object(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every later object would fail too: the run stops, keeping the objects done."""
    from xpt.render.config import RenderConfig
    from xpt.render.output import RENDER_MANIFEST, object_dir
    from xpt.render.pool import render_objects
    from xpt.toolkit.failures import read_failures
    from xpt.toolkit.meshes.sources import open_source

    (tmp_path / "xpt_test_disk_job.py").write_text(RENDER_JOB)
    monkeypatch.syspath_prepend(str(tmp_path))
    found = open_source("procedural", categories=["chair", "table", "mug"], per_category=1)
    chair, table, mug = sorted(
        found, key=lambda o: ["chair", "table", "mug"].index(o.category_name)
    )
    out = tmp_path / "renders"
    config = RenderConfig(views=2, size=16, antialias=False)
    with pytest.raises(fsio.WriteError) as raised:
        render_objects([chair, table, mug], out, config, job="xpt_test_disk_job:job")
    folder = object_dir(out, table)
    reason = f"{folder}: cannot write the renders: {FULL} (12.3 MB free on {_mount(out)})"
    assert str(raised.value) == (
        f"{reason}; render stopped (1 object(s) rendered are kept; run it again)"
    )
    failures = read_failures(out / "failures.jsonl")
    assert [(f.id, f.stage, f.reason) for f in failures] == [(table.key, "write", reason)]
    assert (object_dir(out, chair) / "rendering" / "01.png").is_file()
    assert not folder.exists() and not object_dir(out, mug).exists()
    assert _temporary(out) == []
    assert [json.loads(line)["key"] for line in (out / RENDER_MANIFEST).open()] == [chair.key]


def _full_atomic_writes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every atomic write takes 100 bytes, then meets a full disk."""
    monkeypatch.setattr(
        fsio, "open", lambda fd, mode: io.BufferedWriter(FullDisk(open(fd, mode), 100)), False
    )
    _free_12mb(monkeypatch)


def test_a_full_disk_keeps_the_previous_json_report(
    shards: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    report = tmp_path / "report.json"
    report.write_text('{"old": true}\n')
    _full_atomic_writes(monkeypatch)
    result = _invoke(["verify", shards, "--json", report])
    assert result.exit_code == 1, result.output
    assert _last_line(result) == (
        f"error {report}: cannot write the file: {FULL} (12.3 MB free on {_mount(tmp_path)}); "
        "the previous report.json is kept"
    )
    assert report.read_text() == '{"old": true}\n' and _temporary(tmp_path) == []


def test_a_full_disk_while_plotting_names_the_plot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = tmp_path / "run"
    run.mkdir()
    lines = [
        {"step": s, "epoch": 1, "loss": 1 / s, "imid": 0.5, "cmid": 0.5, "lr": 1e-3} for s in (1, 2)
    ]
    (run / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    _full_atomic_writes(monkeypatch)
    result = _invoke(["plot", run, "--out", tmp_path / "curves.png"])
    assert result.exit_code == 1, result.output
    assert _last_line(result) == (
        f"error {tmp_path}/curves.png: cannot write the plot: {FULL} (12.3 MB free on "
        f"{_mount(tmp_path)})"
    )
    assert _temporary(tmp_path) == []


# ---------------------------------------------------------------- a real full disk


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Any]:
    """``mount(size)``: a fresh tmpfs of ``size`` (``"200m"``) under ``tmp_path``; skipped
    where mounting is not allowed (not root, a container without the capability)."""
    mounted: list[Path] = []

    def mount(size: str) -> Path:
        point = tmp_path / f"disk{len(mounted)}"
        point.mkdir()
        command = ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(point)]
        if os.sysconf("SC_PAGE_SIZE") != 4096:
            pytest.skip("the sizes below count 4 kB pages")
        if os.geteuid() != 0 or subprocess.run(command, capture_output=True).returncode:
            pytest.skip("cannot mount a tmpfs here (needs root)")
        mounted.append(point)
        return point

    yield mount
    for point in mounted:
        subprocess.run(["umount", str(point)], check=False)


def _run_xpt(args: list) -> subprocess.CompletedProcess:
    """``xpt ARGS`` in a fresh process: the real files, no patched writer."""
    command = [sys.executable, "-m", "xpt", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=600)


def test_a_real_full_disk_at_a_checkpoint(shards: Path, tmpfs: Any) -> None:
    """A tmpfs that holds one checkpoint (139 MB) and not a second beside it."""
    disk = tmpfs("200m")
    run = disk / "run"
    args = ["pretrain", shards, "--out", run, *TINY_PRETRAIN, "--max-steps", "2"]
    result = _run_xpt([*args, "--checkpoint-every", "1"])
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    pattern = (
        rf"error {run}/last\.pt: cannot write the checkpoint: {FULL} \([\d.]+ [kMG]?B free on "
        rf"{disk}\); the previous last\.pt is kept"
    )
    assert re.fullmatch(pattern, result.stderr.strip().splitlines()[-1]), result.stderr
    assert _temporary(run) == []
    assert torch.load(run / "last.pt", weights_only=True)["position"]["step"] == 1


def test_a_real_full_disk_while_sharding(tmpfs: Any) -> None:
    """Room for the first shard (20 kB) and the manifest, not for the second shard."""
    disk = tmpfs("40k")
    out = disk / "set"
    result = _run_xpt(_shard_args(out))
    assert result.returncode == 1, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert re.fullmatch(
        rf"error {out}/train-000001\.tar: cannot write the shard: {FULL} "
        rf"\([\d.]+ [kMG]?B free on {disk}\)",
        last,
    ), result.stderr
    assert _temporary(out) == []


def test_a_real_full_disk_while_rendering(tmpfs: Any) -> None:
    """Room for one object's renders (4 files of a 4 kB page) and the records, not two."""
    disk = tmpfs("28k")
    out = disk / "out"
    args = ["render", "procedural", "--out", out, "--categories", "chair,table,mug"]
    result = _run_xpt([*args, "--per-category", "1", "--views", "2", "--size", "16"])
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert re.fullmatch(
        rf"error {out}/proc-\w+/\w+-\d+: cannot write the renders: {FULL} \([\d.]+ k?B free "
        rf"on {disk}\); render stopped \(1 object\(s\) rendered are kept; run it again\)",
        result.stderr.strip().splitlines()[-1],
    ), result.stderr
    assert _temporary(out) == []
