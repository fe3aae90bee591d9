"""Every command against every bad input that applies (issue 10): a missing path, a file
where a folder is expected, an output that cannot be written, an empty folder, a corrupt,
empty or truncated input of each kind a command reads, a wrong option value.

Each run must end with exit status 1 or 2 (0 where the design goes on and records the
failure), print no traceback, name the offending path, and leave every file that existed
before it as it was. A last test stops ``xpt render`` and ``xpt shard`` with a signal.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from xpt.toolkit import console
from xpt.toolkit.cli import app

os.environ.setdefault("PYOPENGL_PLATFORM", "egl")
os.environ.setdefault("XPT_NO_PROGRESS", "1")

XPT = Path(sys.executable).parent / "xpt"
SMALL_RENDER = ["--views", "2", "--size", "16", "--no-antialias"]
TINY_PRETRAIN = [
    "--backbone", "pointnet", "--image-encoder", "resnet18", "--points", "32",
    "--emb-dims", "32", "--image-size", "16", "--workers", "0", "--batch-size", "2",
]  # fmt: skip
READ_ONLY = Path("/proc/xpt-cannot-write")  # a place no user can create anything in


def _invoke(args: list[str]):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Good inputs, made once: 2 meshes, their renders, their shards, an eval h5 folder."""
    root = tmp_path_factory.mktemp("world")
    steps = [
        ["synth", root / "meshes", "--per-category", "1", "--categories", "mug,chair"],
        ["render", root / "meshes", "--out", root / "renders", *SMALL_RENDER],
        ["shard", root / "meshes", "--renders", root / "renders", "--out", root / "shards",
         "--points", "32", "--val-fraction", "0"],
    ]  # fmt: skip
    for args in steps:
        result = _invoke(args)
        assert result.exit_code == 0, result.output
    return root


def _snapshot(*roots: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``roots``: path -> (size, mtime in ns)."""
    found = {}
    for root in roots:
        for path in [root, *root.rglob("*")] if root.exists() else []:
            if path.is_file():
                stat = path.stat()
                found[str(path)] = (stat.st_size, stat.st_mtime_ns)
    return found


# ---------------------------------------------------------------- bad inputs


def missing(here: Path) -> Path:
    return here / "no-such-thing"


def a_file(here: Path) -> Path:
    path = here / "a-file.txt"
    path.write_text("not a folder\n")
    return path


def under_a_file(here: Path) -> Path:
    return a_file(here) / "out"


def empty_folder(here: Path) -> Path:
    path = here / "empty"
    path.mkdir()
    return path


def copy(source: Path, here: Path) -> Path:
    target = here / source.name
    (shutil.copytree if source.is_dir() else shutil.copy2)(source, target)
    return target


def damage(path: Path, how: str) -> Path:
    """``path`` made ``empty``, ``truncated`` (half its bytes) or ``corrupt`` (noise)."""
    data = path.read_bytes()
    path.write_bytes(
        {"empty": b"", "truncated": data[: len(data) // 2], "corrupt": b"\x00junk" * 64}[how]
    )
    return path


def first(folder: Path, pattern: str) -> Path:
    return sorted(folder.rglob(pattern))[0]


@dataclass
class Case:
    """``build(world, here)`` -> (arguments, the path the message must name)."""

    build: Callable[[Path, Path], tuple[list, Path | None]]
    codes: tuple[int, ...] = (1, 2)


def _meshes_with_one_bad(world: Path, here: Path) -> Path:
    meshes = copy(world / "meshes", here)
    damage(first(meshes, "model_normalized.obj"), "corrupt")
    return meshes


def _shards_with(world: Path, here: Path, pattern: str, how: str) -> tuple[Path, Path]:
    shards = copy(world / "shards", here)
    return shards, damage(first(shards, pattern), how)


def _render_keeps_done_work(world: Path, here: Path) -> tuple[list, Path]:
    """Renders already in --out stay as they are when --preview cannot be written."""
    renders = copy(world / "renders", here)
    preview = under_a_file(here) / "p.png"
    args = ["render", world / "meshes", "--out", renders, *SMALL_RENDER]
    return [*args, "--preview", preview], preview


def _resume_corrupt_checkpoint(world: Path, here: Path) -> tuple[list, Path]:
    run = here / "run"
    run.mkdir()
    last = damage(a_file(here).rename(run / "last.pt"), "corrupt")
    return ["pretrain", world / "shards", "--out", run, "--resume", *TINY_PRETRAIN], last


def _checkpoint(how: str) -> Case:
    def build(world: Path, here: Path) -> tuple[list, Path]:
        bad = damage(a_file(here).rename(here / "best.pt"), how)
        return ["benchmark", "--checkpoint", bad, "--cache", here / "cache"], bad

    return Case(build)


def _corrupt_h5(world: Path, here: Path) -> tuple[list, Path]:
    data = empty_folder(here)
    for split in ("train", "test"):
        (data / f"ply_data_{split}0.h5").write_bytes(b"\x00junk" * 64)
    args = ["benchmark", "--random-init", "--backbone", "pointnet", "--dataset", "modelnet40"]
    named = data / "ply_data_t"  # the start of either file's path: the one read first
    return [*args, "--data", data, "--cache", here / "cache"], named


def _read_cases(command: str, extra: list) -> dict[str, Case]:
    """verify/inspect/pretrain read a shard folder: the same bad inputs for each."""

    def shards_damaged(pattern: str, how: str) -> Case:
        def build(world: Path, here: Path) -> tuple[list, Path]:
            shards, bad = _shards_with(world, here, pattern, how)
            return [command, shards, *extra], bad

        return Case(build)

    return {
        f"{command}-missing": Case(lambda w, h: ([command, p := missing(h), *extra], p)),
        f"{command}-file": Case(lambda w, h: ([command, p := a_file(h), *extra], p)),
        f"{command}-empty-folder": Case(lambda w, h: ([command, p := empty_folder(h), *extra], p)),
        f"{command}-manifest-corrupt": shards_damaged("manifest.json", "corrupt"),
        f"{command}-manifest-empty": shards_damaged("manifest.json", "empty"),
    }


CASES: dict[str, Case] = {
    # synth writes a tree
    "synth-out-under-file": Case(lambda w, h: (["synth", p := under_a_file(h)], p)),
    "synth-out-is-file": Case(lambda w, h: (["synth", p := a_file(h)], p)),
    "synth-out-read-only": Case(lambda w, h: (["synth", READ_ONLY], READ_ONLY)),
    "synth-json-read-only": Case(
        lambda w, h: (
            [
                "synth",
                h / "m",
                "--categories",
                "mug",
                "--per-category",
                "1",
                "--json",
                p := READ_ONLY / "s.json",
            ],
            p,
        )  # fmt: skip
    ),
    "synth-bad-category": Case(lambda w, h: (["synth", h / "m", "--categories", "nosuch"], None)),
    "synth-zero-per-category": Case(lambda w, h: (["synth", h / "m", "--per-category", "0"], None)),
    # render reads meshes, writes views
    "render-source-missing": Case(lambda w, h: (["render", p := missing(h), "--out", h / "r"], p)),
    "render-source-file": Case(lambda w, h: (["render", p := a_file(h), "--out", h / "r"], p)),
    "render-source-empty": Case(
        lambda w, h: (["render", p := empty_folder(h), "--out", h / "r"], p)
    ),
    "render-one-corrupt-mesh": Case(
        lambda w, h: (
            ["render", m := _meshes_with_one_bad(w, h), "--out", h / "r", *SMALL_RENDER],
            first(m, "model_normalized.obj").parent.parent.name,
        ),  # fmt: skip
        codes=(0,),
    ),
    "render-out-under-file": Case(
        lambda w, h: (["render", w / "meshes", "--out", p := under_a_file(h)], p)
    ),
    "render-out-read-only": Case(
        lambda w, h: (["render", w / "meshes", "--out", READ_ONLY], READ_ONLY)
    ),
    "render-preview-under-file-keeps-renders": Case(_render_keeps_done_work),
    "render-json-read-only": Case(
        lambda w, h: (
            ["render", w / "meshes", "--out", h / "r", "--json", p := READ_ONLY / "r.json"],
            p,
        )
    ),
    "render-bad-part": Case(
        lambda w, h: (["render", w / "meshes", "--out", h / "r", "--part", "3/2"], None)
    ),
    "render-bad-rig": Case(
        lambda w, h: (["render", w / "meshes", "--out", h / "r", "--rig", "cube"], None)
    ),
    # shard reads meshes (+ renders), writes tars
    "shard-source-missing": Case(lambda w, h: (["shard", p := missing(h), "--out", h / "s"], p)),
    "shard-source-file": Case(lambda w, h: (["shard", p := a_file(h), "--out", h / "s"], p)),
    "shard-source-empty": Case(lambda w, h: (["shard", p := empty_folder(h), "--out", h / "s"], p)),
    "shard-renders-missing": Case(
        lambda w, h: (["shard", w / "meshes", "--renders", p := missing(h), "--out", h / "s"], p)
    ),
    "shard-renders-file": Case(
        lambda w, h: (["shard", w / "meshes", "--renders", p := a_file(h), "--out", h / "s"], p)
    ),
    "shard-one-corrupt-mesh": Case(
        lambda w, h: (
            [
                "shard",
                m := _meshes_with_one_bad(w, h),
                "--renders",
                w / "renders",
                "--out",
                h / "s",
                "--points",
                "32",
            ],
            first(m, "model_normalized.obj").parent.parent.name,
        ),  # fmt: skip
        codes=(0,),
    ),
    "shard-out-under-file": Case(
        lambda w, h: (
            ["shard", w / "meshes", "--renders", w / "renders", "--out", p := under_a_file(h)],
            p,
        )
    ),
    "shard-out-read-only": Case(
        lambda w, h: (
            ["shard", w / "meshes", "--renders", w / "renders", "--out", READ_ONLY],
            READ_ONLY,
        )
    ),
    "shard-json-under-file": Case(
        lambda w, h: (
            [
                "shard",
                w / "meshes",
                "--renders",
                w / "renders",
                "--out",
                h / "s",
                "--json",
                p := under_a_file(h) / "s.json",
            ],
            p,
        )  # fmt: skip
    ),
    "shard-zero-points": Case(
        lambda w, h: (["shard", w / "meshes", "--out", h / "s", "--points", "0"], None)
    ),
    "shard-bad-format": Case(
        lambda w, h: (["shard", w / "meshes", "--out", h / "s", "--format", "zip"], None)
    ),
    # merge reads part sets, writes a set
    "merge-missing": Case(lambda w, h: (["merge", p := missing(h), "--out", h / "m"], p)),
    "merge-file": Case(lambda w, h: (["merge", p := a_file(h), "--out", h / "m"], p)),
    "merge-empty-folder": Case(lambda w, h: (["merge", p := empty_folder(h), "--out", h / "m"], p)),
    "merge-not-parts": Case(lambda w, h: (["merge", p := w / "shards", "--out", h / "m"], p)),
    "merge-manifest-corrupt": Case(
        lambda w, h: (
            ["merge", (b := _shards_with(w, h, "manifest.json", "corrupt"))[0], "--out", h / "m"],
            b[1],
        )
    ),
    "merge-json-read-only": Case(
        lambda w, h: (
            ["merge", w / "shards", "--out", h / "m", "--json", p := READ_ONLY / "m.json"],
            p,
        )
    ),
    # verify and inspect read shard sets
    **_read_cases("verify", []),
    "verify-tar-truncated": Case(
        # the problems table names the set and, in its own column, the file
        lambda w, h: (["verify", (b := _shards_with(w, h, "*.tar", "truncated"))[0]], b[1].name)
    ),
    "verify-tar-empty": Case(
        # the problems table names the set and, in its own column, the file
        lambda w, h: (["verify", (b := _shards_with(w, h, "*.tar", "empty"))[0]], b[1].name)
    ),
    "verify-json-read-only": Case(
        lambda w, h: (["verify", w / "shards", "--json", p := READ_ONLY / "v.json"], p)
    ),
    **_read_cases("inspect", []),
    "inspect-tar-truncated": Case(
        lambda w, h: (["inspect", (b := _shards_with(w, h, "*.tar", "truncated"))[0]], b[1])
    ),
    "inspect-preview-under-file": Case(
        lambda w, h: (["inspect", w / "shards", "--preview", p := under_a_file(h) / "p.png"], p)
    ),
    "inspect-json-read-only": Case(
        lambda w, h: (["inspect", w / "shards", "--json", p := READ_ONLY / "i.json"], p)
    ),
    # pretrain reads shards (+ a config, a checkpoint to resume), writes a run
    **_read_cases("pretrain", ["--out", "RUN", *TINY_PRETRAIN]),
    "pretrain-out-under-file": Case(
        lambda w, h: (["pretrain", w / "shards", "--out", p := under_a_file(h), *TINY_PRETRAIN], p)
    ),
    "pretrain-out-read-only": Case(
        lambda w, h: (["pretrain", w / "shards", "--out", READ_ONLY, *TINY_PRETRAIN], READ_ONLY)
    ),
    "pretrain-config-missing": Case(
        lambda w, h: (
            ["pretrain", w / "shards", "--out", h / "run", "--config", p := missing(h)],
            p,
        )
    ),
    "pretrain-config-corrupt": Case(
        lambda w, h: (
            [
                "pretrain",
                w / "shards",
                "--out",
                h / "run",
                "--config",
                p := damage(a_file(h), "corrupt"),
            ],
            p,
        )
    ),
    "pretrain-resume-checkpoint-corrupt": Case(_resume_corrupt_checkpoint),
    "pretrain-bad-backbone": Case(
        lambda w, h: (["pretrain", w / "shards", "--out", h / "run", "--backbone", "vit"], None)
    ),
    # benchmark reads a checkpoint and an evaluation set, writes reports
    **{
        f"benchmark-checkpoint-{how}": _checkpoint(how) for how in ("empty", "truncated", "corrupt")
    },
    "benchmark-checkpoint-missing": Case(
        lambda w, h: (["benchmark", "--checkpoint", p := missing(h)], p)
    ),
    "benchmark-checkpoint-folder": Case(
        lambda w, h: (["benchmark", "--checkpoint", p := empty_folder(h)], p)
    ),
    "benchmark-data-missing": Case(
        lambda w, h: (
            ["benchmark", "--random-init", "--dataset", "modelnet40", "--data", p := missing(h)],
            p,
        )
    ),
    "benchmark-data-empty": Case(
        lambda w, h: (
            [
                "benchmark",
                "--random-init",
                "--dataset",
                "modelnet40",
                "--data",
                p := empty_folder(h),
            ],
            p,
        )
    ),
    "benchmark-h5-corrupt": Case(_corrupt_h5),
    "benchmark-json-read-only": Case(
        lambda w, h: (["benchmark", "--random-init", "--json", p := READ_ONLY / "b.json"], p)
    ),
    "benchmark-plot-under-file": Case(
        lambda w, h: (["benchmark", "--random-init", "--plot", p := under_a_file(h) / "b.png"], p)
    ),
    "benchmark-bad-ways": Case(
        lambda w, h: (["benchmark", "--random-init", "--ways", "five"], None)
    ),
    # demo writes everything under --out
    "demo-out-under-file": Case(
        lambda w, h: (["demo", "--fast", "--out", p := under_a_file(h)], p)
    ),
    "demo-out-read-only": Case(lambda w, h: (["demo", "--fast", "--out", READ_ONLY], READ_ONLY)),
    "demo-json-under-file": Case(
        lambda w, h: (
            ["demo", "--fast", "--out", h / "d", "--json", p := under_a_file(h) / "d.json"],
            p,
        )
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input_is_one_line_naming_the_path(
    name: str, world: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for stream in (console.out, console.err):  # paths are long: keep them whole
        monkeypatch.setattr(stream, "width", 1000)
    here = tmp_path / "here"
    here.mkdir()
    args, named = CASES[name].build(world, here)
    args = [here / "run" if a == "RUN" else a for a in args]
    before = _snapshot(world, here)
    result = _invoke(args)
    output = result.output  # stdout and stderr
    assert result.exit_code in CASES[name].codes, output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in output
    if named is not None:
        assert str(named) in output, output
    after = _snapshot(world, here)
    changed = {path for path, stat in before.items() if after.get(path) != stat}
    assert not changed, f"changed or removed: {sorted(changed)}"


@pytest.mark.parametrize(
    "command",
    [
        ["inspect"], ["verify"], ["plot"], ["render", "--out", "OUT"], ["shard", "--out", "OUT"],
        ["merge", "--out", "OUT"], ["export", "--out", "OUT"], ["pretrain", "--out", "OUT"],
    ],
)  # fmt: skip
def test_error_lines_print_paths_with_brackets_as_they_are(
    command: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A path such as "chairs [old]" is named verbatim: not read as console markup, which
    swallowed "[old]" and turned what follows "[red]" red."""
    for stream in (console.out, console.err):
        monkeypatch.setattr(stream, "width", 1000)
    missing = tmp_path / "chairs [old] and [red]tables"
    args = [command[0], missing, *(tmp_path / "out" if a == "OUT" else a for a in command[1:])]
    result = _invoke(args)
    assert result.exit_code == 1, result.output
    line = next(line for line in result.output.splitlines() if line.startswith("error "))
    assert str(missing) in line, result.output


# ---------------------------------------------------------------- signals


def _stop_once_started(
    started_until, args: list[str], marker: Path, signum: int
) -> tuple[int, str]:
    """Run ``xpt args`` in its own process group; once ``marker`` exists, send ``signum``
    to the whole group (as a terminal's Ctrl-C or a scheduler's SIGTERM does)."""
    env = {**os.environ, "XPT_NO_PROGRESS": "1", "COLUMNS": "1000"}
    process = started_until(
        [XPT, *args],
        env,
        lambda: marker.exists() and marker.stat().st_size > 0,
        "no object finished",
    )
    os.killpg(process.pid, signum)
    out, err = process.communicate(timeout=120)
    return process.returncode, out + err


@pytest.mark.parametrize(
    ("command", "signum", "code"), [("render", signal.SIGINT, 130), ("shard", signal.SIGTERM, 143)]
)
def test_a_signal_stops_with_one_line_and_a_rerun_completes(
    command: str, signum: int, code: int, tmp_path: Path, started_until
) -> None:
    meshes = tmp_path / "meshes"
    assert (
        _invoke(
            ["synth", meshes, "--per-category", "3", "--categories", "mug,chair,table"]
        ).exit_code
        == 0
    )
    out = tmp_path / "out"
    if command == "render":
        args = ["render", meshes, "--out", out, "--views", "4", "--size", "32", "--workers", "2"]
        marker = out / "render_manifest.jsonl"
    else:
        args = ["shard", meshes, "--out", out, "--views", "4", "--size", "32", "--workers", "2",
                "--points", "64", "--max-samples", "1", "--val-fraction", "0"]  # fmt: skip
        marker = out / "train-000000.tar"
    status, text = _stop_once_started(started_until, args, marker, signum)
    lines = [line for line in text.splitlines() if line.strip()]
    assert status == code, text
    assert "Traceback" not in text
    assert len(lines) == 1 and lines[0].startswith("interrupted after "), text
    assert "finished work is kept; run the same command again to resume" in lines[0]
    done_before = _snapshot(out)
    again = subprocess.run(
        [str(XPT), *map(str, args)],
        capture_output=True,
        text=True,
        env={**os.environ, "XPT_NO_PROGRESS": "1"},
    )
    assert again.returncode == 0, again.stderr
    if command == "render":
        assert len({p.parent for p in out.glob("*/*/rendering/rendering_metadata.txt")}) == 9
        kept = [p for p in done_before if "/rendering/" in p]
    else:
        verify = _invoke(["verify", out])
        assert verify.exit_code == 0, verify.output
        kept = [p for p in done_before if p.endswith(".tar")]
    assert kept and all(_snapshot(Path(p)) == {p: done_before[p]} for p in kept)
