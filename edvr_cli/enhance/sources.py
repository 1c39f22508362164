"""What `enhance` reads and writes: the opened input, the output's frame format, its timing.

- `open_source(path)`: a video (native planes, see `video.reader`) or a folder of images.
- `output_format(source, scale, folder)`: the planes written. At scale 1 they are the source's
  own layout, so the output is the input's planes plus the network's change (`video.convert`).
- `Timing`: each output frame's presentation time: the input frame's own.
- `count_frames_exactly(source)`: every packet counted where probing stopped early.
- `open_writer(...)`: the video writer (streams copied from the source) or a PNG folder writer.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path
from typing import Callable, Iterable

from edvr_cli.enhance.settings import DEFAULT_FOLDER_FPS
from edvr_cli.video import (EncoderSettings, FolderFrameReader, Frame, FrameFormat, FrameReader, FrameWriter,
                            PlaneLayout, PngFolderWriter, VideoInfo, native_layout, probe, untagged_matrix)
from edvr_cli.video.packets import scan_packets


@dataclass
class Source:
    """An opened input: the frame reader and what is known about the frames up front."""

    reader: Iterable[Frame]  # closed by close()
    format: FrameFormat
    fps: Fraction  # exact for constant-rate video; the average rate for variable-rate video
    num_frames: int | None
    video_info: VideoInfo | None  # None for image folders

    @property
    def width(self) -> int:
        return self.format.width

    @property
    def height(self) -> int:
        return self.format.height

    def close(self) -> None:
        close = getattr(self.reader, "close", None)
        if close is not None:
            close()


def open_source(path: str | os.PathLike, folder_fps: Fraction = DEFAULT_FOLDER_FPS,
                deinterlace: bool = False, notify: Callable[[str], None] | None = None,
                seek_seconds: float = 0.0, info: VideoInfo | None = None) -> Source:
    """Open a video file (probed unless `info` is given, decoded natively by FrameReader, from
    `seek_seconds` on) or a folder of images; `notify` is told what reading converts."""
    path = Path(path)
    if path.is_dir():
        reader = FolderFrameReader(path, notify)
        return Source(reader, reader.format, Fraction(folder_fps), reader.num_frames, None)
    info = info or probe(path)
    reader = FrameReader(path, info=info, deinterlace=deinterlace, notify=notify, seek_seconds=seek_seconds)
    return Source(reader, reader.format, info.fps, info.num_frames, info)


def count_frames_exactly(source: Source) -> None:
    """Count every packet when probing stopped early (a long video): the plan needs the count."""
    info = source.video_info
    if info is not None and not info.frames_counted:
        scan = scan_packets(info.path, info.video_index, max_scan_seconds=float("inf"))
        if scan.complete and scan.pts:
            source.video_info = replace(info, num_frames=len(scan.pts), frames_counted=True)
            source.num_frames = len(scan.pts)


def output_format(source_format: FrameFormat, scale: int, folder: bool, pix_fmt: str | None = None) -> FrameFormat:
    """The planes written: the source's own layout, depth and colour (x `scale`); 8/16-bit RGB
    (or gray) for a PNG folder; YUV 4:2:0 (4:4:4 for odd sizes) for RGB frames written as video;
    the layout of `pix_fmt` when the user asks for one (converted by our colour maths)."""
    fmt = source_format.scaled(scale)
    layout = fmt.layout
    if folder:
        png = PlaneLayout("gray" if layout.family == "gray" else "rgb", 8 if layout.depth == 8 else 16)
        return fmt.with_layout(png)
    if pix_fmt is not None:
        asked = native_layout(pix_fmt)[0]
        if asked == layout:
            return fmt
        if asked.family == "yuv" and layout.family != "yuv":
            return replace(fmt.with_layout(asked), full_range=False, matrix=untagged_matrix(fmt.width, fmt.height))
        return fmt.with_layout(asked)
    if layout.family == "rgb":
        depth = 8 if layout.depth == 8 else 10
        yuv = PlaneLayout("yuv", depth, 2, 2)
        if not yuv.fits(fmt.width, fmt.height):
            yuv = PlaneLayout("yuv", depth)
        return replace(fmt.with_layout(yuv), full_range=False, matrix=untagged_matrix(fmt.width, fmt.height))
    return fmt


class Timing:
    """Output presentation times: the frame index at 1/fps for constant-rate input (so its exact
    rational rate is kept), each frame's own time for variable-rate input (pauses, speed changes),
    counted from the clip's first frame."""

    def __init__(self, source: Source):
        info = source.video_info
        self.variable = info is not None and info.is_vfr
        self.time_base = info.time_base if self.variable else 1 / Fraction(source.fps)
        self._reader = source.reader
        self._first: Fraction | None = None
        self._index = 0

    def _seconds(self, frame: Frame) -> Fraction:
        reader_base = getattr(self._reader, "time_base", None) or self.time_base
        return frame.pts * reader_base

    def start_at(self, first_frame: Frame) -> None:
        """Count times from `first_frame` (the clip's frame 0), when frames are timed out of order."""
        if self.variable and self._first is None and first_frame.pts is not None:
            self._first = self._seconds(first_frame)

    def pts(self, frame: Frame, index: int | None = None) -> int | None:
        """The pts of output frame `index` (default: the one after the last asked for) in
        `time_base` units; None: one tick after the last."""
        if index is None:
            index = self._index
        self._index = index + 1
        if not self.variable:
            return index
        if frame.pts is None:
            return None
        if self._first is None:
            self._first = self._seconds(frame)
        return round((self._seconds(frame) - self._first) / self.time_base)


def open_writer(path: Path, fmt: FrameFormat, time_base: Fraction, source: Source, encoder: EncoderSettings,
                folder: bool = False, deinterlaced: bool = False, notify: Callable[[str], None] | None = None,
                segment: bool = False, start_number: int = 1):
    """A FrameWriter for a video file (streams copied from a video source), or with `folder` a
    PngFolderWriter (numbered from `start_number`); `notify` is told what the output changes.
    A `segment` holds the video alone, at its final times; `join_segments` adds the rest."""
    if folder:
        return PngFolderWriter(path, fmt, start_number=start_number)
    info = source.video_info
    offset = info.start_offset if info is not None and not segment else Fraction(0)
    return FrameWriter(path, fmt, time_base, encoder, source=info, start_offset=offset,
                       deinterlaced=deinterlaced, notify=notify, segment=segment)
