"""What `edvr compare` reads: videos or frame folders of the same length, as RGB frames.

Videos are decoded as `edvr eval` and `edvr enhance` read them (native planes, our colour maths,
rounded once to 8 bits); folders are read in natural name order at `--fps`. Every input must have
the same frame count (and, for videos, the same frame rate). The panels are the largest input's
size; every other input must be that size divided by one whole factor across and down (a x4
output next to its input), and is scaled up by it.
"""

from __future__ import annotations

import os
from contextlib import ExitStack, closing
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import numpy as np

from edvr_cli.evaluate.sources import Clip, FrameSourceError, open_source
from edvr_cli.video import VideoInfo
from models.errors import EdvrError


class CompareError(EdvrError, ValueError):
    """Inputs that cannot be compared, or a bad option; the message is one line."""


@dataclass(frozen=True)
class Input:
    """One input: its label, its clip (a video or image files), size and frame count."""

    path: Path
    label: str
    clip: Clip
    width: int
    height: int
    num_frames: int
    fps: Fraction | None  # a video's own rate; None for a folder of frames

    @property
    def video(self) -> VideoInfo | None:
        return self.clip.video


def open_input(path: str | os.PathLike, label: str | None = None) -> Input:
    """Probe a video or list a folder of frames (one clip; a folder of clips is refused)."""
    try:
        source = open_source(path, "input")
    except FrameSourceError as error:
        raise CompareError(str(error)) from None
    if source.is_collection or len(source.clips) != 1:
        raise CompareError(f"{path}: holds several clips; give one video or one folder of frames")
    clip = source.clips[0]
    sizes = set(clip.frame_sizes())
    if len(sizes) != 1:
        raise CompareError(f"{path}: its frames have different sizes ({', '.join(f'{w}x{h}' for w, h in sizes)})")
    (width, height), = sizes
    if clip.num_frames is None:
        raise CompareError(f"{path}: its frame count cannot be read")
    fps = clip.video.fps if clip.video is not None else None
    return Input(Path(path), label or Path(path).name, clip, width, height, clip.num_frames, fps)


def check_inputs(inputs: list[Input]) -> tuple[int, int, list[int]]:
    """(panel width, panel height, each input's whole scale factor to it); CompareError when the
    frame counts or rates differ or a size is not a whole scale of the largest."""
    first = inputs[0]
    for item in inputs[1:]:
        if item.num_frames != first.num_frames:
            raise CompareError(f"{item.path} has {item.num_frames} frames but {first.path} has {first.num_frames}; "
                               f"compare inputs of the same length")
    rates = {item.fps for item in inputs if item.fps is not None}
    if len(rates) > 1:
        listed = ", ".join(f"{item.path} {item.fps}" for item in inputs if item.fps is not None)
        raise CompareError(f"the inputs' frame rates differ ({listed} fps)")
    width = max(item.width for item in inputs)
    height = max(item.height for item in inputs)
    factors = []
    for item in inputs:
        factor = width // item.width
        if item.width * factor != width or item.height * factor != height:
            biggest = max(inputs, key=lambda other: other.width * other.height)
            raise CompareError(f"{item.path} is {item.width}x{item.height} and {biggest.path} is {width}x{height}: "
                               f"neither the same size nor a whole scale of each other")
        factors.append(factor)
    return width, height, factors


def rate_of(inputs: list[Input], folder_fps: Fraction) -> Fraction:
    """The videos' common rate, or `folder_fps` when every input is a folder of frames."""
    return next((item.fps for item in inputs if item.fps is not None), Fraction(folder_fps))


def read_frames(inputs: list[Input], wanted: set[int] | None = None) -> Iterator[tuple[int, list[np.ndarray]]]:
    """(index, one (h, w, 3) uint8 RGB frame per input) for every frame, or only the `wanted`
    ones (decoding stops after the last of them). A video that ends early is an error."""
    last = max(wanted) if wanted else None
    with ExitStack() as stack:
        streams = [stack.enter_context(closing(item.clip.frames())) for item in inputs]
        for index in range(inputs[0].num_frames):
            if last is not None and index > last:
                return
            frames = []
            for item, stream in zip(inputs, streams):
                try:
                    frame = next(stream)
                except StopIteration:
                    raise CompareError(f"{item.path} ended after {index} of the {item.num_frames} frames it "
                                       f"announced") from None
                except FrameSourceError as error:
                    raise CompareError(str(error)) from None
                frames.append(frame)
            if wanted is None or index in wanted:
                try:
                    yield index, [frame.load() for frame in frames]
                except FrameSourceError as error:
                    raise CompareError(str(error)) from None


__all__ = ["CompareError", "Input", "open_input", "check_inputs", "rate_of", "read_frames"]
