"""Resume never fakes a result: damaged finished segments are restored again, unreadable work-folder
state is redone rather than fatal, and a joined output short of frames is an error.

Real clips, a real tiny EDVR (tests/test_segments.py's), real `edvr enhance` processes; the work
folder is left by a run stopped just before its join, then damaged by truncating and overwriting,
or by a run killed (SIGKILL) while it joins.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

import edvr_cli.enhance.job as job_module
import edvr_cli.enhance.pipeline as pipeline
from edvr_cli.enhance import EncoderSettings, EnhanceSettings, enhance
from edvr_cli.enhance.workfolder import work_folder_path
from edvr_cli.model_choice import load_enhance_model
from tests.clips import make_clip
from tests.test_segments import FFV1, _edvr, frames_of, model_file  # noqa: F401 (model_file: a fixture)


@pytest.fixture(scope="module")
def clip12(tmp_path_factory) -> Path:
    return make_clip(tmp_path_factory.mktemp("clip12") / "in.mkv", num_frames=12, pix_fmt="yuv420p")


@pytest.fixture(scope="module")
def single_mkv(clip12, model_file, tmp_path_factory):
    output = tmp_path_factory.mktemp("single") / "out.mkv"
    enhance(clip12, output, load_enhance_model(str(model_file)), EnhanceSettings(segment_frames=0), FFV1)
    return frames_of(output)


def stopped_before_the_join(clip: Path, output: str, model_file: Path, monkeypatch, **settings) -> Path:
    """Run until every segment is committed, stop as Ctrl-C would just before the join; the work folder."""
    def interrupted(job):
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(pipeline, "finish_job", interrupted)
        with pytest.raises(KeyboardInterrupt):
            enhance(clip, output, load_enhance_model(str(model_file)), EnhanceSettings(**settings), FFV1)
    work = work_folder_path(output)
    assert work.is_dir() and not os.path.exists(output)
    return work


def rerun(clip: Path, output: str, model_file: Path, *options: str) -> subprocess.CompletedProcess:
    return subprocess.run(_edvr(str(clip), "-o", output, "--model", str(model_file), "--codec", "ffv1", *options),
                          capture_output=True, text=True)


def test_damaged_finished_segments_are_restored_again_not_joined(clip12, model_file, single_mkv, tmp_path,
                                                                 monkeypatch):
    output = tmp_path / "out.mkv"
    work = stopped_before_the_join(clip12, str(output), model_file, monkeypatch, segment_frames=4)
    truncated = work / "seg-00001.mkv"
    truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size * 2 // 3])  # a power cut
    garbage = work / "seg-00002.mkv"
    garbage.write_bytes(os.urandom(garbage.stat().st_size))  # another program wrote over it
    done = rerun(clip12, str(output), model_file, "--segment-frames", "4", "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["frames"] == 12 and result["segments_reused"] == 1
    assert frames_of(output) == single_mkv
    notes = [line for line in done.stderr.splitlines() if "not reused" in line]
    assert [line.split(" kept for resume")[0] for line in notes] == [
        f"note: {output}: the finished segment of frames 5-8", f"note: {output}: the finished segment of frames 9-12"]
    assert not any(".edvr-work" in line for line in done.stderr.splitlines())


def test_a_rerun_after_every_segment_was_finished_only_joins_them(clip12, model_file, single_mkv, tmp_path,
                                                                monkeypatch):
    output = tmp_path / "out.mkv"
    stopped_before_the_join(clip12, str(output), model_file, monkeypatch, segment_frames=4)
    result = enhance(clip12, output, load_enhance_model(str(model_file)), EnhanceSettings(segment_frames=4), FFV1)
    assert (result.segments, result.segments_reused, result.frames) == (3, 3, 12)
    assert frames_of(output) == single_mkv


def test_a_damaged_png_frame_of_a_finished_segment_is_restored_again(clip12, model_file, tmp_path, monkeypatch):
    enhance(clip12, f"{tmp_path}/single/", load_enhance_model(str(model_file)), EnhanceSettings(segment_frames=0))
    work = stopped_before_the_join(clip12, f"{tmp_path}/out/", model_file, monkeypatch, segment_frames=4)
    (work / "seg-00000" / "000002.png").unlink()
    damaged = work / "seg-00002" / "000010.png"
    damaged.write_bytes(damaged.read_bytes()[:40])
    done = rerun(clip12, f"{tmp_path}/out/", model_file, "--segment-frames", "4", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["segments_reused"] == 1
    names = sorted(os.listdir(tmp_path / "single"))
    assert sorted(os.listdir(tmp_path / "out")) == names and len(names) == 12
    for name in names:
        assert (tmp_path / "out" / name).read_bytes() == (tmp_path / "single" / name).read_bytes()


@pytest.mark.parametrize("output_name", ["out.mkv", "frames/"])
def test_a_joined_output_short_of_frames_is_an_error_naming_it_and_is_not_written(clip12, model_file, tmp_path,
                                                                                 monkeypatch, output_name):
    # a segment damaged after its check, while the join reads it
    output = f"{tmp_path}/{output_name}"
    join, gather = job_module.join_segments, job_module._gather_frames

    def join_a_damaged_one(paths, *args, **kwargs):
        paths[1].write_bytes(paths[1].read_bytes()[: paths[1].stat().st_size // 2])
        join(paths, *args, **kwargs)

    def gather_then_lose_one(folders, staging):
        gather(folders, staging)
        (staging / "000007.png").unlink()

    monkeypatch.setattr(job_module, "join_segments", join_a_damaged_one)
    monkeypatch.setattr(job_module, "_gather_frames", gather_then_lose_one)
    with pytest.raises(Exception) as raised:
        enhance(clip12, output, load_enhance_model(str(model_file)), EnhanceSettings(segment_frames=4), FFV1)
    assert str(raised.value).startswith(f"{output.rstrip('/')}: the joined output holds ")
    assert "of the 12 frames restored; it was not written" in str(raised.value)
    assert not os.path.exists(output)
    assert [name for name in os.listdir(tmp_path) if not name.startswith(".")] == []


def test_missing_or_corrupt_state_beside_the_segments_means_redo_them_not_a_permanent_failure(
        clip12, model_file, single_mkv, tmp_path, monkeypatch):
    output = tmp_path / "out.mkv"
    work = stopped_before_the_join(clip12, str(output), model_file, monkeypatch, segment_frames=4)
    segments = {"seg-00000.mkv", "seg-00001.mkv", "seg-00002.mkv"}
    beside = sorted(name for name in os.listdir(work) if name not in segments | {"manifest.json"})
    assert len(beside) == 3  # each segment's own state (its first frame's time, what it held)
    (work / beside[0]).unlink()
    (work / beside[1]).write_text("not what was written\n")
    kept = (work / beside[2]).read_text()
    (work / beside[2]).write_text(kept[: len(kept) // 2])  # cut short
    done = rerun(clip12, str(output), model_file, "--segment-frames", "4", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["segments_reused"] == 0
    assert frames_of(output) == single_mkv
    again = tmp_path / "again.mkv"  # a corrupt manifest: start over
    work = stopped_before_the_join(clip12, str(again), model_file, monkeypatch, segment_frames=4)
    (work / "manifest.json").write_text("{")
    done = rerun(clip12, str(again), model_file, "--segment-frames", "4", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["segments_reused"] == 0
    assert frames_of(again) == single_mkv


# the longest name a single pass takes: its hidden staging name, .NAME-STEM.edvr-PID.partial.mkv, is 255 bytes
LONGEST = "n" * (255 - len(f"..edvr-{os.getpid()}.partial.mkv")) + ".mkv"


@pytest.mark.parametrize("name", ["line\nbreak.mkv", LONGEST])
def test_output_names_a_single_pass_accepts_are_accepted_in_segments(clip12, model_file, single_mkv, tmp_path, name):
    output = tmp_path / name
    enhance(clip12, output, load_enhance_model(str(model_file)), EnhanceSettings(segment_frames=0), FFV1)
    assert frames_of(output) == single_mkv
    output.unlink()
    result = enhance(clip12, output, load_enhance_model(str(model_file)), EnhanceSettings(segment_frames=4), FFV1)
    assert result.segments == 3 and result.frames == 12
    assert frames_of(output) == single_mkv
    assert sorted(os.listdir(tmp_path)) == [name]


def test_a_truncated_input_gives_in_segments_what_one_pass_gives(model_file, tmp_path):
    # a partly downloaded MP4 (index up front): 12 frames announced, the last one cut short
    whole = make_clip(tmp_path / "whole.mp4", num_frames=12, pix_fmt="yuv420p",
                      codec_args=("-c:v", "libx264", "-movflags", "+faststart"))
    clip = tmp_path / "partial.mp4"
    clip.write_bytes(whole.read_bytes()[:-10])
    results = {}
    for segment_frames in ("0", "4"):
        output = tmp_path / f"out{segment_frames}.mkv"
        done = rerun(clip, str(output), model_file, "--segment-frames", segment_frames, "--json")
        assert done.returncode == 0, done.stderr
        results[segment_frames] = json.loads(done.stdout), frames_of(output)
    (single, single_frames), (segmented, segmented_frames) = results["0"], results["4"]
    assert single["frames"] == segmented["frames"] == len(single_frames) == 11
    assert segmented_frames == single_frames
    assert segmented["notes"] == single["notes"] == [
        f"{clip}: decoded 11 frames where the container announced 12; all decoded frames were restored"]


@pytest.mark.parametrize("segment_frames", [0, 4])
def test_notes_name_the_output_never_a_hidden_file(model_file, tmp_path, segment_frames):
    clip = make_clip(tmp_path / "in.mkv", num_frames=8, pix_fmt="yuv444p")
    output = tmp_path / "out.avi"
    result = enhance(clip, output, load_enhance_model(str(model_file)), EnhanceSettings(segment_frames=segment_frames),
                     EncoderSettings(codec="mpeg4"))
    assert result.notes == [f"{output}: frames converted from yuv444p to yuv420p for mpeg4"]


def test_a_full_disk_while_a_segment_is_kept_names_the_output(clip12, model_file, tmp_path, monkeypatch):
    import errno

    import edvr_cli.enhance.workfolder as workfolder

    write = workfolder._write_synced

    def disk_full_for_segments(path, data):
        if path.name == "manifest.json":
            return write(path, data)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path) + ".partial")

    monkeypatch.setattr(workfolder, "_write_synced", disk_full_for_segments)
    output = tmp_path / "out.mkv"
    with pytest.raises(Exception) as raised:
        enhance(clip12, output, load_enhance_model(str(model_file)), EnhanceSettings(segment_frames=4), FFV1)
    assert str(raised.value) == (f"{output}: a finished segment could not be kept (no space left on device); "
                                 f"make room and run the same command again")
    assert not output.exists()


@pytest.fixture(scope="module")
def clip20(tmp_path_factory) -> Path:
    return make_clip(tmp_path_factory.mktemp("clip20") / "in.mkv", num_frames=20, pix_fmt="yuv420p", audio=True)


@pytest.fixture(scope="module")
def single20(clip20, model_file, tmp_path_factory):
    output = tmp_path_factory.mktemp("single20") / "out.mkv"
    enhance(clip20, output, load_enhance_model(str(model_file)), EnhanceSettings(segment_frames=0), FFV1)
    return frames_of(output)


def killed_in_the_join(args: list[str], work: Path) -> None:
    """Start `edvr enhance`, SIGKILL it as soon as its join has begun (the concat list is written
    just before ffmpeg joins the segments, and removed once it is done)."""
    process = subprocess.Popen(_edvr(*args), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    script = work / "join.ffconcat"
    try:
        deadline = time.monotonic() + 120
        while not script.exists():
            assert process.poll() is None, "the run ended before its join was seen"
            assert time.monotonic() < deadline
            time.sleep(0.001)
    finally:
        process.kill()
        process.wait(timeout=60)


@pytest.mark.parametrize("existing", [False, True], ids=["new-output", "existing-output"])
def test_a_run_killed_in_its_join_leaves_the_output_alone_and_the_rerun_finishes_cleanly(clip20, model_file, single20,
                                                                                        tmp_path, existing):
    output = tmp_path / "out.mkv"
    if existing:
        output.write_bytes(b"the user's earlier output")
    args = [str(clip20), "-o", str(output), "--model", str(model_file), "--codec", "ffv1", "--segment-frames", "5",
            *(["--overwrite"] if existing else [])]
    work = work_folder_path(output)
    killed_in_the_join(args, work)
    assert {f"seg-{index:05d}.mkv" for index in range(4)} <= set(os.listdir(work))  # all restored: it was joining
    if existing:
        assert output.read_bytes() == b"the user's earlier output"
    else:
        assert not output.exists()
    done = subprocess.run(_edvr(*args, "--json"), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert (result["frames"], result["segments"], result["segments_reused"]) == (20, 4, 4)
    assert frames_of(output) == single20
    assert sorted(os.listdir(tmp_path)) == ["out.mkv"]  # no lock, staging file or work folder left
