"""A frame as it travels (its planes and its presentation time) and the format that reads them.

`FrameFormat` says everything needed to turn planes into RGB and back: the planar layout and
size, the YUV matrix and range, and the tags (primaries, transfer) that are carried to the
output unchanged. `source_format(info)` reads it off a probed video: tagged values where the
file has them; untagged YUV is BT.709 at HD sizes and BT.601 below (what players assume),
limited range unless the pixel format is a full-range yuvj one; RGB and gray are full range.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from edvr_cli.video.colour import LUMA_WEIGHTS
from edvr_cli.video.pixel_format import PlaneLayout, is_full_range_pix_fmt, native_layout

if TYPE_CHECKING:
    from edvr_cli.video.probe import VideoInfo


@dataclass
class Frame:
    """One frame: planes in its format's layout (uint8 or uint16), and its presentation time in
    the reader's time base (None when the container gives none)."""

    planes: tuple[np.ndarray, ...]
    pts: int | None = None


@dataclass(frozen=True)
class FrameFormat:
    """Layout, size and colour interpretation of the planes of a stream of frames."""

    layout: PlaneLayout
    width: int
    height: int
    matrix: str = "bt709"  # a colour.LUMA_WEIGHTS key; used for YUV only
    full_range: bool = False
    color_primaries: str | None = None  # tags carried as they are
    color_transfer: str | None = None

    def scaled(self, scale: int) -> "FrameFormat":
        """The same format for frames `scale` times larger."""
        return replace(self, width=self.width * scale, height=self.height * scale)

    def with_layout(self, layout: PlaneLayout) -> "FrameFormat":
        full_range = self.full_range if layout.family == "yuv" else True
        return replace(self, layout=layout, full_range=full_range)

    @property
    def range_tag(self) -> str:
        return "pc" if self.full_range else "tv"


def untagged_matrix(width: int, height: int) -> str:
    """The matrix players assume for untagged YUV: BT.709 at HD sizes, BT.601 below."""
    return "bt709" if width >= 1280 or height >= 720 else "smpte170m"


def source_format(info: "VideoInfo") -> tuple[FrameFormat, str | None]:
    """How the frames of a probed video are read, and a note when samples are lost."""
    layout, note = native_layout(info.pix_fmt)
    if info.color_space in LUMA_WEIGHTS:
        matrix = info.color_space
    else:
        matrix = untagged_matrix(info.width, info.height)
    if layout.family == "yuv":
        full_range = info.color_range == "pc" or (info.color_range is None and is_full_range_pix_fmt(info.pix_fmt))
    else:
        full_range = info.color_range != "tv"
    fmt = FrameFormat(layout, info.decoded_width, info.decoded_height, matrix, full_range,
                      info.color_primaries, info.color_transfer)
    return fmt, note
