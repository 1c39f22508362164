"""The restore loop of `edvr enhance`: decode -> window -> restore -> convert back -> write.

Every run goes through `restore_segments`. A plain run of a short video, or of one whose length
is unknown, is one segment (`segments.ONE_PASS`) written straight into the output with the
input's other streams; a long video is restored as its unfinished segments, one file each, in
one pass over the decoded frames; a Ray task (ray_pool.py) is one segment. Frames no remaining
segment reads are skipped before they reach the device, so a resumed run pays only the decoding
of the finished part.

    source.reader         decoded Frames: the source's own planes and times (Ray: from a seek point)
    FramePlanes.prepare   the planes, and RGB float on the model's device, once per frame
    segment_windows       each output frame's temporal window, holding only the frames later ones need
    FramePlanes.run       batches of windows through the network (tiles, ensemble, out-of-memory retry)
    FramePlanes.finish    its RGB back to output planes (scale 1: input planes + strength x change)
    writer.write          the encoder or the PNG folder, each frame at its input frame's time
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path
from typing import Callable, Iterable, Iterator, TypeVar

from edvr_cli.enhance.errors import EnhanceError
from edvr_cli.enhance.planes import FramePlanes
from edvr_cli.enhance.segments import InputEndedEarly, ReplayableFrames, Segment, needed_ranges, segment_windows
from edvr_cli.enhance.sources import Source, Timing, open_writer
from edvr_cli.video import EncoderSettings, Frame, FrameFormat
from edvr_cli.windows import max_reach

T = TypeVar("T")


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
    whole: bool = False  # the one segment is the output: with the input's other streams and start offset


def restore_segments(source: Source, planes: FramePlanes, segments: list[Segment], num_frames: int | None,
                     window: int, padding: str, batch: int, output: SegmentOutput,
                     partial_path: Callable[[Segment], Path], on_frame: Callable[[], None] | None = None,
                     notify: Callable[[str], None] | None = None, clock: FrameClock | None = None,
                     open_writer: Callable[..., object] = open_writer,
                     ) -> Iterator[tuple[Segment, Path, Fraction | None]]:
    """Restore `segments` (in order) of `source`, yielding each (segment, its complete file, the
    time of its first frame in seconds from the clip's first; None for PNG frames and `whole`).

    `num_frames` is the clip's length the segments were planned for, or None (ONE_PASS): then
    every frame that decodes is restored, and the segment yielded has its `stop` filled in.
    `planes` runs the network and converts its frames; `partial_path(segment)` names the file
    (or PNG folder) a segment is written to; it is complete once yielded and the caller commits
    it. With `clock`, `source` was opened at a seek point and frames are identified by their pts
    (SeekMissed if that point was too late).
    """
    if batch < 1:
        raise EnhanceError(f"--batch must be at least 1, got {batch}")
    timing = Timing(source)
    segments = sorted(segments, key=lambda segment: segment.index)
    decoded = DecodedFrames(source, planes.prepare, timing, needed_ranges(segments), num_frames, output.first_frame,
                            clock)
    frames = ReplayableFrames(decoded, history=2 * max_reach(window) + window if len(segments) > 1 else 0)
    for segment in segments:
        path, times = partial_path(segment), FrameTimes(timing, output)
        with open_writer(path, output.format, timing.time_base, source, output.encoder, folder=output.folder,
                         deinterlaced=output.deinterlaced, notify=notify, segment=not output.whole,
                         start_number=segment.start - output.first_frame + 1) as writer:
            windows = segment_windows(frames.starting_at(segment.first_input), segment, num_frames, window, padding)
            try:
                for batch_windows in batched(windows, batch):
                    restored = planes.run([window_frames for _, window_frames in batch_windows])
                    for (frame_idx, window_frames), rgb in zip(batch_windows, restored, strict=True):
                        centre = window_frames[len(window_frames) // 2]
                        writer.write(Frame(planes.finish(centre, rgb), times.pts(frame_idx, centre.frame)))
                        if on_frame is not None:
                            on_frame()
            except InputEndedEarly as ended:  # the pass is over: how far it got is now known
                raise InputEndedEarly(str(ended), None if clock is not None else decoded.count) from None
            if times.num_written == 0:
                raise EnhanceError("the input holds no frames")
        if segment.stop is None:  # ONE_PASS: its end is where the frames ended
            stop = segment.start + times.num_written
            segment = replace(segment, stop=stop, last_input=stop - 1)
        yield segment, path, None if output.folder or output.whole else times.first_seconds


class DecodedFrames:
    """(clip index, prepared frame) of `source`'s frames within `needed` ([low, high] ranges),
    identified by pts with a `clock`; `count` follows how many were decoded. `timing` counts
    times from clip frame `first_frame`."""

    def __init__(self, source: Source, prepare: Callable[[Frame], T], timing: Timing, needed: list[tuple],
                 num_frames: int | None, first_frame: int, clock: FrameClock | None):
        self.source, self.prepare, self.timing, self.needed = source, prepare, timing, needed
        self.num_frames, self.first_frame, self.clock = num_frames, first_frame, clock
        self.count = 0

    def __iter__(self) -> Iterator[tuple[int, T]]:
        reader = self.source.reader
        indexed = enumerate(reader) if self.clock is None else self.clock.indexed(reader)
        ranges = iter(self.needed)
        low, high = next(ranges, (math.inf, math.inf))
        for idx, frame in indexed:
            if self.count == 0 and self.clock is not None and idx > low:
                raise SeekMissed(f"decoding from the seek point began at frame {idx}, after {low}")
            self.count = idx + 1
            if idx == self.first_frame:
                self.timing.start_at(frame)
            if self.num_frames is not None and idx >= self.num_frames:
                raise EnhanceError(f"the input holds more than the {self.num_frames} frames its container "
                                   f"announced; run with --segment-frames 0")
            while idx > high:  # frames arrive in order: a passed range is never needed again
                low, high = next(ranges, (math.inf, math.inf))
            if low <= idx:
                yield idx, self.prepare(frame)  # only frames some window reads reach the device


class FrameTimes:
    """Each written frame's pts, from its input frame's (`Timing`); the segment's first time."""

    def __init__(self, timing: Timing, output: SegmentOutput):
        self.timing, self.output = timing, output
        self.num_written = 0
        self.first_seconds: Fraction | None = None

    def pts(self, frame_idx: int, frame: Frame) -> int | None:
        pts = self.timing.pts(frame, frame_idx - self.output.first_frame)
        if pts is None and self.timing.variable and not self.output.whole:
            raise EnhanceError("a frame without a timestamp in variable-frame-rate video cannot be "
                               "placed in a segment; run with --segment-frames 0")
        if self.num_written == 0 and pts is not None:
            self.first_seconds = pts * self.timing.time_base
        self.num_written += 1
        return pts


def batched(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """`items` in lists of `size` (the last one shorter), each yielded as soon as it is full."""
    batch: list[T] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


__all__ = ["restore_segments", "SegmentOutput", "FrameClock", "SeekMissed", "DecodedFrames", "batched"]
