"""Turn `--gt` / `--pred` / `--lq` paths into clips of frames and pair them for scoring.

A source path is one of:
- a folder of image frames            -> one clip (frames in natural name order);
- a single image file                 -> one clip of one frame;
- a video file                        -> one clip (frames in decode order);
- a folder of clip sub-folders and/or video files (REDS / LDV layout) -> one clip per entry,
  named by the sub-folder name or the video's stem. (A folder holding both frames and clip
  folders is refused as ambiguous; other stray files beside clip folders are not clips.)

Pairing: two single-clip sources pair with each other whatever their names; two folders of
clips pair by clip name. Within a clip, frames pair by position in sorted order (names
need not match). Any mismatch -- clip names, frame counts, frame sizes, an empty folder -- is
a `FrameSourceError` naming the first one found; nothing is skipped.

Frames are (h, w, 3) uint8 RGB arrays. Videos are decoded by `video.rgb_frames.RgbFrameReader`
(native planes, rotation applied, no frame dropped or duplicated, converted to RGB by the same
maths `edvr enhance` uses), so a restored video and its input are converted the same way.
"""

from __future__ import annotations

import re
from contextlib import closing
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from edvr_cli.image_io import IMAGE_SUFFIXES, ImageFolderError, list_image_files, read_image
from edvr_cli.video import VideoError, VideoInfo, probe
from edvr_cli.video.rgb_frames import RgbFrameReader as FrameReader

VIDEO_SUFFIXES = (".mp4", ".mkv", ".avi", ".mov", ".webm", ".m4v", ".y4m", ".ts", ".mts", ".flv",
                  ".mpg", ".mpeg", ".wmv", ".nut", ".mxf", ".3gp", ".hevc", ".h265", ".h264",
                  ".264", ".265")


class FrameSourceError(ValueError):
    """A source path that cannot be read, or sources that do not pair frame for frame."""


def _natural_key(name: str) -> list:
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


# ---------------------------------------------------------------- video

def _probe(path: Path, option: str) -> VideoInfo:
    try:
        return probe(path)
    except VideoError as error:
        raise FrameSourceError(f"{option}: {error}") from error


def _read_video_frames(info: VideoInfo) -> Iterator[np.ndarray]:
    """Every frame of the video as (h, w, 3) uint8 RGB; closing the generator stops ffmpeg."""
    try:
        with FrameReader(info.path, info) as reader:
            yield from reader
    except VideoError as error:
        raise FrameSourceError(str(error)) from error


# ---------------------------------------------------------------- clips

@dataclass(frozen=True)
class Frame:
    """One frame of a clip: its index, a display name, and how to load it."""

    index: int
    name: str  # the image file name; "" for video frames
    load: Callable[[], np.ndarray]  # -> (h, w, 3) uint8 RGB


@dataclass(frozen=True)
class Clip:
    """A clip: image files in natural order, or a probed video file."""

    name: str
    path: Path
    image_files: tuple[Path, ...] | None = None  # None for a video
    video: VideoInfo | None = None  # None for image files

    @property
    def num_frames(self) -> int | None:
        """Frame count; None for a video whose count the probe could not establish."""
        return self.video.num_frames if self.video is not None else len(self.image_files)

    def frame_sizes(self) -> Iterator[tuple[int, int]]:
        """(width, height) of each frame, read from image headers; one value for a video."""
        if self.video is not None:
            yield self.video.decoded_width, self.video.decoded_height
            return
        for path in self.image_files:
            yield _image_size(path)

    def frames(self) -> Iterator[Frame]:
        """The clip's frames in order; video frames are decoded here, image files on `load()`."""
        if self.video is None:
            for index, path in enumerate(self.image_files):
                yield Frame(index, path.name, partial(_read_frame, path))
            return
        with closing(_read_video_frames(self.video)) as decoded:  # stops ffmpeg when we stop
            for index, frame in enumerate(decoded):
                yield Frame(index, "", partial(_identity, frame))


def _identity(frame: np.ndarray) -> np.ndarray:
    return frame


def _read_frame(path: Path) -> np.ndarray:
    try:
        return read_image(path)
    except ImageFolderError as error:
        raise FrameSourceError(str(error)) from error


def _image_size(path: Path) -> tuple[int, int]:
    """(width, height) from the image header, without decoding pixels."""
    from PIL import Image, UnidentifiedImageError  # Pillow comes with imageio

    try:
        with Image.open(path) as image:
            return image.size
    except (UnidentifiedImageError, OSError):
        height, width = _read_frame(path).shape[:2]  # a format Pillow lacks: decode fully
        return width, height


@dataclass(frozen=True)
class Source:
    """What one `--gt`/`--pred`/`--lq` path holds: one clip, or a collection of named clips."""

    option: str  # "--gt", "--pred" or "--lq", for messages
    path: Path
    clips: tuple[Clip, ...]
    is_collection: bool


def _is_hidden(path: Path) -> bool:
    return path.name.startswith(".")


def open_source(path: str | Path, option: str = "--gt") -> Source:
    """Resolve a source path into its clips (see the module docstring for the layouts).

    Args:
        path: folder of frames, image file, video file, or folder of clip folders/videos.
        option: the option name used in error messages.
    """
    path = Path(path)
    if not path.exists():
        raise FrameSourceError(f"{option}: no such file or folder: {path}")
    if path.is_file():
        if path.suffix.lower() in IMAGE_SUFFIXES:
            return Source(option, path, (Clip(path.stem, path, (path,)),), is_collection=False)
        return Source(option, path, (Clip(path.stem, path, video=_probe(path, option)),),
                      is_collection=False)
    images = list_image_files(path)
    if images:
        clip_folders = [entry for entry in sorted(path.iterdir(), key=lambda p: _natural_key(p.name))
                        if entry.is_dir() and not _is_hidden(entry) and list_image_files(entry)]
        if clip_folders:  # which one was meant is a guess: refuse rather than drop either
            raise FrameSourceError(f"{option}: {path} holds both image frames and clip folders "
                                   f"('{clip_folders[0].name}'); give a single clip or a folder of clips")
        return Source(option, path, (Clip(path.name, path, tuple(images)),), is_collection=False)
    clips: dict[str, Clip] = {}
    for entry in sorted(path.iterdir(), key=lambda p: _natural_key(p.name)):
        if _is_hidden(entry):
            continue
        if entry.is_dir():
            files = list_image_files(entry)
            if not files:
                raise FrameSourceError(f"{option}: clip folder {entry} holds no image frames")
            clip = Clip(entry.name, entry, tuple(files))
        elif entry.suffix.lower() in VIDEO_SUFFIXES:
            clip = Clip(entry.stem, entry, video=_probe(entry, option))
        else:
            continue  # stray files (notes, meta info) beside clip folders are not clips
        if clip.name in clips:
            raise FrameSourceError(f"{option}: two clips named '{clip.name}' in {path}")
        clips[clip.name] = clip
    if not clips:
        raise FrameSourceError(f"{option}: {path} holds no image frames, clip folders or video files")
    return Source(option, path, tuple(clips.values()), is_collection=True)


# ---------------------------------------------------------------- pairing

@dataclass(frozen=True)
class ClipPair:
    """The clips to score together: ground truth, restored, and optionally the degraded input."""

    name: str
    gt: Clip
    pred: Clip
    lq: Clip | None = None


@dataclass(frozen=True)
class FramePair:
    """One frame position of a ClipPair."""

    index: int
    name: str  # the ground-truth frame's name ("" for video)
    gt: Frame
    pred: Frame
    lq: Frame | None


def _describe(source: Source) -> str:
    if source.is_collection:
        return f"{source.option} holds {len(source.clips)} clips ({source.path})"
    return f"{source.option} is a single clip ({source.path})"


def _match_clips(reference: Source, other: Source) -> list[Clip]:
    """`other`'s clips in the order of `reference`'s, or a FrameSourceError on the first mismatch."""
    if reference.is_collection != other.is_collection:
        raise FrameSourceError(f"{_describe(reference)} but {_describe(other)}: "
                               "give both as clips or both as folders of clips")
    if not reference.is_collection:
        return list(other.clips)
    other_by_name = {clip.name: clip for clip in other.clips}
    reference_names = {clip.name for clip in reference.clips}
    missing = [clip.name for clip in reference.clips if clip.name not in other_by_name]
    extra = [clip.name for clip in other.clips if clip.name not in reference_names]
    first = sorted(missing + extra, key=_natural_key)[:1]
    if first:
        name = first[0]
        has, lacks = (reference, other) if name in missing else (other, reference)
        raise FrameSourceError(f"clip names differ: '{name}' is in {has.option} ({has.path}) "
                               f"but not in {lacks.option} ({lacks.path})")
    return [other_by_name[clip.name] for clip in reference.clips]


def _check_same_shape(name: str, reference: Clip, reference_option: str, other: Clip,
                      other_option: str) -> None:
    """Equal frame counts (when known before decoding) and equal sizes, frame by frame.

    A video's frame count may be unknown until decoded: `frame_pairs` checks it again."""
    if reference.num_frames is not None and other.num_frames is not None \
            and reference.num_frames != other.num_frames:
        raise FrameSourceError(f"clip '{name}': {reference_option} has {reference.num_frames} frames "
                               f"but {other_option} has {other.num_frames}")
    reference_sizes = list(reference.frame_sizes())
    other_sizes = list(other.frame_sizes())
    # A video has one size for all its frames: compare it against every frame of the other side.
    if len(reference_sizes) == 1:
        reference_sizes *= len(other_sizes)
    if len(other_sizes) == 1:
        other_sizes *= len(reference_sizes)
    for index, (reference_size, other_size) in enumerate(zip(reference_sizes, other_sizes)):
        if reference_size != other_size:
            frame_name = reference.image_files[index].name if reference.image_files else f"#{index}"
            raise FrameSourceError(
                f"clip '{name}', frame {index} ({frame_name}): {reference_option} is "
                f"{reference_size[0]}x{reference_size[1]} but {other_option} is "
                f"{other_size[0]}x{other_size[1]}")


def pair_sources(gt: str | Path, pred: str | Path, lq: str | Path | None = None) -> list[ClipPair]:
    """Open and pair the sources, checking clip names, frame counts and frame sizes.

    Video frame counts are checked again while decoding (`frame_pairs`): a probe may not know them.

    Args:
        gt: ground-truth source path.
        pred: restored source path.
        lq: optional degraded-input source path (same sizes as gt).

    Returns:
        One ClipPair per clip, in natural order of the ground-truth clip names.
    """
    gt_source = open_source(gt, "--gt")
    pred_source = open_source(pred, "--pred")
    lq_source = open_source(lq, "--lq") if lq is not None else None
    pred_clips = _match_clips(gt_source, pred_source)
    lq_clips = _match_clips(gt_source, lq_source) if lq_source else [None] * len(pred_clips)
    pairs = []
    for gt_clip, pred_clip, lq_clip in zip(gt_source.clips, pred_clips, lq_clips):
        _check_same_shape(gt_clip.name, gt_clip, "--gt", pred_clip, "--pred")
        if lq_clip is not None:
            _check_same_shape(gt_clip.name, gt_clip, "--gt", lq_clip, "--lq")
        pairs.append(ClipPair(gt_clip.name, gt_clip, pred_clip, lq_clip))
    return pairs


def frame_pairs(pair: ClipPair) -> Iterator[FramePair]:
    """The clip's frames side by side; a FrameSourceError when one side runs out first."""
    clips = {"--gt": pair.gt, "--pred": pair.pred}
    if pair.lq is not None:
        clips["--lq"] = pair.lq
    iterators = {option: clip.frames() for option, clip in clips.items()}
    counts = dict.fromkeys(clips, 0)
    try:
        while True:
            frames = {option: next(iterator, None) for option, iterator in iterators.items()}
            for option, frame in frames.items():
                counts[option] += frame is not None
            if all(frame is None for frame in frames.values()):
                return
            if any(frame is None for frame in frames.values()):
                for option, iterator in iterators.items():  # count the rest for the message
                    if frames[option] is not None:
                        counts[option] += sum(1 for _ in iterator)
                other = next(option for option in counts if counts[option] != counts["--gt"])
                raise FrameSourceError(f"clip '{pair.name}': --gt has {counts['--gt']} frames "
                                       f"but {other} has {counts[other]}")
            gt_frame = frames["--gt"]
            yield FramePair(gt_frame.index, gt_frame.name, gt_frame, frames["--pred"],
                            frames.get("--lq"))
    finally:
        for iterator in iterators.values():
            iterator.close()
