"""Per-frame features kept between the temporal windows that share a frame.

Consecutive windows overlap in all but one frame: each frame is in `num_frame` windows (more at
the clip ends, where padding repeats frames). EDVR's first layers (`EDVR.frame_features`: the
entry convolution, feature extraction and the L2/L3 pyramid) see one frame at a time, so
`FrameFeatureCache` lets `ModelRunner` run them once per frame and hand the kept pyramids to
`EDVR.fuse` for every window the frame is in.

A frame is recognised by its values (an exact comparison against the frames seen last), so the
caller may stack its windows into fresh tensors or reuse one buffer: what counts is only that
the same pixels come back. Features are kept per context (the tile and the ensemble transform
they were computed for), and only for the `num_frames_kept` frames used last, so memory stays
bounded whatever the video's length.
"""

from __future__ import annotations

from typing import Callable, Hashable

import torch

Pyramid = list[torch.Tensor]  # [L1, L2, L3] of one frame or a batch: (m, c, h, w) each


class FrameFeatureCache:
    """Frame ids by value, and the per-frame pyramids of the frames used last.

    Args:
        num_frames_kept: frames (and their features, in every context) kept between calls of
            `release`; the window size is enough for windows that slide by one frame.
    """

    def __init__(self, num_frames_kept: int):
        if num_frames_kept < 1:
            raise ValueError(f"num_frames_kept must be at least 1, got {num_frames_kept}")
        self.num_frames_kept = num_frames_kept
        self._frames: list[tuple[int, torch.Tensor]] = []  # (frame id, its values), least recently used first
        self._features: dict[tuple[int, Hashable], Pyramid] = {}  # (frame id, context) -> (1, c, h, w) levels
        self._next_id = 0
        self.num_computed = 0  # frames run through `compute`, over the cache's life
        self.num_reused = 0  # frames whose features were taken from the cache instead

    def frame_ids(self, frames: torch.Tensor) -> list[list[int]]:
        """(n, t, c, h, w) windows -> n lists of t frame ids; equal frames get the same id, in this
        call and across calls while the frame is kept."""
        return [[self._frame_id(frame) for frame in window] for window in frames]

    def _frame_id(self, frame: torch.Tensor) -> int:
        for position in range(len(self._frames) - 1, -1, -1):  # the latest frames are the likeliest
            frame_id, seen = self._frames[position]
            if seen.shape == frame.shape and seen.dtype == frame.dtype and torch.equal(seen, frame):
                self._frames.append(self._frames.pop(position))
                return frame_id
        frame_id = self._next_id
        self._next_id += 1
        # a copy: the caller may overwrite its buffer with the next frames
        self._frames.append((frame_id, frame.clone()))
        return frame_id

    def pyramids(self, ids: list[list[int]], context: Hashable, frames: torch.Tensor,
                 compute: Callable[[torch.Tensor], Pyramid]) -> list[Pyramid]:
        """The per-frame pyramids of the windows `frames` (n, t, c, h, w), by frame position.

        Args:
            ids: `frame_ids` of these windows.
            context: what else the features depend on (e.g. the tile and transform `frames` are).
            frames: the windows as the network sees them in this context.
            compute: (m, c, h, w) frames -> their pyramid, batched; run once on the frames whose
                features are not kept yet.
        Returns:
            t pyramids; level l of position j is (n, c_l, h_l, w_l), window i's frame j in row i.
        """
        missing: dict[int, tuple[int, int]] = {}  # frame id -> (window, position) of one occurrence
        for window_idx, window_ids in enumerate(ids):
            for position, frame_id in enumerate(window_ids):
                if (frame_id, context) not in self._features:
                    missing.setdefault(frame_id, (window_idx, position))
        num_frames = sum(len(window_ids) for window_ids in ids)
        self.num_computed += len(missing)
        self.num_reused += num_frames - len(missing)
        if missing:
            batch = torch.stack([frames[window_idx, position] for window_idx, position in missing.values()])
            levels = compute(batch)
            for row, frame_id in enumerate(missing):
                self._features[(frame_id, context)] = [level[row:row + 1] for level in levels]
        return [self._batched([self._features[(window_ids[position], context)] for window_ids in ids])
                for position in range(len(ids[0]))]

    @staticmethod
    def _batched(pyramids: list[Pyramid]) -> Pyramid:
        if len(pyramids) == 1:
            return pyramids[0]
        return [torch.cat(levels) for levels in zip(*pyramids)]

    def release(self) -> None:
        """Forget all but the `num_frames_kept` frames used last, with their features."""
        while len(self._frames) > self.num_frames_kept:
            frame_id, _ = self._frames.pop(0)
            for key in [key for key in self._features if key[0] == frame_id]:
                del self._features[key]

    def clear_features(self) -> None:
        """Drop every kept feature (e.g. to free device memory); frame ids stay valid."""
        self._features.clear()
