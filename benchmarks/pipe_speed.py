"""Pipeline-only throughput at 1920x1080: decode -> RGB float -> back to planes -> encode, no model.

The new pipe adds a small constant change (so the least-squares chroma fit does all its work).

Measures frames per second of the pipe around the network, with the network replaced by its
input (so only decoding, the float conversion and the write path are timed), writing to ffmpeg's
null muxer (rawvideo, so no encoder time either). Also times one forward pass of the fastest
bundled model at 1080p, which the pipe must beat by 10x or more.

    python benchmarks/pipe_speed.py --frames 60
    PYTHONPATH=/tmp/old python benchmarks/pipe_speed.py --frames 60   # a checkout of an older commit

The older pipe (before the native-plane reader, commit 30d89cd) is detected by its
`edvr_cli.video_io` module: ffmpeg converted to 8-bit RGB and back, uint8 -> float -> uint8.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

import torch


def make_source(path: Path, frames: int) -> None:
    import imageio_ffmpeg
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-y", "-f", "lavfi", "-i",
                    "testsrc2=size=1920x1080:rate=25", "-frames:v", str(frames), "-c:v", "libx264",
                    "-preset", "ultrafast", "-qp", "20", "-pix_fmt", "yuv420p", str(path)], check=True)


def new_pipe(source: Path) -> int:
    from edvr_cli.video import EncoderSettings, Frame, FrameConverter, FrameReader, FrameWriter
    count = 0
    with FrameReader(source) as reader:
        converter = FrameConverter(reader.format)
        writer = FrameWriter(os.devnull, reader.format, 1 / reader.info.fps,
                             EncoderSettings("rawvideo", extra_args=("-f", "null")), check_frame_count=False)
        with writer:
            for frame in reader:
                codes = converter.upload(frame.planes)
                rgb = converter.codes_to_rgb(codes).clamp_(0, 1)
                change = torch.full_like(rgb, 1e-3)  # non-zero: the chroma fit runs all its steps
                writer.write(Frame(converter.apply_change(codes, change, 1.0), count))
                count += 1
    return count


def old_pipe(source: Path) -> int:
    import numpy as np
    from edvr_cli.video_io import FrameReader, FrameWriter
    count = 0
    with FrameReader(source) as reader:
        writer = FrameWriter(os.devnull, reader.width, reader.height, reader.info.fps, codec="rawvideo",
                             crf=None, preset=None, pix_fmt="yuv420p", extra_args=("-f", "null"),
                             check_frame_count=False)
        with writer:
            for frame in reader:
                rgb = torch.from_numpy(frame).permute(2, 0, 1).float().div_(255)
                out = rgb.clamp_(0, 1).mul_(255).round_().to(torch.uint8).permute(1, 2, 0).contiguous().numpy()
                writer.write(np.ascontiguousarray(out))
                count += 1
    return count


def model_seconds_per_frame() -> float:
    from edvr_cli.model_choice import load_enhance_model
    network = load_enhance_model("builtin-qe", None, None, progress=False).network.eval()
    frames = torch.rand(1, network.num_frame, 3, 1080, 1920)
    with torch.no_grad():
        started = time.perf_counter()
        network(frames)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--skip-model", action="store_true")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        import edvr_cli.video_io  # noqa: F401
        pipe, version = old_pipe, "uint8 RGB pipe (30d89cd)"
    except ImportError:
        pipe, version = new_pipe, "native planes + float RGB"
    with tempfile.TemporaryDirectory() as folder:
        source = Path(folder) / "1080p.mkv"
        make_source(source, args.frames)
        started = time.perf_counter()
        count = pipe(source)
        seconds = time.perf_counter() - started
    result = {"pipe": version, "frames": count, "seconds": round(seconds, 2), "pipe_fps": round(count / seconds, 2),
              "torch_threads": torch.get_num_threads()}
    if not args.skip_model:
        model = model_seconds_per_frame()
        result["builtin_qe_fps_1080p"] = round(1 / model, 3)
        result["pipe_over_model"] = round(count / seconds * model, 1)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
