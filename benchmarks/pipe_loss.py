"""What the pipe itself costs, and what builtin-qe really gains, through the real `edvr enhance`.

For each clip: ground truth = the first N frames, downscaled x2 with the area filter to even
sizes, yuv420p, lossless; input = its x265 QP 37 encode (the degradation builtin-qe is trained
for). Then `edvr enhance input -o OUT --strength 0 <encoder options>` (the network runs, its
change is not applied: what is lost is the pipe's) and `--strength 1` for the real gain, each
scored by `edvr eval`'s library (RGB PSNR against the ground truth, minus the input's own).

    python benchmarks/pipe_loss.py --footage FOLDER --clips bikes,bigbuckbunny --frames 30 --work /tmp/pl
    python benchmarks/pipe_loss.py ... --configs default,ffv1,png --strengths 0,1 [--reuse]

FOLDER holds the source videos by stem (see models/weights/README.md for where each comes from).
Prints a Markdown table and writes results JSON to WORK/pipe_loss.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from edvr_cli.evaluate.scoring import evaluate
from edvr_cli.video import ffmpeg_exe

CONFIGS = {  # name -> (output suffix, extra `edvr enhance` arguments)
    "png": ("", []),
    "ffv1": (".mkv", ["--codec", "ffv1"]),
    "default": (".mp4", []),
    "x264-crf17": (".mp4", ["--codec", "libx264", "--crf", "17", "--preset", "medium"]),
    "x264-crf12": (".mp4", ["--codec", "libx264", "--crf", "12", "--preset", "medium"]),
    "x264-crf8": (".mp4", ["--codec", "libx264", "--crf", "8", "--preset", "medium"]),
    "x265-crf16": (".mp4", ["--codec", "libx265", "--crf", "16"]),
    "x265-crf12": (".mp4", ["--codec", "libx265", "--crf", "12"]),
    "x265-crf8": (".mp4", ["--codec", "libx265", "--crf", "8"]),
}
START_SECONDS = {"Megamind": 4}  # past its black opening


def ffmpeg(*args) -> None:
    subprocess.run([ffmpeg_exe(), "-v", "error", "-y", *map(str, args)], check=True, capture_output=True)


def find_source(footage: Path, stem: str) -> Path:
    matches = sorted(p for p in footage.iterdir() if p.stem.split(".")[0] == stem)
    if not matches:
        sys.exit(f"no clip named {stem} in {footage}")
    return matches[0]


def prepare(footage: Path, stem: str, frames: int, work: Path) -> tuple[Path, Path]:
    gt, lq = work / f"{stem}_gt.mkv", work / f"{stem}_qp37.mkv"
    if not gt.exists():
        ffmpeg("-ss", START_SECONDS.get(stem, 0), "-i", find_source(footage, stem), "-map", "0:v:0",
               "-fps_mode", "passthrough", "-frames:v", frames,
               "-vf", "scale=trunc(iw/4)*2:trunc(ih/4)*2:flags=area,format=yuv420p", "-c:v", "ffv1", gt)
        ffmpeg("-i", gt, "-c:v", "libx265", "-x265-params", "log-level=error:qp=37", "-pix_fmt", "yuv420p", lq)
    return gt, lq


def size_of(path: Path) -> int:
    return sum(p.stat().st_size for p in path.iterdir()) if path.is_dir() else path.stat().st_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--footage", type=Path, required=True)
    parser.add_argument("--clips", required=True, help="comma-separated stems")
    parser.add_argument("--frames", type=int, default=30)
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--configs", default=",".join(CONFIGS))
    parser.add_argument("--strengths", default="0")
    parser.add_argument("--model", default="builtin-qe")
    parser.add_argument("--reuse", action="store_true", help="score outputs already in WORK instead of remaking them")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    rows = []
    for stem in args.clips.split(","):
        gt, lq = prepare(args.footage, stem, args.frames, args.work)
        baseline = evaluate(gt, lq)
        for config in args.configs.split(","):
            suffix, extra = CONFIGS[config]
            for strength in args.strengths.split(","):
                out = args.work / f"{stem}_{config}_s{strength}{suffix}"
                started = time.perf_counter()
                if not (args.reuse and out.exists()):
                    subprocess.run([sys.executable, "-c", "from edvr_cli.cli import main; main()", "enhance", str(lq), "-o", str(out),
                                    "--model", args.model, "--strength", strength, "--overwrite", "--quiet", *extra],
                                   check=True)
                seconds = time.perf_counter() - started
                scored = evaluate(gt, out)
                rows.append({"clip": stem, "config": config, "strength": float(strength),
                             "frames": scored.num_frames if hasattr(scored, "num_frames") else args.frames,
                             "input_psnr": baseline.psnr, "psnr": scored.psnr,
                             "gain_db": scored.psnr - baseline.psnr, "ssim_gain": scored.ssim - baseline.ssim,
                             "bytes": size_of(out), "input_bytes": size_of(lq), "seconds": round(seconds, 1)})
                print(json.dumps(rows[-1]), flush=True)
    (args.work / "pipe_loss.json").write_text(json.dumps(rows, indent=2))
    print("\n| clip | output | strength | gain over input (dB) | SSIM gain | size / input size |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['clip']} | {row['config']} | {row['strength']:g} | {row['gain_db']:+.4f} | "
              f"{row['ssim_gain']:+.5f} | {row['bytes'] / row['input_bytes']:.1f}x |")


if __name__ == "__main__":
    main()
