"""Video probe, reader and writer against the real bundled ffmpeg, on tiny generated clips."""

from __future__ import annotations

import dataclasses
import subprocess
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

import torch

from edvr_cli.image_io import write_png
from edvr_cli.output_files import temporary_output_path
from edvr_cli.video import (EncoderSettings, FolderFrameReader, Frame, FrameConverter, FrameFormat, FrameWriter,
                            PlaneLayout, PngFolderWriter, StreamInfo, VideoError, choose_pix_fmt, count_frames,
                            native_layout, probe, summarize_stderr, untagged_matrix)
from edvr_cli.video.rgb_frames import RgbFrameReader as FrameReader
from tests.clips import FFMPEG, make_clip

SRT_TEXT = "1\n00:00:00,000 --> 00:00:00,400\nHello\n\n2\n00:00:00,500 --> 00:00:00,900\nWorld\n"


def ffmpeg(*args: str) -> None:
    subprocess.run([FFMPEG, "-v", "error", "-y", *args], check=True, capture_output=True)


def reference_frames(width: int, height: int, num_frames: int, fps: str = "25") -> list[np.ndarray]:
    """testsrc2 frames rendered by ffmpeg straight to rgb24, as the reference for decoding."""
    raw = subprocess.run([FFMPEG, "-v", "error", "-f", "lavfi",
                          "-i", f"testsrc2=size={width}x{height}:rate={fps}",
                          "-frames:v", str(num_frames), "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
                         check=True, capture_output=True).stdout
    return list(np.frombuffer(raw, np.uint8).reshape(num_frames, height, width, 3))


def stream_seconds(path: Path, stream_index: int) -> float:
    """A stream's length from its packets: last end time minus first start time."""
    text = subprocess.run([FFMPEG, "-v", "error", "-i", str(path), "-map", f"0:{stream_index}",
                           "-c", "copy", "-f", "framecrc", "-"],
                          check=True, capture_output=True).stdout.decode()
    num, den = text.split("#tb 0: ")[1].split()[0].split("/")
    packets = [[int(field) for field in line.split(",")[1:4]]
               for line in text.splitlines() if line and not line.startswith("#")]
    start = min(pts for _, pts, _ in packets)
    end = max(pts + duration for _, pts, duration in packets)
    return float((end - start) * Fraction(int(num), int(den)))


def rgb_format(width: int, height: int, layout: PlaneLayout | None = None) -> FrameFormat:
    """yuv420p (yuv444p at odd sizes) in the matrix players assume, or `layout`."""
    if layout is None:
        layout = PlaneLayout("yuv", 8, 2, 2) if width % 2 == 0 and height % 2 == 0 else PlaneLayout("yuv", 8)
    return FrameFormat(layout, width, height, untagged_matrix(width, height), layout.family != "yuv")


def rgb_writer(path: Path, width: int, height: int, fps=Fraction(25), layout: PlaneLayout | None = None,
               source=None, **encoder) -> "RgbWriter":
    return RgbWriter(path, rgb_format(width, height, layout), fps, source, encoder)


class RgbWriter:
    """A FrameWriter fed (h, w, 3) uint8 RGB frames, converted by our colour maths, pts = index."""

    def __init__(self, path, fmt, fps, source, encoder):
        info = probe(source) if isinstance(source, (str, Path)) else source
        encoder.setdefault("codec", "libx264")
        self.converter = FrameConverter(fmt)
        self.notes: list[str] = []  # what the writer told
        self.writer = FrameWriter(path, fmt, 1 / Fraction(fps), EncoderSettings(**encoder), source=info,
                                  notify=self.notes.append)
        self.index = 0

    def write(self, frame: np.ndarray) -> None:
        rgb = torch.from_numpy(np.ascontiguousarray(frame)).permute(2, 0, 1).float() / 255
        self.writer.write(Frame(self.converter.from_rgb(rgb), self.index))
        self.index += 1

    def __getattr__(self, name):
        return getattr(self.writer, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.writer.__exit__(*exc_info)


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    """Clips shared by several tests (made once; each a few kB)."""
    folder = tmp_path_factory.mktemp("clips")
    srt = folder / "subs.srt"
    srt.write_text(SRT_TEXT)
    made = {
        "ntsc_mp4": make_clip(folder / "ntsc.mp4", num_frames=12, fps="24000/1001",
                              codec_args=("-c:v", "libx264", "-preset", "ultrafast"),
                              pix_fmt="yuv420p"),
        "rgb_lossless": make_clip(folder / "rgb.mkv", num_frames=10,
                                  codec_args=("-c:v", "libx264rgb", "-qp", "0"), pix_fmt="rgb24"),
        "ffv1_30": make_clip(folder / "ffv1.mkv", num_frames=30),
        "aac_mp4": make_clip(folder / "aac.mp4", num_frames=25, audio=True,
                             codec_args=("-c:v", "libx264", "-preset", "ultrafast"),
                             pix_fmt="yuv420p"),
    }
    multi = folder / "multi.mkv"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x48:rate=25",
           "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
           "-f", "lavfi", "-i", "sine=frequency=880:sample_rate=48000", "-i", str(srt),
           "-map", "0", "-map", "1", "-map", "2", "-map", "3", "-frames:v", "25", "-t", "1",
           "-c:v", "ffv1", "-c:a:0", "aac", "-c:a:1", "libopus", "-c:s", "copy",
           "-metadata:s:a:0", "language=eng", "-metadata:s:a:1", "language=fre",
           "-metadata:s:s:0", "language=ger", str(multi))
    made["multi_mkv"] = multi
    return made


# ------------------------------------------------------------------------------------- probe

@pytest.mark.parametrize("fps, suffix, codec", [
    ("24000/1001", ".mp4", "libx264"), ("24000/1001", ".mkv", "libx264"),
    ("25", ".mkv", "ffv1"), ("30", ".mp4", "libx264")])
def test_probe_reads_exact_frame_rate_and_count(tmp_path, fps, suffix, codec):
    clip = make_clip(tmp_path / f"clip{suffix}", num_frames=12, fps=fps,
                     codec_args=("-c:v", codec), pix_fmt="yuv420p")
    info = probe(clip)
    assert info.fps == Fraction(fps)
    assert isinstance(info.fps, Fraction)
    assert info.num_frames == 12
    assert not info.is_vfr
    assert (info.width, info.height, info.rotation) == (64, 48, 0)
    assert (info.pix_fmt, info.bit_depth) == ("yuv420p", 8)
    assert info.duration == pytest.approx(12 / float(Fraction(fps)), abs=0.011)


def test_probe_ten_bit_clip_and_rgb_reader_gives_eight_bits(tmp_path):
    ten_bit = make_clip(tmp_path / "ten.mkv", num_frames=3, pix_fmt="yuv444p10le")
    info = probe(ten_bit)
    assert (info.pix_fmt, info.bit_depth) == ("yuv444p10le", 10)
    with FrameReader(ten_bit, info) as reader:
        frames = list(reader)
    assert len(frames) == 3 and frames[0].dtype == np.uint8 and frames[0].shape == (48, 64, 3)
    # the same picture decoded from 8-bit 4:4:4 agrees up to rounding of the two conversions
    with FrameReader(make_clip(tmp_path / "eight.mkv", num_frames=3)) as reader:
        eight_bit = list(reader)
    difference = np.abs(frames[2].astype(int) - eight_bit[2].astype(int))
    assert difference.max() <= 3 and difference.mean() < 1.0


def test_probe_lists_every_stream_with_codec_and_language(clips):
    info = probe(clips["multi_mkv"])
    assert info.streams == (StreamInfo(0, "video", "ffv1", None),
                            StreamInfo(1, "audio", "aac", "eng"),
                            StreamInfo(2, "audio", "opus", "fre"),
                            StreamInfo(3, "subtitle", "subrip", "ger"))
    assert info.video_index == 0


def test_probe_rotation_and_reader_applies_it(tmp_path, clips):
    rotated = tmp_path / "rotated.mp4"
    ffmpeg("-display_rotation", "90", "-i", str(clips["ntsc_mp4"]), "-c", "copy", str(rotated))
    info = probe(rotated)
    assert (info.width, info.height, info.rotation) == (64, 48, 90)
    assert (info.decoded_width, info.decoded_height) == (48, 64)
    with FrameReader(rotated, info) as reader:
        frames = list(reader)
    assert (reader.width, reader.height) == (48, 64)
    assert len(frames) == 12 and frames[0].shape == (64, 48, 3)


def test_probe_sample_aspect_ratio(tmp_path, clips):
    anamorphic = tmp_path / "anamorphic.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x48:rate=25", "-frames:v", "3", "-vf", "setsar=32/27",
           "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(anamorphic))
    assert probe(anamorphic).sample_aspect == Fraction(32, 27)
    assert probe(clips["ntsc_mp4"]).sample_aspect is None  # square pixels
    # turned by 90 degrees, the decoded frames' pixels are 27 wide for 32 high
    rotated = tmp_path / "rotated.mp4"
    ffmpeg("-display_rotation", "90", "-i", str(anamorphic), "-c", "copy", str(rotated))
    assert probe(rotated).sample_aspect == Fraction(27, 32)


def test_probe_variable_frame_rate_and_reader_keeps_every_frame(tmp_path):
    vfr = tmp_path / "vfr.mkv"
    # 15 frames 1/30 s apart, then 15 frames 1/10 s apart
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x48:rate=30", "-frames:v", "30",
           "-vf", "setpts='if(lt(N,15),N/30,0.5+(N-15)/10)/TB'", "-fps_mode", "vfr",
           "-c:v", "ffv1", str(vfr))
    info = probe(vfr)
    assert info.is_vfr
    assert info.num_frames == 30
    assert 14 < info.fps < 16  # 30 frames over about two seconds
    with FrameReader(vfr, info) as reader:
        assert sum(1 for _ in reader) == 30  # a constant-rate decode would duplicate frames


def test_probe_counts_only_the_frames_an_edit_list_keeps(tmp_path, clips):
    cut = tmp_path / "cut.mp4"
    # copying from 0.5 s keeps the packets before it (they are needed to decode) but hides them
    ffmpeg("-ss", "0.2", "-i", str(clips["ntsc_mp4"]), "-c", "copy", str(cut))
    info = probe(cut)
    with FrameReader(cut, info) as reader:
        num_decoded = sum(1 for _ in reader)
    assert 0 < num_decoded < 12
    assert info.num_frames == num_decoded == count_frames(cut)


def test_probe_without_time_for_the_packet_scan_leaves_count_unknown(clips):
    info = probe(clips["ffv1_30"], max_scan_seconds=0.0)
    assert info.num_frames is None
    assert count_frames(clips["ffv1_30"]) == 30


def test_probe_errors_are_one_line(tmp_path, clips):
    text_file = tmp_path / "notes.txt"
    text_file.write_text("not a video\n")
    audio_only = tmp_path / "audio.m4a"
    ffmpeg("-f", "lavfi", "-i", "sine", "-t", "0.2", str(audio_only))
    cases = {tmp_path / "missing.mp4": "no such file", text_file: "not a video file",
             audio_only: "no video stream (holds audio)", tmp_path: "is a folder"}
    for path, message in cases.items():
        with pytest.raises(VideoError) as caught:
            probe(path)
        assert message in str(caught.value)
        assert str(path) in str(caught.value) and "\n" not in str(caught.value)
    with pytest.raises(VideoError) as caught:
        probe(text_file)
    assert "Invalid data found" in caught.value.stderr


def test_probe_skips_cover_art(tmp_path):
    cover = tmp_path / "cover.png"
    write_png(cover, np.zeros((16, 16, 3), np.uint8))
    song = tmp_path / "song.mp3"
    ffmpeg("-f", "lavfi", "-i", "sine", "-i", str(cover), "-map", "0", "-map", "1", "-t", "0.3",
           "-c:v", "png", "-disposition:v", "attached_pic", str(song))
    with pytest.raises(VideoError, match=r"no video stream \(holds audio, cover art\)"):
        probe(song)


def test_names_that_look_like_options_or_protocols(tmp_path, clips):
    odd_name = tmp_path / "-take:2.mkv"
    odd_name.write_bytes(clips["multi_mkv"].read_bytes())
    info = probe(odd_name)
    assert info.num_frames == 25
    with FrameReader(odd_name, info) as reader, \
            rgb_writer(tmp_path / "-out:1.mkv", 64, 48, info.fps, preset="ultrafast", source=info) as writer:
        for frame in reader:
            writer.write(frame)
    assert reader.num_frames_read == 25
    assert [s.kind for s in probe(tmp_path / "-out:1.mkv").streams] == [
        "video", "audio", "audio", "subtitle"]


def test_summarize_stderr_prefers_the_cause_over_its_consequences():
    stderr = ("[in#0 @ 0x5] moov atom not found\n"
              "[in#0 @ 0x6] Error opening input: Invalid data found when processing input\n"
              "Error opening input file x.mp4.\n"
              "Error opening input files: Invalid data found when processing input\n")
    assert summarize_stderr(stderr) == "moov atom not found"
    assert summarize_stderr("") == "no message"


# ------------------------------------------------------------------------------------ reader

def test_reader_decodes_lossless_clip_exactly_and_writer_round_trips_it(tmp_path, clips):
    with FrameReader(clips["rgb_lossless"]) as reader:
        frames = list(reader)
    assert reader.num_frames_read == 10
    reference = reference_frames(64, 48, 10)
    assert all(np.array_equal(a, b) for a, b in zip(frames, reference)) and len(frames) == 10

    output = tmp_path / "copy.mkv"
    with rgb_writer(output, 64, 48, Fraction(24000, 1001), PlaneLayout("rgb", 8), codec="libx264rgb", crf=0,
                    pix_fmt="rgb24") as writer:
        for frame in frames:
            writer.write(frame)
    info = probe(output)
    assert info.fps == Fraction(24000, 1001) and info.num_frames == 10
    with FrameReader(output, info) as reader:
        again = list(reader)
    assert len(again) == 10 and all(np.array_equal(a, b) for a, b in zip(again, frames))


def test_odd_size_survives_the_default_writer(tmp_path):
    source = tmp_path / "odd.mkv"  # testsrc2 makes even 4:2:0 frames: go 4:4:4, then crop
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=176x144:rate=25",
           "-vf", "format=yuv444p,crop=175:143:0:0", "-frames:v", "8", "-c:v", "ffv1", str(source))
    with FrameReader(source) as reader:
        frames = list(reader)
    assert frames[0].shape == (143, 175, 3)
    output = tmp_path / "odd.mp4"
    with rgb_writer(output, 175, 143, Fraction(25), preset="ultrafast", crf=17) as writer:
        for frame in frames:
            writer.write(frame)
    assert writer.pix_fmt == "yuv444p"
    info = probe(output)
    assert (info.width, info.height, info.num_frames, info.pix_fmt) == (175, 143, 8, "yuv444p")
    with FrameReader(output, info) as reader:
        decoded = list(reader)
    assert len(decoded) == 8
    error = np.abs(decoded[4].astype(int) - frames[4].astype(int)).mean()
    assert error < 3.0  # crf 17 on 4:4:4; a rescale or shifted frame would be far off


def test_truncated_file_yields_the_frames_before_the_cut(tmp_path, clips):
    data = clips["ffv1_30"].read_bytes()
    truncated = tmp_path / "truncated.mkv"
    truncated.write_bytes(data[: len(data) * 6 // 10])
    with FrameReader(truncated) as reader:
        frames = list(reader)
    assert 0 < len(frames) < 30
    with FrameReader(clips["ffv1_30"]) as reader:
        complete = list(reader)
    assert all(np.array_equal(a, b) for a, b in zip(frames, complete))


def test_reader_raises_on_output_that_ends_inside_a_frame(clips):
    info = probe(clips["ffv1_30"])
    wrong_size = dataclasses.replace(info, decoded_width=info.decoded_width + 1)
    with FrameReader(clips["ffv1_30"], wrong_size) as reader:
        with pytest.raises(VideoError, match="ended inside frame"):
            for _ in reader:
                pass


def test_closing_a_reader_early_ends_ffmpeg(clips):
    reader = FrameReader(clips["ffv1_30"], queue_size=1)
    first = next(iter(reader))
    assert first.shape == (48, 64, 3) and first.flags.writeable
    reader.close()
    assert reader._reader.process.poll() is not None
    assert not reader._reader._thread.is_alive()


# ------------------------------------------------------------------------------------ writer

def test_writer_keeps_aac_audio_of_an_mp4_source(tmp_path, clips):
    source = clips["aac_mp4"]
    with FrameReader(source) as reader, \
            rgb_writer(tmp_path / "out.mp4", 64, 48, reader.info.fps, preset="ultrafast",
                       source=reader.info) as writer:
        for frame in reader:
            writer.write(frame)
    assert writer.notes == []
    info = probe(tmp_path / "out.mp4")
    assert [(s.kind, s.codec) for s in info.streams] == [("video", "h264"), ("audio", "aac")]
    assert info.num_frames == 25 and info.fps == 25
    video_seconds = stream_seconds(tmp_path / "out.mp4", 0)
    assert video_seconds == pytest.approx(1.0, abs=1e-6)
    assert video_seconds == pytest.approx(stream_seconds(source, 0), abs=1e-6)
    assert stream_seconds(tmp_path / "out.mp4", 1) == pytest.approx(
        stream_seconds(source, 1), abs=1 / 25)


def _write_black(path: Path, num_frames: int = 25, **kwargs) -> RgbWriter:
    layout = PlaneLayout("rgb", 8) if kwargs.get("codec") == "libx264rgb" else None
    with rgb_writer(path, 64, 48, Fraction(25), layout, preset="ultrafast", **kwargs) as writer:
        for _ in range(num_frames):
            writer.write(np.zeros((48, 64, 3), np.uint8))
    return writer


def test_writer_keeps_all_audio_and_subtitle_tracks_in_mkv(tmp_path, clips):
    writer = _write_black(tmp_path / "out.mkv", source=clips["multi_mkv"])
    assert writer.notes == []
    streams = probe(tmp_path / "out.mkv").streams
    assert streams[1:] == (StreamInfo(1, "audio", "aac", "eng"),
                           StreamInfo(2, "audio", "opus", "fre"),
                           StreamInfo(3, "subtitle", "subrip", "ger"))


def test_mp4_output_converts_srt_to_mov_text_and_keeps_opus(tmp_path, clips):
    writer = _write_black(tmp_path / "out.mp4", source=clips["multi_mkv"])
    assert writer.notes == [
        "subtitle stream 3 (subrip) converted to mov_text for the .mp4 container"]
    streams = probe(tmp_path / "out.mp4").streams
    assert streams[1:] == (StreamInfo(1, "audio", "aac", "eng"),
                           StreamInfo(2, "audio", "opus", "fre"),
                           StreamInfo(3, "subtitle", "mov_text", "ger"))


def test_mp4_output_converts_pcm_audio_to_aac(tmp_path):
    source = tmp_path / "pcm.mov"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x48:rate=25", "-f", "lavfi", "-i", "sine",
           "-frames:v", "25", "-t", "1", "-c:v", "ffv1", "-c:a", "pcm_s16le", str(source))
    writer = _write_black(tmp_path / "out.mp4", source=source)
    assert writer.notes == ["audio stream 1 (pcm_s16le) converted to aac for the .mp4 container"]
    assert probe(tmp_path / "out.mp4").streams[1] == StreamInfo(1, "audio", "aac", None)


def test_mp4_output_leaves_out_attachments_with_a_note(tmp_path, clips):
    source = tmp_path / "font.mkv"
    font = tmp_path / "font.ttf"
    font.write_bytes(b"\x00\x01\x00\x00" + bytes(60))
    ffmpeg("-i", str(clips["ffv1_30"]), "-attach", str(font), "-metadata:s:t",
           "mimetype=application/x-truetype-font", "-c", "copy", str(source))
    assert probe(source).streams[1].kind == "attachment"
    writer = _write_black(tmp_path / "out.mp4", source=source)
    assert writer.notes == ["attachment stream 1 (ttf) left out: a .mp4 file cannot hold it"]
    writer = _write_black(tmp_path / "out.mkv", source=source)
    assert writer.notes == [] and probe(tmp_path / "out.mkv").streams[1].kind == "attachment"


def test_writer_errors_carry_ffmpeg_stderr(tmp_path):
    with pytest.raises(VideoError, match="No such file or directory") as caught:
        _write_black(tmp_path / "missing" / "out.mp4")
    assert "\n" not in str(caught.value) and caught.value.stderr
    with pytest.raises(VideoError, match="bogus"):
        _write_black(tmp_path / "out.mp4", num_frames=200, extra_args=("-bogus", "1"))


def test_writer_checks_the_output_holds_every_frame(tmp_path):
    with pytest.raises(VideoError, match="10 frames were written but the file holds 3"):
        _write_black(tmp_path / "out.mkv", num_frames=10, codec="libx264rgb", pix_fmt="rgb24",
                     extra_args=("-frames:v", "3"))


def test_writer_exception_in_block_stops_ffmpeg(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        with rgb_writer(tmp_path / "out.mp4", 64, 48) as writer:
            writer.write(np.zeros((48, 64, 3), np.uint8))
            raise KeyboardInterrupt
    assert writer.process.poll() is not None and not writer._thread.is_alive()


def test_writer_rejects_frames_of_another_shape(tmp_path):
    with rgb_writer(tmp_path / "out.mp4", 64, 48) as writer:
        with pytest.raises(ValueError, match=r"do not match the writer's yuv420p 64x48"):
            writer.writer.write(Frame((np.zeros((48, 65), np.uint8),) * 3, 0))
        writer.write(np.zeros((48, 64, 3), np.uint8))
    assert probe(tmp_path / "out.mp4").num_frames == 1


@pytest.mark.parametrize("width, height, expected_tag",
                         [(1280, 720, "bt709"), (64, 48, "smpte170m")])
def test_writer_and_reader_agree_on_colour(tmp_path, width, height, expected_tag):
    colours = np.array([[200, 30, 40], [20, 180, 60], [30, 40, 210], [128, 128, 128]], np.uint8)
    row = np.repeat(colours, width // 4, axis=0)  # (w, 3): four vertical bars
    frame = np.ascontiguousarray(np.broadcast_to(row, (height, width, 3)))
    output = tmp_path / "colour.mp4"
    with rgb_writer(output, width, height, preset="ultrafast") as writer:
        writer.write(frame)
    info = probe(output)
    assert info.color_space == expected_tag
    with FrameReader(output, info) as reader:
        decoded = next(iter(reader))
    centres = [decoded[height // 2, (2 * i + 1) * width // 8].astype(int) for i in range(4)]
    assert np.abs(np.array(centres) - colours.astype(int)).max() <= 3


def test_reader_treats_untagged_hd_as_bt709(tmp_path):
    colours = np.array([[200, 30, 40], [20, 180, 60], [30, 40, 210], [128, 128, 128]], np.uint8)
    frame = np.ascontiguousarray(np.broadcast_to(np.repeat(colours, 320, axis=0), (720, 1280, 3)))
    untagged = tmp_path / "untagged.mkv"
    subprocess.run([FFMPEG, "-v", "error", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", "1280x720",
                    "-i", "-", "-vf", "scale=out_color_matrix=bt709,setparams=colorspace=unknown",
                    "-pix_fmt", "yuv444p", "-c:v", "ffv1", str(untagged)],
                   input=frame.tobytes(), check=True, capture_output=True)
    info = probe(untagged)
    assert info.color_space is None
    with FrameReader(untagged, info) as reader:
        decoded = next(iter(reader))
    centres = np.array([decoded[360, 160 + 320 * i] for i in range(4)], int)
    assert np.abs(centres - colours.astype(int)).max() <= 2


def test_writer_does_not_rotate_again_and_notes_left_out_streams(tmp_path, clips):
    source = tmp_path / "rotated_timecode.mov"
    ffmpeg("-display_rotation", "90", "-i", str(clips["ntsc_mp4"]), "-c", "copy",
           "-timecode", "01:00:00:00", str(source))
    info = probe(source)
    assert info.rotation == 90 and info.streams[1] == StreamInfo(1, "data", "tmcd", "eng")
    with FrameReader(source, info) as reader, \
            rgb_writer(tmp_path / "out.mp4", reader.width, reader.height, info.fps,
                       preset="ultrafast", source=info) as writer:
        for frame in reader:
            writer.write(frame)
    assert writer.notes == ["data stream 1 (tmcd) left out: only the enhanced video, audio, "
                            "subtitles and attachments are written"]
    output = probe(tmp_path / "out.mp4")
    assert (output.width, output.height, output.rotation, output.num_frames) == (48, 64, 0, 12)


@pytest.mark.parametrize("codec, width, height, source_pix_fmt, expected", [
    ("libx264", 64, 48, None, "yuv420p"),
    ("libx264", 175, 143, None, "yuv444p"),
    ("libx264", 64, 48, "yuv420p10le", "yuv420p10le"),
    ("libx264", 65, 48, "yuv420p10le", "yuv444p10le"),
    ("libx264", 64, 48, "rgb24", "yuv444p"),
    ("libx264", 64, 48, "yuv422p", "yuv422p"),
    ("libx264", 65, 48, "yuv422p", "yuv444p"),
    ("libx264", 64, 47, "yuv422p", "yuv422p"),
    ("ffv1", 175, 143, "yuv420p", "yuv444p"),
    ("libx264rgb", 175, 143, "yuv420p", "bgr0"),
])
def test_choose_pix_fmt(codec, width, height, source_pix_fmt, expected):
    layout = native_layout(source_pix_fmt or "yuv420p")[0]
    assert choose_pix_fmt(codec, layout, width, height) == expected


def test_unknown_encoder_is_a_video_error(tmp_path):
    with pytest.raises(VideoError, match="no encoder named 'nonesuch'"):
        FrameWriter(tmp_path / "out.mp4", rgb_format(64, 48), Fraction(1, 25), EncoderSettings("nonesuch"))


def test_temporary_output_path_is_hidden_beside_the_target():
    assert temporary_output_path(Path("out/clip.v2.mp4")) == Path("out/.clip.v2.partial.mp4")


# ----------------------------------------------------------------------------- image folders

def test_png_folder_writer_and_reader_round_trip(tmp_path):
    frames = reference_frames(64, 48, 3)
    layout = PlaneLayout("rgb", 8)
    with PngFolderWriter(tmp_path / "frames", FrameFormat(layout, 64, 48, full_range=True)) as writer:
        for frame in frames:
            writer.write(Frame((frame[:, :, 1], frame[:, :, 2], frame[:, :, 0])))
    assert sorted(p.name for p in (tmp_path / "frames").iterdir()) == [
        "000001.png", "000002.png", "000003.png"]
    with FolderFrameReader(tmp_path / "frames") as reader:
        assert (reader.width, reader.height, reader.num_frames) == (64, 48, 3)
        decoded = [np.stack((f.planes[2], f.planes[0], f.planes[1]), axis=2) for f in reader]
    assert len(decoded) == 3 and all(np.array_equal(a, b) for a, b in zip(decoded, frames))


def test_folder_reader_names_the_first_frame_of_another_size(tmp_path):
    for index in (1, 2, 10):
        size = (48, 64, 3) if index != 10 else (40, 64, 3)
        write_png(tmp_path / f"frame{index}.png", np.zeros(size, np.uint8))
    with pytest.raises(VideoError, match=r"frame10\.png: frame size 64x40 differs from 64x48"):
        list(FolderFrameReader(tmp_path))
    (tmp_path / "empty").mkdir()
    with pytest.raises(VideoError, match="no image files"):
        FolderFrameReader(tmp_path / "empty")


def test_avi_without_packet_pts_keeps_its_constant_rate(tmp_path):
    # AVI stores no presentation timestamps: the packet scan must fall back to dts.
    from fractions import Fraction

    from tests.clips import make_clip
    clip = make_clip(tmp_path / "old.avi", num_frames=12, fps="24000/1001",
                     codec_args=("-c:v", "mpeg4", "-bf", "2", "-vtag", "XVID"), pix_fmt="yuv420p")
    info = probe(clip)
    assert info.fps == Fraction(24000, 1001)
    assert not info.is_vfr
    assert info.num_frames == 12
