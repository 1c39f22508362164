"""Small test clips made with the bundled ffmpeg (testsrc2 video, sine audio)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import imageio_ffmpeg

FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()


def make_clip(path: Path, width: int = 64, height: int = 48, num_frames: int = 10, fps: str = "25",
              audio: bool = False, codec_args: tuple[str, ...] = ("-c:v", "ffv1"),
              pix_fmt: str = "yuv444p") -> Path:
    """Write a testsrc2 clip of exactly `num_frames` frames (and a sine track when `audio`)."""
    args = [FFMPEG, "-v", "error", "-y", "-f", "lavfi",
            "-i", f"testsrc2=size={width}x{height}:rate={fps}"]
    if audio:
        args += ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"]
    args += ["-frames:v", str(num_frames), *codec_args, "-pix_fmt", pix_fmt]
    if audio:
        args += ["-c:a", "aac", "-shortest"]
    args.append(str(path))
    subprocess.run(args, check=True, capture_output=True)
    return path
