"""Segments, resume, many inputs and Ray: every path gives a single pass's frames.

Real ffmpeg clips, a real tiny EDVR (5-frame windows, so a segment of 1 or 2 frames is smaller
than a window), outputs through ffv1 so that "identical" is bit for bit.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from fractions import Fraction
from pathlib import Path

import pytest
import torch

from edvr_cli.enhance import EncoderSettings, EnhanceSettings, enhance
from edvr_cli.enhance.segments import Segment, plan_segments
from edvr_cli.enhance.workfolder import work_folder_path
from edvr_cli.model_choice import load_enhance_model
from edvr_cli.video import FrameReader, probe
from models import EDVR, save_model
from tests.clips import FFMPEG, make_clip

FFV1 = EncoderSettings(codec="ffv1")


@pytest.fixture(scope="module")
def model_file(tmp_path_factory) -> Path:
    torch.manual_seed(5)
    network = EDVR(num_feat=8, deformable_groups=1, num_extract_block=1, num_reconstruct_block=1, hr_in=True,
                   with_predeblur=False, scale=1, num_frame=5, num_hr_feat=8)
    torch.nn.init.normal_(network.conv_last.weight, std=0.05)  # a change of several levels per frame
    path = tmp_path_factory.mktemp("model") / "tiny5.pth"
    save_model(network, path)
    return path


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    """23 frames at 24000/1001 fps with an audio track."""
    return make_clip(tmp_path_factory.mktemp("clip") / "in.mkv", num_frames=23, fps="24000/1001", audio=True,
                     pix_fmt="yuv420p")


def frames_of(path: Path) -> list[tuple[str, int]]:
    """(md5 of the planes, pts) of every frame."""
    with FrameReader(path) as reader:
        return [(hashlib.md5(b"".join(plane.tobytes() for plane in frame.planes)).hexdigest(), frame.pts)
                for frame in reader]


def run(clip: Path, output: Path, model_file: Path, **settings):
    return enhance(clip, output, load_enhance_model(str(model_file)), EnhanceSettings(**settings), FFV1)


@pytest.fixture(scope="module")
def single_pass(clip, model_file, tmp_path_factory) -> list[tuple[str, int]]:
    output = tmp_path_factory.mktemp("single") / "out.mkv"
    result = run(clip, output, model_file, segment_frames=0)
    assert result.segments == 1 and result.frames == 23
    return frames_of(output)


def test_the_plan_reads_real_neighbours_and_pads_only_at_the_clip_ends():
    # window 5, 10 frames, segments of 3: frame 0 reads 4, 3, 0, 1, 2 (reflection_circle); frame 9 reads
    # 7, 8, 9, 6, 5; frames 3 to 5 read their real neighbours 1 to 7
    plan = plan_segments(10, 3, 5, "reflection_circle")
    assert plan == [Segment(0, 0, 3, 0, 4), Segment(1, 3, 6, 1, 7), Segment(2, 6, 9, 4, 9), Segment(3, 9, 10, 5, 9)]
    assert plan_segments(10, 0, 5, "replicate") == [Segment(0, 0, 10, 0, 9)]
    assert [segment.num_frames for segment in plan_segments(7, 1, 5, "replicate")] == [1] * 7


def test_a_pass_over_some_segments_decodes_into_the_network_only_the_frames_they_read():
    from edvr_cli.enhance.segments import needed_ranges

    plan = plan_segments(30, 4, 5, "reflection_circle")
    assert needed_ranges(plan) == [(0, 29)]
    assert needed_ranges([plan[1], plan[5]]) == [(2, 9), (18, 25)]  # a resumed run: segments 1 and 5 left
    assert needed_ranges([plan[2], plan[3]]) == [(6, 17)]  # overlapping context merged


@pytest.mark.parametrize("segment_frames", [1, 2, 7, 22])
def test_segmented_output_is_the_single_pass_bit_for_bit(clip, model_file, single_pass, tmp_path, segment_frames):
    output = tmp_path / "out.mkv"
    result = run(clip, output, model_file, segment_frames=segment_frames)
    assert result.segments == -(-23 // segment_frames) and result.segments_reused == 0
    assert frames_of(output) == single_pass  # same planes, same timestamps, same count
    info = probe(output)
    assert info.fps == probe(clip).fps and info.num_frames == 23
    assert [stream.kind for stream in info.streams] == ["video", "audio"]
    assert not work_folder_path(output).exists()  # removed after success


def test_variable_frame_rate_keeps_each_frames_time_across_segments(model_file, tmp_path):
    clip = tmp_path / "vfr.mkv"
    subprocess.run([FFMPEG, "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=64x48:rate=25", "-frames:v", "14",
                    "-vf", "setpts='(N+if(gte(N,6),5,0))/25/TB'", "-fps_mode", "passthrough", "-c:v", "ffv1",
                    "-pix_fmt", "yuv420p", str(clip)], check=True)
    assert probe(clip).is_vfr
    run(clip, tmp_path / "one.mkv", model_file, segment_frames=0)
    result = run(clip, tmp_path / "seg.mkv", model_file, segment_frames=4)
    assert result.segments == 4 and result.variable_frame_rate
    assert frames_of(tmp_path / "seg.mkv") == frames_of(tmp_path / "one.mkv")


def _edvr(*args: str) -> list[str]:
    return [sys.executable, "-c", "from edvr_cli.cli import main; main()", "enhance", *args]


def _signal_after_a_segment(args: list[str], work: Path, signum: int = signal.SIGKILL, env: dict | None = None,
                            before_signal=lambda: None) -> tuple[int, str]:
    """Start `edvr enhance` (in `env`), send it `signum` once a segment is committed and before it
    ends, after calling `before_signal`; returns its exit status and stderr.

    Committed means renamed to `seg-NNNNN.mkv`: the segment's `.record` file is written just before
    that rename, so its presence alone is not a finished segment.
    """
    process = subprocess.Popen(_edvr(*args), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    committed = re.compile(r"seg-\d{5}\.mkv")
    try:
        deadline = time.monotonic() + 120
        while not (work.is_dir() and any(committed.fullmatch(name) for name in os.listdir(work))):
            assert process.poll() is None, "the run ended before it could be stopped"
            assert time.monotonic() < deadline
            time.sleep(0.005)
        before_signal()
    finally:
        process.send_signal(signum)
        _, stderr = process.communicate(timeout=60)
    return process.returncode, stderr


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory) -> Path:
    return make_clip(tmp_path_factory.mktemp("long") / "long.mkv", width=96, height=64, num_frames=60, audio=True,
                     pix_fmt="yuv420p")


def test_sigkill_then_rerun_reuses_finished_segments_and_gives_the_single_pass(long_clip, model_file, tmp_path):
    output = tmp_path / "out.mkv"
    args = [str(long_clip), "-o", str(output), "--model", str(model_file), "--codec", "ffv1", "--segment-frames", "4"]
    _signal_after_a_segment(args, work_folder_path(output))
    assert not output.exists()
    done = subprocess.run(_edvr(*args, "--json"), capture_output=True, text=True, check=True)
    result = json.loads(done.stdout)
    assert result["segments"] == 15 and 1 <= result["segments_reused"] < 15
    assert "resuming:" in done.stderr
    run(long_clip, tmp_path / "single.mkv", model_file, segment_frames=0)
    assert frames_of(output) == frames_of(tmp_path / "single.mkv")
    assert not work_folder_path(output).exists()


def test_sigterm_says_how_many_segments_are_kept_and_the_rerun_reuses_exactly_those(long_clip, model_file, tmp_path):
    output = tmp_path / "out.mkv"
    args = [str(long_clip), "-o", str(output), "--model", str(model_file), "--codec", "ffv1", "--segment-frames", "4"]
    status, stderr = _signal_after_a_segment(args, work_folder_path(output), signal.SIGTERM)
    message = re.fullmatch(rf"Error: stopped by SIGTERM: {re.escape(str(output))} was not written; (\d+) finished "
                           rf"segments? kept: run the same command again to resume\n", stderr.splitlines(True)[-1])
    assert status == 143 and message, stderr
    kept = int(message.group(1))
    assert 1 <= kept < 15 and not output.exists()
    done = subprocess.run(_edvr(*args, "--json"), capture_output=True, text=True, check=True)
    assert json.loads(done.stdout)["segments_reused"] == kept


def test_a_changed_option_after_a_kill_starts_over(long_clip, model_file, tmp_path):
    output = tmp_path / "out.mkv"
    args = [str(long_clip), "-o", str(output), "--model", str(model_file), "--codec", "ffv1", "--segment-frames", "4"]
    _signal_after_a_segment(args, work_folder_path(output))
    done = subprocess.run(_edvr(*args, "--padding", "replicate", "--json"), capture_output=True, text=True,
                          check=True)
    assert json.loads(done.stdout)["segments_reused"] == 0
    assert "starting over" in done.stderr
    run(long_clip, tmp_path / "single.mkv", model_file, segment_frames=0, padding="replicate")
    assert frames_of(output) == frames_of(tmp_path / "single.mkv")


def test_several_inputs_each_as_its_own_run_and_a_broken_one_does_not_stop_the_others(clip, model_file, tmp_path):
    other = make_clip(tmp_path / "other.mkv", width=48, height=32, num_frames=9, pix_fmt="yuv420p")
    broken = tmp_path / "broken.mkv"
    broken.write_bytes(b"not a video")
    out_dir = tmp_path / "restored"
    done = subprocess.run(_edvr(str(clip), str(broken), str(other), "-o", f"{out_dir}/", "--model", str(model_file),
                                "--codec", "ffv1", "--segment-frames", "4", "--json"),
                          capture_output=True, text=True)
    assert done.returncode == 1, done.stderr
    outcomes = json.loads(done.stdout)
    assert [(Path(item["input"]).name, item["ok"]) for item in outcomes] == [
        ("in.mkv", True), ("broken.mkv", False), ("other.mkv", True)]
    assert "broken.mkv" in outcomes[1]["error"] and "\n" not in outcomes[1]["error"]
    assert "1 of 3 inputs failed" in done.stderr and "Traceback" not in done.stderr
    assert sorted(os.listdir(out_dir)) == ["in.mkv", "other.mkv"]
    for source in (clip, other):
        run(source, tmp_path / f"own-{source.name}", model_file, segment_frames=0)
        assert frames_of(out_dir / source.name) == frames_of(tmp_path / f"own-{source.name}")


def test_an_interrupted_batch_goes_on_with_skip_existing(clip, long_clip, model_file, tmp_path):
    out_dir = tmp_path / "restored"
    args = [str(clip), str(long_clip), "-o", f"{out_dir}/", "--model", str(model_file), "--codec", "ffv1",
            "--segment-frames", "4"]
    status, stderr = _signal_after_a_segment(args, work_folder_path(out_dir / "long.mkv"), signal.SIGTERM)
    message = re.fullmatch(rf"Error: stopped by SIGTERM: not every input was written to {re.escape(str(out_dir))}/ "
                           rf"\((\d+) finished segments? kept\); run the same command with --skip-existing to go on\n",
                           stderr.splitlines(True)[-1])
    assert status == 143 and message, stderr
    assert (out_dir / "in.mkv").is_file() and not (out_dir / "long.mkv").exists()
    done = subprocess.run(_edvr(*args, "--skip-existing", "--quiet", "--json"), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    first, second = json.loads(done.stdout)
    assert first["skipped"] and first["result"] is None
    assert not second["skipped"] and second["result"]["segments_reused"] == int(message.group(1)) >= 1
    run(long_clip, tmp_path / "single.mkv", model_file, segment_frames=0)
    assert frames_of(out_dir / "long.mkv") == frames_of(tmp_path / "single.mkv")


def test_quiet_still_names_the_inputs_that_failed(clip, model_file, tmp_path):
    broken = tmp_path / "broken.mkv"
    broken.write_bytes(b"not a video")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / clip.name).write_bytes(b"the user's file")
    done = subprocess.run(_edvr(str(broken), str(clip), "-o", f"{tmp_path}/out/", "--model", str(model_file),
                                "--codec", "ffv1", "--quiet"), capture_output=True, text=True)
    assert done.returncode == 1 and done.stdout == ""
    *rows, summary = done.stderr.splitlines()
    assert summary == "Error: 2 of 2 inputs failed"
    (first, first_error), (second, second_error) = (row.split("  FAILED  ") for row in rows)
    assert [first.rstrip(), second.rstrip()] == [str(broken), str(clip)]
    assert first_error.startswith(f"{broken}: ")
    assert second_error == (f"{tmp_path}/out/{clip.name}: already exists; pass --overwrite to replace it, "
                            f"or --skip-existing to keep it")
    assert (tmp_path / "out" / clip.name).read_bytes() == b"the user's file"


# ---------------------------------------------------------------------------------- Ray

def test_the_cli_with_ray_local_and_two_workers_gives_the_single_pass(clip, model_file, single_pass, tmp_path):
    pytest.importorskip("ray")
    output = tmp_path / "ray.mkv"
    done = subprocess.run(_edvr(str(clip), "-o", str(output), "--model", str(model_file), "--codec", "ffv1",
                                "--segment-frames", "6", "--ray", "local", "--workers", "2", "--json", "--quiet"),
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""  # none of Ray's own notes (token authentication, actor arguments)
    assert json.loads(done.stdout)["segments"] == 4
    assert frames_of(output) == single_pass


def test_sigterm_stops_a_ray_run_like_any_other(long_clip, model_file, tmp_path):
    # ray.init installs a C-level SIGTERM handler of its own (a crash report, exit status 15)
    pytest.importorskip("ray")
    output = tmp_path / "out.mkv"
    args = [str(long_clip), "-o", str(output), "--model", str(model_file), "--codec", "ffv1", "--segment-frames", "4",
            "--ray", "local", "--workers", "2", "--quiet"]
    status, stderr = _signal_after_a_segment(args, work_folder_path(output), signal.SIGTERM)
    assert status == 143, stderr
    assert re.fullmatch(rf"Error: stopped by SIGTERM: {re.escape(str(output))} was not written; \d+ finished "
                        rf"segments? kept: run the same command again to resume\n", stderr), stderr


@pytest.fixture(scope="module")
def ray_pool(model_file):
    ray = pytest.importorskip("ray")
    from edvr_cli.enhance.ray_pool import RayPool

    # Ray's files, and the segments its workers write, in a folder of the tests' own (short: Ray's
    # socket paths must fit in 107 bytes), removed afterwards
    folder = tempfile.mkdtemp(prefix="edvr-t-", dir="/tmp")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False, _temp_dir=folder,
             runtime_env={"env_vars": {"TMPDIR": folder}})
    pool = RayPool("local", 2, load_enhance_model(str(model_file)).network)
    yield pool
    pool.close()
    ray.shutdown()
    shutil.rmtree(folder, ignore_errors=True)


def test_ray_with_two_workers_gives_the_single_pass(clip, model_file, single_pass, ray_pool, tmp_path):
    from edvr_cli.enhance import Reporter
    from edvr_cli.enhance.many import enhance_on_pool

    output = tmp_path / "ray.mkv"
    result = enhance_on_pool(clip, output, load_enhance_model(str(model_file)), EnhanceSettings(segment_frames=3),
                             FFV1, False, Reporter(), ray_pool)
    assert result.segments == 8 and result.frames == 23
    assert frames_of(output) == single_pass
    assert [stream.kind for stream in probe(output).streams] == ["video", "audio"]


def _actor_pids(pool) -> list[int]:
    return pool.ray.get([actor.__ray_call__.remote(lambda _: os.getpid()) for actor in pool.actors])


def test_a_ray_worker_killed_mid_job_has_its_segment_redone(clip, model_file, single_pass, ray_pool, tmp_path):
    from edvr_cli.enhance import Reporter
    from edvr_cli.enhance.many import enhance_on_pool

    pids = _actor_pids(ray_pool)
    assert len(set(pids)) == 2
    run_tasks = ray_pool.run
    killed = []

    def run_and_kill(tasks, finished, failed=None):
        def finished_then_kill(*args):
            finished(*args)
            if not killed:  # one worker dies while the others' segments are in flight
                os.kill(pids[0], signal.SIGKILL)
                killed.append(pids[0])
        return run_tasks(tasks, finished_then_kill, failed)

    ray_pool.run = run_and_kill
    try:
        result = enhance_on_pool(clip, tmp_path / "ray.mkv", load_enhance_model(str(model_file)),
                                 EnhanceSettings(segment_frames=2), FFV1, False, Reporter(), ray_pool)
    finally:
        ray_pool.run = run_tasks
    assert killed and result.segments == 12
    assert frames_of(tmp_path / "ray.mkv") == single_pass
    assert pids[0] not in _actor_pids(ray_pool)  # Ray restarted the actor in a new process


@pytest.mark.parametrize("name, codec_args, seeks", [
    ("bframes.mp4", ("-c:v", "libx264", "-bf", "3", "-g", "6"), True),
    ("opengop.mkv", ("-c:v", "libx265", "-x265-params", "keyint=5:open-gop=1:log-level=error"), True),
    ("bframes.avi", ("-c:v", "mpeg4", "-bf", "1", "-g", "8"), False),
])
def test_a_segment_task_seeks_only_where_that_is_exact(model_file, tmp_path, name, codec_args, seeks):
    from edvr_cli.enhance import Reporter
    from edvr_cli.enhance.job import close_job, plan_job, segment_output, start_job
    from edvr_cli.enhance.ray_pool import SegmentActor, SegmentTask, frame_clock

    clip = make_clip(tmp_path / name, num_frames=30, codec_args=codec_args, pix_fmt="yuv420p")
    job = start_job(clip, tmp_path / "out.mkv", load_enhance_model(str(model_file)), EnhanceSettings(segment_frames=6),
                    FFV1, False, Reporter())
    try:
        todo = plan_job(job)
        clock = frame_clock(job)
    finally:
        close_job(job)
    assert (clock is not None) == seeks
    actor = SegmentActor(job.network)
    used = []
    restore = actor._restore
    actor._restore = lambda task, clock: used.append(clock) or restore(task, clock)
    for segment in todo[2:5]:
        task = SegmentTask(0, str(clip), job.settings, segment_output(job), 30, 5, ".mkv", segment,
                           job.source.video_info, clock)
        used.clear()
        _, index, files, _ = actor.restore(task)
        assert used == [clock]  # the seek (or, for AVI, the decode from the start) was not redone
        (tmp_path / "task.mkv").write_bytes(next(iter(files.values())))
        _, _, files, _ = restore(replace(task, clock=None), None)
        (tmp_path / "start.mkv").write_bytes(next(iter(files.values())))
        assert frames_of(tmp_path / "task.mkv") == frames_of(tmp_path / "start.mkv")
        assert len(frames_of(tmp_path / "task.mkv")) == segment.num_frames


def packet_times(path: Path, selector: str) -> list[Fraction]:
    """Sorted presentation times (seconds) of one stream's packets."""
    text = subprocess.run([FFMPEG, "-v", "error", "-i", str(path), "-map", selector, "-c", "copy", "-f", "framecrc",
                           "-"], check=True, capture_output=True).stdout.decode()
    num, den = text.split("#tb 0: ")[1].split()[0].split("/")
    return sorted(int(line.split(",")[2]) * Fraction(int(num), int(den))
                  for line in text.splitlines() if line and not line.startswith("#"))


@pytest.mark.parametrize("suffix", [".mkv", ".mp4"])
def test_a_late_video_start_keeps_its_offset_to_the_audio_through_the_join(model_file, tmp_path, suffix):
    video = make_clip(tmp_path / "v.mkv", num_frames=12, pix_fmt="yuv420p")
    clip = tmp_path / "late.mkv"
    subprocess.run([FFMPEG, "-v", "error", "-f", "lavfi", "-i", "sine=duration=1", "-itsoffset", "0.5", "-i",
                    str(video), "-map", "0:a", "-map", "1:v", "-c:v", "copy", "-c:a", "aac", str(clip)], check=True)
    single, segmented = tmp_path / f"single{suffix}", tmp_path / f"segmented{suffix}"
    enhance(clip, single, load_enhance_model(str(model_file)), EnhanceSettings(segment_frames=0))
    result = enhance(clip, segmented, load_enhance_model(str(model_file)), EnhanceSettings(segment_frames=5))
    assert result.segments == 3
    assert packet_times(segmented, "0:v") == packet_times(single, "0:v")
    assert packet_times(segmented, "0:a") == packet_times(single, "0:a")


def test_png_frames_out_and_an_image_folder_in_in_segments(clip, model_file, tmp_path):
    run(clip, f"{tmp_path}/single/", model_file, segment_frames=0)
    result = run(clip, f"{tmp_path}/segmented/", model_file, segment_frames=4)
    assert result.segments == 6
    names = sorted(os.listdir(tmp_path / "single"))
    assert names == [f"{number:06d}.png" for number in range(1, 24)] == sorted(os.listdir(tmp_path / "segmented"))
    for name in names:
        assert (tmp_path / "single" / name).read_bytes() == (tmp_path / "segmented" / name).read_bytes()
    # the PNG folder as input: its frame count is known, so it is segmented too
    result = run(tmp_path / "single", tmp_path / "again.mkv", model_file, segment_frames=5)
    assert result.segments == 5 and result.frames == 23
    run(tmp_path / "single", tmp_path / "again_single.mkv", model_file, segment_frames=0)
    assert frames_of(tmp_path / "again.mkv") == frames_of(tmp_path / "again_single.mkv")


def test_inputs_expand_from_a_folder_of_videos_and_a_quoted_glob(tmp_path):
    from edvr_cli.enhance.many import expand_inputs, output_for

    for name in ("b10.mkv", "b9.mp4", "notes.txt"):
        (tmp_path / "videos").mkdir(exist_ok=True)
        (tmp_path / "videos" / name).write_bytes(b"")
    (tmp_path / "frames").mkdir()
    (tmp_path / "frames" / "000001.png").write_bytes(b"")
    assert expand_inputs([str(tmp_path / "videos")]) == [tmp_path / "videos" / "b9.mp4", tmp_path / "videos" / "b10.mkv"]
    assert expand_inputs([str(tmp_path / "videos" / "b*.m*")]) == [tmp_path / "videos" / "b9.mp4",
                                                                    tmp_path / "videos" / "b10.mkv"]
    assert expand_inputs([str(tmp_path / "frames")]) == [tmp_path / "frames"]  # images: one input
    assert output_for(tmp_path / "frames", tmp_path / "out") == tmp_path / "out" / "frames"
    with pytest.raises(Exception, match="matches no file"):
        expand_inputs([str(tmp_path / "nothing*.mkv")])


def test_a_video_too_long_for_the_probes_scan_is_counted_before_it_is_cut(clip, model_file, single_pass, tmp_path,
                                                                          monkeypatch):
    import edvr_cli.enhance.sources as sources

    quick = sources.probe
    monkeypatch.setattr(sources, "probe", lambda path: quick(path, max_scan_seconds=0.0))
    assert not sources.probe(clip).frames_counted  # what probe gives for a long film
    result = run(clip, tmp_path / "out.mkv", model_file, segment_frames=5)
    assert result.segments == 5 and result.frames == 23
    assert frames_of(tmp_path / "out.mkv") == single_pass


def test_an_error_while_a_segment_is_written_names_the_output_not_the_work_folder(tmp_path):
    from types import SimpleNamespace

    from edvr_cli.enhance.output_names import explain_failure
    from edvr_cli.video import VideoError

    work = SimpleNamespace(path=tmp_path / ".out.mkv.edvr-work")
    job = SimpleNamespace(staging=None, work=work, target=tmp_path / "out.mkv", settings=None)
    error = VideoError(f"file:{work.path}/seg-00003.partial.mkv: encoding failed: no space left on device", "")
    assert str(explain_failure(job, error)) == f"{tmp_path / 'out.mkv'}: encoding failed: no space left on device"


def test_on_ray_an_input_that_fails_in_a_worker_is_reported_and_the_others_are_written(
        clip, model_file, single_pass, ray_pool, tmp_path):
    import shutil

    from edvr_cli.enhance.many import enhance_many

    doomed = tmp_path / "doomed.mkv"
    shutil.copy(clip, doomed)
    run_tasks = ray_pool.run

    def delete_then_run(tasks, finished, failed):
        doomed.unlink()  # probed and planned by the driver; gone when the workers open it
        return run_tasks(tasks, finished, failed)

    ray_pool.run = delete_then_run
    try:
        outcomes = enhance_many([doomed, clip], tmp_path / "out", load_enhance_model(str(model_file)),
                                EnhanceSettings(segment_frames=6), FFV1, pool=ray_pool)
    finally:
        ray_pool.run = run_tasks
    assert [outcome.error is None for outcome in outcomes] == [False, True]
    assert "doomed.mkv" in outcomes[0].error and "\n" not in outcomes[0].error
    assert frames_of(tmp_path / "out" / "in.mkv") == single_pass
    assert not (tmp_path / "out" / "doomed.mkv").exists()
