"""`edvr enhance` writes exactly what the network computed: native planes, bit depth, colour
tags, timestamps. Real ffmpeg clips, a real tiny EDVR with random weights (so the network's
change is not zero), lossless ffv1 where planes are compared."""

from __future__ import annotations

import json
import subprocess
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from edvr_cli.commands.enhance import command
from edvr_cli.evaluate.scoring import evaluate
from edvr_cli.image_io import read_image_native, write_png
from edvr_cli.video import FrameReader, probe
from models import EDVR, save_model
from tests.clips import FFMPEG

LOSSLESS = ["--codec", "ffv1", "--quiet"]


def ffmpeg(*args) -> None:
    subprocess.run([FFMPEG, "-v", "error", "-y", *map(str, args)], check=True, capture_output=True)


def run(*args):
    return CliRunner().invoke(command, [str(arg) for arg in args])


def planes(path: Path) -> list[tuple[np.ndarray, ...]]:
    with FrameReader(path) as reader:
        return [frame.planes for frame in reader]


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    """A tiny scale-1 EDVR with random weights: its change to each frame is a few levels."""
    torch.manual_seed(3)
    network = EDVR(num_feat=8, deformable_groups=1, num_extract_block=1, num_reconstruct_block=1,
                   hr_in=True, with_predeblur=False, scale=1, num_frame=3, num_hr_feat=8)
    torch.nn.init.normal_(network.conv_last.weight, std=0.02)
    path = tmp_path_factory.mktemp("model") / "random.pth"
    save_model(network, path)
    return path


def source_clip(path: Path, pix_fmt: str, num_frames: int = 4, size: str = "64x48", extra=()) -> Path:
    ffmpeg("-f", "lavfi", "-i", f"testsrc2=size={size}:rate=25", "-frames:v", num_frames, *extra,
           "-c:v", "ffv1", "-pix_fmt", pix_fmt, path)
    return path


@pytest.mark.parametrize("pix_fmt", ["yuv420p", "yuv420p10le", "yuv422p"])
def test_strength_zero_gives_the_input_planes_bit_for_bit(model, tmp_path, pix_fmt):
    clip = source_clip(tmp_path / "in.mkv", pix_fmt)
    for strength in ("0", "1"):
        result = run(clip, "-o", tmp_path / f"s{strength}.mkv", "--model", model, "--strength", strength, *LOSSLESS)
        assert result.exit_code == 0, result.output
        assert probe(tmp_path / f"s{strength}.mkv").pix_fmt == pix_fmt
    source, zero, full = planes(clip), planes(tmp_path / "s0.mkv"), planes(tmp_path / "s1.mkv")
    assert len(zero) == len(source) == 4
    for a, b in zip(source, zero):
        assert all(np.array_equal(x, y) and x.dtype == y.dtype for x, y in zip(a, b))
    # the network does change the frames: strength 1 differs from the input in luma and chroma
    assert all(not np.array_equal(a[i], b[i]) for a, b in zip(source, full) for i in range(3))


def test_strength_is_linear_at_ten_bits(model, tmp_path):
    clip = source_clip(tmp_path / "in.mkv", "yuv420p10le")
    for strength in ("0.5", "1"):
        assert run(clip, "-o", tmp_path / f"s{strength}.mkv", "--model", model, "--strength", strength,
                   *LOSSLESS).exit_code == 0
    for a, half, full in zip(planes(clip), planes(tmp_path / "s0.5.mkv"), planes(tmp_path / "s1.mkv")):
        for x, h, f in zip(a, half, full):
            halfway = (x.astype(float) + f.astype(float)) / 2
            assert np.abs(h - halfway).max() <= 1.0
            assert h.dtype == np.uint16 and int(h.max()) > 255  # 10-bit codes, not 8


def test_ten_bit_in_ten_bit_out_with_the_default_encoder(model, tmp_path):
    clip = source_clip(tmp_path / "in.mkv", "yuv420p10le")
    result = run(clip, "-o", tmp_path / "out.mp4", "--model", model, "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["pix_fmt"] == "yuv420p10le"
    assert summary["encoder"] == {"codec": "libx265", "crf": 8, "preset": "medium", "pix_fmt": "yuv420p10le"}
    info = probe(tmp_path / "out.mp4")
    assert (info.pix_fmt, info.bit_depth, info.num_frames) == ("yuv420p10le", 10, 4)


def test_ten_bit_ramp_keeps_its_levels_and_grey_stays_grey(tmp_path, model):
    """A 64-level 10-bit luma ramp and flat greys at --strength 0: every level kept exactly."""
    width, height = 64, 16
    luma = np.tile((np.arange(width) * 14 + 64).astype("<u2"), (height, 1))
    luma[:, :8], luma[:, -8:] = 300, 940
    chroma = np.full((height // 2, width // 2), 512, "<u2")
    raw = (luma.tobytes() + chroma.tobytes() * 2) * 3
    clip = tmp_path / "ramp.mkv"
    subprocess.run([FFMPEG, "-v", "error", "-f", "rawvideo", "-pix_fmt", "yuv420p10le", "-s", f"{width}x{height}",
                    "-r", "25", "-i", "-", "-c:v", "ffv1", str(clip)], input=raw, check=True, capture_output=True)
    assert run(clip, "-o", tmp_path / "out.mkv", "--model", model, "--strength", "0", *LOSSLESS).exit_code == 0
    out_luma = planes(tmp_path / "out.mkv")[1][0]
    assert np.array_equal(out_luma, luma) and len(np.unique(out_luma)) == len(np.unique(luma))


def packet_times(path: Path, selector: str) -> list[Fraction]:
    text = subprocess.run([FFMPEG, "-v", "error", "-i", str(path), "-map", selector, "-c", "copy", "-f", "framecrc",
                           "-"], check=True, capture_output=True).stdout.decode()
    num, den = text.split("#tb 0: ")[1].split()[0].split("/")
    pts = [int(line.split(",")[2]) for line in text.splitlines() if line and not line.startswith("#")]
    return sorted(p * Fraction(int(num), int(den)) for p in pts)


def test_late_video_start_stays_in_sync_with_the_audio(model, tmp_path):
    video = source_clip(tmp_path / "v.mkv", "yuv420p", num_frames=10)
    clip = tmp_path / "late.mkv"
    ffmpeg("-f", "lavfi", "-i", "sine=duration=1", "-itsoffset", "0.5", "-i", video, "-map", "0:a", "-map", "1:v",
           "-c:v", "copy", "-c:a", "aac", clip)
    source_offset = packet_times(clip, "0:v")[0] - packet_times(clip, "0:a")[0]
    assert abs(source_offset - Fraction(1, 2)) < Fraction(3, 100)  # aac priming: audio starts at -0.023 s
    for suffix in (".mkv", ".mp4"):
        output = tmp_path / f"out{suffix}"
        assert run(clip, "-o", output, "--model", model, *LOSSLESS[:0], "--quiet").exit_code == 0
        offset = packet_times(output, "0:v")[0] - packet_times(output, "0:a")[0]
        assert abs(offset - source_offset) <= Fraction(1, 1000), (suffix, float(offset))


def test_variable_frame_rate_around_a_pause_keeps_each_frame_time(model, tmp_path):
    clip = tmp_path / "pause.mkv"
    # 6 frames at 25 fps, a 1.2 s pause, 6 more; with audio
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x48:rate=25", "-f", "lavfi", "-i", "sine=duration=2",
           "-frames:v", "12", "-vf", "setpts='(N+if(gte(N,6),30,0))/25/TB'", "-fps_mode", "passthrough",
           "-c:v", "ffv1", "-c:a", "aac", clip)
    result = run(clip, "-o", tmp_path / "out.mp4", "--model", model, "--json")
    assert result.exit_code == 0, result.output
    assert packet_times(tmp_path / "out.mp4", "0:v") == packet_times(clip, "0:v") == [
        Fraction(n + (30 if n >= 6 else 0), 25) for n in range(12)]


@pytest.mark.parametrize("primaries, transfer, matrix", [
    ("bt709", "bt709", "bt709"), ("bt2020", "smpte2084", "bt2020nc"), ("bt2020", "arib-std-b67", "bt2020nc")])
def test_colour_tags_are_kept(model, tmp_path, primaries, transfer, matrix):
    clip = source_clip(tmp_path / "in.mkv", "yuv420p10le", num_frames=3, extra=(
        "-vf", f"setparams=color_primaries={primaries}:color_trc={transfer}:colorspace={matrix}:range=tv"))
    source = probe(clip)
    assert (source.color_primaries, source.color_transfer, source.color_space) == (primaries, transfer, matrix)
    for codec_args in (LOSSLESS, ["--quiet"]):
        output = tmp_path / ("out.mkv" if codec_args is LOSSLESS else "out.mp4")
        assert run(clip, "-o", output, "--model", model, *codec_args).exit_code == 0
        info = probe(output)
        assert (info.color_primaries, info.color_transfer, info.color_space, info.color_range) == (
            primaries, transfer, matrix, "tv")


def test_hdr_side_data_is_kept_by_libx265(model, tmp_path):
    clip = tmp_path / "hdr.mkv"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x48:rate=25", "-frames:v", "3",
           "-vf", "setparams=color_primaries=bt2020:color_trc=smpte2084:colorspace=bt2020nc",
           "-c:v", "libx265", "-pix_fmt", "yuv420p10le", "-x265-params",
           "log-level=error:master-display=G(13250,34500)B(7500,3000)R(34000,16000)WP(15635,16450)L(10000000,1)"
           ":max-cll=1000,400", clip)
    source = probe(clip)
    assert source.content_light == (1000, 400) and "max_luminance=1000" in source.mastering_display
    assert run(clip, "-o", tmp_path / "out.mkv", "--model", model, "--quiet").exit_code == 0
    info = probe(tmp_path / "out.mkv")
    assert (info.mastering_display, info.content_light) == (source.mastering_display, source.content_light)
    assert (info.color_primaries, info.color_transfer, info.pix_fmt) == ("bt2020", "smpte2084", "yuv420p10le")
    result = run(clip, "-o", tmp_path / "out_ffv1.mkv", "--model", model, "--codec", "ffv1")
    assert result.exit_code == 0 and "HDR mastering/light-level metadata is carried by libx265 only" in result.output


def test_interlaced_input_keeps_its_field_order_or_is_deinterlaced(model, tmp_path):
    clip = tmp_path / "interlaced.mkv"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x48:rate=25", "-frames:v", "4", "-vf", "setfield=tff",
           "-c:v", "libx264", "-flags", "+ildct+ilme", clip)
    assert probe(clip).field_order is not None
    result = run(clip, "-o", tmp_path / "kept.mkv", "--model", model)
    assert result.exit_code == 0, result.output
    assert "interlaced (" in result.output and "--deinterlace" in result.output
    assert probe(tmp_path / "kept.mkv").field_order == probe(clip).field_order
    result = run(clip, "-o", tmp_path / "progressive.mkv", "--model", model, "--deinterlace", "--quiet")
    assert result.exit_code == 0, result.output
    info = probe(tmp_path / "progressive.mkv")
    assert info.field_order is None and info.num_frames == 4


def test_sixteen_bit_png_frames_in_and_out(model, tmp_path):
    rng = np.random.default_rng(0)
    frames_in = tmp_path / "in"
    frames_in.mkdir()
    images = [rng.integers(0, 65536, (24, 32, 3)).astype(np.uint16) for _ in range(3)]
    for idx, image in enumerate(images):
        write_png(frames_in / f"{idx:03d}.png", image)
    assert run(frames_in, "-o", tmp_path / "out", "--model", model, "--strength", "0", "--quiet").exit_code == 0
    out = [read_image_native(tmp_path / "out" / f"{idx:06d}.png") for idx in range(1, 4)]
    # and ffmpeg, an independent decoder, reads the same 16-bit values from our PNG
    raw = subprocess.run([FFMPEG, "-v", "error", "-i", str(tmp_path / "out" / "000002.png"), "-f", "rawvideo",
                          "-pix_fmt", "rgb48le", "-"], capture_output=True, check=True).stdout
    assert np.array_equal(np.frombuffer(raw, "<u2").reshape(24, 32, 3), images[1])
    assert all(o.dtype == np.uint16 and np.array_equal(o, i) for o, i in zip(out, images))
    # a 10-bit video written as PNG frames gives 16-bit PNGs
    clip = source_clip(tmp_path / "ten.mkv", "yuv444p10le", num_frames=2)
    assert run(clip, "-o", tmp_path / "ten_frames", "--model", model, "--quiet").exit_code == 0
    assert read_image_native(tmp_path / "ten_frames" / "000001.png").dtype == np.uint16


def test_eval_of_a_restored_video_equals_eval_of_its_png_frames(model, tmp_path):
    gt = source_clip(tmp_path / "gt.mkv", "yuv420p", num_frames=5, size="96x64")
    lq = tmp_path / "lq.mkv"
    ffmpeg("-i", gt, "-c:v", "libx265", "-x265-params", "log-level=error:qp=37", "-pix_fmt", "yuv420p", lq)
    assert run(lq, "-o", tmp_path / "restored.mkv", "--model", model, *LOSSLESS).exit_code == 0
    assert run(lq, "-o", tmp_path / "restored", "--model", model, "--quiet").exit_code == 0
    video = evaluate(gt, tmp_path / "restored.mkv", lq)
    frames = evaluate(gt, tmp_path / "restored", lq)
    assert [f.psnr for f in video.clips[0].frames] == [f.psnr for f in frames.clips[0].frames]
    assert video.psnr == frames.psnr and video.ssim == frames.ssim


def test_containers_get_a_codec_they_hold(model, tmp_path):
    clip = source_clip(tmp_path / "in.mkv", "yuv420p", num_frames=2)
    result = run(clip, "-o", tmp_path / "out.webm", "--model", model, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["encoder"]["codec"] == "libvpx-vp9"
    assert probe(tmp_path / "out.webm").streams[0].codec == "vp9"
    result = run(clip, "-o", tmp_path / "bad.webm", "--model", model, "--codec", "libx264")
    assert result.exit_code == 1 and result.output.count("\n") == 1
    assert "cannot hold libx264 video; use --codec libvpx-vp9" in result.output
    result = run(clip, "-o", tmp_path / "fast.mp4", "--model", model, "--preset", "superduper")
    assert result.exit_code == 1 and result.output.count("\n") == 1
    assert "--preset superduper: libx265 takes ultrafast, superfast" in result.output
    result = run(clip, "-o", tmp_path / "out.gif", "--model", model)
    assert result.exit_code == 1 and "GIF is not an output" in result.output  # output_files refuses it
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mkv", "out.webm"]


@pytest.mark.parametrize("pix_fmt, layout, lost", [
    ("yuva420p", "yuv420p", "its alpha channel is dropped"), ("pal8", "gbrp", None), ("nv12", "yuv420p", None),
    ("rgb24", "gbrp", None), ("yuv420p12le", "yuv420p12le", None), ("gray16le", "gray16le", None)])
def test_pixel_formats_read_natively_or_with_a_note(model, tmp_path, pix_fmt, layout, lost):
    from edvr_cli.video import native_layout
    got, note = native_layout(pix_fmt)
    assert got.pix_fmt == layout
    assert (note is None) if lost is None else (lost in note)
    if pix_fmt in ("yuva420p", "nv12"):
        clip = tmp_path / "in.nut"
        ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x48:rate=25", "-frames:v", "2", "-c:v", "rawvideo",
               "-pix_fmt", pix_fmt, clip)
        result = run(clip, "-o", tmp_path / "out.mkv", "--model", model, "--codec", "ffv1")
        assert result.exit_code == 0, result.output
        assert (lost in result.output) if lost else ("note:" not in result.output)
        assert probe(tmp_path / "out.mkv").pix_fmt == layout
