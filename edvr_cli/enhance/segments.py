"""Segments and their windows: which output frames a segment writes, which input frames it
reads, and each output frame's temporal window as the decoded frames stream past.

A video of n frames is cut into segments of `segment_frames` output frames. Segment k writes
frames [start, stop) and reads every input frame their windows use, computed with the clip's true
length n, so the frames near a segment's edges see their real neighbours and padding applies only
at the clip's true ends: every segment's frames equal a single pass's (see `segment_windows`).
A single pass is one segment, `ONE_PASS`: the whole clip, however many frames it turns out to
hold (a count that is unknown, or announced wrongly by a truncated file, is not trusted).
"""

from __future__ import annotations

import collections
import math
from dataclasses import dataclass
from typing import Iterable, Iterator, TypeVar

from edvr_cli.enhance.errors import EnhanceError
from edvr_cli.windows import max_reach, window_indices

T = TypeVar("T")

# Chosen by measurement (benchmarks/README.md, "Segments"): at 1000 frames the segment restarts
# and the join cost under 1 % of a CPU run, and a segment is minutes of GPU work at 1080p.


class InputEndedEarly(EnhanceError):
    """The input decoded to fewer frames than its container announced (a truncated file).

    `decoded` is how many it gave, once the decoding pass has ended (None before)."""

    def __init__(self, message: str, decoded: int | None = None):
        super().__init__(message)
        self.decoded = decoded


@dataclass(frozen=True)
class Segment:
    """Output frames [start, stop) of the clip; input frames [first_input, last_input] feed them.
    `stop` and `last_input` are None for `ONE_PASS`: the clip's end, known once decoding ends."""

    index: int
    start: int
    stop: int | None
    first_input: int
    last_input: int | None

    @property
    def num_frames(self) -> int:
        return self.stop - self.start


ONE_PASS = Segment(0, 0, None, 0, None)  # the whole clip in one pass


def plan_segments(num_frames: int, segment_frames: int, window: int, padding: str, first: int = 0,
                  stop: int | None = None) -> list[Segment]:
    """Segments of `segment_frames` output frames (0 = one segment) over a clip of `num_frames`, or
    over its frames [first, stop) only (their windows still read the real neighbours outside)."""
    if num_frames < 1:
        raise EnhanceError("the input holds no frames")
    if segment_frames < 0:
        raise EnhanceError(f"--segment-frames must be 0 or more, got {segment_frames}")
    end = num_frames if stop is None else stop
    size = segment_frames or end - first
    segments = []
    for index, start in enumerate(range(first, end, size)):
        stop = min(start + size, end)
        used = [idx for frame in range(start, stop) for idx in window_indices(frame, num_frames, window, padding)]
        segments.append(Segment(index, start, stop, min(used), max(used)))
    return segments


def same_windows(segment: Segment, num_frames: int, other_num_frames: int, window: int, padding: str) -> bool:
    """Whether every frame of `segment` reads the same input frames in a clip of `num_frames` as
    in one of `other_num_frames` (only frames near the clip's end see its length)."""
    return segment.stop <= min(num_frames, other_num_frames) and all(
        window_indices(frame, num_frames, window, padding) == window_indices(frame, other_num_frames, window, padding)
        for frame in range(segment.start, segment.stop))


def segment_windows(frames: Iterable[tuple[int, T]], segment: Segment, num_frames: int | None, window: int,
                    padding: str) -> Iterator[tuple[int, list[T]]]:
    """(frame index, window frames) for each output frame of `segment`, in order.

    `frames` yields (clip index, frame) pairs in order, starting at or before
    `segment.first_input`; frames outside the segment's input range are skipped and each frame is
    dropped once no later window of the segment uses it (at most window + reach frames are held).
    `num_frames` is the clip's length, or None to learn it from where `frames` ends: frame i's
    window is then formed once frame i + reach has arrived (no index in it depends on the length
    any more). A segment without a `stop` ends with the clip. Frames that end before a known
    `num_frames` raise InputEndedEarly.
    """
    reach = max_reach(window)
    held: dict[int, T] = {}
    frames = iter(frames)
    last_idx, ended = -1, False  # the last frame pulled; whether `frames` has ended

    def pull_until(wanted: int) -> None:
        nonlocal last_idx, ended
        while last_idx < wanted and not ended:
            try:
                last_idx, frame = next(frames)
            except StopIteration:
                ended = True
                return
            if segment.first_input <= last_idx and (segment.last_input is None or last_idx <= segment.last_input):
                held[last_idx] = frame

    stop = segment.stop if segment.stop is not None else num_frames  # None: where the frames end
    frame_idx = segment.start
    while stop is None or frame_idx < stop:
        if num_frames is None:
            pull_until(frame_idx + reach)
            if frame_idx > last_idx:  # the clip ended before this frame
                return
            indices = window_indices(frame_idx, last_idx + 1, window, padding)
        else:
            indices = window_indices(frame_idx, num_frames, window, padding)
            pull_until(max(indices))
            if last_idx < max(indices):
                raise InputEndedEarly(f"the input ended before frame {max(indices) + 1} of the {num_frames} its "
                                      f"container announced; run with --segment-frames 0")
        yield frame_idx, [held[idx] for idx in indices]
        for idx in [idx for idx in held if idx <= frame_idx - reach]:  # no later window reaches further back
            del held[idx]
        frame_idx += 1


class ReplayableFrames:
    """An in-order stream of (index, frame) that can be restarted a little way back.

    Consecutive segments share context frames: the next segment's first windows read frames the
    previous one already pulled. The last `history` frames are kept to be yielded again.
    """

    def __init__(self, frames: Iterable[tuple[int, T]], history: int):
        self._frames = iter(frames)
        self._history: collections.deque = collections.deque(maxlen=history)

    def starting_at(self, first: int) -> Iterator[tuple[int, T]]:
        """The frames with index >= `first`: the kept ones again, then new ones."""
        for idx, frame in list(self._history):
            if idx >= first:
                yield idx, frame
        for idx, frame in self._frames:
            self._history.append((idx, frame))
            if idx >= first:
                yield idx, frame


def needed_ranges(segments: list[Segment]) -> list[tuple[int, int | float]]:
    """The input frames `segments` read, as sorted, disjoint [low, high] ranges (high is math.inf
    for a segment that reads to the clip's end)."""
    merged: list[list] = []
    bounds = [(segment.first_input, math.inf if segment.last_input is None else segment.last_input)
              for segment in segments]
    for low, high in sorted(bounds):
        if merged and low <= merged[-1][1] + 1:
            merged[-1][1] = max(merged[-1][1], high)
        else:
            merged.append([low, high])
    return [(low, high) for low, high in merged]


__all__ = ["Segment", "ONE_PASS", "InputEndedEarly", "plan_segments", "same_windows", "segment_windows",
           "ReplayableFrames", "needed_ranges"]
