"""How long `edvr eval` takes for 100 frames of 960x536 (the LDV frame size).

    python benchmarks/eval_speed.py                 # 100 frames, workers 1 and 2
    python benchmarks/eval_speed.py --frames 20 --workers 1 2 4

Measures, on the same frames:
1. `frame_metrics` alone (PSNR + SSIM of in-memory uint8 arrays), RGB and Y, one thread;
2. `evaluate()` end to end on PNG folders in the REDS layout (two clips), which adds PNG
   decoding, for each --workers value;
3. `evaluate()` on the same clips as lossless FFV1 videos (a folder of videos per side), which
   adds ffmpeg decoding instead of PNG decoding.

Frames: ffmpeg's testsrc2 pattern as ground truth; the "restored" frames are the ground truth
plus Gaussian noise (sigma 4), so SSIM is not trivially 1.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from edvr_cli.evaluate.metrics import frame_metrics
from edvr_cli.evaluate.scoring import evaluate
from edvr_cli.image_io import list_image_files, read_image, write_png
from edvr_cli.video import ffmpeg_exe
from machine import cpu_name  # benchmarks/machine.py (scripts run from benchmarks/)

WIDTH, HEIGHT = 960, 536


def make_frames(root: Path, num_frames: int) -> tuple[Path, Path, list[np.ndarray], list[np.ndarray]]:
    """gt/ and pred/ folders of two clips each; returns the folders and the frames in memory."""
    pattern = root / "pattern"
    pattern.mkdir()
    subprocess.run([ffmpeg_exe(), "-v", "error", "-f", "lavfi", "-i",
                    f"testsrc2=size={WIDTH}x{HEIGHT}:rate=25", "-frames:v", str(num_frames),
                    str(pattern / "%08d.png")], check=True)
    rng = np.random.default_rng(0)
    gts, preds = [], []
    for index, path in enumerate(list_image_files(pattern)):
        clip = "000" if index < num_frames // 2 else "001"
        gt = read_image(path)  # (h, w, 3) uint8
        pred = np.clip(gt + rng.normal(0, 4, gt.shape), 0, 255).round().astype(np.uint8)
        for side, frame in (("gt", gt), ("pred", pred)):
            (root / side / clip).mkdir(parents=True, exist_ok=True)
            write_png(root / side / clip / path.name, frame)
        gts.append(gt)
        preds.append(pred)
    return root / "gt", root / "pred", gts, preds


def encode_lossless(folder: Path, output: Path) -> Path:
    """Each clip folder of `folder` as an FFV1 video (RGB kept exactly, bgr0) in `output`/."""
    output.mkdir()
    for clip in sorted(folder.iterdir()):
        subprocess.run([ffmpeg_exe(), "-v", "error", "-framerate", "25", "-pattern_type", "glob",
                        "-i", str(clip / "*.png"), "-c:v", "ffv1", "-pix_fmt", "bgr0",
                        str(output / f"{clip.name}.mkv")], check=True)
    return output


def timed(function, *args, **kwargs) -> tuple[float, object]:
    started = time.perf_counter()
    value = function(*args, **kwargs)
    return time.perf_counter() - started, value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=100, help="frames in total (two clips)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="--workers values")
    args = parser.parse_args()

    print(f"machine: {cpu_name()}, {os.cpu_count()} logical CPUs; numpy {np.__version__}")
    with tempfile.TemporaryDirectory() as temp:
        root = Path(temp)
        gt_dir, pred_dir, gts, preds = make_frames(root, args.frames)
        print(f"{args.frames} frames of {WIDTH}x{HEIGHT} in 2 clips")

        for channel in ("rgb", "y"):
            seconds, _ = timed(lambda: [frame_metrics(g, p, channel=channel) for g, p in zip(gts, preds)])
            print(f"frame_metrics only, {channel:>3}, 1 thread: {seconds:6.1f} s "
                  f"({1000 * seconds / args.frames:.0f} ms/frame)")

        for workers in args.workers:
            seconds, result = timed(evaluate, gt_dir, pred_dir, workers=workers)
            print(f"evaluate() on PNG folders, workers {workers}: {seconds:6.1f} s "
                  f"({1000 * seconds / args.frames:.0f} ms/frame)  PSNR {result.psnr:.4f} SSIM {result.ssim:.4f}")

        gt_video = encode_lossless(gt_dir, root / "gt_videos")
        pred_video = encode_lossless(pred_dir, root / "pred_videos")
        for workers in args.workers:
            seconds, result = timed(evaluate, gt_video, pred_video, workers=workers)
            print(f"evaluate() on FFV1 videos,  workers {workers}: {seconds:6.1f} s "
                  f"({1000 * seconds / args.frames:.0f} ms/frame)  PSNR {result.psnr:.4f} SSIM {result.ssim:.4f}")


if __name__ == "__main__":
    main()
