#!/usr/bin/env bash
# The end-to-end GPU benchmark, on any machine with a CUDA GPU and torch. For a machine without
# ffmpeg or network access, prepare once where both are available:
#     bash benchmarks/pack_gpu_run.sh            # -> .gpu_run/ (wheels + ffmpeg.xz, ~47 MiB, git-ignored)
# copy the repository with .gpu_run to the GPU machine, and run from its root:
#     OUT=results_dir bash benchmarks/gpu_e2e.sh
# The results are written as $OUT/gpu_e2e-<gpu>-<date>.json (+ gpu_e2e.log); copy the JSON into
# benchmarks/results/. Extra arguments go to benchmarks/gpu_e2e.py (e.g. --skip compile).
# The script stops itself after --budget-s (450 s) and rewrites its JSON after every section,
# so a run cut short still returns what it measured.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PACK=.gpu_run
OUT_DIR="${OUT:-benchmarks/results}"
PY="${PYTHON:-python3}"
SITE=/tmp/gpu_e2e_site
mkdir -p "$OUT_DIR" "$SITE"

# 1. the pure-python wheels (click, tqdm, imageio-ffmpeg), no dependencies, no index
if ! "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" \
        "$PACK"/wheels/*.whl; then
    echo "pip failed; unpacking the wheels instead"
    "$PY" -c 'import sys, zipfile; [zipfile.ZipFile(w).extractall(sys.argv[1]) for w in sys.argv[2:]]' \
        "$SITE" "$PACK"/wheels/*.whl || exit 1
fi
export PYTHONPATH="$SITE:$PWD${PYTHONPATH:+:$PYTHONPATH}"

# 2. the project's ffmpeg, unpacked where imageio-ffmpeg is told to look
if command -v xz >/dev/null; then
    xz -dc "$PACK/ffmpeg.xz" > /tmp/ffmpeg || exit 1
else
    "$PY" -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' \
        "$PACK/ffmpeg.xz" /tmp/ffmpeg || exit 1
fi
chmod +x /tmp/ffmpeg
export IMAGEIO_FFMPEG_EXE=/tmp/ffmpeg
/tmp/ffmpeg -hide_banner -version | head -1 || exit 1
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader || true

# 3. the run
PYTHONUNBUFFERED=1 "$PY" benchmarks/gpu_e2e.py --out-dir "$OUT_DIR" "$@" 2>&1 | tee "$OUT_DIR/gpu_e2e.log"
exit "${PIPESTATUS[0]}"
