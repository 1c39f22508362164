"""A video as (h, w, 3) uint8 RGB frames, converted from its native planes by our own maths.

`edvr eval` and the trainer's data cache read videos through this, so a restored video is
scored exactly as `edvr enhance` made its frames: the same matrix, range and chroma upsampling
(`video.convert`), rounded once to 8 bits (a 16-bit PNG output rounds the same way).
"""

from __future__ import annotations

import os
from typing import Iterator

import numpy as np

from edvr_cli.video import colour
from edvr_cli.video.convert import FrameConverter
from edvr_cli.video.probe import VideoInfo
from edvr_cli.video.reader import FrameReader


class RgbFrameReader:
    """Decode `path` natively and yield (h, w, 3) uint8 RGB frames, in order.

    Same arguments and attributes as `FrameReader` (`width`, `height`, `info`, `num_frames_read`).
    """

    def __init__(self, path: str | os.PathLike, info: VideoInfo | None = None, queue_size: int = 8):
        self._reader = FrameReader(path, info, queue_size=queue_size)
        self._converter = FrameConverter(self._reader.format)
        self.path, self.info = self._reader.path, self._reader.info
        self.width, self.height = self._reader.width, self._reader.height

    @property
    def num_frames_read(self) -> int:
        return self._reader.num_frames_read

    def __iter__(self) -> Iterator[np.ndarray]:
        for frame in self._reader:
            rgb = self._converter.to_rgb(frame.planes)  # (3, h, w) float
            codes = colour.to_codes(rgb.clamp(0, 1), 8, True, False)
            yield codes.permute(1, 2, 0).numpy().astype(np.uint8)

    def close(self) -> None:
        self._reader.close()

    def __enter__(self) -> "RgbFrameReader":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
