"""``xpt demo``: the whole pipeline on a small procedural set, on CPU, in a few minutes.

Each stage calls the same library code as its own command, on the outputs of the
stage before, so the demo is also an end-to-end check of the data contracts:
synth writes a ShapeNet-v2 tree, render reads it back through the ShapeNet reader,
shard samples points in the frame the renders recorded, pretrain streams the shards
and probes the encoder on the scan set each epoch, benchmark reads best.pt and the scan
set's h5 files and compares them with random initialisations of the same encoder.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from xpt.toolkit.console import out, print_table, stdout_to_stderr, write_json_report
from xpt.toolkit.fsio import atomic_write_json
from xpt.toolkit.locks import folder_lock

if TYPE_CHECKING:
    from xpt.benchmarks.protocols import ProtocolCard
    from xpt.train.config import PretrainConfig

# demo.json's key for each report row (xpt.benchmarks.run.ROWS).
ROWS = {"pretrained": "pretrained", "random init": "random_init", "hand-crafted": "hand_crafted"}


@dataclass(frozen=True)
class DemoConfig:
    """Sizes of the demo run. The budget (1400 objects, 5 epochs: 145 steps at batch 48) is
    the one measured at three seeds (docs/BENCHMARKS.md, "Real shapes") at which, for each,
    the encoder pretrained on the procedural library beats every random initialisation in
    every few-shot setting on real ModelNet10, and is above their mean on both procedural-scan
    variants (beyond every init on 5 of 6), with every encoder's BatchNorm statistics
    re-estimated on the same clouds.
    ``fast()`` is a smoke-test size for CI."""

    out: Path
    per_category: int = 100
    seed: int = 0
    workers: int = 2
    views: int = 6
    render_size: int = 96
    points: int = 1024
    backbone: str = "pointnet"
    emb_dims: int = 1024
    image_size: int = 64
    batch_size: int = 48
    epochs: int = 5
    scan_per_category: int = 100
    fewshot: tuple[int, int] = (5, 10)
    queries: int = 20
    runs: int = 10
    baseline_inits: int = 3
    eval_data: Path | None = None
    eval_format: str | None = None
    eval_up_axis: str = "+Y"

    @classmethod
    def fast(cls, out: Path, seed: int = 0, workers: int = 2) -> DemoConfig:
        """Every stage at toy size (a minute): checks the chain, proves nothing."""
        return cls(
            out,
            per_category=2,
            seed=seed,
            workers=workers,
            views=2,
            render_size=64,
            points=256,
            emb_dims=64,
            image_size=32,
            batch_size=8,
            epochs=1,
            scan_per_category=8,
            fewshot=(3, 2),
            queries=1,
            runs=2,
            baseline_inits=3,
        )

    @property
    def meshes(self) -> Path:
        return self.out / "meshes"

    @property
    def renders(self) -> Path:
        return self.out / "renders"

    @property
    def shards(self) -> Path:
        return self.out / "shards"

    @property
    def scans(self) -> Path:
        return self.out / "eval-scan"

    @property
    def run(self) -> Path:
        return self.out / "pretrain"

    def settings(self) -> dict:
        return {k: str(v) if isinstance(v, Path) else v for k, v in asdict(self).items()}

    def is_fast(self) -> bool:
        """Whether these are :meth:`fast`'s toy sizes (whatever real set is added)."""
        real = {"eval_data": None, "eval_format": None, "eval_up_axis": "+Y"}
        return replace(self, **real) == DemoConfig.fast(self.out, self.seed, self.workers)


def _stage(title: str) -> None:
    out.rule(f"[bold]{title}")


def synth_stage(config: DemoConfig) -> None:
    from xpt.toolkit.synth import SynthConfig, print_summary, synthesize

    _stage(f"1. synth: the procedural library as a ShapeNet-v2 tree → {config.meshes}")
    print_summary(synthesize(SynthConfig(config.meshes, config.per_category, seed=config.seed)))


def render_stage(config: DemoConfig) -> None:
    from xpt.render.config import RenderConfig
    from xpt.render.pool import run_render

    preview = config.out / "renders-preview.png"
    _stage(
        f"2. render: {config.views} views per object, {config.render_size} px (3D-R2N2 cameras) "
        f"→ {config.renders}"
    )
    summary = run_render(
        config.meshes,
        config.renders,
        RenderConfig(seed=config.seed, views=config.views, size=config.render_size),
        workers=config.workers,
        preview=preview,
    )
    rows = {k: v for k, v in summary.to_json().items() if k != "failures"}
    print_table("xpt render", {**rows, "preview": str(preview)})


def shard_stage(config: DemoConfig) -> None:
    from xpt.toolkit.shards.build import ShardConfig, run_shard
    from xpt.toolkit.shards.inspect import category_rows, summarize, write_preview

    preview = config.out / "shards-preview.png"
    _stage(f"3. shard: {config.points} points + the views per object → {config.shards}")
    shard_config = ShardConfig(
        out=config.shards,
        source=str(config.meshes),
        renders=config.renders,
        num_points=config.points,
        seed=config.seed,
        workers=config.workers,
    )
    print_table("xpt shard", run_shard(shard_config).summary())
    print_table("xpt inspect", summarize(config.shards))
    print_table("categories", category_rows(config.shards))
    write_preview(config.shards, preview)
    out.print(f"views next to their point clouds: {preview}", markup=False)


def scan_stage(config: DemoConfig) -> None:
    """The evaluation set: partial, cluttered scans of unseen procedural objects."""
    from xpt.benchmarks.datasets import SCAN_VARIANTS
    from xpt.benchmarks.scanset import write_scan_preview, write_scan_set
    from xpt.toolkit.evalset import RECORD

    _stage(
        f"4. eval set: procedural-scan, {config.scan_per_category} unseen objects per category "
        f"scanned from one depth view, on a floor among clutter → {config.scans}"
    )
    if not all((config.scans / v / RECORD).exists() for v in SCAN_VARIANTS):
        counts = write_scan_set(config.scans, config.scan_per_category, config.seed)
        print_table("procedural-scan", [{"variant": v, **c} for v, c in counts.items()])
    else:
        out.print(f"already written: {config.scans}", markup=False)
    preview = write_scan_preview(config.scans, config.out / "scan-preview.png")
    out.print(f"scans per category (upright, then one rotated): {preview}", markup=False)


def pretrain_config(config: DemoConfig) -> PretrainConfig:
    """The paper's method, loss and optimiser at CPU-demo sizes (PointNet, 1024 points, a
    light image encoder at a small image size, 5 epochs), with the per-epoch probe on the
    scan set's validation split. Batch 48 instead of the paper's 20: at the same number of
    objects seen, more in-batch negatives per step measured a little better. The
    cosine schedule starts each epoch at its own value ("epoch"): the release's steps it
    first, which over a few epochs trains the last one at a learning rate of 0. Everything else
    keeps the paper's defaults."""
    from xpt.train.config import PretrainConfig

    return PretrainConfig(
        backbone=config.backbone,
        image_encoder="resnet18",
        epochs=config.epochs,
        batch_size=config.batch_size,
        points=config.points,
        emb_dims=config.emb_dims,
        image_size=config.image_size,
        lr_schedule="epoch",
        device="cpu",
        workers=0,
        seed=config.seed,
        shuffle_buffer=64,
        checkpoint_every_epochs=config.epochs,
        log_every_steps=10,
        probe="procedural-scan",
        probe_data=str(config.scans),
        probe_points=config.points,
    )


def epoch_losses(run: Path) -> list[dict]:
    """Mean loss, IMID and CMID per epoch from ``metrics.jsonl``, with the epoch's probe
    accuracy (percent) when it was probed."""
    sums: dict[int, dict[str, float]] = {}
    probes: dict[int, float] = {}
    for line in (run / "metrics.jsonl").read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        if "probe_accuracy" in row:
            probes[row["epoch"]] = 100 * row["probe_accuracy"]
            continue
        acc = sums.setdefault(row["epoch"], {"steps": 0, "loss": 0.0, "imid": 0.0, "cmid": 0.0})
        acc["steps"] += 1
        for name in ("loss", "imid", "cmid"):
            acc[name] += row[name]
    return [
        {
            "epoch": epoch,
            **{k: acc[k] / acc["steps"] for k in ("loss", "imid", "cmid")},
            "probe_acc_pct": probes.get(epoch),
        }
        for epoch, acc in sorted(sums.items())
    ]


def pretrain_stage(config: DemoConfig) -> None:
    from xpt.benchmarks.probe import build_probe
    from xpt.toolkit.memory import retain_freed_memory
    from xpt.train.loop import pretrain

    train = pretrain_config(config)
    _stage(
        f"5. pretrain: CrossPoint, {train.backbone} + ResNet-18, {train.epochs} epochs on CPU, "
        f"linear probe each epoch → {config.run}"
    )
    if not (config.run / "last.pt").exists():
        with retain_freed_memory():  # 1.5x the steps/s of a small PointNet (PERFORMANCE.md)
            summary = pretrain(train, config.shards, config.run, probe=build_probe(train))
        print_table("xpt pretrain", summary)
    rows = epoch_losses(config.run)
    print_table("loss per epoch (IMID + CMID) and probe accuracy (val split)", rows)
    first, last = rows[0]["loss"], rows[-1]["loss"]
    out.print(
        f"loss {first:.3f} → {last:.3f} over {len(rows)} epochs; checkpoints in {config.run}",
        markup=False,
    )


def benchmark_stage(config: DemoConfig) -> dict:
    """``xpt benchmark`` of best.pt against random init on procedural-scan, and on the
    user's real set when there is one; returns demo.json."""
    from xpt.benchmarks.protocols import PointsSpec, protocol_card

    checkpoint = config.run / "best.pt"
    real = f" and {config.eval_data}" if config.eval_data is not None else ""
    _stage(
        f"6. benchmark: {checkpoint.name} vs random init x{config.baseline_inits} on "
        f"procedural-scan (upright and rotated){real}, protocol xpt"
    )
    kept = kept_summary(config)
    if kept is not None:
        out.print(
            f"kept {config.out / 'demo.json'}: {checkpoint} and the settings are those it "
            "was made with (remove it to benchmark again)",
            markup=False,
        )
        return kept
    card = protocol_card(
        "xpt",
        points=PointsSpec(config.points),
        settings=(config.fewshot,),
        queries=config.queries,
        runs=config.runs,
    )
    reports = [_benchmark(config, card, "procedural-scan", config.scans, "benchmark")]
    if config.eval_data is not None:
        from xpt.benchmarks.pointsets import modelnet_name

        name = modelnet_name(config.eval_data, config.eval_format)
        reports.append(_benchmark(config, card, name, config.eval_data, "benchmark-real"))
    return demo_summary(reports, config)


def kept_summary(config: DemoConfig) -> dict | None:
    """An earlier ``demo.json`` that still holds, else None: its checkpoint's sha256 is the
    current best.pt's, its settings are ``config``'s and its benchmark reports are there
    (the benchmark stage is the demo's longest to redo)."""
    from xpt.benchmarks.features import file_sha256

    stems = ["benchmark"] + (["benchmark-real"] if config.eval_data is not None else [])
    settings = json.loads(json.dumps(config.settings()))  # as JSON holds them (lists)
    try:
        summary = json.loads((config.out / "demo.json").read_text(encoding="utf-8"))
        sha = file_sha256(config.run / "best.pt")
        same = summary["checkpoint_sha256"] == sha and summary["settings"] == settings
    except (OSError, ValueError, KeyError, TypeError):
        return None
    reports = all((config.out / f"{stem}.json").is_file() for stem in stems)
    return summary if same and reports else None


def _benchmark(config: DemoConfig, card: ProtocolCard, dataset: str, data: Path, stem: str) -> dict:
    """One ``xpt benchmark`` of best.pt: printed, written to ``<stem>.json`` and
    ``<stem>-*.png``; returns its JSON report."""
    from xpt.benchmarks.report import print_report, report_json, write_plots
    from xpt.benchmarks.run import BenchmarkConfig, run_benchmark

    real = dataset != "procedural-scan"
    report = run_benchmark(
        BenchmarkConfig(
            checkpoint=config.run / "best.pt",
            dataset=dataset,
            data=data,
            data_format=config.eval_format if real else None,
            up_axis=config.eval_up_axis if real else None,
            protocol=card,
            seeds=(config.seed,),
            baseline_inits=config.baseline_inits,
            cache=config.out / "cache",
        )
    )
    print_report(report)
    full = report_json(report)
    atomic_write_json(config.out / f"{stem}.json", full)
    plots = write_plots(config.out / f"{stem}.png", report)
    out.print("pictures: " + ", ".join(str(p) for p in plots), markup=False)
    return full


def demo_summary(reports: list[dict], config: DemoConfig) -> dict:
    """``demo.json``: pretrained vs random init per evaluation set (procedural-scan's
    variants, then the real set's name), and whether the margin holds (pretrained above
    every random-init run and by more than random init's std)."""
    result: dict = {key: {} for key in ROWS.values()}
    result["margin"] = {}
    for entry in (entry for report in reports for entry in report["datasets"]):
        variant = entry["dataset"]["variant"] or entry["dataset"]["name"]
        for row in entry["rows"]:
            target = result[ROWS[row["encoder"]]]
            linear = row["linear"]["accuracy"]
            target.setdefault("linear_accuracy", {})[variant] = linear["mean"]
            target.setdefault("linear_accuracy_std", {})[variant] = linear["std"]
            target.setdefault("linear_runs", {})[variant] = linear["runs"]
            target.setdefault("fewshot", {})[variant] = {
                name: {"mean": f["mean"], "std": f["std"]} for name, f in row["fewshot"].items()
            }
        ours = result["pretrained"]["linear_accuracy"][variant]
        runs = result["random_init"]["linear_runs"][variant]
        std = result["random_init"]["linear_accuracy_std"][variant]
        margin = ours - sum(runs) / len(runs)
        result["margin"][variant] = {
            "points": 100 * margin,
            "random_init_std_points": 100 * std,
            "pretrained_beats_random_init": bool(ours > max(runs) and margin > std),
        }
    result["protocol"] = reports[0]["protocol"]["name"]
    result["checkpoint_sha256"] = reports[0]["checkpoint_sha256"]
    result["checkpoint_label"] = reports[0]["encoder"]["label"]
    result["settings"] = config.settings()
    return result


def verdict_rows(summary: dict) -> list[dict]:
    """The demo's last table: linear accuracy per variant, pretrained vs the baselines."""
    rows = []
    for variant, margin in summary["margin"].items():
        accuracy = {key: summary[key]["linear_accuracy"][variant] for key in ROWS.values()}
        rows.append(
            {
                "eval_set": variant,
                "pretrained_pct": f"{100 * accuracy['pretrained']:.1f}",
                "random_init_pct": (
                    f"{100 * accuracy['random_init']:.1f} ± {margin['random_init_std_points']:.1f}"
                ),
                "hand_crafted_pct": f"{100 * accuracy['hand_crafted']:.1f}",
                "margin": f"{margin['points']:+.1f}",
                "beats": "yes" if margin["pretrained_beats_random_init"] else "no",
            }
        )
    return rows


def run_demo(config: DemoConfig, json_path: Path | str | None = None) -> dict:
    """Run every stage in turn under ``config.out``; finished stages resume instantly.
    Writes ``OUT/demo.json`` (and ``json_path`` when given; ``-``: stdout, with the tables
    on stderr) and returns it. A second demo into ``config.out`` meanwhile is refused."""
    with (
        folder_lock(config.out, "xpt demo"),
        stdout_to_stderr(json_path is not None and str(json_path) == "-"),
    ):
        summary = _run_stages(config)
    write_json_report(json_path, summary)
    return summary


def _run_stages(config: DemoConfig) -> dict:
    seconds = {}
    for stage in (synth_stage, render_stage, shard_stage, scan_stage, pretrain_stage):
        started = time.perf_counter()
        stage(config)
        seconds[stage.__name__.removesuffix("_stage")] = time.perf_counter() - started
    started = time.perf_counter()
    summary = benchmark_stage(config)
    seconds["benchmark"] = time.perf_counter() - started
    summary["seconds"] = seconds
    atomic_write_json(config.out / "demo.json", summary)
    print_table("seconds per stage", [{k: f"{v:.0f}" for k, v in seconds.items()}])
    inits = config.baseline_inits
    sets = "procedural-scan" + (", real set" if config.eval_data is not None else "")
    print_table(
        f"{sets}, linear SVM (protocol xpt): {summary['checkpoint_label']} vs random init x{inits}",
        verdict_rows(summary),
    )
    if config.is_fast():
        out.print("[yellow]--fast[/yellow]: toy sizes, the comparison proves nothing")
    return summary
