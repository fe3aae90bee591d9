"""``xpt pretrain`` from its options: the settings resolved into a :class:`PretrainConfig`,
the preset line, and the run started and reported.

Priority, lowest first: the paper's defaults (or, with --resume, the run's config.json less
its max_steps), the preset (--replay-release), the --config TOML file, the options given.
"""

from __future__ import annotations

from dataclasses import replace
from enum import Enum
from pathlib import Path
from typing import Any

from xpt.train.config import CONFIG_FILE, PRESETS, PretrainConfig, load_config, resolve_config


def config_from_options(
    options: dict[str, Any],
    *,
    out: Path,
    config_file: Path | None = None,
    replay_release: bool = False,
    resume: bool = False,
) -> PretrainConfig:
    """The run's settings from the command's ``options`` (config field -> value, None where
    not given; Enum members and paths taken as their plain values)."""
    overrides = {name: _plain(value) for name, value in options.items()}
    base = PretrainConfig()
    if resume and (out / CONFIG_FILE).exists():
        base = replace(load_config(out / CONFIG_FILE), max_steps=None)
    preset = "release" if replay_release else None
    return resolve_config(base, config_file, overrides, preset)


def _plain(value: Any) -> Any:
    if isinstance(value, Enum):
        return value.value
    return str(value) if isinstance(value, Path) else value


def print_preset(config: PretrainConfig) -> None:
    """One line naming the preset's settings as the run resolved them (an option given
    after the preset shows its own value), and what the preset cannot set here."""
    from xpt.toolkit.console import err

    values = ", ".join(f"{name} {getattr(config, name)}" for name in PRESETS[config.preset])
    missing = (
        "; no --probe, so no best.pt (the release keeps the epoch with the best ModelNet40 "
        "test accuracy: add --probe modelnet40 --probe-data DIR)"
        if config.probe is None
        else ""
    )
    err.print(
        f"replaying the published code (--replay-release): {values}{missing}",
        highlight=False,
        soft_wrap=True,
    )


def pretrain_from_options(
    shards: list[str],
    out: Path,
    options: dict[str, Any],
    *,
    config_file: Path | None = None,
    replay_release: bool = False,
    resume: bool = False,
    resume_auto: bool = False,
    json_path: str | None = None,
) -> None:
    """Resolve the settings, print the preset line, pretrain into ``out`` and print (and with
    ``json_path`` write) the summary; user errors exit 1 in one line, a stop signal with its
    status. Under torchrun rank 0 alone probes and reports, other ranks prefix their errors."""
    import typer

    from xpt.benchmarks.datasets import DatasetError
    from xpt.benchmarks.probe import build_probe
    from xpt.toolkit.console import err, error_exit, print_table, write_json_report
    from xpt.toolkit.fsio import check_writable, make_folder, removed_if_left_empty
    from xpt.toolkit.interrupts import Interrupted
    from xpt.train.checkpoint import CheckpointError
    from xpt.train.data import ShardSpecError
    from xpt.train.distributed import DistributedError, environment
    from xpt.train.errors import TrainingError
    from xpt.train.loop import pretrain as run_pretrain

    main, who = True, ""
    try:
        env = environment()
        main, who = env.is_main, f"rank {env.rank}: " if env.active else ""
        config = config_from_options(
            options,
            out=out,
            config_file=config_file,
            replay_release=replay_release,
            resume=resume or resume_auto,
        )
        if main and config.preset is not None:
            print_preset(config)
        with removed_if_left_empty(out):  # a failed start leaves no empty --out
            make_folder(out)  # before any work (the probe set, the models)
            if main:  # rank 0 alone probes and reports
                check_writable(json_path)
            summary = run_pretrain(
                config,
                shards,
                out,
                resume="auto" if resume_auto else resume,
                probe=build_probe(config) if main else None,
            )
    except (
        ValueError,
        TrainingError,
        CheckpointError,
        ShardSpecError,
        DatasetError,
        DistributedError,
    ) as error:
        raise error_exit(f"{who}{error}") from error
    except Interrupted as stopped:
        if main:
            err.print(str(stopped), highlight=False)
        raise typer.Exit(code=stopped.exit_code) from None
    if main:
        print_table("xpt pretrain", summary)
        write_json_report(json_path, summary)
