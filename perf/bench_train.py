"""Training throughput of ``xpt pretrain`` on CPU, in objects (samples) per second.

For each configuration (``demo``: a small CPU model; ``paper``: DGCNN k=15, 2048 points,
batch 20, ResNet-50 at 224 px) it times, in one process, on the same synthetic shards:

1. compute alone: augment + forward + backward + Adam step on one batch held in memory;
2. ``pretrain()``: the whole loop reading the shards (data pipeline in DataLoader
   workers, metrics, checkpoints), from the per-step rates in ``metrics.jsonl``;
3. data alone: the streaming loader (``ShardLoader``) with the same workers;
4. baseline data: a reference-style per-item loader (glob the object's PNGs, pick one,
   PIL open + convert + resize, ``np.load`` the points), as the release's
   ``ShapeNetRender`` does, in the main process.

Step rates are the best of the timed steps (the first, warm-up step left out): on a
shared machine the minimum time is the least noisy. (2) / (1) is the share of compute
speed the full loop keeps (1.0 = data loading is hidden); (3) / (4) compares the two
data paths.

Run: ``.venv/bin/python perf/bench_train.py [--configs demo paper] [--steps 3]``
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import tempfile
import time
from pathlib import Path

os.environ.setdefault("XPT_NO_PROGRESS", "1")

CONFIGS = {
    "demo": dict(
        backbone="dgcnn",
        image_encoder="resnet18",
        batch_size=16,
        points=256,
        k=8,
        emb_dims=128,
        image_size=32,
    ),
    "paper": dict(
        backbone="dgcnn",
        image_encoder="resnet50",
        batch_size=20,
        points=2048,
        k=15,
        emb_dims=1024,
        image_size=224,
    ),
}
STORED_POINTS = 2048
VIEWS = 24  # as the default render rig (and ShapeNetRendering)
VIEW_SIZE = {"demo": 64, "paper": 137}  # the paper's renders (ShapeNetRendering) are 137 px


def _write_data(root: Path, objects: int, view_size: int, seed: int = 0) -> None:
    """The same synthetic objects twice: as 2 shards with a manifest (``root/shards``) and
    as loose files in the ShapeNetRendering layout (``root/files``) for the baseline."""
    import numpy as np
    import webdataset as wds
    from PIL import Image

    rng = np.random.default_rng(seed)
    shards, files = root / "shards", root / "files"
    shards.mkdir(parents=True)
    per_shard = (objects + 1) // 2
    entries = []
    for index in range(2):
        name = f"train-{index:06d}.tar"
        count = min(per_shard, objects - index * per_shard)
        with wds.TarWriter(str(shards / name), mtime=0) as sink:  # plain headers, as xpt shard
            for i in range(count):
                key = f"bench_c{index}_m{i:05d}"
                points = rng.normal(size=(STORED_POINTS, 3)).astype(np.float32)
                points /= np.linalg.norm(points, axis=1, keepdims=True) * rng.uniform(1, 2, 3)
                sample = {"__key__": key}
                buffer = io.BytesIO()
                np.save(buffer, points)
                sample["points.npy"] = buffer.getvalue()
                sample["json"] = json.dumps({"model_id": key, "num_views": VIEWS}).encode()
                folder = files / key / "rendering"
                folder.mkdir(parents=True)
                np.save(files / key / "points.npy", points)
                yy, xx = np.mgrid[0:view_size, 0:view_size]
                for v in range(VIEWS):  # smooth shaded blobs: compress like real renders
                    shade = np.clip(255 - ((xx - 40 - v) ** 2 + (yy - 50) ** 2) // 8, 0, 255)
                    image = np.stack([shade, shade * 0.8, shade * 0.5], -1).astype(np.uint8)
                    buffer = io.BytesIO()
                    Image.fromarray(image).save(buffer, format="PNG")
                    sample[f"view_{v:02d}.png"] = buffer.getvalue()
                    (folder / f"{v:02d}.png").write_bytes(buffer.getvalue())
                sink.write(sample)
        size = (shards / name).stat().st_size
        entries.append({"name": name, "samples": count, "bytes": size, "sha256": ""})
    manifest = {
        "format_version": 1,
        "splits": {"train": {"samples": objects, "shards": entries}},
        "categories": {},
        "settings": {},
    }
    (shards / "manifest.json").write_text(json.dumps(manifest))


def _compute_rate(config, batch, steps: int) -> float:
    """Objects/s of augment + forward + backward + step on one in-memory batch."""
    import torch

    from xpt.train.loop import augment_generator, build_models, compute_loss

    point, image = build_models(config)
    params = [*point.parameters(), *image.parameters()]
    optimizer = torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    generator = augment_generator(config)
    times = []
    for _ in range(steps + 1):
        start = time.perf_counter()
        loss = compute_loss(point, image, batch, generator, config)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - start)
    return len(batch) / min(times[1:])


def _loop_rate(config, shards: Path, run: Path) -> float:
    """Best per-step objects/s of ``pretrain()`` (the first step left out)."""
    from xpt.train.loop import pretrain

    pretrain(config, shards, run)
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return max(row["samples_per_s"] for row in rows[1:])


def _data_rate(config, shards: Path, passes: int = 10) -> float:
    """Objects/s of the streaming loader over ``passes`` rounds of the shards (one epoch)."""
    from xpt.train.data import LoaderConfig, ShardLoader, resolve_shards

    shard_set = resolve_shards(shards)
    loader = ShardLoader(
        shard_set,
        LoaderConfig(
            batch_size=config.batch_size,
            points=config.points,
            image_size=config.image_size,
            workers=config.workers,
            samples_per_epoch=passes * shard_set.samples,
        ),
    )
    start = time.perf_counter()
    samples = sum(len(batch) for batch in loader.epoch(0))
    return samples / (time.perf_counter() - start)


def _baseline_rate(config, files: Path, passes: int = 10) -> float:
    """A per-item loader in the style of the release's ShapeNetRender (main process)."""
    import numpy as np
    from PIL import Image

    rng = random.Random(0)
    start = time.perf_counter()
    count = 0
    for folder in sorted(files.iterdir()) * passes:
        view = rng.choice(sorted((folder / "rendering").glob("*.png")))
        image = Image.open(view).convert("RGB").resize((config.image_size,) * 2, Image.BILINEAR)
        np.asarray(image)
        points = np.load(folder / "points.npy")
        points[rng.sample(range(len(points)), config.points)]
        count += 1
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--steps", type=int, default=3, help="timed steps per measurement")
    parser.add_argument("--workers", type=int, default=1, help="DataLoader workers")
    args = parser.parse_args()

    import torch

    from xpt.train.config import PretrainConfig
    from xpt.train.data import LoaderConfig, ShardLoader, resolve_shards

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU, ", end="")
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    for name in args.configs:
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            base = CONFIGS[name]
            objects = base["batch_size"] * (args.steps + 2)
            _write_data(root, objects, VIEW_SIZE[name])
            config = PretrainConfig(
                **base,
                epochs=1,
                workers=args.workers,
                max_steps=args.steps + 1,
                shuffle_buffer=64,
                lr_schedule="epoch",
                device="cpu",
            )
            sample_loader = ShardLoader(
                resolve_shards(root / "shards"),
                LoaderConfig(config.batch_size, config.points, config.image_size),
            )
            batch = next(iter(sample_loader.epoch(0)))
            compute = _compute_rate(config, batch, args.steps)
            loop = _loop_rate(config, root / "shards", root / "run")
            data = _data_rate(config, root / "shards")
            baseline = _baseline_rate(config, root / "files")
        print(
            f"{name}: {json.dumps({k: base[k] for k in sorted(base)})}\n"
            f"  compute alone      {compute:8.2f} obj/s\n"
            f"  pretrain() loop    {loop:8.2f} obj/s   ({loop / compute:.2f} x compute)\n"
            f"  data alone         {data:8.1f} obj/s   ({args.workers} worker(s))\n"
            f"  baseline data      {baseline:8.1f} obj/s   ({data / baseline:.2f} x faster)"
        )


if __name__ == "__main__":
    main()
