#!/usr/bin/env bash
# Build what a GPU machine without ffmpeg or network access needs for benchmarks/gpu_e2e.sh
# into .gpu_run/ (git-ignored):
#   .gpu_run/wheels/   click, tqdm, imageio-ffmpeg (pure-python wheels, no dependencies fetched)
#   .gpu_run/ffmpeg.xz the project's ffmpeg (the one imageio-ffmpeg bundles here), xz -9
# and check that they, with the working tree, stay under 60 MiB (small enough to copy anywhere).
# Run from anywhere, on a machine with the project installed:
#   bash benchmarks/pack_gpu_run.sh [PYTHON]          # PYTHON defaults to /work/venv/bin/python
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${1:-${PYTHON:-/work/venv/bin/python}}"
PACK="$REPO/.gpu_run"
LIMIT=$((60 * 1024 * 1024))

mkdir -p "$PACK/wheels"
rm -f "$PACK"/wheels/*.whl
# The versions installed here. click and tqdm are py3-none-any wheels; imageio-ffmpeg's wheels each
# bundle an ffmpeg (~68 MB), so its wheel is built here from the sdist, without one:
# IMAGEIO_FFMPEG_EXE points it at the carried binary instead.
version() { "$PYTHON" -c "import importlib.metadata as m; print(m.version('$1'))"; }
pins=("click==$(version click)" "tqdm==$(version tqdm)")
"$PYTHON" -m pip download -q --no-deps --only-binary=:all: -d "$PACK/wheels" "${pins[@]}"
sdist="$(mktemp -d)"
trap 'rm -rf "$sdist"' EXIT
"$PYTHON" -m pip download -q --no-deps --no-binary=:all: -d "$sdist" "imageio-ffmpeg==$(version imageio-ffmpeg)"
"$PYTHON" -m pip wheel -q --no-deps --no-build-isolation -w "$PACK/wheels" "$sdist"/imageio_ffmpeg-*.tar.gz
for wheel in "$PACK"/wheels/*.whl; do
    [[ "$wheel" == *-none-any.whl ]] || { echo "$wheel: not a pure-python wheel" >&2; exit 1; }
done

FFMPEG="$("$PYTHON" -c 'import imageio_ffmpeg; print(imageio_ffmpeg.get_ffmpeg_exe())')"
if [[ ! -s "$PACK/ffmpeg.xz" || "$FFMPEG" -nt "$PACK/ffmpeg.xz" ]]; then
    echo "compressing $FFMPEG ($(du -h "$FFMPEG" | cut -f1)) with xz -T2 -9 (a few minutes)"
    xz -T2 -9 -c "$FFMPEG" > "$PACK/ffmpeg.xz.part"
    mv "$PACK/ffmpeg.xz.part" "$PACK/ffmpeg.xz"
fi
"$FFMPEG" -hide_banner -version | head -1 > "$PACK/ffmpeg.version"

pack_bytes=$(du -cb "$PACK" | tail -1 | cut -f1)
tree_bytes=$(cd "$REPO" && git ls-files -z --cached --others --exclude-standard | xargs -0 du -cb 2>/dev/null \
             | awk '$2 == "total" {sum += $1} END {print sum + 0}')
total=$((pack_bytes + tree_bytes))
ls -l "$PACK" "$PACK/wheels"
awk -v p="$pack_bytes" -v t="$tree_bytes" 'BEGIN {m = 1048576;
    printf "pack %.1f MiB + working tree %.1f MiB = %.1f MiB (limit 60 MiB)\n", p / m, t / m, (p + t) / m}'
if (( total > LIMIT )); then
    echo "too large for the device tool: leave something out" >&2
    exit 1
fi
