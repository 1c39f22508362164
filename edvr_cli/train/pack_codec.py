"""One stream of a training pack's frames in and out: lossless gray video (x264 -qp 0, read with
OpenCV or ffmpeg) or xz-compressed raw planes (numpy only). See packed.py for the pack itself."""

from __future__ import annotations

import lzma
import os
import subprocess
from pathlib import Path
from typing import Iterator

import numpy as np

from models.errors import EdvrError

CODECS = ("h264", "xz")
SUFFIX = {"h264": ".mkv", "xz": ".i420.xz"}


class PackError(EdvrError, ValueError):
    """A pack that cannot be written, found, decoded or trusted; the message names the clip."""


def encode_frames(frames: np.ndarray, path: Path, codec: str) -> int:
    """Write (t, H, W) uint8 gray frames losslessly; returns the file's size in bytes."""
    path = Path(path)
    frames = np.ascontiguousarray(frames, dtype=np.uint8)
    partial = path.with_name(path.name + ".partial")
    if codec == "xz":
        partial.write_bytes(lzma.compress(frames.tobytes(), preset=9))
    elif codec == "h264":
        from edvr_cli.video import ffmpeg_exe

        count, height, width = frames.shape
        # -qp 0: lossless (x264 picks High 4:4:4 Predictive); gray: one plane, no colour conversion.
        command = [ffmpeg_exe(), "-hide_banner", "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "gray",
                   "-s", f"{width}x{height}", "-r", "25", "-i", "-", "-c:v", "libx264", "-qp", "0",
                   "-preset", "veryslow", "-pix_fmt", "gray", "-threads", "2", "-f", "matroska", str(partial)]
        result = subprocess.run(command, input=frames.tobytes(), capture_output=True)
        if result.returncode:
            raise PackError(f"{path.name}: x264 failed: {result.stderr.decode(errors='replace').strip()[-300:]}")
    else:
        raise PackError(f"unknown codec {codec!r}; choose one of {', '.join(CODECS)}")
    os.replace(partial, path)
    return path.stat().st_size


def opencv_available() -> bool:
    try:
        import cv2  # noqa: F401
    except ImportError:
        return False
    return True


def decode_frames(path: Path, codec: str, count: int, height: int, width: int, decoder: str = "auto") -> np.ndarray:
    """(count, height, width) uint8 gray frames of a stream `encode_frames` wrote.

    decoder (codec "h264"): "cv2" (OpenCV), "ffmpeg" (the project's reader) or "auto" (OpenCV when
    it imports, else ffmpeg)."""
    path = Path(path)
    if codec == "xz":
        data = np.frombuffer(bytearray(lzma.decompress(path.read_bytes())), np.uint8)  # writable
        if data.size != count * height * width:
            raise PackError(f"{path.name}: {data.size} bytes, expected {count} frames of {width}x{height}")
        return data.reshape(count, height, width)
    if codec != "h264":
        raise PackError(f"unknown codec {codec!r}")
    if decoder == "auto":
        decoder = "cv2" if opencv_available() else "ffmpeg"
    if decoder not in ("cv2", "ffmpeg"):
        raise PackError(f"unknown decoder {decoder!r}; choose cv2, ffmpeg or auto")
    out = np.empty((count, height, width), np.uint8)
    got = 0
    for plane in (_opencv_planes(path) if decoder == "cv2" else _ffmpeg_planes(path)):
        if got == count:
            raise PackError(f"{path.name}: more than {count} frames")
        if plane.shape != (height, width):
            raise PackError(f"{path.name}: frame {got} is {plane.shape}, expected {(height, width)}")
        out[got] = plane
        got += 1
    if got != count:
        raise PackError(f"{path.name}: {got} frames decoded, the manifest says {count}")
    return out


def _opencv_planes(path: Path) -> Iterator[np.ndarray]:
    """Each frame's gray plane, read with OpenCV (the GPU machine has it, not ffmpeg)."""
    import cv2

    capture = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    if not capture.isOpened():
        raise PackError(f"{path}: OpenCV cannot open it")
    try:
        while True:
            ok, frame = capture.read()
            if not ok:
                return
            yield frame[..., 0] if frame.ndim == 3 else frame  # gray -> B = G = R
    finally:
        capture.release()


def _ffmpeg_planes(path: Path) -> Iterator[np.ndarray]:
    """Each frame's gray plane, read with the project's ffmpeg reader."""
    from edvr_cli.video.reader import FrameReader

    reader = FrameReader(path)
    try:
        for frame in reader:
            yield frame.planes[0]
    finally:
        reader.close()
