"""`edvr enhance` as a library: a video (or image folder) in, a restored video (or folder) out.

The data path, as `enhance()` composes it (the restore loop is loop.py's `restore_segments`):

    probe -> plan: one pass (the whole input as one segment) or resumable segments (job.py)
          -> decode (FrameReader: the source's own planes and timestamps, bounded queue)
          -> RGB float on the model's device, once per frame (FramePlanes.prepare)
          -> temporal windows (segment_windows: only the frames later windows still need)
          -> batches of windows -> ModelRunner: tiles -> model -> stitch (-> x8 ensemble)
          -> output planes (scale 1: input planes + the network's change; x4: from its RGB)
          -> encode (FrameWriter: each frame at its input's time; audio, subtitles copied)
          -> os.replace of the finished temporary file (or joined segments) onto the output path

Memory does not grow with the video: the reader's queue, the window buffer
(window + max_reach(window) frames), one batch of windows and the writer's queue.

Errors the user can fix raise `EnhanceError` (or OutputPathError, ModelChoiceError, VideoError,
CheckpointError, InferenceError) with a one-line message; an error or Ctrl-C leaves no file
under the output's name.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from edvr_cli.enhance.output_names import explain_failure
from edvr_cli.enhance.job import Job, close_job, finish_job, plan_job, run_segments, start_job
from edvr_cli.enhance.planes import NonFiniteOutputError, build_runner
from edvr_cli.enhance.settings import EnhanceSettings
from edvr_cli.enhance.sources import Source, open_source, open_writer
from edvr_cli.model_choice import LoadedModel
from edvr_cli.video import EncoderSettings, VideoError


class Reporter:
    """What `enhance` tells its caller while it runs. This default says nothing."""

    def start(self, num_frames: int | None) -> None:
        """Decoding starts; `num_frames` is the expected count when known."""

    def advance(self) -> None:
        """One more frame was restored and queued for writing."""

    def note(self, message: str) -> None:
        """One line worth telling the user (retries, streams not copied, conversions)."""

    def resumed(self, num_frames: int) -> None:
        """`num_frames` were restored by an earlier, interrupted run and are reused."""

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
    segments: int = 1  # segments the output was made of (1 = a single pass)
    segments_reused: int = 0  # of those, restored by an earlier interrupted run
    first_frame: int = 0  # the input frame the output starts with (--start), counted from 0
    notes: list[str] = field(default_factory=list)


def enhance(input_path: str | os.PathLike, output_path: str | os.PathLike,
            model: LoadedModel | Callable[[], LoadedModel], settings: EnhanceSettings = EnhanceSettings(),
            encoder: EncoderSettings = EncoderSettings(), overwrite: bool = False,
            reporter: Reporter | None = None, open_source: Callable[..., Source] = open_source,
            open_writer: Callable[..., object] = open_writer,
            build_runner: Callable[..., object] = build_runner) -> EnhanceResult:
    """Restore `input_path` (video file or image folder) into `output_path` (video file or folder).

    Args:
        model: from `load_enhance_model`, or a function returning it, called once the input has
            been probed (so a bad input is reported before a model is downloaded or loaded).
        settings: window, padding, tiles, batch, device, precision, ensemble, strength, segments...
        encoder: codec, crf, preset, pixel format, extra ffmpeg arguments (video output only);
            what is left None takes the container's default (`video.resolve_encoder`).
        overwrite: replace an existing output.
        reporter: receives progress and notes.
        open_source, open_writer: how frames are read and written (tests pass fakes).
        build_runner: makes the ModelRunner (`planes.build_runner`; a benchmark passes one with
            options no setting has, e.g. `functools.partial(build_runner, channels_last=True)`).

    A short video (or one of unknown length) is restored in one pass, straight into the output.
    With `settings.segment_frames` > 0 and a known frame count above it the video is restored in
    segments kept in a work folder beside the output, and a rerun after an interruption reuses
    the finished ones (see job.py). Both go through the same loop (loop.py).

    Raises:
        EnhanceError, OutputPathError, ModelChoiceError, VideoError, InferenceError, CheckpointError:
        one-line messages. On any error or KeyboardInterrupt nothing is left under `output_path`
        (an existing one is untouched).
    """
    reporter = reporter or Reporter()
    job = start_job(input_path, output_path, model, settings, encoder, overwrite, reporter, open_source)
    try:
        job.build_planes(build_runner)
        note_source(job.source, job.target, job.folder_output, settings.deinterlace, job.note)
        run_segments(job, plan_job(job), reporter, open_writer)
        finish_job(job)  # only if complete (the writer closed cleanly) and still ours
    except (NonFiniteOutputError, VideoError, OSError) as error:
        explained = explain_failure(job, error)
        if explained is error:
            raise
        raise explained from None
    finally:
        reporter.close()
        close_job(job)
    return job_result(job)


def job_result(job: Job) -> EnhanceResult:
    """The --json summary of a finished job."""
    source, settings = job.source, job.settings
    if job.frames is None and source.num_frames is not None and job.num_frames != source.num_frames:
        job.note(f"{job.input_path}: decoded {job.num_frames} frames where the container announced "
                 f"{source.num_frames}; all decoded frames were restored")
    seconds = time.perf_counter() - job.started
    info = source.video_info
    return EnhanceResult(
        input=job.input_path, output=job.output_path, frames=job.num_frames, seconds=round(seconds, 3),
        fps=round(job.num_frames / seconds, 3) if seconds > 0 else 0.0, video_fps=str(source.fps),
        width=job.out_format.width, height=job.out_format.height, device=str(job.device),
        precision=settings.precision, model=job.loaded.name, model_file=job.loaded.path, scale=int(job.network.scale),
        window=job.window, padding=settings.padding, tile=job.final_tile, ensemble=settings.ensemble,
        strength=settings.strength, pix_fmt=job.out_format.layout.pix_fmt,
        encoder=None if job.folder_output else {
            "codec": job.encoder.codec, "crf": job.encoder.crf, "preset": job.encoder.preset,
            "pix_fmt": job.encoder.pix_fmt},
        variable_frame_rate=info is not None and info.is_vfr, segments=len(job.segments),
        segments_reused=job.reused, first_frame=job.first_frame, notes=job.notes)


def note_source(source: Source, target: Path, folder_output: bool, deinterlace: bool, note) -> None:
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
