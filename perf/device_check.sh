#!/usr/bin/env bash
# The GPU checks of the performance work in one run on a lent device machine (see the
# device tool's README): rendering through EGL on the NVIDIA driver, the speed harness on
# CUDA, and pretraining steps at the paper's size with each GPU option on the same shards
# (plain EdgeConv in float32 as the release, then the fast EdgeConv, bf16 autocast,
# channels_last, torch.compile), so each option's effect is measured, not assumed.
#
# 1. Here, once per checkout: the pure-Python wheels the device image lacks into .whl/, and
#    the GL loader packages (libEGL through glvnd) into .gl/, both ignored by git through
#    .git/info/exclude (the device tool's README says why the loaders travel):
#        bash perf/device_check.sh fetch
# 2. With the device tool, about 8 minutes:
#        run(command="bash perf/device_check.sh run", carry=[".whl", ".gl"], timeout_s=560)
#    Everything lands in $OUT: log.txt, speed_cuda.json, render.json, shard.json,
#    pretrain.json (steady objects/s of each variant) and each variant's summary.
# `bash perf/device_check.sh run --cpu` runs the same steps here at toy sizes, without the
# CUDA-only variants, to check the script itself.
set -euo pipefail

WHEELS=(
    trimesh==5.2.0 pyrender==0.1.45 PyOpenGL==3.1.10 pyglet==2.1.19 freetype-py==2.5.1
    webdataset==1.0.2 braceexpand==0.1.7
)

fetch() {
    for folder in /.whl/ /.gl/; do
        grep -qx "$folder" .git/info/exclude 2>/dev/null || echo "$folder" >>.git/info/exclude
    done
    python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl "${WHEELS[@]}"
    local apt=(-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64)
    mkdir -p .gl /tmp/amd64/partial
    apt-get "${apt[@]}" update -qq
    (cd .gl && apt-get "${apt[@]}" download libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2)
}

# Steady objects/s of a pretraining run: the median over its steps after the first
# `skip` (start-up, compilation, cuDNN's autotuning), from metrics.jsonl.
steady_rate() {
    "$PY" - "$1" "$2" <<'PY'
import json, statistics, sys
rows = [json.loads(line) for line in open(f"{sys.argv[1]}/metrics.jsonl")]
rates = [r["samples_per_s"] for r in rows if r.get("samples_per_s") and r["step"] > int(sys.argv[2])]
print(json.dumps({"objects_per_s": statistics.median(rates) if rates else None, "steps": len(rates)}))
PY
}

run() {
    local cpu=${1:-}
    OUT=${OUT:-$PWD/device-check-out}
    mkdir -p "$OUT"
    local work
    work=$(mktemp -d)
    if [ "$cpu" = --cpu ]; then
        PY=.venv/bin/python
        XPT=(.venv/bin/xpt)
        speed=(--quick)
        per_category=2
        train=(--batch-size 4 --points 256 --k 10 --emb-dims 64 --image-encoder resnet18
            --image-size 32 --max-steps 6 --device cpu --workers 1)
        skip=2
        variants=("plain:--edgeconv plain --amp off" "fast:--amp off")
    else
        PY=python3
        if compgen -G ".gl/*.deb" >/dev/null; then
            for f in .gl/*.deb; do dpkg -x "$f" /; done
            ldconfig
        fi
        local vendor=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
        [ -f "$vendor" ] && export __EGL_VENDOR_LIBRARY_FILENAMES=$vendor
        if compgen -G ".whl/*.whl" >/dev/null; then
            "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
                --target /tmp/site .whl/*.whl
        fi
        "$PY" -m pip install -q --no-index --no-deps --no-build-isolation --no-compile \
            --target /tmp/site .
        export PYTHONPATH=/tmp/site
        XPT=("$PY" -m xpt)
        speed=(--repeats 3)
        per_category=8
        train=(--max-steps 40 --device cuda)
        skip=10
        variants=(
            "plain_fp32:--edgeconv plain --amp off"
            "fast_fp32:--amp off"
            "fast_bf16:--amp bf16"
            "fast_bf16_channels_last:--amp bf16 --channels-last"
            "fast_bf16_channels_last_compile:--amp bf16 --channels-last --compile"
        )
        nvidia-smi -L | tee -a "$OUT/log.txt"
    fi
    export PYOPENGL_PLATFORM=egl XPT_NO_PROGRESS=1
    "$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())" |
        tee -a "$OUT/log.txt"

    echo "== speed harness" | tee -a "$OUT/log.txt"
    timeout 240 "$PY" -m xpt.benchmarks.speed "${speed[@]}" --json "$OUT/speed_cuda.json" \
        2>&1 | tee -a "$OUT/log.txt" || echo "speed harness: exit $?" | tee -a "$OUT/log.txt"

    echo "== render (EGL) and shard" | tee -a "$OUT/log.txt"
    "${XPT[@]}" render --per-category "$per_category" --out "$work/renders" \
        --json "$OUT/render.json" 2>&1 | tail -n 5 | tee -a "$OUT/log.txt"
    "${XPT[@]}" shard --renders "$work/renders" --per-category "$per_category" \
        --out "$work/shards" --json "$OUT/shard.json" 2>&1 | tail -n 5 | tee -a "$OUT/log.txt"

    echo "== pretraining steps" | tee -a "$OUT/log.txt"
    echo "{" >"$OUT/pretrain.json"
    local first=1 name options
    for variant in "${variants[@]}"; do
        name=${variant%%:*}
        options=${variant#*:}
        # shellcheck disable=SC2086  # options are words
        if timeout 200 "${XPT[@]}" pretrain "$work/shards" --out "$work/run_$name" \
            "${train[@]}" $options --json "$OUT/pretrain_$name.json" \
            >>"$OUT/log.txt" 2>&1; then
            rate=$(steady_rate "$work/run_$name" "$skip" || echo '{"error": "no step rates"}')
        else
            rate="{\"error\": \"exit $?, see log.txt\"}"
        fi
        echo "$name: $rate" | tee -a "$OUT/log.txt"
        [ $first = 1 ] || echo "," >>"$OUT/pretrain.json"
        first=0
        printf '  "%s": %s' "$name" "$rate" >>"$OUT/pretrain.json"
    done
    printf '\n}\n' >>"$OUT/pretrain.json"
    rm -rf "$work"
}

case ${1:-} in
fetch) fetch ;;
run) run "${2:-}" ;;
*)
    echo "usage: bash perf/device_check.sh fetch | run [--cpu]" >&2
    exit 2
    ;;
esac
