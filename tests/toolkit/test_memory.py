"""Freed heap kept for reuse stays within its budget (each check in its own process: the
allocator settings are process-wide)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from xpt.toolkit.memory import _glibc, resident_bytes

pytestmark = pytest.mark.skipif(
    _glibc() is None or resident_bytes() is None, reason="needs glibc and /proc/self/statm"
)


def _run(code: str) -> dict:
    """Run ``code`` in a fresh interpreter; it prints one JSON line, returned parsed."""
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=600,
        env={"OMP_NUM_THREADS": "2", "XPT_NO_PROGRESS": "1", "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


FRAGMENTED = """
    import json, numpy as np
    from xpt.toolkit.memory import heap_checkpoint, resident_bytes, retain_freed_memory
    with retain_freed_memory(keep_bytes={keep}) as budget:
        blocks = [np.ones(1 << 17) for _ in range(400)]  # 400 x 1 MiB, from the heap
        del blocks[::2]  # 200 MiB freed between live blocks: nothing can be trimmed from the top
        before = resident_bytes()
        heap_checkpoint()
        after = resident_bytes()
    print(json.dumps({{"before": before, "after": after, "releases": budget.releases}}))
"""


def test_freed_memory_over_the_budget_goes_back_at_a_checkpoint() -> None:
    bounded = _run(FRAGMENTED.format(keep=64 << 20))
    assert bounded["releases"] == 1
    assert bounded["before"] - bounded["after"] > 150 << 20  # the freed pages left the process
    # the same pattern without a budget keeps the freed pages: what the bound is for
    unbounded = _run(FRAGMENTED.format(keep=1 << 40))
    assert unbounded["releases"] == 0
    assert abs(unbounded["before"] - unbounded["after"]) < 16 << 20


def test_feature_extraction_of_thousands_of_clouds_has_a_bounded_peak() -> None:
    """Extraction after an SVM fit (as in ``xpt benchmark``, where unbounded kept heap once
    grew to 16 GB): the peak may grow by the kept-heap budget and one batch at most."""
    result = _run(
        """
        import json, resource, numpy as np, torch
        from xpt.benchmarks.features import extract_features, random_point_encoder
        from xpt.benchmarks.linear import evaluate_linear
        from xpt.benchmarks.protocols import XPT
        from xpt.toolkit.memory import KEEP_BYTES

        torch.set_num_threads(2)
        rng = np.random.default_rng(0)
        clouds = rng.normal(size=(1500, 1024, 3)).astype(np.float32)
        model, _ = random_point_encoder("pointnet", emb_dims=1024)
        warm = extract_features(model, clouds[:160])
        labels = np.arange(160) % 4
        evaluate_linear(warm[:120], labels[:120], warm[120:], labels[120:], XPT.linear,
                        num_classes=4)
        peak = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss << 10
        before = peak()
        features = extract_features(model, clouds)
        print(json.dumps({"growth": peak() - before, "keep": KEEP_BYTES,
                          "shape": list(features.shape)}))
        """
    )
    assert result["shape"] == [1500, 1024]
    batch_activations = 16 * 1024 * (64 * 3 + 128 + 1024) * 4  # about 90 MB
    assert result["growth"] <= result["keep"] + 2 * batch_activations
