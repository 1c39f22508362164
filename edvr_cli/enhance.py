"""`edvr enhance` as a library: a video (or image folder) in, a restored video (or folder) out.

The data path, as `enhance()` composes it:

    probe -> decode (FrameReader: ffmpeg pipe, background thread, bounded queue)
          -> temporal windows (SlidingWindows: only the frames later windows still need)
          -> batches of windows -> ModelRunner: tiles -> model -> stitch (-> x8 ensemble)
          -> encode (FrameWriter: ffmpeg pipe; audio, subtitles, attachments copied from the input)
          -> os.replace of the finished temporary file onto the output path

Memory does not grow with the video: the reader's queue, the window buffer
(window + max_reach(window) frames), one batch of windows and the writer's queue.

Frame rates: a video's exact rational rate (24000/1001 stays 24000/1001) is the output's.
Variable-frame-rate input is written at a constant rate, its average: every frame is kept once,
in order, and the total duration is kept, but per-frame timestamps are not (a note says so).
Image folders are read in natural name order at `folder_fps`.

Errors the user can fix raise `EnhanceError` (or OutputPathError, ModelChoiceError, VideoError,
CheckpointError, InferenceError)
with a one-line message; an error or Ctrl-C leaves no file under the output's name.
"""

from __future__ import annotations

import copy
import os
import time
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np

from edvr_cli.inference import ModelRunner, choose_device
from edvr_cli.model_choice import LoadedModel
from edvr_cli.output_files import check_paths, commit_output, is_folder_output, remove_output, staging_path
from edvr_cli.video_io import FolderFrameReader, FrameReader, FrameWriter, PngFolderWriter, VideoInfo, probe
from edvr_cli.windows import PADDING_MODES, WINDOW_SIZES, max_reach, window_indices

DEFAULT_FOLDER_FPS = Fraction(25)


class EnhanceError(ValueError):
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
        self.held: dict[int, np.ndarray] = {}  # frame index -> (h, w, 3) uint8 frame
        self.num_seen = 0
        self.next_idx = 0  # next frame whose window is due
        self.max_held = 0

    def _emit(self, num_frames: int, last_idx: int) -> list[tuple[int, list[np.ndarray]]]:
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

    def push(self, frame: np.ndarray) -> list[tuple[int, list[np.ndarray]]]:
        """Add the next frame; returns the (frame index, window frames) pairs now complete."""
        self.held[self.num_seen] = frame
        self.num_seen += 1
        self.max_held = max(self.max_held, len(self.held))
        return self._emit(self.num_seen, self.num_seen - 1 - self.reach)

    def finish(self) -> list[tuple[int, list[np.ndarray]]]:
        """The windows of the remaining frames, now that the clip's length is known."""
        return self._emit(self.num_seen, self.num_seen - 1)


def iter_windows(frames: Iterable[np.ndarray], buffer: SlidingWindows) -> Iterator[tuple[int, list[np.ndarray]]]:
    """(frame index, window frames) for every frame of `frames`, in order, pulled lazily."""
    for frame in frames:
        yield from buffer.push(frame)
    yield from buffer.finish()


def restore_stream(frames: Iterable[np.ndarray], runner: Callable[[np.ndarray], np.ndarray],
                   write: Callable[[np.ndarray], None], window: int, padding: str, batch_size: int = 1,
                   on_frame: Callable[[], None] | None = None,
                   buffer: SlidingWindows | None = None) -> int:
    """Restore every frame of `frames` and `write` the results in order; returns the frame count.

    Args:
        frames: (h, w, 3) uint8 frames, e.g. a FrameReader.
        runner: (n, t, h, w, 3) uint8 windows -> (n, H, W, 3) uint8 frames, e.g. a ModelRunner.
        write: takes each restored frame, e.g. FrameWriter.write.
        window, padding: temporal window size and end padding.
        batch_size: windows per call of `runner`.
        on_frame: called after each written frame (progress).
        buffer: the window buffer to use (tests pass one to inspect it).
    """
    if batch_size < 1:
        raise EnhanceError(f"--batch must be at least 1, got {batch_size}")
    buffer = buffer or SlidingWindows(window, padding)
    num_written = 0
    pending: list[list[np.ndarray]] = []

    def flush() -> None:
        nonlocal num_written
        restored = runner(np.stack([np.stack(window_frames) for window_frames in pending]))
        if len(restored) != len(pending):
            raise RuntimeError(f"the runner returned {len(restored)} frames for {len(pending)} windows")
        for frame in restored:
            write(frame)
            num_written += 1
            if on_frame is not None:
                on_frame()
        pending.clear()

    for frame_idx, window_frames in iter_windows(frames, buffer):
        if frame_idx != num_written + len(pending):  # the buffer's contract; never skip or repeat
            raise RuntimeError(f"window for frame {frame_idx} out of order")
        pending.append(window_frames)
        if len(pending) == batch_size:
            flush()
    if pending:
        flush()
    if num_written == 0:
        raise EnhanceError("the input holds no frames")
    return num_written


# ------------------------------------------------------------------------ settings and I/O


@dataclass(frozen=True)
class EncoderSettings:
    """ffmpeg encoder controls for video output (see FrameWriter)."""

    codec: str = "libx264"
    crf: int | None = 17
    preset: str | None = "medium"
    pix_fmt: str | None = None
    extra_args: tuple[str, ...] = ()


@dataclass(frozen=True)
class EnhanceSettings:
    """How to run the network.

    Args:
        window: frames per window; None = the model's num_frame (any other count is an error).
        padding: temporal padding at the clip ends (windows.PADDING_MODES).
        tile, tile_overlap: spatial tiles in input pixels (0 = whole frame), see edvr_cli.tiling.
        batch: windows per forward pass.
        device: 'auto', 'cpu', 'cuda' or 'cuda:N'.
        precision: 'fp32', 'fp16' (CUDA only) or 'bf16'.
        ensemble: x8 flip/transpose self-ensemble.
        strength: how much of the network's correction to apply (1 = all, 0 = none), see
            `models.EDVR.scale_residual`.
        folder_fps: frame rate of image-folder input.
    """

    window: int | None = None
    padding: str = "reflection_circle"
    tile: int = 0
    tile_overlap: int = 32
    batch: int = 1
    device: str = "auto"
    precision: str = "fp32"
    ensemble: bool = False
    strength: float = 1.0
    folder_fps: Fraction = DEFAULT_FOLDER_FPS


@dataclass
class Source:
    """An opened input: the frame reader and what is known about the frames up front."""

    reader: Iterable[np.ndarray]  # yields (h, w, 3) uint8; closed by close()
    width: int
    height: int
    fps: Fraction
    num_frames: int | None
    video_info: VideoInfo | None  # None for image folders

    def close(self) -> None:
        close = getattr(self.reader, "close", None)
        if close is not None:
            close()


def open_source(path: str | os.PathLike, folder_fps: Fraction = DEFAULT_FOLDER_FPS) -> Source:
    """Open a video file (probed, decoded by FrameReader) or a folder of images."""
    path = Path(path)
    if path.is_dir():
        reader = FolderFrameReader(path)
        return Source(reader, reader.width, reader.height, Fraction(folder_fps), reader.num_frames, None)
    info = probe(path)
    reader = FrameReader(path, info=info)
    return Source(reader, reader.width, reader.height, info.fps, info.num_frames, info)


def open_writer(path: Path, width: int, height: int, source: Source, encoder: EncoderSettings,
                folder: bool = False):
    """A FrameWriter for a video file (streams copied from a video source), or with `folder` a
    PngFolderWriter."""
    if folder:
        return PngFolderWriter(path)
    info = source.video_info
    return FrameWriter(path, width, height, source.fps, codec=encoder.codec, crf=encoder.crf,
                       preset=encoder.preset, pix_fmt=encoder.pix_fmt, extra_args=encoder.extra_args,
                       source=info.path if info is not None else None, source_info=info)


# ----------------------------------------------------------------------------- enhance


class Reporter:
    """What `enhance` tells its caller while it runs. This default says nothing."""

    def start(self, num_frames: int | None) -> None:
        """Decoding starts; `num_frames` is the expected count when known."""

    def advance(self) -> None:
        """One more frame was restored and queued for writing."""

    def note(self, message: str) -> None:
        """One line worth telling the user (retries, streams not copied, rate changes)."""

    def close(self) -> None:
        """The run ended (successfully or not)."""


@dataclass
class EnhanceResult:
    """What `enhance` did (the `--json` summary)."""

    input: str
    output: str
    frames: int
    seconds: float
    fps: float  # frames restored per second of wall time
    video_fps: str  # the output's frame rate, exact, e.g. "24000/1001"
    width: int
    height: int
    device: str
    precision: str
    model: str
    model_file: str
    scale: int
    window: int
    padding: str
    tile: int  # tile size in the end (after any out-of-memory retries)
    ensemble: bool
    strength: float
    notes: list[str] = field(default_factory=list)


def enhance(input_path: str | os.PathLike, output_path: str | os.PathLike,
            model: LoadedModel | Callable[[], LoadedModel], settings: EnhanceSettings = EnhanceSettings(),
            encoder: EncoderSettings = EncoderSettings(), overwrite: bool = False,
            reporter: Reporter | None = None, open_source: Callable[..., Source] = open_source,
            open_writer: Callable[..., object] = open_writer) -> EnhanceResult:
    """Restore `input_path` (video file or image folder) into `output_path` (video file or folder).

    Args:
        model: from `load_enhance_model`, or a function returning it, called once the input has
            been probed (so a bad input is reported before a model is downloaded or loaded).
        settings: window, padding, tiles, batch, device, precision, ensemble, folder fps.
        encoder: codec, crf, preset, pixel format, extra ffmpeg arguments (video output only).
        overwrite: replace an existing output.
        reporter: receives progress and notes.
        open_source, open_writer: how frames are read and written (tests pass fakes).

    Raises:
        EnhanceError, OutputPathError, ModelChoiceError, VideoError, InferenceError, CheckpointError:
        one-line messages. On any error or KeyboardInterrupt nothing is left under `output_path`
        (an existing one is untouched).
    """
    reporter = reporter or Reporter()
    started = time.perf_counter()
    target = Path(output_path)
    folder_output = is_folder_output(output_path)
    check_paths(input_path, target, overwrite)
    notes: list[str] = []

    def note(message: str) -> None:
        notes.append(message)
        reporter.note(message)

    source = open_source(input_path, settings.folder_fps)
    staging = None
    try:
        loaded = model() if callable(model) else model
        window = _checked_window(settings.window, int(loaded.network.num_frame))
        network = loaded.network
        if settings.strength != 1:
            if not 0 <= settings.strength <= 1:
                raise EnhanceError(f"--strength must be between 0 and 1, got {settings.strength}")
            network = copy.deepcopy(network)  # the caller's model stays as loaded
            network.scale_residual(settings.strength)
        device = choose_device(settings.device)
        runner = ModelRunner(network, device, settings.precision, settings.tile, settings.tile_overlap,
                             settings.ensemble, notify=note)
        if source.video_info is not None and source.video_info.is_vfr:
            note(f"{input_path}: variable frame rate; written at a constant {source.fps} fps (its average): "
                 f"same frames and total duration, per-frame timing not kept")
        if folder_output and source.video_info is not None and len(source.video_info.streams) > 1:
            note(f"{target}: a folder of PNG frames holds no audio, subtitles or attachments")
        if folder_output and source.video_info is not None and source.video_info.sample_aspect is not None:
            sar = source.video_info.sample_aspect
            note(f"{target}: PNG frames have square pixels; the input's are {sar.numerator}:{sar.denominator} "
                 f"(anamorphic), so show them stretched by that much across")
        width, height = source.width * runner.scale, source.height * runner.scale
        staging = staging_path(target, folder_output)
        with open_writer(staging, width, height, source, encoder, folder=folder_output) as writer:
            for line in getattr(writer, "notes", []):
                note(line)
            reporter.start(source.num_frames)
            num_frames = restore_stream(source.reader, runner, writer.write, window, settings.padding,
                                        settings.batch, on_frame=reporter.advance)
        commit_output(staging, target)
        staging = None
    finally:
        reporter.close()
        source.close()
        if staging is not None:
            remove_output(staging)
    if source.num_frames is not None and num_frames != source.num_frames:
        note(f"{input_path}: decoded {num_frames} frames where the container announced "
             f"{source.num_frames}; all decoded frames were restored")
    seconds = time.perf_counter() - started
    return EnhanceResult(
        input=os.fspath(input_path), output=os.fspath(output_path), frames=num_frames,
        seconds=round(seconds, 3), fps=round(num_frames / seconds, 3) if seconds > 0 else 0.0,
        video_fps=str(source.fps), width=width, height=height, device=str(device),
        precision=settings.precision, model=loaded.name, model_file=loaded.path, scale=runner.scale,
        window=window, padding=settings.padding, tile=runner.tile, ensemble=settings.ensemble,
        strength=settings.strength, notes=notes)


def _checked_window(asked: int | None, num_frame: int) -> int:
    """The window size: the model's own; asking for another is an error."""
    window = num_frame if asked is None else asked
    if window != num_frame:
        raise EnhanceError(f"--frames {window} does not fit the model, which takes {num_frame} frames "
                           f"per window (its fusion layer is built for that count); omit --frames")
    if window not in WINDOW_SIZES:
        raise EnhanceError(f"the model takes {window} frames per window; supported: "
                           f"{', '.join(map(str, WINDOW_SIZES))}")
    return window
