"""Restore segments: one decode pass, each segment's frames through the network, one file each.

The same worker serves a plain run (all unfinished segments of the input, in one pass over the
decoded frames) and a Ray task (one segment). Frames are decoded from the start; frames no
remaining segment reads are skipped before they reach the device, so a resumed run pays only
the decoding of the finished part.
"""

from __future__ import annotations

import collections
from fractions import Fraction
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

from edvr_cli.enhance.planes import FramePlanes
from edvr_cli.enhance.segments import InputEndedEarly, Segment, segment_windows
from edvr_cli.enhance.sources import Source, Timing, open_writer
from edvr_cli.enhance.stream import EnhanceError, restore_windows
from edvr_cli.video import EncoderSettings, Frame, FrameFormat
from edvr_cli.windows import max_reach


class SeekMissed(Exception):
    """Decoding from a seek point did not give the frames the segment needs (the caller decodes
    from the start instead)."""


@dataclass(frozen=True)
class FrameClock:
    """Which frame of a constant-rate video a pts is: frame 0's time and the exact rate."""

    origin: Fraction  # seconds of frame 0 (as FrameReader reports it)
    fps: Fraction

    def seek_seconds(self, frame_idx: int) -> float:
        """A time half a frame before frame `frame_idx - 1`: decoding from there gives every frame
        from `frame_idx - 1` on (one frame early, so a deinterlacer sees its real previous frame)."""
        return max(0.0, float(self.origin + (Fraction(frame_idx) - Fraction(3, 2)) / self.fps))

    def indexed(self, reader) -> Iterator[tuple[int, Frame]]:
        """(frame index, frame) of a reader's frames, from their pts; SeekMissed unless consecutive."""
        previous = None
        for frame in reader:
            if frame.pts is None or reader.time_base is None:
                raise SeekMissed("a frame without a timestamp")
            idx = round((frame.pts * reader.time_base - self.origin) * self.fps)
            if previous is not None and idx != previous + 1:
                raise SeekMissed(f"frame {idx} after frame {previous}")
            previous = idx
            yield idx, frame


@dataclass(frozen=True)
class SegmentOutput:
    """How a segment's frames are written: the final codec, at their final times."""

    format: FrameFormat
    encoder: EncoderSettings
    folder: bool  # PNG frames instead of a video file
    deinterlaced: bool
    first_frame: int = 0  # the clip frame written as the output's first (--start): its time is 0, its PNG 000001


class ReplayableFrames:
    """An in-order stream of (index, frame) that can be restarted a little way back.

    Consecutive segments share context frames: the next segment's first windows read frames the
    previous one already pulled. The last `history` frames are kept to be yielded again.
    """

    def __init__(self, frames: Iterable[tuple[int, object]], history: int):
        self._frames = iter(frames)
        self._history: collections.deque = collections.deque(maxlen=history)

    def starting_at(self, first: int) -> Iterator[tuple[int, object]]:
        """The frames with index >= `first`: the kept ones again, then new ones."""
        for idx, frame in list(self._history):
            if idx >= first:
                yield idx, frame
        for idx, frame in self._frames:
            self._history.append((idx, frame))
            if idx >= first:
                yield idx, frame


def needed_ranges(segments: list[Segment]) -> list[tuple[int, int]]:
    """The input frames `segments` read, as sorted, disjoint [low, high] ranges."""
    merged: list[list[int]] = []
    for low, high in sorted((segment.first_input, segment.last_input) for segment in segments):
        if merged and low <= merged[-1][1] + 1:
            merged[-1][1] = max(merged[-1][1], high)
        else:
            merged.append([low, high])
    return [(low, high) for low, high in merged]


def _decoded(source: Source, planes: FramePlanes, timing: Timing, needed: list[tuple[int, int]], num_frames: int,
             first_frame: int, clock: FrameClock | None, count: list[int]) -> Iterator[tuple[int, object]]:
    """(index, prepared frame) of the decoded frames within `needed`; `count[0]` follows how many
    were decoded. Times count from `first_frame`."""
    indexed = enumerate(source.reader) if clock is None else clock.indexed(source.reader)
    first, ranges = True, iter(needed)
    low, high = next(ranges, (num_frames, num_frames))
    for idx, frame in indexed:
        count[0] = idx + 1
        if first and clock is not None and idx > low:
            raise SeekMissed(f"decoding from the seek point began at frame {idx}, after {low}")
        first = False
        if idx == first_frame:
            timing.start_at(frame)
        if idx >= num_frames:
            raise EnhanceError(f"the input holds more than the {num_frames} frames its container "
                               f"announced; run with --segment-frames 0")
        while idx > high:  # frames arrive in order: a passed range is never needed again
            low, high = next(ranges, (num_frames, num_frames))
        if low <= idx:
            yield idx, planes.prepare(frame)  # only frames some window reads reach the device


def restore_segments(source: Source, planes: FramePlanes, timing: Timing,
                     segments: list[Segment], num_frames: int, window: int, padding: str, batch: int,
                     output: SegmentOutput,
                     partial_path: Callable[[Segment], Path], on_frame: Callable[[], None] | None = None,
                     notify: Callable[[str], None] | None = None,
                     clock: FrameClock | None = None) -> Iterator[tuple[Segment, Path, Fraction | None]]:
    """Restore `segments` (in order) of `source`, yielding each (segment, its complete file, the
    time of its first frame in seconds from the clip's first; None for PNG frames).

    `planes` runs the network and converts its frames; `partial_path(segment)` names the file (or PNG folder) a
    segment is written to; it is complete once yielded and the caller commits it. With `clock`,
    `source` was opened at a seek point and frames are identified by their pts (SeekMissed if
    that point was too late).
    """
    segments = sorted(segments, key=lambda segment: segment.index)
    count = [0]  # frames the pass decoded
    decoded = _decoded(source, planes, timing, needed_ranges(segments), num_frames, output.first_frame, clock, count)
    frames = ReplayableFrames(decoded, history=2 * max_reach(window) + window)
    for segment in segments:
        path = partial_path(segment)
        first_time: list[Fraction] = []
        with open_writer(path, output.format, timing.time_base, source, output.encoder, folder=output.folder,
                         deinterlaced=output.deinterlaced, notify=notify, segment=True,
                         start_number=segment.start - output.first_frame + 1) as writer:

            def write(frame_idx, centre, restored, writer=writer) -> None:
                pts = timing.pts(centre.frame, frame_idx - output.first_frame)
                if pts is None and timing.variable:
                    raise EnhanceError("a frame without a timestamp in variable-frame-rate video cannot be "
                                       "placed in a segment; run with --segment-frames 0")
                if not first_time:
                    first_time.append(pts * timing.time_base)
                writer.write(Frame(planes.finish(centre, restored), pts))

            windows = segment_windows(frames.starting_at(segment.first_input), segment, num_frames, window,
                                      padding)
            try:
                restore_windows(windows, planes.run, write, batch, on_frame)
            except InputEndedEarly as ended:  # the pass is over: how far it got is now known
                raise InputEndedEarly(str(ended), None if clock is not None else count[0]) from None
        yield segment, path, None if output.folder else first_time[0]
