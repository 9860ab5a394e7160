#!/usr/bin/env bash
# Train the four baselines on the CPU with what a session allows (BENCHMARKS.md, "Baselines").
# Each command prints its per-epoch Set5 validation and a final Set5/Set14 table; the
# checkpoints go to runs/baselines/<arch>.pth. Needs ../shared/data (T91, BSD200, Set5, Set14).
# Usage: bash benchmarks/train_baselines.sh [srcnn fsrcnn tconv vdsr]   (about 1.5 h on 2 cores)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
OUT=${OUT:-runs/baselines}
COMMON=(--no-progress --set data.workers=0 --set train.device=cpu)
run() {  # run NAME ARGS...: one training, its output appended to $OUT/NAME.txt
    local name=$1; shift
    mkdir -p "$OUT"
    echo "== $name: python train.py $*" | tee -a "$OUT/$name.txt"
    "$PY" train.py "$@" "${COMMON[@]}" --out "$OUT/$name" 2>&1 | tee -a "$OUT/$name.txt"
}
archs=("$@")
[ ${#archs[@]} -eq 0 ] && archs=(srcnn fsrcnn tconv vdsr)
for arch in "${archs[@]}"; do
  case $arch in
    # SRCNN 9-1-5 on T91, the fast CPU recipe (Adam 1e-3, cosine), 48 px HR patches, batch 32,
    # He init (the paper's N(0, 0.001) is made for its SGD; with Adam it stalled at 28.8 dB on
    # Set5 after 5,000 steps), edge-replicating padding (the preset's; zeros gave 29.91 dB
    # after the same 15 epochs): 15 epochs x 1001 steps (29.98 dB), then extended to 30 epochs
    # with --resume (the cosine schedule is laid over the new total: a warm restart at 5e-4)
    srcnn)  opts=(--config srcnn --variant adam-cosine --set stage1.batch_size=32
                  --set data.patch_size=48 --set data.patches_per_image=352
                  --set generator.srcnn.init_std=None --set generator.srcnn.padding_mode=replicate)
            run srcnn "${opts[@]}" --epochs 15
            run srcnn "${opts[@]}" --epochs 30 --resume ;;
    # FSRCNN(56,12,4) on T91, the same fast recipe and padding: 30 epochs x 1001 steps
    # (30.14 dB), then extended to 60 epochs with --resume
    fsrcnn) opts=(--config fsrcnn --variant adam-cosine --set stage1.batch_size=32
                  --set data.patch_size=48 --set data.patches_per_image=352
                  --set generator.fsrcnn.padding_mode=replicate)
            run fsrcnn "${opts[@]}" --epochs 30
            run fsrcnn "${opts[@]}" --epochs 60 --resume ;;
    # The course's transposed-convolution network on the 291 images, its own preset's recipe
    # (Adam 1e-3, cosine, 64 px, batch 16): 3 epochs x 1160 steps
    tconv)  run tconv --config tconv --epochs 3 ;;
    # VDSR on the 291 images with the paper's recipe (SGD 0.1, momentum 0.9, weight decay 1e-4,
    # lr / 10 at 1/4, 1/2, 3/4 of the run, clipping at 0.4 / lr) but batch 16 instead of 64 and
    # 6 epochs x 145 steps instead of 80 x ~450 (the time a session had left)
    vdsr)   run vdsr --config vdsr --set stage1.batch_size=16 --set data.patches_per_image=8 \
                --epochs 6 ;;
    *) echo "unknown baseline $arch: use srcnn fsrcnn tconv vdsr" >&2; exit 2 ;;
  esac
done
