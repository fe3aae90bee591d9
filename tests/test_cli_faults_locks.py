"""Two writers on one output folder, and workers whose parent is killed (issue 22, items 2, 3).

A second xpt on a folder another one writes is refused with one line naming the holder's
pid and command; a lock file left by a process that died is taken over with a note; and
``kill -9`` of ``xpt shard`` / ``xpt render`` (or of a process reading through a DataLoader)
leaves none of its workers, nor the multiprocessing resource tracker, running.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from xpt.toolkit.cli import app
from xpt.toolkit.locks import LOCK_FILE, folder_lock, part_lock

os.environ.setdefault("PYOPENGL_PLATFORM", "egl")
os.environ.setdefault("XPT_NO_PROGRESS", "1")

XPT = Path(sys.executable).parent / "xpt"
SMALL = ["--views", "2", "--size", "16", "--categories", "mug,chair", "--per-category", "1"]
TINY_SHARD = [*SMALL, "--points", "32"]
needs_proc = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")


def _invoke(args: list) -> tuple[int, str]:
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result.exit_code, result.output


def _refusal(out: Path, pid: int, command: str) -> re.Pattern[str]:
    """The one line of a refused second writer."""
    return re.compile(
        rf"error {re.escape(str(out))}: in use by another xpt \(pid {pid}, {command}, since "
        r"\d\d:\d\d:\d\d\); wait for it or stop it"
    )


def _dead_pid() -> int:
    """The pid of a process that has ended."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


@pytest.fixture(scope="module")
def parts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The two part sets of a small `xpt shard --part i/2` run."""
    root = tmp_path_factory.mktemp("parts")
    for index in (0, 1):
        args = ["shard", "procedural", "--out", root, "--part", f"{index}/2", *TINY_SHARD]
        status, output = _invoke(args)
        assert status == 0, output
    return root


def _release_model(tmp_path: Path, dgcnn_reference: dict) -> Path:
    import torch

    path = tmp_path / "best_model.pth"
    torch.save(dgcnn_reference["state_dict"], path)
    return path


# (command, its arguments before --out, the lock file it takes) for each writing command.
WRITERS = {
    "render": (["render", "procedural", *SMALL], LOCK_FILE),
    "render-part": (["render", "procedural", "--part", "0/2", *SMALL], part_lock(0, 2)),
    "shard": (["shard", "procedural", *TINY_SHARD], LOCK_FILE),
    "merge": (["merge", "PARTS"], LOCK_FILE),
    "pretrain": (["pretrain", "PARTS/part-000-of-002", "--workers", "0"], LOCK_FILE),
    "export": (["export", "RELEASE"], LOCK_FILE),
    "demo": (["demo", "--fast"], LOCK_FILE),
}


@pytest.mark.parametrize("name", list(WRITERS))
def test_a_second_writer_is_refused_in_one_line_naming_the_first(
    name: str, parts: Path, dgcnn_reference: dict, tmp_path: Path
) -> None:
    args, lock = WRITERS[name]
    if "RELEASE" in args:
        release = str(_release_model(tmp_path, dgcnn_reference))
        args = [release if arg == "RELEASE" else arg for arg in args]
    args = [arg.replace("PARTS", str(parts)) for arg in args]
    out = tmp_path / "out"
    with folder_lock(out, "xpt shard", lock):
        before = sorted(out.iterdir())
        status, output = _invoke([*args, "--out", out])
        assert sorted(out.iterdir()) == before  # nothing written, not even a lock file
    lines = [line for line in output.splitlines() if line.strip()]
    assert status == 1, output
    assert "Traceback" not in output
    assert len(lines) == 1 and _refusal(out, os.getpid(), "xpt shard").fullmatch(lines[0]), output
    assert not out.exists()  # the lock made the folder and took it away again


def test_parts_of_a_render_job_array_lock_only_their_own_part(tmp_path: Path) -> None:
    out = tmp_path / "renders"
    with folder_lock(out, "xpt render", part_lock(0, 2)):
        status, output = _invoke(["render", "procedural", "--part", "1/2", *SMALL, "--out", out])
        assert status == 0, output
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]


def test_a_stale_lock_of_a_dead_process_is_taken_over_with_a_note(tmp_path: Path) -> None:
    out = tmp_path / "shards"
    out.mkdir()
    dead = _dead_pid()
    stale = {"pid": dead, "command": "xpt shard", "started": "2020-01-02T03:04:05", "host": "x"}
    (out / LOCK_FILE).write_text(json.dumps(stale))
    status, output = _invoke(["shard", "procedural", *TINY_SHARD, "--out", out])
    assert status == 0, output
    note = (
        f"note {out}: took over the lock of an xpt no longer running (pid {dead} on x, "
        "xpt shard, since 2020-01-02 03:04:05)"
    )
    assert note in output
    assert not (out / LOCK_FILE).exists()
    (out / LOCK_FILE).write_text(json.dumps(stale))  # readers skip one left behind
    status, output = _invoke(["verify", out])
    assert status == 0, output


# ---------------------------------------------------------------- workers of a killed parent


def _children(pid: int) -> dict[int, str]:
    """pid -> command line of the live processes whose parent is ``pid``."""
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and _alive(int(entry.name)):
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                line = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except (OSError, IndexError, ValueError):
                continue
            if ppid == pid:
                found[int(entry.name)] = line
    return found


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie nobody reaped yet has ended)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def _holder(out: Path) -> int | None:
    """The pid in ``out``'s lock file, once there."""
    try:
        return json.loads((out / LOCK_FILE).read_text())["pid"]
    except (OSError, ValueError, KeyError):
        return None


def _kill_left(pids: list[int], seconds: float = 5.0) -> list[int]:
    """The ``pids`` still running after up to ``seconds``, killed (a failing test leaves no
    orphans behind)."""
    deadline = time.monotonic() + seconds
    while (running := [p for p in pids if _alive(p)]) and time.monotonic() < deadline:
        time.sleep(0.05)
    for pid in running:
        os.kill(pid, signal.SIGKILL)
    return running


@needs_proc
@pytest.mark.parametrize("command", ["shard", "render"])
def test_kill_9_of_the_parent_ends_its_workers_and_frees_the_folder(
    command: str, tmp_path: Path, started_until, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    args = [command, "procedural", "--views", "2", "--size", "16", "--per-category", "20"]

    def two_workers() -> bool:
        spawned = [line for line in _children(_holder(out) or -1).values() if "spawn" in line]
        return len(spawned) == 2

    command_line = [XPT, *args, "--workers", "2", "--out", out]
    process = started_until(command_line, os.environ, two_workers, "2 workers")
    status, output = _invoke([*args, "--out", out])  # a second writer while the first runs
    assert status == 1 and _refusal(out, process.pid, f"xpt {command}").search(output), output
    children = list(_children(process.pid))  # the workers and the resource tracker
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    assert not _kill_left(children)
    process.communicate(timeout=30)  # the pipes close once no worker holds them
    with folder_lock(out, "xpt test"):
        pass
    assert f"took over the lock of an xpt no longer running (pid {process.pid}" in " ".join(
        capsys.readouterr().err.split()
    )


LOADER = """
import time
from torch.utils.data import DataLoader, IterableDataset
from xpt.toolkit.interrupts import start_worker

class Stuck(IterableDataset):
    def __iter__(self):
        yield 0
        time.sleep(600)  # a read that never ends: only the parent's death stops the worker

for _ in DataLoader(Stuck(), batch_size=None, num_workers=2, worker_init_fn=start_worker):
    print("ready", flush=True)
    time.sleep(600)
"""


@needs_proc
def test_kill_9_of_a_training_process_ends_its_dataloader_workers() -> None:
    process = subprocess.Popen([sys.executable, "-c", LOADER], stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline() == "ready\n"
        deadline = time.monotonic() + 60
        while len(children := list(_children(process.pid))) < 2:
            assert time.monotonic() < deadline, "2 DataLoader workers within 60 s"
            time.sleep(0.05)
    finally:
        process.kill()
        process.wait(timeout=30)
    assert not _kill_left(children)


def test_a_held_run_folder_refuses_every_rank_of_a_torchrun(parts: Path, tmp_path: Path) -> None:
    """Rank 0 alone takes the lock; each rank stops with the refusal, none waits for rank 0."""
    bin_dir = Path(sys.executable).parent
    torchrun = [str(bin_dir / "torchrun")] if (bin_dir / "torchrun").exists() else []
    torchrun = torchrun or [sys.executable, "-m", "torch.distributed.run"]
    run = tmp_path / "run"
    command = [*torchrun, "--standalone", "--nproc-per-node", "2", "--no-python", str(XPT)]
    args = ["pretrain", str(parts / "part-000-of-002"), "--out", str(run), "--workers", "0"]
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    with folder_lock(run, "xpt pretrain"):
        done = subprocess.run(
            [*command, *args], env=env, capture_output=True, text=True, timeout=240
        )
    refused = _refusal(run, os.getpid(), "xpt pretrain").pattern.removeprefix("error ")
    assert done.returncode != 0
    for rank in (0, 1):
        assert len(re.findall(f"error rank {rank}: {refused}", done.stderr)) == 1, done.stderr
    assert "[rank" not in done.stderr, done.stderr  # no rank printed a traceback
