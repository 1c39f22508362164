"""Folders of image frames: listing in natural order, reading as RGB uint8, writing PNG.

Frames are numpy arrays of shape (h, w, 3), dtype uint8, RGB. 16-bit images are
rounded to 8 bits; grey and RGBA images become RGB.
"""

from __future__ import annotations

import re
from pathlib import Path

import imageio.v3 as iio
import numpy as np

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


class ImageFolderError(ValueError):
    """A folder that should hold frames does not, or a frame cannot be read."""


def _natural_key(path: Path) -> list:
    # "frame10" sorts after "frame9", as people number frames.
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", path.name)]


def list_image_files(folder: str | Path) -> list[Path]:
    """Image files directly inside `folder`, in natural name order."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ImageFolderError(f"{folder}: not a folder")
    files = [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
    return sorted(files, key=_natural_key)


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


def read_image(path: str | Path) -> np.ndarray:
    """One image file as (h, w, 3) uint8 RGB."""
    try:
        image = iio.imread(path)
    except Exception as error:  # imageio raises many types; the user needs the path
        raise ImageFolderError(f"{path}: cannot read image ({error})") from error
    return to_rgb_uint8(image)


def write_png(path: str | Path, frame: np.ndarray) -> None:
    """Write an (h, w, 3) uint8 frame as a lossless PNG."""
    iio.imwrite(path, frame, extension=".png")
