"""Many inputs into one output folder, and runs whose segments go to a Ray cluster.

`enhance_many` writes OUTDIR/<input's name> for each input. Without Ray the inputs run one
after another through `enhance` (today's single process and memory bound). With a `RayPool`
every input is prepared (checked, claimed, probed, planned) first, the segments of all of them
are handed to the pool's actors, and each output is joined as soon as its last segment arrives.
A failing input is reported and the others go on.
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

from edvr_cli.clip_layout import VIDEO_SUFFIXES
from edvr_cli.enhance.cut_short import decodable_frames, plan_for_decoded
from edvr_cli.enhance.output_names import explain_failure
from edvr_cli.enhance.errors import EnhanceError
from edvr_cli.enhance.job import (Job, close_job, commit_segment, finish_job, plan_work, segment_output, start_job,
                                  start_progress)
from edvr_cli.enhance.pipeline import EnhanceResult, Reporter, enhance, job_result, note_source
from edvr_cli.enhance.settings import EnhanceSettings
from edvr_cli.enhance.ray_pool import RayPool, SegmentTask, frame_clock
from edvr_cli.enhance.segments import InputEndedEarly, Segment
from edvr_cli.enhance.sources import count_frames_exactly
from edvr_cli.image_io import natural_key
from edvr_cli.output_files import OutputExistsError, output_exists
from edvr_cli.video import EncoderSettings
from models.errors import EdvrError, one_line


@dataclass
class Outcome:
    """One input's result, or the one-line reason it failed."""

    input: str
    output: str
    result: EnhanceResult | None = None
    error: str | None = None
    skipped: bool = False  # its output existed (skip_existing)


def expand_inputs(inputs: list[str]) -> list[Path]:
    """Paths as given; a quoted glob expanded; a folder holding videos (and no images) gives its videos."""
    paths: list[Path] = []
    for text in inputs:
        matches = sorted(glob.glob(text), key=natural_key) if glob.has_magic(text) else [text]
        if not matches:
            raise EnhanceError(f"{text}: matches no file")
        for match in map(Path, matches):
            videos = video_files_in(match) if match.is_dir() else []
            paths.extend(videos or [match])
    return paths


def video_files_in(folder: Path) -> list[Path]:
    """The video files of a folder, in natural order (none: it is a folder of images or empty)."""
    return sorted((entry for entry in folder.iterdir() if entry.is_file() and entry.suffix.lower() in VIDEO_SUFFIXES),
                  key=lambda entry: natural_key(entry.name))


def output_for(input_path: Path, output_dir: Path) -> Path:
    """OUTDIR/<the input's name> (same container); an image folder gives a folder of frames."""
    return output_dir / input_path.name if not input_path.is_dir() else output_dir / (input_path.name + "/")


def enhance_many(inputs: list[Path], output_dir: Path, model, settings: EnhanceSettings = EnhanceSettings(),
                 encoder: EncoderSettings = EncoderSettings(), overwrite: bool = False,
                 reporter: Callable[[Path], Reporter] | None = None, pool: RayPool | None = None,
                 skip_existing: bool = False) -> list[Outcome]:
    """Restore each input into `output_dir`; one Outcome per input, in order.

    Args:
        model: a LoadedModel or a function returning one (called once, for the first input).
        reporter: makes each input's Reporter (progress and notes).
        pool: a RayPool: segments of all inputs run on its actors.
        skip_existing: an input whose output exists is not run (`Outcome.skipped`).
    """
    made = [folder for folder in (output_dir, *output_dir.parents) if not folder.exists()]
    output_dir.mkdir(parents=True, exist_ok=True)
    try:
        return _enhance_into(inputs, output_dir, model, settings, encoder, overwrite, reporter, pool, skip_existing)
    finally:
        for folder in made:  # a batch that wrote nothing leaves no empty folders behind
            try:
                folder.rmdir()
            except OSError:
                break  # not empty: it holds outputs


def _enhance_into(inputs, output_dir, model, settings, encoder, overwrite, reporter, pool, skip_existing):
    """enhance_many once `output_dir` exists."""
    reporter = reporter or (lambda path: Reporter())
    load = _load_once(model)
    names = [output_for(path, output_dir) for path in inputs]
    clash = next((name for name in names if names.count(name) > 1), None)
    if clash is not None:
        raise EnhanceError(f"two inputs would both be written to {clash}; give them different names")
    outcomes = [Outcome(os.fspath(path), os.fspath(output), skipped=skip_existing and output_exists(output))
                for path, output in zip(inputs, names)]
    todo = [index for index, outcome in enumerate(outcomes) if not outcome.skipped]
    if pool is not None:
        done = _on_pool([inputs[i] for i in todo], [names[i] for i in todo], load, settings, encoder, overwrite,
                        reporter, pool)
        for index, outcome in zip(todo, done):
            outcomes[index] = outcome
        return outcomes
    for index in todo:
        outcome = outcomes[index]
        try:
            outcome.result = enhance(inputs[index], outcome.output, load, settings, encoder, overwrite,
                                     reporter(inputs[index]))
        except (EdvrError, OSError) as error:
            outcome.error = _input_error(error)
    return outcomes


def enhance_on_pool(input_path, output_path, model, settings: EnhanceSettings, encoder: EncoderSettings,
                    overwrite: bool, reporter: Reporter, pool: RayPool) -> EnhanceResult:
    """`enhance` with the segments restored by `pool`'s actors (errors raise as in `enhance`)."""
    outcome = _on_pool([Path(input_path)], [output_path], _load_once(model), settings, encoder, overwrite,
                       lambda path: reporter, pool, raise_errors=True)[0]
    return outcome.result


def _on_pool(inputs, outputs, load, settings, encoder, overwrite, reporter, pool: RayPool,
             raise_errors: bool = False) -> list[Outcome]:
    """Prepare every input, run all their segments on the pool, join each output."""
    segment_frames = settings.segment_frames or 0
    run = _PoolRun([Outcome(os.fspath(path), os.fspath(output)) for path, output in zip(inputs, outputs)],
                   raise_errors)
    try:
        tasks: list[SegmentTask] = []
        for slot, (path, output) in enumerate(zip(inputs, outputs)):
            try:
                job, todo = _prepare(path, output, load, settings, encoder, overwrite, reporter(path), segment_frames)
            except (EdvrError, OSError) as error:
                if raise_errors:
                    raise
                run.outcomes[slot].error = _input_error(error)
                continue
            tasks += run.add(slot, job, todo, job.source.num_frames)
        pool.run(tasks, run.finished, run.failed)
    finally:
        run.close()
    return run.outcomes


class _PoolRun:
    """The inputs of one pool run: their jobs, the segments each still waits for, their outcomes.

    A job is known to the pool by an id; a job planned again (its input ended early) gets a new
    one, so that results of tasks made for its old plan are dropped."""

    def __init__(self, outcomes: list[Outcome], raise_errors: bool):
        self.outcomes = outcomes
        self.raise_errors = raise_errors
        self.jobs: dict[int, Job] = {}
        self.slots: dict[int, int] = {}  # job id -> its input's place in `outcomes`
        self.pending: dict[int, int] = {}  # job id -> segments not yet returned
        self.reporters: list[Reporter] = []
        self._next_id = 0

    def add(self, slot: int, job: Job, todo: list[Segment], num_frames: int) -> list[SegmentTask]:
        """Tasks for `todo` under a new job id (the job joined at once when there are none)."""
        job_id, self._next_id = self._next_id, self._next_id + 1
        self.jobs[job_id], self.slots[job_id], self.pending[job_id] = job, slot, len(todo)
        if job.reporter not in self.reporters:
            self.reporters.append(job.reporter)
        if not todo:
            _finish(self.jobs.pop(job_id), self.outcomes[slot], self.raise_errors)
        return [SegmentTask(job_id, job.input_path, job.settings, segment_output(job), num_frames, job.window,
                            "" if job.folder_output else job.target.suffix, segment, job.source.video_info,
                            job.clock) for segment in todo]

    def finished(self, job_id: int, index: int, files: dict[str, bytes], start) -> None:
        job = self.jobs.get(job_id)
        if job is None:  # that input already failed, or was planned again
            return
        _store(job, index, files, start)
        for _ in range(job.segments[index].num_frames):
            job.reporter.advance()
        self.pending[job_id] -= 1
        if self.pending[job_id] == 0:
            _finish(self.jobs.pop(job_id), self.outcomes[self.slots[job_id]], self.raise_errors)

    def failed(self, job_id: int, error: Exception) -> list[SegmentTask]:
        """A task of `job_id` failed: an input that ended early is planned again (the new tasks are
        returned), any other failure ends that input."""
        job = self.jobs.pop(job_id, None)
        if job is None:
            return []
        if isinstance(error, InputEndedEarly):
            try:
                decoded = decodable_frames(job, error)
                return self.add(self.slots[job_id], job, plan_for_decoded(job, decoded), decoded)
            except (EdvrError, OSError) as problem:
                error = problem
        explained = explain_failure(job, error)
        close_job(job)  # the claim goes; finished segments stay in the work folder for a rerun
        if self.raise_errors:
            raise explained
        self.outcomes[self.slots[job_id]].error = one_line(explained)
        return []

    def close(self) -> None:
        for job in self.jobs.values():
            close_job(job)
        for reporter in self.reporters:
            reporter.close()


def _prepare(path, output, load, settings, encoder, overwrite, reporter, segment_frames):
    """start_job + the plan: every input is segmented here (one segment if it is short)."""
    job = start_job(path, output, load, settings, encoder, overwrite, reporter)
    job.reporter = reporter
    try:
        count_frames_exactly(job.source)
        if job.source.num_frames is None:
            raise EnhanceError(f"{path}: the frame count is unknown, so it cannot be cut into segments for Ray")
        job.settings = replace(settings, segment_frames=segment_frames or job.source.num_frames)
        note_source(job.source, job.target, job.folder_output, settings.deinterlace, job.note)
        todo = plan_work(job)
        job.clock = frame_clock(job)
        job.source.close()  # the actors decode; the driver only joins
        start_progress(job, reporter)
        return job, todo
    except BaseException:
        close_job(job)
        raise


def _store(job: Job, index: int, files: dict[str, bytes], start) -> None:
    """Commit a segment an actor returned."""
    partial = job.work.partial_path(index, ".received")
    if job.folder_output:
        partial.mkdir()
        for name, data in files.items():
            (partial / name).write_bytes(data)
    else:
        partial.write_bytes(next(iter(files.values())))
    commit_segment(job, index, partial, start)


def _finish(job: Job, outcome: Outcome, raise_errors: bool) -> None:
    try:
        finish_job(job)
        outcome.result = job_result(job)
    except (EdvrError, OSError) as error:
        explained = explain_failure(job, error)
        if raise_errors:
            raise explained from None
        outcome.error = one_line(explained)
    finally:
        job.reporter.close()
        close_job(job)


def _load_once(model):
    loaded = []

    def load():
        if not loaded:
            loaded.append(model() if callable(model) else model)
        return loaded[0]

    return load


def _input_error(error: BaseException) -> str:
    """One input's failure in its row; an existing output also names the way past it."""
    if isinstance(error, OutputExistsError):
        return f"{one_line(error)}, or --skip-existing to keep it"
    return one_line(error)


__all__ = ["Outcome", "enhance_many", "enhance_on_pool", "expand_inputs", "output_for"]
