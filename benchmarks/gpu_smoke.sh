#!/usr/bin/env bash
# The CUDA paths in one prepared run, under 8 minutes on one GPU, ending in one table:
#   1. the CUDA tests (pytest -k cuda: engines on the GPU against the CPU, the protocol with CUDA events, the peak)
#   2. 100 training steps with fp16 autocast and the grad scaler on the synthetic dataset
#   3. a one-process torchrun run (NCCL on CUDA) of the same training
#   4. rtseg speed for SkipNet-MobileNet, SkipNet-ShuffleNet and ENet at 360x640 and 512x1024,
#      eager fp16, eager bf16 and compile fp16 (compile last: it costs the most)
#
#   bash benchmarks/gpu_smoke.sh [OUT_DIR]            # default OUT_DIR: gpu-smoke
#
# Each step runs under its own timeout and is skipped when the time left (GPU_SMOKE_BUDGET_S,
# default 460 s) could not hold it, so the whole stays under 8 minutes; a failing step is
# reported in the table and the others go on. The same script checks its own plumbing on a CPU:
#   DEVICE=cpu SIZES=64x128 TRAIN_PRECISION=bf16 SPEED_SETTINGS="eager:fp32 compile:fp32" \
#       bash benchmarks/gpu_smoke.sh /tmp/smoke
set -u -o pipefail

cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
[ -x "$PYTHON" ] || PYTHON=python3
OUT=${1:-gpu-smoke}
DEVICE=${DEVICE:-cuda}
BUDGET=${GPU_SMOKE_BUDGET_S:-460}
MODELS=${MODELS:-"skipnet-mobilenet_v1 skipnet-shufflenet_v1 enet"}
SIZES=${SIZES:-"360x640 512x1024"}
SPEED_SETTINGS=${SPEED_SETTINGS:-"eager:fp16 eager:bf16 compile:fp16"}
TRAIN_PRECISION=${TRAIN_PRECISION:-fp16}
TRAIN_STEPS=${TRAIN_STEPS:-100}

mkdir -p "$OUT/logs" "$OUT/speed"
RESULTS="$OUT/steps.tsv"
: > "$RESULTS"
START=$SECONDS

# step NAME TIMEOUT_S COMMAND...: run it (log in OUT/logs/NAME.log) unless the budget left is smaller
step() {
    local name=$1 limit=$2 began rc status
    shift 2
    if (( BUDGET - (SECONDS - START) < limit )); then
        printf '%s\tskipped (time budget)\t0\n' "$name" >> "$RESULTS"
        return
    fi
    began=$SECONDS
    echo "[$((SECONDS - START)) s] $name" >&2
    timeout --kill-after=10 "$limit" "$@" > "$OUT/logs/$name.log" 2>&1
    rc=$?
    case $rc in
        0) status=ok ;;
        124|137) status="TIMEOUT after ${limit} s" ;;
        *) status="FAILED (exit $rc, see $OUT/logs/$name.log)" ;;
    esac
    printf '%s\t%s\t%s\n' "$name" "$status" "$((SECONDS - began))" >> "$RESULTS"
}

if ! "$PYTHON" - "$DEVICE" > "$OUT/logs/device.log" 2>&1 <<'EOF'
import sys, torch
if sys.argv[1] == "cuda":
    assert torch.cuda.is_available(), "PyTorch sees no CUDA GPU"
    print(torch.cuda.get_device_name(), "CUDA", torch.version.cuda, "torch", torch.__version__)
else:
    print("CPU plumbing check, torch", torch.__version__)
EOF
then
    echo "no usable device '$DEVICE': $(tail -1 "$OUT/logs/device.log")" >&2
    exit 1
fi

step cuda-tests 120 env RTSEG_TEST_THREADS=4 "$PYTHON" -m pytest -q -p no:cacheprovider tests -k cuda -rs
step train-$TRAIN_PRECISION 90 "$PYTHON" -m rtseg train configs/synthetic_quick.yaml --out "$OUT/train" \
    --set train.iterations="$TRAIN_STEPS" --set train.val_every="$TRAIN_STEPS" --set train.precision="$TRAIN_PRECISION" \
    --set train.device="$DEVICE" --set data.workers=2 --set train.progress=false
step torchrun-1-process 60 "$PYTHON" -m torch.distributed.run --standalone --nproc_per_node=1 -m rtseg train \
    configs/synthetic_quick.yaml --out "$OUT/torchrun" --set train.iterations=20 --set train.val_every=20 \
    --set train.precision="$TRAIN_PRECISION" --set train.device="$DEVICE" --set data.workers=0 --set train.progress=false

for pass in first last; do  # compile settings last: they cost the most
    for setting in $SPEED_SETTINGS; do
        engine=${setting%%:*}
        precision=${setting##*:}
        if [ "$engine" = compile ]; then [ "$pass" = last ] || continue; else [ "$pass" = first ] || continue; fi
        for model in $MODELS; do
            for size in $SIZES; do
                name="speed-$model-$size-$engine-$precision"
                limit=$([ "$engine" = compile ] && echo 90 || echo 30)
                step "$name" "$limit" sh -c "\"$PYTHON\" -m rtseg speed --model $model --size $size --device $DEVICE \
                    --engine $engine --precision $precision --json > \"$OUT/speed/$name.json\""
            done
        done
    done
done

"$PYTHON" - "$OUT" "$((SECONDS - START))" <<'EOF'
import json, sys
from pathlib import Path

out, seconds = Path(sys.argv[1]), int(sys.argv[2])
device = (out / "logs" / "device.log").read_text().strip().splitlines()[-1]
rows = [line.split("\t") for line in (out / "steps.tsv").read_text().splitlines() if line]
print(f"\nbenchmarks/gpu_smoke.sh on {device}: {seconds} s in all\n")
print("| step | status | s | result |\n|---|---|---|---|")
for name, status, took in rows:
    result = ""
    record = out / "speed" / f"{name}.json"
    if name.startswith("speed-") and status == "ok" and record.is_file():
        r = json.loads(record.read_text())
        eff = f", efficiency {100 * r['efficiency']:.1f} %" if r.get("efficiency") is not None else ""
        result = (f"{r['fps']:.1f} FPS end-to-end, {r['fps_model']:.1f} model only, "
                  f"{r['latency_ms']:.2f} ms{eff}" + ("; " + "; ".join(r["warnings"]) if r.get("warnings") else ""))
    elif name.startswith(("train", "torchrun")) and status == "ok":
        log = (out / "logs" / f"{name}.log").read_text().strip().splitlines()
        result = log[-1][:120] if log else ""
    elif name == "cuda-tests":
        log = (out / "logs" / f"{name}.log").read_text().strip().splitlines()
        result = log[-1][:120] if log else ""
    print(f"| {name} | {status} | {took} | {result} |")
EOF
