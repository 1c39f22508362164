"""Folders of image frames as a stream of `Frame`s: read in natural name order, written as PNG.

Frames are RGB planes (G, B, R, ffmpeg's gbrp order) or one gray plane, 8 or 16 bits as the
images hold them: 16-bit PNGs are read and written without rounding to 8 bits. Alpha is dropped
(with a note).
"""

from __future__ import annotations

import errno
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from edvr_cli.image_io import ImageFolderError, list_image_files, read_image_native, write_png
from edvr_cli.video.ffmpeg import VideoError
from edvr_cli.video.frame import Frame, FrameFormat
from edvr_cli.video.pixel_format import PlaneLayout


def image_to_planes(image: np.ndarray) -> tuple[tuple[np.ndarray, ...], PlaneLayout, bool]:
    """A decoded image (h, w[, c]) -> (planes, layout, alpha dropped)."""
    if image.dtype not in (np.uint8, np.uint16):
        raise ImageFolderError(f"unsupported image dtype {image.dtype}")
    depth = 8 if image.dtype == np.uint8 else 16
    dtype = np.dtype(np.uint8) if depth == 8 else np.dtype("<u2")
    if image.ndim == 2 or image.shape[2] in (1, 2):
        gray = image if image.ndim == 2 else image[:, :, 0]
        return (np.ascontiguousarray(gray, dtype),), PlaneLayout("gray", depth), image.ndim == 3 and image.shape[2] == 2
    red, green, blue = (np.ascontiguousarray(image[:, :, idx], dtype) for idx in range(3))
    return (green, blue, red), PlaneLayout("rgb", depth), image.shape[2] == 4


def planes_to_image(frame: Frame, layout: PlaneLayout) -> np.ndarray:
    """A frame of an RGB or gray layout -> (h, w, 3) or (h, w) uint8/uint16 for imageio."""
    if layout.family == "gray":
        return frame.planes[0]
    if layout.family != "rgb":
        raise ValueError(f"PNG frames are RGB or gray, got {layout.pix_fmt}")
    green, blue, red = frame.planes
    return np.stack((red, green, blue), axis=2)


def _read(file: Path) -> np.ndarray:
    try:
        return read_image_native(file)
    except ImageFolderError as error:
        raise VideoError(str(error)) from error


class FolderFrameReader:
    """Yield the images of a folder, in natural name order, as `Frame`s (pts = frame index).

    All frames must have the first frame's size and kind; the first one that does not raises
    VideoError naming it. `format` and `num_frames` are known on construction; `notify` is told
    what is dropped (alpha).
    """

    def __init__(self, folder: str | Path, notify: Callable[[str], None] | None = None):
        self.path = Path(folder)
        try:
            self.files = list_image_files(self.path)
        except ImageFolderError as error:
            raise VideoError(str(error)) from error
        if not self.files:
            raise VideoError(f"{self.path}: no image files in this folder")
        planes, layout, alpha = self._planes(self.files[0])
        self._first = planes
        self.height, self.width = planes[0].shape
        self.format = FrameFormat(layout, self.width, self.height, full_range=True)
        if alpha and notify is not None:
            notify(f"{self.path}: the images' alpha channel is dropped")
        self.num_frames = len(self.files)
        self.num_frames_read = 0

    @staticmethod
    def _planes(file: Path):
        try:
            return image_to_planes(_read(file))
        except ImageFolderError as error:
            raise VideoError(f"{file}: {error}") from error

    def __iter__(self) -> Iterator[Frame]:
        self.num_frames_read = 0
        for index, file in enumerate(self.files):
            if index == 0:
                planes, layout = self._first, self.format.layout
            else:
                planes, layout, _ = self._planes(file)
            if planes[0].shape != (self.height, self.width):
                raise VideoError(f"{file}: frame size {planes[0].shape[1]}x{planes[0].shape[0]} differs "
                                 f"from {self.width}x{self.height} of the first frame {self.files[0].name}")
            if layout != self.format.layout:
                raise VideoError(f"{file}: a {layout.pix_fmt} image among {self.format.layout.pix_fmt} "
                                 f"frames (first frame {self.files[0].name}); give all frames one kind")
            self.num_frames_read += 1
            yield Frame(planes, index)

    def close(self) -> None:
        """Nothing to release."""

    def __enter__(self) -> "FolderFrameReader":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


class PngFolderWriter:
    """Write frames (RGB or gray layout, 8 or 16 bits) as `000001.png`, `000002.png`, ...

    Same interface as FrameWriter: `write(frame)`, `close()`, `abort()`.
    """

    def __init__(self, folder: str | Path, fmt: FrameFormat, start_number: int = 1):
        if fmt.layout.family not in ("rgb", "gray") or fmt.layout.depth not in (8, 16):
            raise ValueError(f"PNG frames are 8- or 16-bit RGB or gray, not {fmt.layout.pix_fmt}")
        self.path = Path(folder)
        self.path.mkdir(parents=True, exist_ok=True)
        self.format = fmt
        self.next_number = start_number
        self.num_frames_written = 0

    def write(self, frame: Frame) -> None:
        image = planes_to_image(frame, self.format.layout)
        if image.shape[:2] != (self.format.height, self.format.width):
            raise ValueError(f"frame of {image.shape[1]}x{image.shape[0]} does not match the writer's "
                             f"{self.format.width}x{self.format.height}")
        file = self.path / f"{self.next_number:06d}.png"
        try:
            write_png(file, image)
        except OSError as error:  # above all a full disk: say so, naming the file, at the frame it hits
            file.unlink(missing_ok=True)  # no truncated PNG
            reason = {errno.ENOSPC: "no space left on device", errno.EDQUOT: "disk quota exceeded"}.get(
                error.errno, error.strerror or str(error))
            raise VideoError(f"{file}: cannot write the frame: {reason}") from None
        self.next_number += 1
        self.num_frames_written += 1

    def close(self) -> None:
        """Nothing to flush: each PNG is complete when `write` returns."""

    def abort(self) -> None:
        """Nothing to stop; written frames stay."""

    def __enter__(self) -> "PngFolderWriter":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
