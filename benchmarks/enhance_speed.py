"""How fast `edvr enhance` runs on this machine, end to end, and where the time goes.

    python benchmarks/enhance_speed.py                       # the three rows of ENHANCE.md
    python benchmarks/enhance_speed.py --model-frames 5 --pipeline-frames 500
    python benchmarks/enhance_speed.py --only pipeline --threads 1
    python benchmarks/enhance_speed.py --device cuda --precision fp16   # on a GPU machine

Rows (each through `edvr_cli.enhance.enhance()`: probe -> FrameReader -> windows -> ModelRunner
-> FrameWriter with the command's defaults at the time: libx264, crf 17, preset medium):
1. `edvr-m` (x4 super-resolution, 5 frames) on 180x320 input -> 720x1280 output;
2. `small` (the seed's compressed-video preset, scale 1, hr_in + predeblur) on 540x960;
3. the pipeline alone at 320x180: the network replaced by a module returning the centre frame,
   to show that decoding, windowing and encoding are not the bottleneck.
Networks have random weights (speed does not depend on them). "model" is the time inside the
network's forward (tiles included), "rest" everything else (decode, windows, uint8<->float,
encode, file handling); the first frame's warm-up is included, as a user would see it.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

from edvr_cli.enhance import EnhanceSettings, enhance
from edvr_cli.model_choice import LoadedModel
from edvr_cli.video import ffmpeg_exe
from models import build_model
from machine import cpu_name  # benchmarks/machine.py (scripts run from benchmarks/)


class TimedNetwork(nn.Module):
    """Wraps a network and adds up the seconds spent in its forward pass."""

    def __init__(self, network: nn.Module):
        super().__init__()
        self.network = network
        self.scale, self.num_frame = network.scale, network.num_frame
        self.size_multiple = getattr(network, "size_multiple", 1)
        self.seconds = 0.0

    def forward(self, x):
        started = time.perf_counter()
        out = self.network(x)
        if out.is_cuda:
            torch.cuda.synchronize()
        self.seconds += time.perf_counter() - started
        return out


class CentreFrame(nn.Module):
    """The pipeline without a network: (n, t, 3, h, w) -> the centre frame (n, 3, h, w)."""

    scale, num_frame = 1, 5

    def __init__(self):
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(()))  # gives the runner a dtype and a device

    def forward(self, x):
        return x[:, self.num_frame // 2] + self.anchor


def make_clip(path: Path, width: int, height: int, num_frames: int) -> Path:
    subprocess.run([ffmpeg_exe(), "-v", "error", "-y", "-f", "lavfi",
                    "-i", f"testsrc2=size={width}x{height}:rate=25", "-frames:v", str(num_frames),
                    "-c:v", "libx264", "-crf", "18", "-pix_fmt", "yuv420p", str(path)], check=True)
    return path


def measure(name: str, network: nn.Module, width: int, height: int, num_frames: int, folder: Path,
            device: str, precision: str) -> dict:
    clip = make_clip(folder / f"{name}.mp4", width, height, num_frames)
    timed = TimedNetwork(network)
    settings = EnhanceSettings(device=device, precision=precision)
    result = enhance(clip, folder / f"{name}_out.mp4", LoadedModel(timed, name, "random weights"), settings,
                     overwrite=True)
    return dict(name=name, input=f"{width}x{height}", output=f"{result.width}x{result.height}",
                frames=result.frames, seconds=result.seconds, model_seconds=timed.seconds,
                device=result.device, precision=precision)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-frames", type=int, default=3, help="frames for the two network rows")
    parser.add_argument("--pipeline-frames", type=int, default=300, help="frames for the pipeline-only row")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--only", choices=["networks", "pipeline"], default=None, help="run only these rows")
    args = parser.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"# {cpu_name()}, {os.cpu_count()} logical CPUs, torch {torch.__version__} "
          f"({torch.get_num_threads()} threads), CUDA available: {torch.cuda.is_available()}, "
          f"load average at start {load:.2f}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        if args.only in (None, "networks"):
            rows.append(measure("edvr-m x4", build_model("edvr-m"), 320, 180, args.model_frames, folder,
                                args.device, args.precision))
            rows.append(measure("small x1", build_model("small"), 960, 540, args.model_frames, folder,
                                args.device, args.precision))
        if args.only in (None, "pipeline"):
            rows.append(measure("pipeline only", CentreFrame(), 320, 180, args.pipeline_frames, folder,
                                args.device, args.precision))
    print("| what | input | output | frames | device | total s | s/frame | fps | model s/frame | rest s/frame |")
    print("|---|---|---|---:|---|---:|---:|---:|---:|---:|")
    for row in rows:
        frames = row["frames"]
        print(f"| {row['name']} | {row['input']} | {row['output']} | {frames} | {row['device']} {row['precision']} "
              f"| {row['seconds']:.1f} | {row['seconds'] / frames:.3f} | {frames / row['seconds']:.2f} "
              f"| {row['model_seconds'] / frames:.3f} | {(row['seconds'] - row['model_seconds']) / frames:.3f} |")
    print(f"# load average at end {os.getloadavg()[0]:.2f}" if hasattr(os, "getloadavg") else "")


if __name__ == "__main__":
    main()
