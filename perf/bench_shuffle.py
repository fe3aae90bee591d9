"""The cost of ``--shuffle full`` (a fresh permutation of every sample, read by position)
against ``--shuffle buffer`` (shard order + a 1000-sample buffer), in one process.

    .venv/bin/python perf/bench_shuffle.py --objects 400 --workers 0 2

Both read the same synthetic shards (``xpt.benchmarks.speed.write_objects``: 2 shards,
24 views of 137 px and 2048 points per object) into batches of 20 at the paper's sizes,
without augmentation (what a GPU run's loader delivers); the two modes alternate and the
median of the repeats is reported, with the time to index the shards (once per run).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from xpt.benchmarks.speed import write_objects
from xpt.train.data import LoaderConfig, ShardLoader, resolve_shards, time_loader


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--objects", type=int, default=400)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_objects(root, args.objects, view_size=137)
        shards = root / "shards"
        start = time.perf_counter()
        index = ShardLoader(
            resolve_shards(shards), LoaderConfig(20, 2048, 224, shuffle="full")
        ).index
        index_s = time.perf_counter() - start
        print(f"index: {len(index)} samples in {index_s * 1000:.1f} ms")
        print("workers | buffer obj/s | full obj/s | full / buffer | first batch buffer / full s")
        for workers in args.workers:
            rates: dict[str, list[float]] = {"buffer": [], "full": []}
            first: dict[str, list[float]] = {"buffer": [], "full": []}
            for repeat in range(args.repeats):
                for mode in ("buffer", "full"):
                    config = LoaderConfig(20, 2048, 224, shuffle=mode, workers=workers)
                    timing = time_loader(shards, config, epoch=repeat)
                    rates[mode].append(timing["samples_per_s"])
                    first[mode].append(timing["first_batch_s"])
            buffer, full = (statistics.median(rates[m]) for m in ("buffer", "full"))
            print(
                f"{workers} | {buffer:.1f} | {full:.1f} | {full / buffer:.2f}x | "
                f"{statistics.median(first['buffer']):.2f} / {statistics.median(first['full']):.2f}"
            )


if __name__ == "__main__":
    main()
