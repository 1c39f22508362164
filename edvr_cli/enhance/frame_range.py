"""`--start` / `--duration`: which frames of a clip a preview restores, and the time range cut.

Times are ffmpeg's syntax (`90`, `90.5`, `1:30`, `00:01:30.5`, `1500ms`) and count from the
clip's first video frame. The range holds exactly the frames whose time t satisfies
start <= t < start + duration: frame k of a constant-rate video is at k / fps, of a variable-rate
one at its own presentation time, of an image folder at k / --fps. `chosen_frames` picks them
from an opened source.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from fractions import Fraction

from edvr_cli.enhance.errors import EnhanceError
from edvr_cli.enhance.sources import Source, count_frames_exactly
from edvr_cli.video.packets import scan_packets

_CLOCK = re.compile(r"^(?:(\d+):)?(\d+):(\d+(?:\.\d*)?)$")
_SECONDS = re.compile(r"^(\d+(?:\.\d*)?|\.\d+)(s|ms|us)?$")
_UNITS = {None: Fraction(1), "s": Fraction(1), "ms": Fraction(1, 1000), "us": Fraction(1, 1_000_000)}


def parse_time(text: str, what: str = "time") -> Fraction:
    """Seconds, exactly, from ffmpeg's time syntax: [HH:]MM:SS[.m...] or S[.m...][s|ms|us].

    Raises EnhanceError (one line) for anything else, a negative time included."""
    value = str(text).strip()
    if value.startswith("-"):
        raise EnhanceError(f"{what} {text} is negative; times count from the clip's first frame")
    clock = _CLOCK.match(value)
    if clock:
        hours, minutes, seconds = clock.groups()
        if int(minutes) >= 60 and hours is not None or Fraction(seconds) >= 60:
            raise EnhanceError(f"{what} {text}: minutes and seconds must be below 60 in HH:MM:SS")
        return int(hours or 0) * 3600 + int(minutes) * 60 + Fraction(seconds)
    plain = _SECONDS.match(value)
    if plain:
        return Fraction(plain.group(1)) * _UNITS[plain.group(2)]
    raise EnhanceError(f"{what} {text!r} is not a time (e.g. 90, 1:30, 00:01:30.5, 1500ms)")


@dataclass(frozen=True)
class FrameRange:
    """Clip frames [first, stop), and the source time they cover (seconds from frame 0)."""

    first: int
    stop: int
    start_time: Fraction  # frame `first`'s time
    end_time: Fraction  # the time the range's last frame ends (the next frame's, or the clip's end)

    @property
    def num_frames(self) -> int:
        return self.stop - self.first

    @property
    def seconds(self) -> Fraction:
        return self.end_time - self.start_time


def chosen_frames(source: Source, settings, input_path) -> FrameRange | None:
    """The frames --start/--duration pick (None: all of them), by each frame's time from frame 0."""
    start, duration = getattr(settings, "start", None), getattr(settings, "duration", None)
    if start is None and duration is None:
        return None
    count_frames_exactly(source)
    info = source.video_info
    if info is None or not info.is_vfr:
        if source.num_frames is None:
            raise EnhanceError(f"{input_path}: the frame count is unknown, so --start/--duration cannot be placed")
        return constant_rate_range(source.num_frames, source.fps, start, duration, os.fspath(input_path))
    scan = scan_packets(info.path, info.video_index, max_scan_seconds=float("inf"))
    pts = sorted(scan.pts)
    if not scan.complete or not pts:
        raise EnhanceError(f"{input_path}: its frame times cannot be read, so --start/--duration cannot be placed")
    times = [(value - pts[0]) * scan.time_base for value in pts]
    end = times[-1] + (scan.last_duration * scan.time_base if scan.last_duration else 1 / Fraction(source.fps))
    return frame_range(times, end, start, duration, os.fspath(input_path))


def _format(seconds: Fraction) -> str:
    return f"{float(seconds):.3f}".rstrip("0").rstrip(".") + " s"


def _check(start: Fraction, duration: Fraction | None, end: Fraction, count: int, name: str) -> None:
    if start < 0 or (duration is not None and duration < 0):
        raise EnhanceError("--start and --duration must not be negative")
    if duration is not None and duration == 0:
        raise EnhanceError("--duration 0 holds no frame; give a length, e.g. --duration 5")
    if start >= end:
        raise EnhanceError(f"--start {_format(start)} is past the end of {name} ({_format(end)}, {count} frames)")


def _empty(start: Fraction, duration: Fraction | None, name: str) -> EnhanceError:
    return EnhanceError(f"--start {_format(start)} --duration {_format(duration)} holds no frame of {name} "
                        f"(its frames are further apart); give a longer --duration")


def frame_range(times: list[Fraction], end: Fraction, start: Fraction | None, duration: Fraction | None,
                name: str) -> FrameRange:
    """The frames of a clip whose `times` (seconds from frame 0, increasing; `end` = when the last
    one ends) fall in [start, start + duration); duration None = to the end.

    Raises EnhanceError for a range that is negative, starts past the end or holds no frame."""
    start = Fraction(0) if start is None else Fraction(start)
    _check(start, duration, end, len(times), name)
    stop_time = None if duration is None else start + duration
    inside = [index for index, time in enumerate(times)
              if time >= start and (stop_time is None or time < stop_time)]
    if not inside:
        raise _empty(start, duration, name)
    first, stop = inside[0], inside[-1] + 1
    return FrameRange(first, stop, times[first], times[stop] if stop < len(times) else end)


def constant_rate_range(num_frames: int, fps: Fraction, start: Fraction | None, duration: Fraction | None,
                        name: str) -> FrameRange:
    """`frame_range` of a constant-rate clip, without listing every frame's time."""
    fps = Fraction(fps)
    start = Fraction(0) if start is None else Fraction(start)
    _check(start, duration, Fraction(num_frames) / fps, num_frames, name)
    first = math.ceil(start * fps)
    stop = num_frames if duration is None else min(num_frames, math.ceil((start + duration) * fps))
    if stop <= first:
        raise _empty(start, duration, name)
    return FrameRange(first, stop, first / fps, stop / fps)


__all__ = ["FrameRange", "parse_time", "frame_range", "constant_rate_range", "chosen_frames"]
