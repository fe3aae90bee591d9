"""Speed of ``xpt benchmark``: the linear protocols, few-shot, and feature extraction.

Times, in one process, on synthetic inputs of the sizes that matter:

1. linear ``xpt`` protocol on ModelNet40-sized features (9843 x 2048 train, 2468 test,
   40 classes; class-structured Gaussian features): ours (C by 5-fold CV over the 7-value
   grid, one Gram matrix per fold shared by every C) against the baseline a user writes
   with scikit-learn, ``GridSearchCV(make_pipeline(StandardScaler(), SVC(kernel="linear")))``
   over the same grid and folds (run on a ``--baseline-fraction`` subsample of the train
   set, then extrapolated quadratically in n, because in full it takes most of an hour);
2. linear ``crosspoint`` protocol: one ``SVC(kernel="linear", C=0.1)`` fit on all 9843;
3. few-shot: the four paper settings x 10 episodes (``xpt`` card) on the same features;
4. feature extraction, objects/s, for PointNet (emb 1024) and DGCNN (k=15, emb 1024) at
   1024 points, batches of 16, against the same encoder fed one cloud at a time.

Run: ``.venv/bin/python perf/bench_benchmark.py [--threads 2] [--skip-baseline]``
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("XPT_NO_PROGRESS", "1")

TRAIN, TEST, DIMS, CLASSES = 9843, 2468, 2048, 40


def _features(seed: int = 0):
    import numpy as np

    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(CLASSES, DIMS)).astype(np.float32)
    train_y = rng.integers(0, CLASSES, TRAIN)
    test_y = rng.integers(0, CLASSES, TEST)
    noise = 4.0  # overlapping classes: about 85 % accuracy, many support vectors
    train_x = centres[train_y] + noise * rng.normal(size=(TRAIN, DIMS)).astype(np.float32)
    test_x = centres[test_y] + noise * rng.normal(size=(TEST, DIMS)).astype(np.float32)
    return train_x, train_y, test_x, test_y


def _timed(fn):
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def bench_linear(skip_baseline: bool, baseline_fraction: float) -> None:
    import numpy as np

    from xpt.benchmarks.linear import evaluate_linear
    from xpt.benchmarks.protocols import CROSSPOINT, XPT

    train_x, train_y, test_x, test_y = _features()
    seconds, result = _timed(
        lambda: evaluate_linear(train_x, train_y, test_x, test_y, XPT.linear, num_classes=CLASSES)
    )
    print(
        f"linear xpt (5-fold CV x {len(XPT.linear.C_grid)} C, then the final fit): "
        f"{seconds:.1f} s, accuracy {100 * result.accuracy:.1f} %, C={result.C:g}"
    )
    if not skip_baseline:
        from sklearn.model_selection import GridSearchCV, StratifiedKFold
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler
        from sklearn.svm import SVC

        n = int(TRAIN * baseline_fraction)
        keep = np.random.default_rng(1).permutation(TRAIN)[:n]
        ours_small, _ = _timed(
            lambda: evaluate_linear(
                train_x[keep], train_y[keep], test_x, test_y, XPT.linear, num_classes=CLASSES
            )
        )
        search = GridSearchCV(
            make_pipeline(StandardScaler(), SVC(kernel="linear")),
            {"svc__C": list(XPT.linear.C_grid)},
            cv=StratifiedKFold(5, shuffle=True, random_state=0),
        )
        base_small, _ = _timed(
            lambda: search.fit(train_x[keep], train_y[keep]).score(test_x, test_y)
        )
        scale = (TRAIN / n) ** 2
        print(
            f"  on {n} train objects: ours {ours_small:.1f} s, GridSearchCV baseline "
            f"{base_small:.1f} s ({base_small / ours_small:.1f}x); baseline on all "
            f"{TRAIN}, extrapolated ~n^2: {base_small * scale / 60:.0f} min"
        )
    seconds, result = _timed(
        lambda: evaluate_linear(
            train_x, train_y, test_x, test_y, CROSSPOINT.linear, num_classes=CLASSES
        )
    )
    print(f"linear crosspoint (one SVC(kernel='linear', C=0.1) fit): {seconds:.1f} s")

    from xpt.benchmarks.fewshot import evaluate_fewshot

    seconds, results = _timed(
        lambda: evaluate_fewshot(train_x, train_y, test_x, test_y, XPT.fewshot, seed=0)
    )
    names = ", ".join(f"{r.name} {r.seconds:.2f} s" for r in results)
    print(f"few-shot, 4 settings x 10 episodes: {seconds:.1f} s ({names})")


def bench_features(objects: int) -> None:
    import numpy as np
    import torch

    from xpt.benchmarks.features import extract_features, random_point_encoder

    points = np.random.default_rng(0).normal(size=(objects, 1024, 3)).astype(np.float32)
    points /= np.linalg.norm(points, axis=2, keepdims=True).max(axis=1, keepdims=True)
    device = torch.device("cpu")
    for backbone in ("pointnet", "dgcnn"):
        model, _ = random_point_encoder(backbone, k=15, emb_dims=1024)
        extract_features(model, points[:16], device=device)  # warm-up
        batched, _ = _timed(
            lambda m=model: extract_features(m, points, batch_size=16, device=device)
        )
        single, _ = _timed(
            lambda m=model: extract_features(m, points[: objects // 4], batch_size=1, device=device)
        )
        rate, base = objects / batched, (objects // 4) / single
        print(
            f"features {backbone} (1024 points, emb 1024): {rate:.1f} objects/s in batches "
            f"of 16, {base:.1f} one at a time ({rate / base:.1f}x)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2, help="torch / BLAS threads")
    parser.add_argument("--objects", type=int, default=64, help="clouds for feature timing")
    parser.add_argument("--skip-baseline", action="store_true")
    parser.add_argument("--baseline-fraction", type=float, default=0.25)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    bench_linear(args.skip_baseline, args.baseline_fraction)
    bench_features(args.objects)


if __name__ == "__main__":
    main()
