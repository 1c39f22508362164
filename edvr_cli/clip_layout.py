"""Where clips are on disk: the layout `edvr eval` and `edvr train` both read.

A source path is one of:
- a folder of image frames            -> one clip, named by the folder;
- a single image file                 -> one clip of one frame (callers may refuse it);
- a video file                        -> one clip, named by its stem;
- a folder of clip sub-folders and/or video files (REDS / LDV layout) -> one clip per entry,
  named by the sub-folder name or the video's stem, in natural name order.

Refused, with a `ClipLayoutError` naming the path: a missing path; a folder holding both
image frames and clip folders (which one was meant is a guess); a clip folder without frames;
two clips of one name; a folder holding no clips. Hidden entries and stray files (notes, meta
info) beside clip folders are not clips.

Frames of a clip come from `clip_frames`: (h, w, 3) uint8 RGB, image files through
`image_io.read_image`, videos through `video.rgb_frames.RgbFrameReader` (the maths `edvr
enhance` uses), so eval and train see the same pixels.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from edvr_cli.image_io import IMAGE_SUFFIXES, list_image_files, natural_key, read_image
from edvr_cli.video.probe import VideoInfo
from edvr_cli.video.rgb_frames import RgbFrameReader
from models.errors import EdvrError

VIDEO_SUFFIXES = (".mp4", ".mkv", ".avi", ".mov", ".webm", ".m4v", ".y4m", ".ts", ".mts", ".flv",
                  ".mpg", ".mpeg", ".wmv", ".nut", ".mxf", ".3gp", ".hevc", ".h265", ".h264",
                  ".264", ".265")


class ClipLayoutError(EdvrError, ValueError):
    """A source path that does not hold clips in the documented layout."""


__all__ = ["VIDEO_SUFFIXES", "ClipLayout", "ClipLayoutError", "clip_frames", "find_clips", "is_image_file",
           "natural_key"]


@dataclass(frozen=True)
class ClipLayout:
    """The clips one source path holds: name -> path (a frame folder, an image or a video)."""

    path: Path
    clips: dict[str, Path]
    is_collection: bool  # a folder of clips, as opposed to one clip


def is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


def find_clips(path: str | Path, option: str = "--gt") -> ClipLayout:
    """The clips at `path` (see the module docstring); `option` names the path in errors."""
    path = Path(path)
    if not path.exists():
        raise ClipLayoutError(f"{option}: no such file or folder: {path}")
    if path.is_file():
        return ClipLayout(path, {path.stem: path}, is_collection=False)
    entries = sorted((entry for entry in path.iterdir() if not entry.name.startswith(".")),
                     key=lambda entry: natural_key(entry.name))
    if list_image_files(path):
        clip_folders = [entry for entry in entries if entry.is_dir() and list_image_files(entry)]
        if clip_folders:  # refuse rather than drop either
            raise ClipLayoutError(f"{option}: {path} holds both image frames and clip folders "
                                  f"('{clip_folders[0].name}'); give a single clip or a folder of clips")
        return ClipLayout(path, {path.name: path}, is_collection=False)
    clips: dict[str, Path] = {}
    for entry in entries:
        if entry.is_dir():
            if not list_image_files(entry):
                raise ClipLayoutError(f"{option}: clip folder {entry} holds no image frames")
            name = entry.name
        elif entry.suffix.lower() in VIDEO_SUFFIXES:
            name = entry.stem
        else:
            continue  # stray files beside clip folders are not clips
        if name in clips:
            raise ClipLayoutError(f"{option}: two clips named '{name}' in {path}")
        clips[name] = entry
    if not clips:
        raise ClipLayoutError(f"{option}: {path} holds no image frames, clip folders or video files")
    return ClipLayout(path, clips, is_collection=True)


def clip_frames(path: str | Path, video: VideoInfo | None = None) -> Iterator[np.ndarray]:
    """(h, w, 3) uint8 RGB frames of a frame folder, one image file or a video, in order.

    `video`: the video's probe, when the caller has one. Closing the generator stops the decoder."""
    path = Path(path)
    if path.is_dir():
        for file in list_image_files(path):
            yield read_image(file)
        return
    if is_image_file(path):
        yield read_image(path)
        return
    with RgbFrameReader(path, video) as reader:
        yield from reader
