"""Inputs cut short, as a partial download or an unfinished recording leaves them: the frames that
decode are restored at the input's own frame rate, in a single pass, in segments and on Ray, with
one note; a file whose first frame is gone is one line naming it and the reason.

Real x264 MP4s made by the bundled ffmpeg (B-frames, so the packets lost after a cut include
frames shown before the last ones kept), cut by dropping their last bytes; real `edvr enhance`
processes; outputs through ffv1, so that "identical" is bit for bit.
"""

from __future__ import annotations

import json
import os
import subprocess
from fractions import Fraction
from pathlib import Path

import pytest

from edvr_cli.video import FrameReader, probe
from tests.clips import make_clip
from tests.test_segments import _edvr, frames_of, model_file  # noqa: F401 (model_file: a fixture)

X264 = ("-c:v", "libx264")
FASTSTART = ("-movflags", "+faststart")  # the index (moov) before the frames (mdat)


def cut(whole: Path, name: str, keep: Fraction) -> Path:
    """`whole`'s first `keep` of bytes as `name`, beside it."""
    data = whole.read_bytes()
    path = whole.with_name(name)
    path.write_bytes(data[: int(len(data) * keep)])
    return path


@pytest.fixture(scope="module")
def cut_mp4(tmp_path_factory) -> Path:
    """30 frames at 25 fps with the last tenth of the file gone: 18 packets are left, of which 17
    decode, and the last one kept is shown after three frames that were lost."""
    whole = make_clip(tmp_path_factory.mktemp("cut") / "whole.mp4", num_frames=30, pix_fmt="yuv420p",
                      codec_args=(*X264, *FASTSTART))
    return cut(whole, "cut.mp4", Fraction(9, 10))


def note_for(clip: Path) -> str:
    return f"{clip}: decoded 17 frames where the container announced 18; all decoded frames were restored"


def enhance_json(clip: Path, output: Path, model: Path, *options: str, env: dict | None = None):
    done = subprocess.run(_edvr(str(clip), "-o", str(output), "--model", str(model), "--codec", "ffv1", "--json",
                                *options), capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout), done.stderr


@pytest.fixture(scope="module")
def single_pass(cut_mp4, model_file, tmp_path_factory):
    output = tmp_path_factory.mktemp("single") / "out.mkv"
    result, stderr = enhance_json(cut_mp4, output, model_file, "--segment-frames", "0")
    return result, stderr, frames_of(output), probe(output)


def test_a_cut_mp4_keeps_its_frame_rate_and_its_decoded_frames_are_restored(cut_mp4, single_pass):
    info = probe(cut_mp4)
    assert (info.fps, info.is_vfr, info.num_frames) == (Fraction(25), False, 18)
    with FrameReader(cut_mp4) as reader:
        assert [frame.pts for frame in reader] == [512 * index for index in range(17)]  # 1/12800 s
    result, stderr, frames, output = single_pass
    assert (result["video_fps"], result["variable_frame_rate"], result["frames"]) == ("25", False, 17)
    assert result["notes"] == [note_for(cut_mp4)]
    assert f"note: {note_for(cut_mp4)}" in stderr.splitlines()
    assert (output.fps, output.is_vfr, output.num_frames) == (Fraction(25), False, 17)
    assert [pts for _, pts in frames] == [40 * index for index in range(17)]  # Matroska's 1/1000 s


@pytest.mark.parametrize("movflags, reason", [
    (FASTSTART, "cannot decode the first video frame: the file is cut short (a download or recording that did "
                "not finish?)"),
    ((), "the MP4/MOV index (moov atom) is missing: the file is cut short, or its recording did not finish"),
], ids=["index-first", "index-last"])
def test_an_mp4_cut_before_its_first_frame_is_one_line_naming_it(model_file, tmp_path, movflags, reason):
    whole = make_clip(tmp_path / "whole.mp4", num_frames=30, pix_fmt="yuv420p", codec_args=(*X264, *movflags))
    clip = cut(whole, "cut.mp4", Fraction(2, 3))
    output = tmp_path / "out.mkv"
    done = subprocess.run(_edvr(str(clip), "-o", str(output), "--model", str(model_file)), capture_output=True,
                          text=True)
    assert (done.returncode, done.stderr) == (1, f"Error: {clip}: {reason}\n")
    assert sorted(os.listdir(tmp_path)) == ["cut.mp4", "whole.mp4"]


@pytest.mark.slow
def test_on_ray_a_cut_input_gives_what_a_single_pass_gives(cut_mp4, model_file, single_pass, tmp_path):
    pytest.importorskip("ray")
    output = tmp_path / "ray.mkv"
    result, stderr = enhance_json(cut_mp4, output, model_file, "--segment-frames", "4", "--ray", "local",
                                  "--workers", "2")
    assert (result["video_fps"], result["frames"], result["segments"]) == ("25", 17, 5)
    assert result["notes"] == [note_for(cut_mp4)]
    assert f"note: {note_for(cut_mp4)}" in stderr.splitlines()
    assert frames_of(output) == single_pass[2]
    assert sorted(os.listdir(tmp_path)) == ["ray.mkv"]
