"""`edvr enhance --start/--duration`: a part of a video, restored exactly as in a full run.

The model is a real tiny EDVR with a random last layer, so every output frame depends on its
neighbours: a range restored with padding instead of its real neighbours would differ at its edges.
Outputs are ffv1 (lossless), compared plane for plane.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from fractions import Fraction
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from edvr_cli.commands.enhance import command
from edvr_cli.enhance import EncoderSettings, EnhanceSettings, enhance
from edvr_cli.enhance.frame_range import FrameRange, frame_range, parse_time
from edvr_cli.enhance.errors import EnhanceError
from edvr_cli.model_choice import load_enhance_model
from edvr_cli.video import FolderFrameReader, FrameReader, probe
from models import EDVR, save_model
from tests.clips import FFMPEG, make_clip

AAC_FRAME = 1024 / 48000  # seconds of one AAC frame at 48 kHz


@pytest.fixture(scope="module")
def model_file(tmp_path_factory) -> Path:
    torch.manual_seed(5)
    network = EDVR(num_feat=8, deformable_groups=1, num_extract_block=1, num_reconstruct_block=1, hr_in=True,
                   with_predeblur=False, scale=1, num_frame=5, num_hr_feat=8)
    torch.nn.init.normal_(network.conv_last.weight, std=0.05)
    path = tmp_path_factory.mktemp("model") / "tiny5.pth"
    save_model(network, path)
    return path


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    """4 s at 25 fps (100 frames), 64x48, with a 48 kHz AAC track."""
    return make_clip(tmp_path_factory.mktemp("clip") / "in.mkv", num_frames=100, audio=True, pix_fmt="yuv420p")


def planes_md5(frame) -> str:
    return hashlib.md5(b"".join(plane.tobytes() for plane in frame.planes)).hexdigest()


def frames_of(path: Path) -> list[tuple[str, int]]:
    """(md5 of the planes, pts) of every frame of a video, or (md5, index) of a PNG folder."""
    if Path(path).is_dir():
        with FolderFrameReader(path) as reader:
            return [(planes_md5(frame), index) for index, frame in enumerate(reader)]
    with FrameReader(path) as reader:
        return [(planes_md5(frame), frame.pts) for frame in reader]


@pytest.fixture(scope="module")
def full_run(clip, model_file, tmp_path_factory) -> list[tuple[str, int]]:
    output = tmp_path_factory.mktemp("full") / "full.mkv"
    result = enhance(clip, output, load_enhance_model(str(model_file)), EnhanceSettings(segment_frames=0),
                     EncoderSettings(codec="ffv1"))
    assert result.frames == 100
    return frames_of(output)


def audio_seconds(path: Path) -> float:
    result = subprocess.run([FFMPEG, "-v", "error", "-i", str(path), "-map", "0:a:0", "-ac", "1", "-ar", "48000",
                             "-f", "s16le", "-"], capture_output=True, check=True)
    return len(result.stdout) / 2 / 48000


def run(*args) -> object:
    return CliRunner().invoke(command, [str(arg) for arg in args])


def test_times_take_ffmpegs_syntax_exactly():
    assert parse_time("90") == 90 and parse_time("90.5") == Fraction(181, 2)
    assert parse_time("1:30") == 90 and parse_time("00:01:30.5") == Fraction(181, 2)
    assert parse_time("1500ms") == Fraction(3, 2) and parse_time("2s") == 2 and parse_time(".04") == Fraction(1, 25)
    for bad in ("-1", "1:75", "ten", "1,5", ""):
        with pytest.raises(EnhanceError):
            parse_time(bad)


def test_a_range_holds_the_frames_whose_time_falls_in_it():
    times = [Fraction(k, 10) for k in range(10)]  # 0.0 .. 0.9, the clip ends at 1.0
    assert frame_range(times, Fraction(1), Fraction(3, 10), Fraction(3, 10), "x") == \
        FrameRange(3, 6, Fraction(3, 10), Fraction(6, 10))
    assert frame_range(times, Fraction(1), Fraction(1, 4), None, "x") == FrameRange(3, 10, Fraction(3, 10), 1)
    with pytest.raises(EnhanceError, match="past the end of x"):
        frame_range(times, Fraction(1), Fraction(1), None, "x")
    with pytest.raises(EnhanceError, match="holds no frame"):
        frame_range(times, Fraction(1), Fraction(31, 100), Fraction(5, 100), "x")


def test_start_2_duration_1_is_frames_50_to_74_of_a_full_run_with_one_second_of_audio(clip, model_file, full_run,
                                                                                       tmp_path):
    output = tmp_path / "preview.mkv"
    result = run(clip, "-o", output, "--model", model_file, "--codec", "ffv1", "--start", 2, "--duration", 1,
                 "--segment-frames", 10, "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["frames"] == 25 and summary["first_frame"] == 50 and summary["segments"] == 3
    preview = frames_of(output)
    assert [md5 for md5, _ in preview] == [md5 for md5, _ in full_run[50:75]]  # real neighbours, not padding
    assert [pts for _, pts in preview] == list(range(0, 1000, 40))  # from 0, every 1/25 s (ms time base)
    info = probe(output)
    assert info.num_frames == 25 and info.fps == 25 and [s.kind for s in info.streams] == ["video", "audio"]
    assert abs(audio_seconds(output) - 1) <= AAC_FRAME


def test_a_range_in_a_compressed_mp4_decodes_from_a_keyframe_before_it_and_equals_the_full_run(model_file,
                                                                                               tmp_path):
    clip = make_clip(tmp_path / "gop.mp4", num_frames=60, codec_args=("-c:v", "libx264", "-g", "12", "-bf", "2"),
                     pix_fmt="yuv420p")
    model, ffv1 = load_enhance_model(str(model_file)), EncoderSettings(codec="ffv1")
    enhance(clip, tmp_path / "all.mkv", model, EnhanceSettings(), ffv1)
    result = enhance(clip, tmp_path / "part.mkv", model, EnhanceSettings(start=Fraction(17, 10)), ffv1)
    assert result.first_frame == 43 and result.frames == 17  # frames 43 to 59, read from a keyframe near 41
    assert [md5 for md5, _ in frames_of(tmp_path / "part.mkv")] == [md5 for md5, _ in
                                                                    frames_of(tmp_path / "all.mkv")[43:]]


def test_a_range_to_the_end_in_one_segment(clip, model_file, full_run, tmp_path):
    result = enhance(clip, tmp_path / "end.mkv", load_enhance_model(str(model_file)),
                     EnhanceSettings(start=Fraction(39, 10), segment_frames=0), EncoderSettings(codec="ffv1"))
    assert result.frames == 2 and result.segments == 1 and result.first_frame == 98
    assert frames_of(tmp_path / "end.mkv") == [(md5, pts) for (md5, _), pts in zip(full_run[98:], (0, 40))]
    assert abs(audio_seconds(tmp_path / "end.mkv") - 0.08) <= AAC_FRAME


def test_an_image_folder_is_cut_by_frame_time_at_its_fps(model_file, tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    subprocess.run([FFMPEG, "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=64x48:rate=10", "-frames:v", "12",
                    str(folder / "%03d.png")], check=True)
    model = load_enhance_model(str(model_file))
    enhance(folder, f"{tmp_path}/all/", model, EnhanceSettings(folder_fps=Fraction(10)))
    result = enhance(folder, f"{tmp_path}/part/", model,
                     EnhanceSettings(folder_fps=Fraction(10), start=Fraction(1, 2), duration=Fraction(3, 10)))
    assert result.frames == 3 and result.first_frame == 5  # frames at 0.5, 0.6, 0.7 s
    assert sorted(path.name for path in (tmp_path / "part").iterdir()) == ["000001.png", "000002.png", "000003.png"]
    assert frames_of(tmp_path / "part") == [(md5, index - 5) for md5, index in frames_of(tmp_path / "all")[5:8]]


def test_a_variable_frame_rate_range_keeps_each_frames_time_from_zero(model_file, tmp_path):
    clip = tmp_path / "vfr.mkv"  # frames 0-5 at k/25 s, then a pause: frames 6-13 at (k + 5)/25 s
    subprocess.run([FFMPEG, "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=64x48:rate=25", "-frames:v", "14",
                    "-vf", "setpts='(N+if(gte(N,6),5,0))/25/TB'", "-fps_mode", "passthrough", "-c:v", "ffv1",
                    "-pix_fmt", "yuv420p", str(clip)], check=True)
    model = load_enhance_model(str(model_file))
    ffv1 = EncoderSettings(codec="ffv1")
    enhance(clip, tmp_path / "all.mkv", model, EnhanceSettings(), ffv1)
    result = enhance(clip, tmp_path / "part.mkv", model, EnhanceSettings(start=Fraction(3, 10),
                                                                          duration=Fraction(3, 10)), ffv1)
    assert result.first_frame == 6 and result.frames == 4  # at 0.44, 0.48, 0.52, 0.56 s
    part, whole = frames_of(tmp_path / "part.mkv"), frames_of(tmp_path / "all.mkv")
    assert [md5 for md5, _ in part] == [md5 for md5, _ in whole[6:10]]
    assert [pts for _, pts in part] == [0, 40, 80, 120]


@pytest.mark.parametrize("args, message", [
    (["--start", "5"], "--start 5 s is past the end of"),
    (["--start", "-1"], "is negative"),
    (["--duration", "0"], "--duration 0 holds no frame"),
    (["--start", "1.01", "--duration", "10ms"], "holds no frame of"),
    (["--start", "1:xx"], "is not a time"),
])
def test_a_range_past_the_end_negative_or_empty_is_one_line(clip, model_file, tmp_path, args, message):
    output = tmp_path / "out.mkv"
    result = run(clip, "-o", output, "--model", model_file, *args)
    assert result.exit_code != 0 and message in result.output
    assert isinstance(result.exception, SystemExit) and "Traceback" not in result.output
    assert [line for line in result.output.splitlines() if message in line][0].startswith("Error: ")
    assert not output.exists() and list(tmp_path.iterdir()) == []
