#!/usr/bin/env bash
# The README's pictures, made from the demo runs the README quotes (issue 22): seeds 0, 1, 2
# of `xpt demo` under RUNS (finished stages are skipped, so a second call only redraws).
#   usage: scripts/docs_images.sh [RUNS]   (default: docs-runs; `make docs-images`)
set -euo pipefail
RUNS=${1:-docs-runs}
XPT=${XPT:-.venv/bin/xpt}
for seed in 0 1 2; do
    "$XPT" demo --out "$RUNS/seed-$seed" --seed "$seed"
done
cp "$RUNS/seed-0/benchmark-procedural-scan-upright.png" docs/images/demo-benchmark-upright.png
"$XPT" plot "$RUNS/seed-0/pretrain" "$RUNS/seed-1/pretrain" "$RUNS/seed-2/pretrain" \
    --out docs/images/demo-curves-seeds-0-2.png
echo "docs/images/ redrawn from $RUNS/seed-{0,1,2}"
