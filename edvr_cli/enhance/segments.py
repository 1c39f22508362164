"""The segment plan: which output frames each segment writes and which input frames it reads.

A video of n frames is cut into segments of `segment_frames` output frames. Segment k writes
frames [start, stop) and reads every input frame their windows use, computed with the clip's true
length n, so the frames near a segment's edges see their real neighbours and padding applies only
at the clip's true ends: every segment's frames equal a single pass's (see `segment_windows`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Iterator, TypeVar

from edvr_cli.enhance.stream import EnhanceError
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
    """Output frames [start, stop) of the clip; input frames [first_input, last_input] feed them."""

    index: int
    start: int
    stop: int
    first_input: int
    last_input: int

    @property
    def num_frames(self) -> int:
        return self.stop - self.start


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


def segment_windows(frames: Iterable[tuple[int, T]], segment: Segment, num_frames: int, window: int,
                    padding: str) -> Iterator[tuple[int, list[T]]]:
    """(frame index, window frames) for each output frame of `segment`, in order.

    `frames` yields (clip index, frame) pairs in order, starting at or before
    `segment.first_input`; frames outside the segment's input range are skipped and each frame is
    dropped once no later window of the segment uses it (at most window + reach frames are held).
    """
    held: dict[int, T] = {}
    frames = iter(frames)
    for frame_idx in range(segment.start, segment.stop):
        indices = window_indices(frame_idx, num_frames, window, padding)
        while max(indices) not in held:
            try:
                idx, frame = next(frames)
            except StopIteration:
                raise InputEndedEarly(f"the input ended before frame {max(indices) + 1} of the {num_frames} its "
                                      f"container announced; run with --segment-frames 0") from None
            if segment.first_input <= idx <= segment.last_input:
                held[idx] = frame
        yield frame_idx, [held[idx] for idx in indices]
        keep_from = frame_idx + 1 - max_reach(window)  # no later window reaches further back
        for idx in [idx for idx in held if idx < keep_from]:
            del held[idx]
