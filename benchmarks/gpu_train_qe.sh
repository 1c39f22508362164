#!/usr/bin/env bash
# The builtin-qe training run, on any machine with a CUDA GPU (torch, torchvision,
# opencv-python-headless; ffmpeg and network access are not needed). Prepare the pack once where
# ffmpeg is available:
#     python benchmarks/pack_train_qe.py          # -> .train_pack/qe37 (git-ignored, ~44 MiB)
# copy the repository with .train_pack to the GPU machine, and run from its root:
#     OUT=results_dir bash benchmarks/gpu_train_qe.sh
# It trains for --max-seconds (540 s from the start of the python process), scoring on the pack's
# selection clips and checkpointing every 60 s, and stops by itself; everything lands in
# $OUT/qe15 (last.pth best.pth ema.pth snapshots.pth log.jsonl summary.json) + $OUT/gpu_train_qe.log.
# The next GPU slot continues the same run: copy that qe15 folder's last.pth and snapshots.pth
# into .train_pack/resume/ here, and make the same call: a .train_pack/resume/last.pth is resumed.
# Extra arguments go to benchmarks/gpu_train_qe.py (e.g. --max-seconds 300, --arch qe32 for a new run).
#     bash benchmarks/gpu_train_qe.sh --smoke     # the same path on the CPU, a tiny pack, < 60 s
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY="${PYTHON:-python3}"
OUT_DIR="${OUT:-runs}"
PACK="${PACK:-.train_pack/qe37}"
RESUME="${RESUME:-.train_pack/resume}"
mkdir -p "$OUT_DIR"

args=(--out "$OUT_DIR/qe15")
if [[ " $* " == *" --smoke "* ]]; then
    args=(--out "$OUT_DIR/qe15-smoke")
else
    if [[ ! -f "$PACK/manifest.json" ]]; then
        echo "no training pack at $PACK: build it with python benchmarks/pack_train_qe.py and carry it" >&2
        exit 2
    fi
    args+=(--pack "$PACK")
    if [[ -f "$RESUME/last.pth" ]]; then
        args+=(--resume "$RESUME")
    fi
fi
{
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader 2>/dev/null || true
    "$PY" -c 'import torch; print("torch", torch.__version__, "cuda", torch.cuda.is_available())' || exit 1
    "$PY" -c 'import cv2; print("opencv", cv2.__version__)' 2>/dev/null || echo "no OpenCV: the pack is read with ffmpeg"
    PYTHONUNBUFFERED=1 "$PY" benchmarks/gpu_train_qe.py "${args[@]}" "$@"
} 2>&1 | tee "$OUT_DIR/gpu_train_qe.log"
exit "${PIPESTATUS[0]}"
