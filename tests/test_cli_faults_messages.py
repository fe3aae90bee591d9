"""Messages that must say what is wrong (issue 22, items 4 to 7): the file in the way of an
output folder, a run folder given as a checkpoint, an empty or missing shard, a batch too
small to train on, a Ctrl-C that is no crash, a damaged set that is not complete, brackets
in table cells, progress lines without a terminal, and what a failed or repeated run leaves.

Each case goes through the command line (``CliRunner``) where it can, as a user meets it.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from xpt.toolkit import console
from xpt.toolkit.cli import app

os.environ.setdefault("PYOPENGL_PLATFORM", "egl")
os.environ.setdefault("XPT_NO_PROGRESS", "1")

SMALL_RENDER = ["--views", "2", "--size", "16", "--no-antialias"]
TINY_PRETRAIN = [
    "--backbone", "pointnet", "--image-encoder", "resnet18", "--points", "32",
    "--emb-dims", "32", "--image-size", "16", "--workers", "0", "--epochs", "1",
]  # fmt: skip


def _invoke(args: list) -> object:
    return CliRunner().invoke(app, [str(a) for a in args])


def _error_line(output: str) -> str:
    """The one ``error ...`` line of ``output`` (there must be exactly one)."""
    lines = [line for line in output.splitlines() if line.startswith("error ")]
    assert len(lines) == 1, output
    return lines[0]


@pytest.fixture(autouse=True)
def _wide_console(monkeypatch: pytest.MonkeyPatch) -> None:
    for stream in (console.out, console.err):  # paths are long: keep them whole
        monkeypatch.setattr(stream, "width", 1000)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 meshes, their renders, a shard set of one sample per shard, the two parts of a
    partitioned set, and a one-epoch pretraining run (its last.pt, no best.pt)."""
    root = tmp_path_factory.mktemp("world")
    shard = ["shard", root / "meshes", "--renders", root / "renders", "--points", "32",
             "--val-fraction", "0"]  # fmt: skip
    steps = [
        ["synth", root / "meshes", "--per-category", "2", "--categories", "mug,chair"],
        ["render", root / "meshes", "--out", root / "renders", *SMALL_RENDER],
        [*shard, "--out", root / "shards", "--max-samples", "1"],
        [*shard, "--out", root / "parts", "--part", "0/2"],
        [*shard, "--out", root / "parts", "--part", "1/2"],
        ["pretrain", root / "shards", "--out", root / "run", *TINY_PRETRAIN, "--batch-size", "2"],
    ]
    for args in steps:
        result = _invoke(args)
        assert result.exit_code == 0, result.output
    return root


# ---------------------------------------------------------------- item 4: messages


@pytest.mark.parametrize("command", ["export", "merge"])
def test_an_out_under_a_file_names_the_file_in_the_way(
    command: str, world: Path, tmp_path: Path
) -> None:
    afile = tmp_path / "afile"
    afile.write_text("a file\n")
    source = world / ("run" if command == "export" else "parts")
    result = _invoke([command, source, "--out", afile / "out"])
    assert result.exit_code == 1, result.output
    assert _error_line(result.output) == f"error {afile}/out: {afile} is a file, not a folder"
    result = _invoke([command, source, "--out", afile])
    assert _error_line(result.output) == f"error {afile}: a file, not a folder"
    assert afile.read_text() == "a file\n"


def test_benchmark_takes_a_run_folder_and_says_which_checkpoint(
    world: Path, tmp_path: Path
) -> None:
    """best.pt when the run has one, else last.pt, named in one line; a folder with neither
    is refused. (A missing --data stops each run right after the checkpoint is chosen.)"""
    after = ["--dataset", "modelnet40", "--data", tmp_path / "no-data"]
    run = world / "run"
    result = _invoke(["benchmark", "--checkpoint", run, *after])
    assert f"{run}: a run folder; evaluating its last.pt (it has no best.pt)" in result.output
    assert "no such checkpoint file" not in result.output
    probed = tmp_path / "probed"
    shutil.copytree(run, probed)
    shutil.copy2(probed / "last.pt", probed / "best.pt")
    result = _invoke(["benchmark", "--checkpoint", probed, *after])
    assert f"{probed}: a run folder; evaluating its best.pt (the epoch its probe chose)" in (
        result.output
    )
    empty = tmp_path / "empty"
    empty.mkdir()
    result = _invoke(["benchmark", "--checkpoint", empty, *after])
    assert result.exit_code == 1
    assert _error_line(result.output) == (
        f"error {empty}: a folder without best.pt or last.pt (not a pretraining run)"
    )


@pytest.mark.parametrize(
    ("content", "reason"),
    [(b"", "an empty file (0 bytes), not a shard"), (b"junk\n", "not a tar file, so not a shard")],
)
def test_pretrain_names_a_file_that_is_no_shard(
    content: bytes, reason: str, tmp_path: Path
) -> None:
    shard = tmp_path / "train-000000.tar"
    shard.write_bytes(content)
    out = tmp_path / "run"
    result = _invoke(["pretrain", shard, "--out", out, *TINY_PRETRAIN])
    assert result.exit_code == 1, result.output
    assert _error_line(result.output) == f"error {shard}: {reason}"
    assert not out.exists()  # a failed start leaves no empty --out (item 7)


def test_a_missing_shard_fails_unless_skipped(world: Path, tmp_path: Path) -> None:
    shards = tmp_path / "shards"
    shutil.copytree(world / "shards", shards)
    gone = shards / "train-000001.tar"
    gone.unlink()
    out = tmp_path / "run"
    args = ["pretrain", shards, "--out", out, *TINY_PRETRAIN, "--batch-size", "2"]
    result = _invoke(args)
    assert result.exit_code == 1, result.output
    assert _error_line(result.output) == (
        f"error {gone}: missing (the manifest lists it); restore it, or pass "
        "--skip-missing-shards to train without it"
    )
    assert "not local uncompressed files" not in result.output
    assert not out.exists()
    result = _invoke([*args, "--skip-missing-shards"])
    assert result.exit_code == 0, result.output
    assert (
        f"note --skip-missing-shards: training without 1 missing shard(s) ({gone}); the "
        "epoch is 3 samples" in result.output
    )
    assert json.loads((out / "config.json").read_text())["skip_missing_shards"] is True


def test_a_batch_of_one_is_refused_before_any_work(world: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = _invoke(["pretrain", world / "shards", "--out", out, *TINY_PRETRAIN,
                      "--batch-size", "1"])  # fmt: skip
    assert result.exit_code == 1, result.output
    assert _error_line(result.output) == (
        "error command line: --batch-size (batch_size) 1 is too small: BatchNorm and the "
        "contrastive loss need at least 2 objects per batch"
    )
    assert "Expected more than 1 value" not in result.output
    assert not out.exists()


INTERRUPT_JOB = """
import os
import signal
import time

from xpt.render.pool import render_job


def job(renderer, obj, out, config):
    if obj.model_id.endswith("0"):  # a Ctrl-C reaches the parent, then this worker dies
        os.kill(os.getppid(), signal.SIGINT)
        time.sleep(0.5)
        os.kill(os.getpid(), signal.SIGSEGV)
    return render_job(renderer, obj, out, config)
"""


def test_a_worker_dying_after_ctrl_c_is_no_crash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its object is neither done nor failed: the resume renders it."""
    from xpt.render.config import RenderConfig
    from xpt.render.pool import render_objects
    from xpt.toolkit.interrupts import Interrupted
    from xpt.toolkit.meshes.sources import open_source

    (tmp_path / "xpt_test_interrupt_job.py").write_text(INTERRUPT_JOB)
    monkeypatch.syspath_prepend(str(tmp_path))
    objects = open_source("procedural", categories=["mug"], per_category=2)
    assert objects[0].model_id.endswith("0")
    out = tmp_path / "renders"
    config = RenderConfig(views=1, size=16)
    with pytest.raises(Interrupted, match="interrupted after 0 objects"):
        render_objects(objects, out, config, progress=False, job="xpt_test_interrupt_job:job")
    failures = out / "failures.jsonl"
    assert not failures.exists() or "crashed" not in failures.read_text()
    again = render_objects(objects, out, config, progress=False)
    assert (again.done, again.failed) == (2, 0)


def test_inspect_of_a_damaged_set_is_not_complete(world: Path, tmp_path: Path) -> None:
    shards = tmp_path / "shards"
    shutil.copytree(world / "shards", shards)
    (shards / "train-000002.tar").unlink()
    report = tmp_path / "inspect.json"
    result = _invoke(["inspect", shards, "--json", report])
    assert result.exit_code == 1, result.output
    assert f"damaged {shards}/train-000002.tar: missing (the manifest lists it)" in result.output
    assert json.loads(report.read_text())["sets"][0]["complete"] is False
    whole = json.loads(_invoke(["inspect", world / "shards", "--json", "-"]).stdout)
    assert whole["sets"][0]["complete"] is True


# ---------------------------------------------------------------- item 5: table cells


def test_table_cells_show_paths_with_brackets(world: Path, tmp_path: Path) -> None:
    shards = tmp_path / "my data [v2] and [red]x"
    shutil.copytree(world / "shards", shards)
    result = _invoke(["inspect", shards])
    assert result.exit_code == 0, result.output
    assert str(shards) in result.output


def test_a_table_keeps_brackets_in_its_title_labels_and_cells() -> None:
    with console.out.capture() as captured:
        console.print_table("set [v2]", [{"name [a]": "my data [v2]", "n": 3}])
    text = captured.get()
    assert "set [v2]" in text and "name [a]" in text and "my data [v2]" in text


# ---------------------------------------------------------------- item 6: progress lines


def test_progress_without_a_terminal_is_plain_lines(
    world: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pretraining's output in a log file: done of total, rate, loss and ETA, every
    XPT_PROGRESS_SECONDS (here at every step)."""
    monkeypatch.delenv("XPT_NO_PROGRESS")
    monkeypatch.setenv("XPT_PROGRESS_SECONDS", "0")
    out = tmp_path / "run"
    result = _invoke(["pretrain", world / "shards", "--out", out, *TINY_PRETRAIN,
                      "--batch-size", "2"])  # fmt: skip
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("epoch 1/1: ")]
    assert len(lines) == 2, result.output
    for line, done in zip(lines, ("2/4 obj (50 %)", "4/4 obj (100 %)"), strict=True):
        assert line.startswith(f"epoch 1/1: {done}, ")
        assert " obj/s, loss " in line and ", eta " in line


def test_a_plain_progress_line_says_what_is_known() -> None:
    known = console._PlainProgress("render", 40, "obj")
    assert known.line(12, 1, None, 5.0) == "render: 12/40 obj (30 %), 2.4 obj/s, 1 failed, eta 12 s"
    unknown = console._PlainProgress("epoch 3/9", None, "obj")
    assert unknown.line(96, 0, "loss 4.1234", 2.0) == "epoch 3/9: 96 obj, 48.0 obj/s, loss 4.1234"
    assert console.duration(3725) == "1 h 02 min" and console.duration(185) == "3 min 05 s"


def test_no_progress_lines_with_xpt_no_progress(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XPT_NO_PROGRESS", "1")
    monkeypatch.setenv("XPT_PROGRESS_SECONDS", "0")
    with console.err.capture() as captured, console.RunProgress("render", 2, "obj") as bar:
        bar.advance()
    assert captured.get() == ""


# ---------------------------------------------------------------- item 7: what runs leave


def test_a_demo_that_cannot_start_leaves_no_empty_out(tmp_path: Path) -> None:
    afile = tmp_path / "afile"
    afile.write_text("")
    out = tmp_path / "demo"
    result = _invoke(["demo", "--fast", "--out", out, "--json", afile / "d.json"])
    assert result.exit_code == 1, result.output
    assert not out.exists()


def test_demo_keeps_a_benchmark_that_still_holds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """demo.json made from this best.pt with these settings is kept (the stage takes minutes);
    another best.pt or other settings benchmark again."""
    from xpt.benchmarks.features import file_sha256
    from xpt.toolkit import demo

    config = demo.DemoConfig.fast(tmp_path / "demo")
    config.run.mkdir(parents=True)
    (config.run / "best.pt").write_bytes(b"weights")
    earlier = {
        "checkpoint_sha256": file_sha256(config.run / "best.pt"),
        "settings": json.loads(json.dumps(config.settings())),
        "checkpoint_label": "best.pt (step 2)",
    }
    (config.out / "demo.json").write_text(json.dumps(earlier))
    (config.out / "benchmark.json").write_text("{}")
    monkeypatch.setattr(demo, "_benchmark", lambda *a: pytest.fail("benchmarked again"))
    with console.out.capture() as captured:
        assert demo.benchmark_stage(config) == earlier
    said = " ".join(captured.get().split())
    assert f"kept {config.out / 'demo.json'}: {config.run / 'best.pt'} and the settings" in said
    assert demo.kept_summary(demo.DemoConfig.fast(config.out, seed=1)) is None
    (config.run / "best.pt").write_bytes(b"other weights")
    assert demo.kept_summary(config) is None
