"""One input's enhance job: prepared once, restored as segments, then committed.

    start_job      checks, the output claim, the opened source, the model, the frame formats
    plan_job       one pass (the whole input as one segment, straight into the staging file), or
                   the segment plan and its work folder (plan_work: finished segments are reused)
    run_segments   the segments still to restore, through the restore loop (loop.py)
    finish_job     the join of the segments (or the single file) renamed onto the output

Plain runs, runs over many inputs and Ray runs (`ray_pool.py`) all go through these.
"""

from __future__ import annotations

import copy
import errno
import os
import shutil
import time
from fractions import Fraction
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable

import torch

from edvr_cli.enhance.errors import EnhanceError
from edvr_cli.enhance.frame_range import FrameRange, chosen_frames
from edvr_cli.enhance.loop import FrameClock, SeekMissed, SegmentOutput, restore_segments
from edvr_cli.enhance.output_check import check_output_frames
from edvr_cli.enhance.output_names import hidden_paths
from edvr_cli.enhance.planes import FramePlanes, build_runner
from edvr_cli.enhance.cut_short import decodable_frames, plan_for_decoded
from edvr_cli.enhance.segments import ONE_PASS, InputEndedEarly, Segment, plan_segments
from edvr_cli.enhance.settings import EnhanceSettings, checked_window
from edvr_cli.enhance.sources import Source, count_frames_exactly, open_source, open_writer, output_format
from edvr_cli.enhance.workfolder import WorkFolder, file_fingerprint, file_hash, folder_fingerprint, work_folder_path
from edvr_cli.enhance.inference import choose_device
from edvr_cli.model_choice import LoadedModel
from edvr_cli.output_files import OutputClaim, check_paths, claim_output, is_folder_output
from edvr_cli.video import EncoderSettings, FrameFormat, resolve_encoder
from edvr_cli.video.encoders import check_crf, choose_pix_fmt
from edvr_cli.video.join import join_segments


@dataclass
class Job:
    """Everything prepared for one input -> output (see start_job)."""

    input_path: str
    output_path: str
    settings: EnhanceSettings
    encoder: EncoderSettings  # resolved
    claim: OutputClaim
    source: Source
    loaded: LoadedModel
    network: torch.nn.Module  # the loaded one, or a copy with --strength applied at x4
    window: int
    device: torch.device
    out_format: FrameFormat
    folder_output: bool
    note: Callable[[str], None]
    overwrite: bool
    notes: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.perf_counter)
    planes: FramePlanes | None = None  # the network and the plane conversions (build_planes)
    num_frames: int = 0
    staging: Path | None = None  # the output's hidden staging file (or folder) while it is written
    segments: list[Segment] = field(default_factory=list)  # ONE_PASS, with its end once restored, or the plan
    reused: int = 0  # segments an earlier run finished
    reused_frames: int = 0  # the frames they hold
    work: WorkFolder | None = None  # where finished segments wait for the join; None for one pass
    reporter: object = None  # the input's pipeline.Reporter, when jobs run side by side (many.py)
    clock: FrameClock | None = None  # FrameClock where Ray tasks may seek (ray_pool.frame_clock)
    frames: FrameRange | None = None  # --start/--duration: only these frames are restored

    @property
    def first_frame(self) -> int:
        return self.frames.first if self.frames is not None else 0

    @property
    def frames_wanted(self) -> int | None:
        """The output's frame count when known up front: the range's, else the source's."""
        return self.frames.num_frames if self.frames is not None else self.source.num_frames

    @property
    def target(self) -> Path:
        return Path(self.output_path)

    @property
    def final_tile(self) -> int:
        """The tile size the last frames ran with (smaller after an out-of-memory retry)."""
        return self.planes.final_tile if self.planes is not None else self.settings.tile

    def build_planes(self, build_runner: Callable[..., object] = build_runner) -> None:
        """The network on its device (`build_runner(network, settings, notify=...)` makes the
        ModelRunner), and the plane conversions around it."""
        runner = build_runner(self.network, self.settings, notify=self.note)
        self.planes = FramePlanes(runner, self.source.format, self.out_format, self.settings.strength)


def start_job(input_path, output_path, model: LoadedModel | Callable[[], LoadedModel], settings,
              encoder: EncoderSettings, overwrite: bool, reporter, open_source: Callable[..., Source] = open_source) -> Job:
    """Check the paths and settings, claim the output, open (probe) the input, load the model."""
    check_paths(input_path, output_path, overwrite)  # as given: a trailing / means a folder
    folder_output = is_folder_output(output_path)
    asked_crf = encoder.crf
    encoder = resolve_encoder(encoder, Path(output_path))  # from this output's own container
    if asked_crf is not None and not folder_output:
        check_crf(asked_crf, encoder.codec)
    notes: list[str] = []
    # One run per output: a second one refuses here; staging left by a killed run is removed.
    claim = claim_output(output_path, overwrite)
    hidden = hidden_paths(output_path, claim.tag)

    def note(message: str) -> None:
        message = hidden.sub(lambda match: os.fspath(Path(output_path)), message)  # the writers name their file
        if message not in notes:  # each segment's writer would say the same again
            notes.append(message)
            reporter.note(message)

    try:
        source = open_source(input_path, settings.folder_fps, settings.deinterlace, note)
    except BaseException:
        claim.release()
        raise
    try:
        frames = chosen_frames(source, settings, input_path)
        loaded = model() if callable(model) else model
        window = checked_window(settings.window, int(loaded.network.num_frame))
        network = loaded.network
        if int(network.scale) != 1 and settings.strength != 1:
            network = copy.deepcopy(network)  # the caller's model stays as loaded
            network.scale_residual(settings.strength)
        device = choose_device(settings.device)
        out_format = output_format(source.format, int(network.scale), folder_output, encoder.pix_fmt)
        if not folder_output and encoder.pix_fmt is None:  # decided once, for every writer and the summary
            encoder = replace(encoder, pix_fmt=choose_pix_fmt(encoder.codec, out_format.layout, out_format.width,
                                                              out_format.height))
    except BaseException:
        source.close()
        claim.release()
        raise
    return Job(os.fspath(input_path), os.fspath(output_path), settings, encoder, claim, source, loaded, network,
               window, device, out_format, folder_output, note, overwrite, notes, frames=frames)


def wants_segments(job: Job) -> bool:
    """Segments need the exact frame count up front, and more frames than one segment. A range
    (--start/--duration) is always restored as segments: they read the real frames around it."""
    if job.frames is not None:
        return True
    if job.settings.segment_frames <= 0:
        return False
    count_frames_exactly(job.source)
    count = job.source.num_frames
    return count is not None and count > job.settings.segment_frames


def plan_job(job: Job) -> list[Segment]:
    """The segments to restore: the whole input as one (ONE_PASS, written straight into the
    staging file), or where `wants_segments` the plan kept in a work folder (`plan_work`)."""
    if wants_segments(job):
        return plan_work(job)
    job.staging = job.claim.staging_path()
    job.segments = [ONE_PASS]
    return job.segments


def plan_work(job: Job) -> list[Segment]:
    """The segment plan and the work folder; returns the segments still to restore."""
    settings = job.settings
    job.segments = plan_segments(job.source.num_frames, settings.segment_frames, job.window, settings.padding,
                                 job.first_frame, job.first_frame + job.frames_wanted)
    job.work = WorkFolder(work_folder_path(job.output_path), job_manifest(job),
                          "" if job.folder_output else job.target.suffix)
    if job.work.started_over:
        job.note(f"{job.target}: the finished segments kept for resume were made for another input, model or "
                 f"options; starting over")
    todo = [segment for segment in job.segments if not job.work.is_done(segment.index, segment.num_frames)]
    for index, problem in job.work.redone:
        segment = job.segments[index]
        job.note(f"{job.target}: the finished segment of frames {segment.start + 1}-{segment.stop} kept for resume "
                 f"is not reused: {problem}; restoring it again")
    job.reused = len(job.segments) - len(todo)
    job.reused_frames = job.frames_wanted - sum(segment.num_frames for segment in todo)
    if job.reused:
        job.note(f"resuming: {job.reused} of {len(job.segments)} segments already restored "
                 f"({job.reused_frames} frames), {len(todo)} to go")
    return todo


def job_manifest(job: Job) -> dict:
    """What the segments depend on: input, model file, every option that changes pixels or encoding."""
    path = job.input_path
    info = job.source.video_info
    model_file = job.loaded.path
    return {
        "input": folder_fingerprint(path) if os.path.isdir(path) else file_fingerprint(path),
        "probe": None if info is None else {"fps": str(info.fps), "frames": info.num_frames, "pix_fmt": info.pix_fmt,
                                            "size": [info.width, info.height], "vfr": info.is_vfr},
        "model": {"name": job.loaded.name,
                  "sha256": file_hash(model_file) if os.path.isfile(model_file) else None},
        "settings": {key: str(value) for key, value in asdict(job.settings).items()},
        "encoder": {key: list(value) if isinstance(value, tuple) else value
                    for key, value in asdict(job.encoder).items()},
        "output": {"suffix": job.target.suffix, "folder": job.folder_output, "pix_fmt": job.out_format.layout.pix_fmt,
                   "size": [job.out_format.width, job.out_format.height]},
    }


def segment_output(job: Job) -> SegmentOutput:
    return SegmentOutput(job.out_format, job.encoder, job.folder_output, job.settings.deinterlace, job.first_frame,
                         whole=job.work is None)


def start_progress(job: Job, reporter) -> None:
    """The progress bar's total, with the frames of reused segments already counted."""
    reporter.start(job.frames_wanted)
    resumed = getattr(reporter, "resumed", None)  # a Reporter of an older interface has none
    if resumed is not None and job.reused_frames:
        resumed(job.reused_frames)


def run_segments(job: Job, todo: list[Segment], reporter, open_writer: Callable[..., object] = open_writer) -> None:
    """Restore `todo` in one pass over the decoded frames, committing each segment as it ends.

    One pass (no work folder) restores every frame that decodes, however many the container
    announced. A range (--start) far into a video decodes from a keyframe shortly before it
    where seeking is exact (as Ray tasks do), else from the start. A video in segments that ends
    before the frame count its container announced (a truncated file) gets what one pass gives:
    the frames that decode, padded at their real end. The segments that read near that end are
    planned again and restored in a second pass."""
    start_progress(job, reporter)
    if not todo:  # every segment was finished by an earlier run: only the join is left
        return
    num_frames = job.source.num_frames if job.work is not None else None
    try:
        _restore_and_commit(job, todo, num_frames, reporter, open_writer)
    except InputEndedEarly as ended:
        decoded = decodable_frames(job, ended)
        todo = plan_for_decoded(job, decoded)
        job.source.close()
        job.source = open_source(job.input_path, job.settings.folder_fps, job.settings.deinterlace, job.note,
                                 info=job.source.video_info)
        _restore_and_commit(job, todo, decoded, reporter, open_writer)


def _restore_and_commit(job: Job, todo: list[Segment], num_frames: int | None, reporter, open_writer) -> None:
    if not todo:  # a new plan for a cut input can leave nothing to restore
        return
    settings = job.settings
    clock = _seek_to(job, todo)
    while True:
        finished = restore_segments(job.source, job.planes, todo, num_frames, job.window, settings.padding,
                                    settings.batch, segment_output(job), lambda segment: _partial_path(job, segment),
                                    on_frame=reporter.advance, notify=job.note, clock=clock, open_writer=open_writer)
        try:
            for segment, partial, start in finished:
                if job.work is None:
                    job.segments = [segment]  # one pass, now with its end
                else:
                    commit_segment(job, segment.index, partial, start)
                todo = [other for other in todo if other.index != segment.index]
            return
        except SeekMissed:  # the seek landed after the frames needed: decode from the start
            job.source.close()
            job.source = open_source(job.input_path, settings.folder_fps, settings.deinterlace, job.note,
                                     info=job.source.video_info)
            clock = None


def _partial_path(job: Job, segment: Segment) -> Path:
    """Where a segment is written: the staging file itself for one pass, else the work folder."""
    return job.staging if job.work is None else job.work.partial_path(segment.index)


def _seek_to(job: Job, todo: list[Segment]):
    """Reopen a range's source at a seek point before the first frame `todo` reads (a FrameClock
    to identify frames by), or None to decode from the start as opened."""
    from edvr_cli.enhance.ray_pool import SEEKABLE_SUFFIXES, frame_clock

    info = job.source.video_info
    first_input = min(segment.first_input for segment in todo)
    if (job.frames is None or first_input <= 1 or info is None or info.is_vfr
            or Path(info.path).suffix.lower() not in SEEKABLE_SUFFIXES):
        return None
    clock = frame_clock(job)  # reads the first frame
    settings = job.settings
    job.source.close()
    job.source = open_source(job.input_path, settings.folder_fps, settings.deinterlace, job.note,
                             seek_seconds=clock.seek_seconds(first_input) if clock is not None else 0.0,
                             info=info)
    return clock


def commit_segment(job: Job, index: int, partial: Path, start) -> None:
    """Keep a finished segment for the join and for resume (WorkFolder.commit); a failure to
    write it (a full disk) names the user's output, not the hidden work folder."""
    try:
        job.work.commit(index, partial, job.segments[index].num_frames, start)
    except OSError as error:
        reason = "no space left on device" if error.errno == errno.ENOSPC else error.strerror or str(error)
        raise EnhanceError(f"{job.target}: a finished segment could not be kept ({reason}); make room and run "
                           f"the same command again") from None


def finish_job(job: Job) -> None:
    """Join the segments (if any) into the staging entry and rename it onto the output."""
    job.num_frames = job.segments[-1].stop - job.first_frame
    if job.work is not None:
        job.staging = job.claim.staging_path()
        paths = [job.work.segment_path(segment.index) for segment in job.segments]
        if job.folder_output:
            _gather_frames(paths, job.staging)
        else:
            info = job.source.video_info
            starts = [job.work.start_of(segment.index) for segment in job.segments]
            offset = info.start_offset if info is not None else Fraction(0)
            if job.frames is None:
                join_segments(paths, starts, job.staging, info, job.encoder.codec, offset, notify=job.note,
                              script=job.work.join_script)
            else:  # the output starts at the range's first frame; the other streams are cut to it
                join_segments(paths, starts, job.staging, info, job.encoder.codec, notify=job.note,
                              source_cut=(offset + job.frames.start_time, job.frames.seconds),
                              script=job.work.join_script)
        check_output_frames(job.staging, job.folder_output, job.num_frames, job.target)
    job.claim.commit(job.staging, job.overwrite)
    if job.work is not None:
        job.work.remove()


def _gather_frames(folders: list[Path], staging: Path) -> None:
    """Link (or copy) each segment's numbered PNGs into the staging folder: the segments stay
    whole until the output is in place, so a failure here loses no finished work."""
    staging.mkdir(parents=True, exist_ok=True)
    for folder in folders:
        for file in sorted(folder.iterdir()):
            try:
                os.link(file, staging / file.name)
            except OSError:
                shutil.copyfile(file, staging / file.name)


def close_job(job: Job) -> None:
    """Stop decoding and give up the claim (removing the staging entry unless it was committed)."""
    try:
        job.source.close()
    finally:
        job.claim.release()


__all__ = ["Job", "start_job", "wants_segments", "plan_job", "plan_work", "run_segments", "commit_segment",
           "finish_job", "close_job", "segment_output"]
