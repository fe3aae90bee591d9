"""docs/REPRODUCE.md cannot rot: its toy recipe runs end to end, and every other command it
shows parses against the CLI as it is."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest
import torch
import typer
from typer.testing import CliRunner

from xpt.toolkit.cli import app
from xpt.toolkit.shards.manifest import read_manifest

DOC = Path(__file__).resolve().parents[1] / "docs" / "REPRODUCE.md"


def _toy_recipe() -> list[list[str]]:
    block = re.search(r"```toy-recipe\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
    assert block, "docs/REPRODUCE.md has no toy-recipe block"
    return [shlex.split(line) for line in block[1].splitlines() if line.strip()]


def _shown_commands() -> list[list[str]]:
    """The `xpt ...` commands of the page's indented code blocks (continuations joined)."""
    text = DOC.read_text(encoding="utf-8").replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines() if line.startswith("    xpt ")]
    return [shlex.split(line) for line in lines]


def test_every_command_on_the_page_parses() -> None:
    commands = _shown_commands()
    assert len(commands) >= 10
    group = typer.main.get_command(app)
    for words in commands:
        assert words[0] == "xpt"
        command = group.commands[words[1]]  # type: ignore[attr-defined]
        try:  # parses the options and their values, runs nothing
            command.make_context(words[1], words[2:], resilient_parsing=False)
        except Exception as exc:  # typer's bundled click: UsageError, BadParameter
            pytest.fail(f"{' '.join(words)}: {exc}")


def test_the_toy_recipe_runs_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XPT_CACHE", str(tmp_path / "cache"))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for words in _toy_recipe():
            assert words[0] == "xpt"
            result = CliRunner().invoke(app, words[1:])
            assert result.exit_code == 0, f"{' '.join(words)}\n{result.output}"
    finally:
        torch.set_num_threads(threads)
    toy = tmp_path / "toy"

    splits = read_manifest(toy / "shards")["splits"]
    assert splits["train"]["samples"] == 28  # 14 categories x 2, every object in train
    assert not splits.get("val", {}).get("samples")

    paper = json.loads((toy / "runs/paper-s0/config.json").read_text())
    release = json.loads((toy / "runs/release-s0/config.json").read_text())
    assert paper["preset"] is None and release["preset"] == "release"
    assert (paper["lr_schedule"], release["lr_schedule"]) == ("epoch", "release")
    assert (paper["probe_split"], release["probe_split"]) == ("val", "test")
    assert (paper["shuffle"], release["shuffle"]) == ("auto", "full")
    chosen = {
        name: torch.load(toy / f"runs/{name}/best.pt", weights_only=True)["selection"]
        for name in ("paper-s0", "release-s0")
    }
    assert chosen["paper-s0"]["split"] == "val" and chosen["paper-s0"]["protocol"] == "xpt"
    assert chosen["release-s0"]["split"] == "test"
    assert chosen["release-s0"]["protocol"] == "crosspoint"

    ours = json.loads((toy / "paper-s0-xpt.json").read_text())
    replayed = json.loads((toy / "release-s0-crosspoint.json").read_text())
    assert ours["protocol"]["name"] == "xpt" and ours["seeds"] == [0, 1]
    assert ours["protocol"]["linear"]["points"] == {"count": 128, "resample": "first"}
    assert replayed["protocol"]["name"] == "crosspoint" and replayed["protocol"]["release"]
    assert replayed["protocol"]["linear"]["c"] == 0.1
    assert any("selected on a test split" in note for note in replayed["notes"])
    assert not any("selected on a test split" in note for note in ours["notes"])
