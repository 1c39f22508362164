"""`edvr enhance` as a library: a video (or image folder) in, a restored video (or folder) out.

The data path, as `enhance()` composes it:

    probe -> decode (FrameReader: the source's own planes and timestamps, bounded queue)
          -> RGB float on the model's device, once per frame (FramePlanes.prepare)
          -> temporal windows (SlidingWindows: only the frames later windows still need)
          -> batches of windows -> ModelRunner: tiles -> model -> stitch (-> x8 ensemble)
          -> output planes (scale 1: input planes + the network's change; x4: from its RGB)
          -> encode (FrameWriter: each frame at its input's time; audio, subtitles copied)
          -> os.replace of the finished temporary file onto the output path

Memory does not grow with the video: the reader's queue, the window buffer
(window + max_reach(window) frames), one batch of windows and the writer's queue.

Errors the user can fix raise `EnhanceError` (or OutputPathError, ModelChoiceError, VideoError,
CheckpointError, InferenceError) with a one-line message; an error or Ctrl-C leaves no file
under the output's name.
"""

from __future__ import annotations

import copy
import os
import time
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Callable

from edvr_cli.enhance.planes import FramePlanes, NonFiniteOutputError
from edvr_cli.enhance.sources import (DEFAULT_FOLDER_FPS, Source, Timing, open_source, open_writer,
                                      output_format)
from edvr_cli.enhance.stream import EnhanceError, restore_stream
from edvr_cli.inference import ModelRunner, choose_device
from edvr_cli.model_choice import LoadedModel
from edvr_cli.output_files import check_paths, claim_output, is_folder_output
from edvr_cli.video import EncoderSettings, Frame, VideoError, resolve_encoder
from edvr_cli.windows import DEFAULT_PADDING, WINDOW_SIZES


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
        strength: how much of the network's change to apply (1 = all, 0 = none): at scale 1 it
            scales the change added to the input's planes; at x4, `models.EDVR.scale_residual`.
        folder_fps: frame rate of image-folder input.
        deinterlace: deinterlace interlaced video first (ffmpeg's bwdif, one frame per frame).
    """

    window: int | None = None
    padding: str = DEFAULT_PADDING
    tile: int = 0
    tile_overlap: int = 32
    batch: int = 1
    device: str = "auto"
    precision: str = "fp32"
    ensemble: bool = False
    strength: float = 1.0
    folder_fps: Fraction = DEFAULT_FOLDER_FPS
    deinterlace: bool = False


class Reporter:
    """What `enhance` tells its caller while it runs. This default says nothing."""

    def start(self, num_frames: int | None) -> None:
        """Decoding starts; `num_frames` is the expected count when known."""

    def advance(self) -> None:
        """One more frame was restored and queued for writing."""

    def note(self, message: str) -> None:
        """One line worth telling the user (retries, streams not copied, conversions)."""

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
    video_fps: str  # the output's frame rate, exact, e.g. "24000/1001" (the average for VFR)
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
    pix_fmt: str  # the planes written (before any conversion the encoder needs)
    encoder: dict | None  # codec, crf, preset, pix_fmt of a video output; None for PNG frames
    variable_frame_rate: bool
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
        settings: window, padding, tiles, batch, device, precision, ensemble, strength, ...
        encoder: codec, crf, preset, pixel format, extra ffmpeg arguments (video output only);
            what is left None takes the container's default (`video.resolve_encoder`).
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
    check_paths(input_path, output_path, overwrite)  # as given: a trailing / means a folder
    if not 0 <= settings.strength <= 1:
        raise EnhanceError(f"--strength must be between 0 and 1, got {settings.strength}")
    encoder = resolve_encoder(encoder, target)
    notes: list[str] = []

    def note(message: str) -> None:
        notes.append(message)
        reporter.note(message)

    # One run per output: a second one refuses here; staging left by a killed run is removed.
    claim = claim_output(output_path, overwrite)
    try:
        source = open_source(input_path, settings.folder_fps, settings.deinterlace, note)
    except BaseException:
        claim.release()
        raise
    staging = None
    try:
        loaded = model() if callable(model) else model
        window = _checked_window(settings.window, int(loaded.network.num_frame))
        network = loaded.network
        scale = int(network.scale)
        if scale != 1 and settings.strength != 1:
            network = copy.deepcopy(network)  # the caller's model stays as loaded
            network.scale_residual(settings.strength)
        device = choose_device(settings.device)
        runner = ModelRunner(network, device, settings.precision, settings.tile, settings.tile_overlap,
                             settings.ensemble, notify=note)
        out_format = output_format(source.format, scale, folder_output, encoder.pix_fmt)
        planes = FramePlanes(runner, source.format, out_format, settings.strength)
        if not planes.residual and scale == 1 and settings.strength != 1:
            raise EnhanceError("--strength needs the output in the input's own format")
        _note_source(source, target, folder_output, settings.deinterlace, note)
        timing = Timing(source)
        staging = claim.staging_path()
        final_tile = settings.tile
        with open_writer(staging, out_format, timing.time_base, source, encoder, folder=folder_output,
                         deinterlaced=settings.deinterlace, notify=note) as writer:

            def restore(windows):
                nonlocal final_tile
                restored = planes.restore(windows)
                final_tile = restored.tile  # smaller after an out-of-memory retry
                return restored.frames

            def write(centre, output) -> None:
                writer.write(Frame(planes.finish(centre, output), timing.pts(centre.frame)))

            reporter.start(source.num_frames)
            num_frames = restore_stream(map(planes.prepare, source.reader), restore, write, window,
                                        settings.padding, settings.batch, on_frame=reporter.advance)
        claim.commit(staging, overwrite)  # only if complete (the writer closed cleanly) and still ours
    except NonFiniteOutputError as error:
        hint = " or overflow in --precision fp16 (try bf16 or fp32)" if settings.precision == "fp16" else ""
        raise EnhanceError(f"{loaded.path}: {error}: its weights are broken{hint}; nothing was written") from None
    except (VideoError, OSError) as error:
        if staging is None:
            raise
        raise _naming_output(error, staging, target) from None
    finally:
        reporter.close()
        source.close()
        claim.release()  # removes the staging file or folder unless it was committed
    if source.num_frames is not None and num_frames != source.num_frames:
        note(f"{input_path}: decoded {num_frames} frames where the container announced "
             f"{source.num_frames}; all decoded frames were restored")
    seconds = time.perf_counter() - started
    used = getattr(writer, "encoder", None)
    return EnhanceResult(
        input=os.fspath(input_path), output=os.fspath(output_path), frames=num_frames,
        seconds=round(seconds, 3), fps=round(num_frames / seconds, 3) if seconds > 0 else 0.0,
        video_fps=str(source.fps), width=out_format.width, height=out_format.height, device=str(device),
        precision=settings.precision, model=loaded.name, model_file=loaded.path, scale=runner.scale,
        window=window, padding=settings.padding, tile=final_tile, ensemble=settings.ensemble,
        strength=settings.strength, pix_fmt=out_format.layout.pix_fmt,
        encoder=None if folder_output or used is None else {
            "codec": used.codec, "crf": used.crf, "preset": used.preset,
            "pix_fmt": getattr(writer, "pix_fmt", used.pix_fmt)},
        variable_frame_rate=timing.variable, notes=notes)


def _naming_output(error: BaseException, staging: Path, target: Path) -> BaseException:
    """`error` with the hidden staging path replaced by the user's output path."""
    def renamed(text: str) -> str:
        for name in ("file:" + os.path.abspath(staging), os.path.abspath(staging), os.fspath(staging)):
            text = text.replace(name, os.fspath(target))
        return text

    if isinstance(error, VideoError):
        return VideoError(renamed(str(error)), renamed(error.stderr))
    if isinstance(error, OSError) and error.filename is not None:
        return type(error)(error.errno, error.strerror, renamed(os.fspath(error.filename)))
    return error


def _note_source(source: Source, target: Path, folder_output: bool, deinterlace: bool, note) -> None:
    """Tell the user what the output cannot keep of the input."""
    info = source.video_info
    if info is None:
        return
    for line in info.notes:  # e.g. which of several video streams is restored
        note(line)
    if folder_output and len(info.streams) > 1:
        note(f"{target}: a folder of PNG frames holds no audio, subtitles or attachments")
    if folder_output and info.sample_aspect is not None:
        sar = info.sample_aspect
        note(f"{target}: PNG frames have square pixels; the input's are {sar.numerator}:{sar.denominator} "
             f"(anamorphic), so show them stretched by that much across")
    if info.field_order is not None and not deinterlace:
        note(f"{info.path}: interlaced ({info.field_order}); frames are restored as they are and written "
             f"interlaced with the same field order; --deinterlace makes progressive frames first")
    elif info.field_order is None and deinterlace:
        note(f"{info.path}: --deinterlace on a video flagged progressive: frames are deinterlaced anyway")


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
