"""Folders of image frames: listing in natural order, reading images, writing PNG.

`read_image_native` keeps an image's own depth: (h, w[, c]) uint8 or uint16 (Pillow reads
16-bit RGB PNGs as 8 bits, so those are decoded by ffmpeg). `read_image` gives (h, w, 3) uint8
RGB (16-bit rounded to 8 bits; grey and RGBA become RGB). `write_png` writes 8- or 16-bit.
"""

from __future__ import annotations

import re
import struct
import subprocess
import zlib
from pathlib import Path

import imageio.v3 as iio
import numpy as np

from models.errors import EdvrError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


class ImageFolderError(EdvrError, ValueError):
    """A folder that should hold frames does not, or a frame cannot be read."""


def natural_key(name: str) -> list:
    """Sort key of file and clip names: "frame10" after "frame9", as people number frames;
    case-insensitive. The one order of frames and clips (`clip_layout` sorts clips by it)."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def list_image_files(folder: str | Path) -> list[Path]:
    """Image files directly inside `folder`, in natural name order."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ImageFolderError(f"{folder}: not a folder")
    files = [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
    return sorted(files, key=lambda path: natural_key(path.name))


def to_rgb_uint8(image: np.ndarray) -> np.ndarray:
    """Any decoded image as (h, w, 3) uint8 RGB."""
    if image.dtype == np.uint16:
        image = np.round(image.astype(np.float64) / 257.0).astype(np.uint8)
    elif image.dtype != np.uint8:
        raise ImageFolderError(f"unsupported image dtype {image.dtype}")
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    if image.shape[2] == 4:
        image = image[:, :, :3]
    if image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
    return np.ascontiguousarray(image)


def _png_header(path: Path) -> tuple[int, int] | None:
    """(bit depth, colour type) of a PNG file, None for other files."""
    with open(path, "rb") as handle:
        head = handle.read(26)
    if len(head) < 26 or head[:8] != b"\x89PNG\r\n\x1a\n":
        return None
    return head[24], head[25]


def _read_png16_colour(path: Path) -> np.ndarray:
    """A 16-bit RGB(A) PNG as (h, w, 3|4) uint16, decoded by ffmpeg (Pillow truncates these)."""
    from edvr_cli.video.ffmpeg import ffmpeg_exe, ffmpeg_path

    _, colour_type = _png_header(path)
    pix_fmt, channels = ("rgba64le", 4) if colour_type == 6 else ("rgb48le", 3)
    with open(path, "rb") as handle:
        handle.seek(16)
        width, height = struct.unpack(">II", handle.read(8))
    result = subprocess.run([ffmpeg_exe(), "-v", "error", "-nostdin", "-i", ffmpeg_path(path), "-f", "rawvideo",
                             "-pix_fmt", pix_fmt, "-"], capture_output=True, check=False)
    if result.returncode != 0 or len(result.stdout) != width * height * channels * 2:
        raise ImageFolderError(f"{path}: cannot read image (ffmpeg: "
                               f"{result.stderr.decode(errors='replace').strip() or 'short output'})")
    return np.frombuffer(result.stdout, "<u2").reshape(height, width, channels).astype(np.uint16)


def read_image_native(path: str | Path) -> np.ndarray:
    """One image file as stored: (h, w) or (h, w, c), uint8 or uint16."""
    path = Path(path)
    try:
        header = _png_header(path)
        if header is not None and header[0] == 16 and header[1] in (2, 6):
            return _read_png16_colour(path)
        return iio.imread(path)
    except ImageFolderError:
        raise
    except Exception as error:  # imageio raises many types; the user needs the path
        raise ImageFolderError(f"{path}: cannot read image ({_reason(error)})") from error


def _reason(error: Exception) -> str:
    """Why imageio failed, in one line; "no backend" means the bytes are no image it knows, and
    its advice to install plugins would not help with a damaged file."""
    text = str(error).strip()
    if "Could not find a backend" in text:
        return "damaged, or not the image format its name says"
    return text.splitlines()[0] if text else type(error).__name__


def read_image(path: str | Path) -> np.ndarray:
    """One image file as (h, w, 3) uint8 RGB."""
    return to_rgb_uint8(read_image_native(path))


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _write_png16(path: str | Path, image: np.ndarray) -> None:
    """A 16-bit gray (h, w) or RGB (h, w, 3) PNG; rows filtered with "Up" for compression."""
    height, width = image.shape[:2]
    channels = 1 if image.ndim == 2 else image.shape[2]
    rows = image.astype(">u2").reshape(height, width * channels).view(np.uint8)
    up = np.vstack((rows[:1], (rows[1:].astype(np.int16) - rows[:-1]).astype(np.uint8)))
    raw = np.hstack((np.full((height, 1), 2, np.uint8), up))  # filter type 2 (Up); row 0 = plain
    raw[0, 0] = 0
    colour_type = 0 if channels == 1 else 2
    header = struct.pack(">IIBBBBB", width, height, 16, colour_type, 0, 0, 0)
    data = (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", zlib.compress(raw.tobytes(), 6))
            + _png_chunk(b"IEND", b""))
    Path(path).write_bytes(data)


def write_png(path: str | Path, frame: np.ndarray) -> None:
    """Write an (h, w, 3) or (h, w) uint8 or uint16 frame as a lossless PNG."""
    if frame.dtype == np.uint16:
        _write_png16(path, frame)
    else:
        iio.imwrite(path, frame, extension=".png")
