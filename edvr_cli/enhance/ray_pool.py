"""Segments as Ray tasks: model replicas (actors) on a cluster's GPUs, or CPU workers.

Each actor loads the network once on its own device (`num_gpus=1` when the cluster has GPUs)
and restores one segment per call with the same loop a plain run uses
(`loop.restore_segments`), decoding from a keyframe shortly before the segment's
first frame where that is exact (indexed containers, constant frame rate), else from the
start. How segments reach the output: the actor writes the
segment into a temporary folder on its own node and returns the file's bytes through Ray's
object store; the driver commits them into the work folder beside the output. So only the
input must be readable at the same path on every node (a shared or copied file); the output
folder need not be. An actor that dies mid-segment (a lost node, a killed process) is
restarted by Ray and the call is retried, so that segment is redone; a half-written segment
never leaves the actor.
"""

from __future__ import annotations

import tempfile
import uuid
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Callable

from edvr_cli.enhance.planes import FramePlanes, build_runner
from edvr_cli.enhance.ray_local import connect
from edvr_cli.enhance.loop import FrameClock, SeekMissed, SegmentOutput, restore_segments
from edvr_cli.enhance.segments import Segment
from edvr_cli.enhance.sources import open_source
from edvr_cli.enhance.errors import EnhanceError
from edvr_cli.video import VideoInfo


@dataclass(frozen=True)
class SegmentTask:
    """What an actor needs to restore one segment of one input (pickled to the actor)."""

    job_id: int
    input_path: str
    settings: object  # EnhanceSettings
    output: SegmentOutput
    num_frames: int
    window: int
    suffix: str  # the segment file's suffix ("" for PNG frames)
    segment: Segment
    info: VideoInfo | None = None  # the input's probe (None for image folders), not redone per task
    clock: FrameClock | None = None  # set where seeking is exact: the task decodes from near its frames


# Containers whose index makes ffmpeg's seek land on a keyframe at or before the time asked for,
# checked frame for frame against decoding from the start (tests/test_segments.py). MPEG-PS and
# AVI are not: their seeks may land late or decode the first frames differently.
SEEKABLE_SUFFIXES = (".mp4", ".m4v", ".mov", ".mkv", ".webm")


def frame_clock(job) -> FrameClock | None:
    """Where a job's tasks may seek: constant-rate video in an indexed container; frame 0's time
    read from the driver's own reader (which then stops)."""
    info = job.source.video_info
    if info is None or info.is_vfr or Path(info.path).suffix.lower() not in SEEKABLE_SUFFIXES:
        return None
    first = next(iter(job.source.reader), None)
    time_base = getattr(job.source.reader, "time_base", None)
    if first is None or first.pts is None or time_base is None:
        return None
    return FrameClock(first.pts * time_base, info.fps)


class NetworkHolder:
    """Keeps the network for the actors (RayPool makes it a Ray actor on the driver's node)."""

    def __init__(self, network):
        self.network = network

    def get(self):
        return self.network


class SegmentActor:
    """One model replica. Ray wraps this class with `ray.remote` in `RayPool`.

    `network`: the model, or the name of the Ray actor (a NetworkHolder) to fetch it from;
    `scratch`: where segments are written before they are sent (None: the system's temporary
    folder), a folder that is removed with a Ray instance of the run's own."""

    def __init__(self, network, threads: int = 0, scratch: str | None = None):
        import torch

        if threads:
            torch.set_num_threads(threads)
        if isinstance(network, str):
            import ray

            network = ray.get(ray.get_actor(network).get.remote())
        self.network = network
        self.runners: dict = {}
        self.scratch = scratch

    def _planes(self, task: SegmentTask, source) -> FramePlanes:
        settings = task.settings
        key = (settings.device, settings.precision, settings.tile, settings.tile_overlap, settings.ensemble,
               settings.compile)
        if key not in self.runners:  # built once per actor: a compiled network stays compiled
            self.runners[key] = build_runner(self.network, settings)
        return FramePlanes(self.runners[key], source.format, task.output.format, settings.strength)

    def restore(self, task: SegmentTask) -> tuple[int, int, dict[str, bytes], Fraction | None]:
        """(job id, segment index, {file name: bytes}, its first frame's time) of one restored segment."""
        if task.clock is not None and task.segment.first_input > 1:
            try:
                return self._restore(task, task.clock)
            except SeekMissed:
                pass  # decode from the start instead
        return self._restore(task, None)

    def _restore(self, task: SegmentTask, clock: FrameClock | None):
        settings = task.settings
        seek = clock.seek_seconds(task.segment.first_input) if clock is not None else 0.0
        source = open_source(task.input_path, settings.folder_fps, settings.deinterlace, seek_seconds=seek,
                             info=task.info)
        try:
            planes = self._planes(task, source)
            with tempfile.TemporaryDirectory(prefix="edvr-segment-", dir=self.scratch) as folder:
                partial = Path(folder) / f"segment{task.suffix}"
                for _segment, path, start in restore_segments(source, planes, [task.segment],
                                                       task.num_frames, task.window, settings.padding,
                                                       settings.batch, task.output, lambda segment: partial,
                                                       clock=clock):
                    files = [path] if path.is_file() else sorted(path.iterdir())
                    return task.job_id, task.segment.index, {file.name: file.read_bytes() for file in files}, start
        finally:
            source.close()
        raise EnhanceError(f"segment {task.segment.index} of {task.input_path} produced nothing")


def _user_error(error) -> Exception:
    """What a failed task should tell the user: the actor's own one-line error, or a summary."""
    from models.errors import EdvrError

    cause = getattr(error, "cause", None)
    if isinstance(cause, (EdvrError, OSError)):
        return cause
    return EnhanceError(f"a Ray worker failed: {str(error).splitlines()[0]}")


def import_ray():
    try:
        import ray
    except ImportError:
        raise EnhanceError("--ray needs Ray: pip install 'edvr[ray]'") from None
    return ray


class RayPool:
    """Actors on a Ray cluster that restore segments; `run` hands out tasks as actors free up.

    Args:
        address: "local" starts a Ray instance of this run's own on this machine (ended, and
            its temporary folder removed, by `close`; see ray_local.py); "auto" or
            "ray://host:port" joins a running cluster.
        workers: model replicas; None = one per GPU in the cluster, else 1.
        network: the model (held for the actors by a NetworkHolder on this node).
    """

    def __init__(self, address: str, workers: int | None, network):
        ray = self.ray = import_ray()
        self.actors, self.holder = [], None
        self.local = connect(ray, address)  # a Ray instance of this run's own, ended by close()
        try:
            self._start_actors(workers, network)
        except BaseException:
            self.close()
            raise

    def _start_actors(self, workers: int | None, network) -> None:
        ray = self.ray
        gpus = int(ray.cluster_resources().get("GPU", 0))
        cpus = int(ray.cluster_resources().get("CPU", 1))
        self.workers = workers or max(gpus, 1)
        threads = 0 if gpus else max(1, cpus // self.workers)
        actor = ray.remote(num_gpus=1 if gpus else 0, num_cpus=0 if gpus else min(threads, cpus),
                           max_restarts=-1, max_task_retries=-1)(SegmentActor)
        # A restarted actor takes the network again from a named holder pinned to this (the
        # driver's) node, which lives as long as the job does. Given the network (or any handle)
        # as an argument, every actor with restarts makes Ray log an error line to stderr.
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
        holder_name = f"edvr-network-{uuid.uuid4().hex}"
        self.holder = ray.remote(num_cpus=0, scheduling_strategy=here,
                                 name=holder_name)(NetworkHolder).remote(network)
        scratch = self.local.folder if self.local is not None else None
        self.actors = [actor.remote(holder_name, threads, scratch) for _ in range(self.workers)]

    def run(self, tasks: list[SegmentTask], finished: Callable[..., None],
            failed: Callable[[int, Exception], list[SegmentTask] | None] | None = None) -> None:
        """Restore every task; `finished(job id, segment index, files, start)` as each one completes.

        A task that raises (a bad input found while decoding, a bug) raises here, or with `failed`
        calls `failed(job id, error)`, drops that job's other waiting tasks, runs the tasks
        `failed` returns (the job planned again, under another id) and goes on with the rest.
        """
        ray = self.ray
        queue = list(reversed(tasks))
        running: dict = {}

        def submit(actor) -> None:
            if queue:
                task = queue.pop()
                running[actor.restore.remote(task)] = (actor, task)

        for actor in self.actors:
            submit(actor)
        while running:
            done, _ = ray.wait(list(running), num_returns=1)
            actor, task = running.pop(done[0])
            try:
                job_id, index, files, start = ray.get(done[0])
            except ray.exceptions.RayTaskError as error:
                problem = _user_error(error)
                if failed is None:
                    raise problem from None
                queue[:] = [other for other in queue if other.job_id != task.job_id]
                queue.extend(reversed(failed(task.job_id, problem) or []))
                submit(actor)
                continue
            submit(actor)
            finished(job_id, index, files, start)

    def close(self) -> None:
        """Stop the actors; a Ray instance this run started is shut down and its folder removed."""
        try:
            for actor in [*self.actors, self.holder]:
                if actor is not None:
                    self.ray.kill(actor, no_restart=True)
            self.actors, self.holder = [], None
        finally:
            if self.local is not None:
                self.local.close()
                self.local = None


__all__ = ["SegmentTask", "SegmentActor", "RayPool", "import_ray", "frame_clock", "SEEKABLE_SUFFIXES"]
