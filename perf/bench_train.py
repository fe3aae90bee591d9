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

Run: ``.venv/bin/python perf/bench_train.py [--configs demo paper] [--steps 3]``; the data
paths alone, at the paper's settings, with equal augmentation work on both sides:
``.venv/bin/python perf/bench_train.py --loader 0 2 [--objects 196]``
"""

from __future__ import annotations

import argparse
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
VIEW_SIZE = {"demo": 64, "paper": 137}  # the paper's renders (ShapeNetRendering) are 137 px


def _write_data(root: Path, objects: int, view_size: int) -> None:
    """The same synthetic objects twice (:func:`xpt.benchmarks.speed.write_objects`): as 2
    shards with a manifest (``root/shards``) and as loose files in the ShapeNetRendering
    layout with a PLY cloud (``root/files``); each cloud also as ``points.npy`` for the
    per-item loose-file baseline."""
    import numpy as np

    from xpt.benchmarks.speed import write_objects

    write_objects(root, objects, view_size)
    for folder in (root / "files").iterdir():
        np.save(folder / "points.npy", _read_ply(folder / "points.ply"))


def _compute_rate(config, batch, steps: int) -> float:
    """Objects/s of augment + forward + backward + step on one in-memory batch."""
    import torch

    from xpt.train.crosspoint import augment_generator, build_models, compute_loss

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
    from xpt.train.data import LoaderConfig, resolve_shards, time_loader

    loader_config = LoaderConfig(
        batch_size=config.batch_size,
        points=config.points,
        image_size=config.image_size,
        workers=config.workers,
        samples_per_epoch=passes * resolve_shards(shards).samples,
    )
    return time_loader(shards, loader_config)["samples_per_s"]


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


def _read_ply(path: Path):
    import numpy as np

    data = path.read_bytes()
    end = data.index(b"end_header\n") + len(b"end_header\n")
    return np.frombuffer(data[end:], dtype="<f4").reshape(-1, 3)


class ReleaseStyleItems:
    """The release's ``ShapeNetRender`` re-created, with equal augmentation work: per item,
    glob the object's renders and open one (PIL), read the PLY cloud, subsample it, then
    per-sample augmentations: two point augmentations (xpt's, on one cloud) and the
    torchvision image transform (Resize, ColorJitter(0.4, 0.4, 0.4) via PIL's ImageEnhance
    in a random order as torchvision does for PIL images, RandomHorizontalFlip, ToTensor,
    Normalize). A map-style dataset for a DataLoader (batch 20, shuffled)."""

    def __init__(self, files: Path, points: int, image_size: int, seed: int = 0):
        self.folders = sorted(files.iterdir())
        self.points, self.image_size, self.seed = points, image_size, seed

    def __len__(self) -> int:
        return len(self.folders)

    def __getitem__(self, index: int):
        import numpy as np
        import torch
        from PIL import Image, ImageEnhance

        from xpt.train.augment import IMAGENET_MEAN, IMAGENET_STD, augment_points

        rng = np.random.default_rng((self.seed, index))
        folder = self.folders[index]
        views = sorted((folder / "rendering").glob("*.png"))
        image = Image.open(views[int(rng.integers(len(views)))]).convert("RGB")
        image = image.resize((self.image_size,) * 2, Image.BILINEAR)
        enhancers = (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color)
        for op in rng.permutation(3):
            image = enhancers[op](image).enhance(float(rng.uniform(0.6, 1.4)))
        if rng.random() < 0.5:
            image = image.transpose(Image.FLIP_LEFT_RIGHT)
        x = torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1).float() / 255
        mean, std = torch.tensor(IMAGENET_MEAN), torch.tensor(IMAGENET_STD)
        x = (x - mean.view(3, 1, 1)) / std.view(3, 1, 1)
        cloud = _read_ply(folder / "points.ply")
        cloud = torch.from_numpy(cloud[rng.choice(len(cloud), self.points, replace=False)])
        g = torch.Generator().manual_seed(int(rng.integers(2**31)))
        return augment_points(cloud[None], g)[0], augment_points(cloud[None], g)[0], x


def _release_rate(files: Path, points: int, image_size: int, batch: int, workers: int) -> float:
    """Objects/s of the release-style per-item loader (with augmentation) in batches."""
    import torch
    from torch.utils.data import DataLoader

    items = ReleaseStyleItems(files, points, image_size)
    loader = DataLoader(
        items,
        batch_size=batch,
        shuffle=True,
        num_workers=workers,
        drop_last=True,
        generator=torch.Generator().manual_seed(0),
    )
    start = time.perf_counter()
    count = sum(len(b[0]) for b in loader)
    return count / (time.perf_counter() - start)


def loader_comparison(objects: int, workers: list[int], passes: int = 2) -> None:
    """Data path at the paper's settings (batch 20, 2048 points, 224 px, views stored at
    137 px), all in one run on the same objects: xpt's loader delivering augmented batches
    (``LoaderConfig.augment``) and raw ones, the release-style per-item loader with equal
    augmentation, and the plain per-item loose-file baseline (no augmentation)."""
    from xpt.train.data import LoaderConfig, time_loader

    batch, points, size = 20, 2048, 224
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        _write_data(root, objects, VIEW_SIZE["paper"])
        config = argparse.Namespace(image_size=size, points=points)
        loose = _baseline_rate(config, root / "files", passes)
        print(f"per-item loose files, no augmentation, main process: {loose:7.1f} obj/s")
        for w in workers:
            release = _release_rate(root / "files", points, size, batch, w)
            rates = {}
            for augment in (True, False):
                figures = time_loader(
                    root / "shards",
                    LoaderConfig(
                        batch,
                        points,
                        size,
                        workers=w,
                        augment=augment,
                        samples_per_epoch=passes * objects,
                    ),
                )
                rates[augment] = figures["samples_per_s"]
                first = figures["first_batch_s"]
            print(
                f"{w} worker(s): release-style (augmented) {release:7.1f} obj/s | xpt augmented "
                f"{rates[True]:7.1f} obj/s ({rates[True] / release:.2f} x release-style, "
                f"{rates[True] / loose:.2f} x loose files) | xpt raw {rates[False]:7.1f} obj/s "
                f"({rates[False] / loose:.2f} x loose files; first batch {first:.2f} s)"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--steps", type=int, default=3, help="timed steps per measurement")
    parser.add_argument("--workers", type=int, default=1, help="DataLoader workers")
    parser.add_argument(
        "--loader",
        nargs="*",
        type=int,
        metavar="WORKERS",
        help="only compare the data paths (paper settings), for these worker counts",
    )
    parser.add_argument("--objects", type=int, default=196, help="objects for --loader")
    args = parser.parse_args()
    if args.loader is not None:
        loader_comparison(args.objects, args.loader or [0, 2])
        return

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
