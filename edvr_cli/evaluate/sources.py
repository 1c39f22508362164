"""Turn `--gt` / `--pred` / `--lq` paths into clips of frames and pair them for scoring.

A source path is laid out as `clip_layout` says (the layout `edvr train` reads too): a folder
of frames, one image, one video, or a folder of clip folders and/or videos.

Pairing: two single-clip sources pair with each other whatever their names; two folders of
clips pair by clip name. Within a clip, frames pair by position in sorted order (names
need not match). Any mismatch -- clip names, frame counts, frame sizes, an empty folder -- is
a `FrameSourceError` naming the first one found; nothing is skipped.

Frames are (h, w, 3) uint8 RGB arrays. Videos are decoded by `video.rgb_frames.RgbFrameReader`
(native planes, rotation applied, no frame dropped or duplicated, converted to RGB by the same
maths `edvr enhance` uses), so a restored video and its input are converted the same way.
"""

from __future__ import annotations

from contextlib import closing
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from edvr_cli.clip_layout import ClipLayoutError, clip_frames, find_clips, is_image_file, natural_key
from edvr_cli.image_io import ImageFolderError, list_image_files, read_image
from edvr_cli.video import VideoError, VideoInfo, probe
from models.errors import EdvrError

class FrameSourceError(EdvrError, ValueError):
    """A source path that cannot be read, or sources that do not pair frame for frame."""


# ---------------------------------------------------------------- video

def _probe(path: Path, option: str) -> VideoInfo:
    try:
        return probe(path)
    except VideoError as error:
        raise FrameSourceError(f"{option}: {error}") from error


def _read_video_frames(info: VideoInfo) -> Iterator[np.ndarray]:
    """Every frame of the video as (h, w, 3) uint8 RGB; closing the generator stops ffmpeg."""
    try:
        with closing(clip_frames(info.path, info)) as frames:
            yield from frames
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


def open_source(path: str | Path, option: str = "--gt") -> Source:
    """Resolve a source path into its clips (the layouts of `clip_layout`).

    Args:
        path: folder of frames, image file, video file, or folder of clip folders/videos.
        option: the option name used in error messages.
    """
    try:
        layout = find_clips(path, option)
    except ClipLayoutError as error:
        raise FrameSourceError(str(error)) from None
    clips = []
    for name, clip_path in layout.clips.items():
        if clip_path.is_dir():
            clips.append(Clip(name, clip_path, tuple(list_image_files(clip_path))))
        elif is_image_file(clip_path):
            clips.append(Clip(name, clip_path, (clip_path,)))
        else:
            clips.append(Clip(name, clip_path, video=_probe(clip_path, option)))
    return Source(option, layout.path, tuple(clips), layout.is_collection)


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
    first = sorted(missing + extra, key=natural_key)[:1]
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
