"""Temporal windows over a stream of frames, and the loop that restores them in order.

`SlidingWindows` forms each frame's window from a stream of unknown length while holding only
the frames later windows still need; `restore_stream` batches the windows through a runner and
writes each centre frame's output, never skipping or repeating one.
"""

from __future__ import annotations

from typing import Callable, Iterable, Iterator, Sequence, TypeVar

from edvr_cli.windows import PADDING_MODES, max_reach, window_indices
from models.errors import EdvrError

T = TypeVar("T")  # a decoded frame, whatever the runner takes
U = TypeVar("U")  # a restored frame


class EnhanceError(EdvrError, ValueError):
    """Bad input, output or settings for `enhance`; the message is one line."""


# ------------------------------------------------------------------------ temporal windows


class SlidingWindows:
    """Form each frame's temporal window from a stream of frames of unknown length.

    Frame i is emitted once frame i + reach has arrived (reach = max_reach(window)): by then no
    index of its window can depend on the clip's length, so `window_indices(i, frames_seen)`
    equals `window_indices(i, true_length)`. The last frames are emitted by `finish()`, when the
    length is known. A frame is dropped as soon as no later window can use it, so at most
    window + reach frames are held (`max_held` records the most there ever were).

    Args:
        window: frames per window (odd).
        padding: one of windows.PADDING_MODES, applied at both clip ends.
    """

    def __init__(self, window: int, padding: str):
        if padding not in PADDING_MODES:
            raise EnhanceError(f"unknown padding {padding!r}; choose one of {', '.join(PADDING_MODES)}")
        if window < 1 or window % 2 == 0:
            raise EnhanceError(f"the window must be an odd number of frames, got {window}")
        self.window = window
        self.padding = padding
        self.reach = max_reach(window)
        self.held: dict[int, object] = {}  # frame index -> frame
        self.num_seen = 0
        self.next_idx = 0  # next frame whose window is due
        self.max_held = 0

    def _emit(self, num_frames: int, last_idx: int) -> list[tuple[int, list]]:
        """Windows of frames next_idx..last_idx, assuming a clip of `num_frames`."""
        windows = []
        while self.next_idx <= last_idx:
            indices = window_indices(self.next_idx, num_frames, self.window, self.padding)
            windows.append((self.next_idx, [self.held[idx] for idx in indices]))
            self.next_idx += 1
        # Later windows reach back at most `reach` frames from their own frame.
        for idx in [idx for idx in self.held if idx < self.next_idx - self.reach]:
            del self.held[idx]
        return windows

    def push(self, frame) -> list[tuple[int, list]]:
        """Add the next frame; returns the (frame index, window frames) pairs now complete."""
        self.held[self.num_seen] = frame
        self.num_seen += 1
        self.max_held = max(self.max_held, len(self.held))
        return self._emit(self.num_seen, self.num_seen - 1 - self.reach)

    def finish(self) -> list[tuple[int, list]]:
        """The windows of the remaining frames, now that the clip's length is known."""
        return self._emit(self.num_seen, self.num_seen - 1)


def iter_windows(frames: Iterable[T], buffer: SlidingWindows) -> Iterator[tuple[int, list[T]]]:
    """(frame index, window frames) for every frame of `frames`, in order, pulled lazily."""
    for frame in frames:
        yield from buffer.push(frame)
    yield from buffer.finish()


def restore_stream(frames: Iterable[T], runner: Callable[[list[list[T]]], Sequence[U]],
                   write: Callable[[T, U], None], window: int, padding: str, batch_size: int = 1,
                   on_frame: Callable[[], None] | None = None,
                   buffer: SlidingWindows | None = None) -> int:
    """Restore every frame of `frames` and `write` the results in order; returns the frame count.

    Args:
        frames: the decoded frames, in order (whatever `runner` takes).
        runner: a batch of windows (each a list of `window` frames) -> one output per window.
        write: takes each window's centre frame and its output, in order.
        window, padding: temporal window size and end padding.
        batch_size: windows per call of `runner`.
        on_frame: called after each written frame (progress).
        buffer: the window buffer to use (tests pass one to inspect it).
    """
    buffer = buffer or SlidingWindows(window, padding)
    return restore_windows(iter_windows(frames, buffer), runner, lambda _idx, centre, output: write(centre, output),
                           batch_size, on_frame)


def restore_windows(windows: Iterable[tuple[int, list[T]]], runner: Callable[[list[list[T]]], Sequence[U]],
                    write: Callable[[int, T, U], None], batch_size: int = 1,
                    on_frame: Callable[[], None] | None = None) -> int:
    """Run (frame index, window frames) pairs through `runner` in batches and `write(frame index,
    centre frame, output)` in order; returns the frame count. Indices must be consecutive."""
    if batch_size < 1:
        raise EnhanceError(f"--batch must be at least 1, got {batch_size}")
    num_written = 0
    first_idx: int | None = None
    pending: list[tuple[int, list[T]]] = []

    def flush() -> None:
        nonlocal num_written
        restored = runner([window_frames for _, window_frames in pending])
        if len(restored) != len(pending):
            raise RuntimeError(f"the runner returned {len(restored)} frames for {len(pending)} windows")
        for (frame_idx, window_frames), output in zip(pending, restored):
            write(frame_idx, window_frames[len(window_frames) // 2], output)
            num_written += 1
            if on_frame is not None:
                on_frame()
        pending.clear()

    for frame_idx, window_frames in windows:
        first_idx = frame_idx if first_idx is None else first_idx
        if frame_idx != first_idx + num_written + len(pending):  # never skip or repeat a frame
            raise RuntimeError(f"window for frame {frame_idx} out of order")
        pending.append((frame_idx, window_frames))
        if len(pending) == batch_size:
            flush()
    if pending:
        flush()
    if num_written == 0:
        raise EnhanceError("the input holds no frames")
    return num_written
