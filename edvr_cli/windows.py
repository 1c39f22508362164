"""Temporal windows: which input frames feed the network for each output frame.

The padding modes at the clip ends are BasicSR's (`generate_frame_indices`), used by EDVR's
published REDS/Vimeo tests. For frame i of n with a window of 2r+1, an index j outside [0, n-1] is
replaced by:
- replicate:          the nearest end frame (0 or n-1)
- reflection:         the mirror image about the end frame (-j, or 2(n-1) - j)
- reflection_circle:  the frames just beyond the window's other side (i + r - j, or i - r - (j - n + 1))
- circle:             the window wrapped around (j + 2r + 1, or j - 2r - 1)
Clips shorter than the window can make those land outside the clip too; such indices are then
clamped to the nearest end frame, so every window is valid for every clip length >= 1.
"""

from __future__ import annotations

PADDING_MODES = ("replicate", "reflection", "reflection_circle", "circle")
DEFAULT_PADDING = "reflection_circle"  # BasicSR's and MMEditing's REDS tests
WINDOW_SIZES = (3, 5, 7, 9)


def window_indices(frame_idx: int, num_frames: int, window: int, padding: str = DEFAULT_PADDING) -> list[int]:
    """Input frame indices, in time order, for output frame `frame_idx` of a `num_frames` clip."""
    if padding not in PADDING_MODES:
        raise ValueError(f"unknown padding {padding!r}; choose one of {', '.join(PADDING_MODES)}")
    if window < 1 or window % 2 == 0:
        raise ValueError(f"window must be odd and positive, got {window}")
    if not 0 <= frame_idx < num_frames:
        raise ValueError(f"frame {frame_idx} outside a clip of {num_frames} frames")
    radius = window // 2
    last = num_frames - 1
    indices = []
    for idx in range(frame_idx - radius, frame_idx + radius + 1):
        if idx < 0:
            idx = {"replicate": 0, "reflection": -idx, "reflection_circle": frame_idx + radius - idx,
                   "circle": window + idx}[padding]
        elif idx > last:
            idx = {"replicate": last, "reflection": 2 * last - idx,
                   "reflection_circle": frame_idx - radius - (idx - last), "circle": idx - window}[padding]
        indices.append(min(max(idx, 0), last))
    return indices


def max_reach(window: int) -> int:
    """How far (in frames) from the output frame any padding mode may reach: the frames a
    streaming reader must keep on each side."""
    return 2 * (window // 2)
