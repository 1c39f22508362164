"""`edvr enhance`: the restore loop's windows, enhance() with fakes, and the command on real clips.

Models are real tiny EDVRs whose `conv_last` is zeroed: their output is exactly the centre frame
(scale 1) or its bilinear x4 upsampling (scale 4), so every output pixel is predictable. Videos
that are compared frame by frame are written with ffv1 in their source's own pixel format
(lossless) and decoded to RGB by the maths `edvr enhance` uses.
"""

from __future__ import annotations

import json
import subprocess
import weakref
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from torch import nn

from edvr_cli import model_choice
from edvr_cli.commands.enhance import command
from edvr_cli.enhance import (ONE_PASS, EnhanceError, EnhanceSettings, SegmentOutput, SettingError, Source, enhance,
                              restore_segments, segment_windows)
from edvr_cli.enhance.planes import DecodedFrame
from edvr_cli.video import FolderFrameReader, Frame, FrameFormat, PlaneLayout, probe
from edvr_cli.video import FrameReader as PlaneReader
from edvr_cli.video.rgb_frames import RgbFrameReader as FrameReader
from edvr_cli.enhance.inference import ModelRunner, Restored
from edvr_cli.model_choice import LoadedModel
from edvr_cli.output_files import OutputPathError
from edvr_cli.windows import PADDING_MODES, WINDOW_SIZES, max_reach, window_indices
from models import EDVR, build_model, save_model
from tests.clips import FFMPEG, make_clip

LOSSLESS = ["--codec", "ffv1"]  # the source's own pixel format, losslessly


def identity_edvr(num_frame: int = 5, scale: int = 1) -> EDVR:
    """A real tiny EDVR that returns its centre frame (scale 1) or the frame bilinearly x4."""
    model = EDVR(num_feat=8, deformable_groups=1, num_extract_block=1, num_reconstruct_block=1,
                 hr_in=scale == 1, with_predeblur=False, scale=scale, num_frame=num_frame, num_hr_feat=8)
    nn.init.zeros_(model.conv_last.weight)
    nn.init.zeros_(model.conv_last.bias)
    return model.eval()


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Checkpoints and a lossless 64x48 clip of 11 distinct frames, shared by the module."""
    folder = tmp_path_factory.mktemp("enhance")
    paths = {}
    for num_frame in WINDOW_SIZES:
        paths[f"id{num_frame}"] = folder / f"identity{num_frame}.pth"
        save_model(identity_edvr(num_frame), paths[f"id{num_frame}"])
    paths["x4"] = folder / "identity_x4.pth"
    save_model(identity_edvr(5, scale=4), paths["x4"])
    paths["clip"] = marked_clip(folder / "clip.mkv", num_frames=11)
    return paths


def marked_clip(path: Path, num_frames: int, width: int = 64, height: int = 48) -> Path:
    """A lossless clip whose frame k carries a white 6x6 block at a k-dependent place."""
    y, x = np.mgrid[0:height, 0:width]
    frames = []
    for idx in range(num_frames):
        frame = (np.stack([x * 3, y * 4, (x + y) * 2], axis=-1) % 256).astype(np.uint8)
        top, left = (idx * 7) % (height - 6), (idx * 5) % (width - 6)
        frame[top:top + 6, left:left + 6] = 255
        frames.append(frame)
    subprocess.run([FFMPEG, "-v", "error", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}",
                    "-r", "25", "-i", "-", "-c:v", "ffv1", "-pix_fmt", "yuv444p", str(path)],
                   input=np.stack(frames).tobytes(), check=True, capture_output=True)
    return path


def decode(path: Path) -> list[np.ndarray]:
    """(h, w, 3) RGB frames of a video (8-bit) or a folder of PNGs (8 or 16 bits)."""
    if Path(path).is_dir():
        with FolderFrameReader(path) as reader:
            return [np.stack((f.planes[2], f.planes[0], f.planes[1]), axis=2) for f in reader]
    with FrameReader(path) as reader:
        return list(reader)


class Uint8Planes:
    """FramePlanes for (h, w, 3) uint8 RGB frames: `runner` (a ModelRunner) on stacked windows,
    its uint8 outputs written as they are."""

    def __init__(self, runner: ModelRunner):
        self.runner = runner

    def prepare(self, frame: Frame) -> DecodedFrame:
        return DecodedFrame(frame, [], frame.planes[0])

    def run(self, windows: list[list[DecodedFrame]]) -> np.ndarray:
        return self.runner(np.stack([np.stack([item.rgb for item in window]) for window in windows]))

    def finish(self, centre: DecodedFrame, output: np.ndarray) -> np.ndarray:
        return output


class ListWriter:
    """A writer that keeps what it is given (`open_writer`'s signature)."""

    def __init__(self, written: list, on_write=None):
        self.written, self.on_write = written, on_write

    def __call__(self, path, *args, **kwargs):
        return self

    def write(self, frame: Frame) -> None:
        self.written.append(frame.planes)
        if self.on_write is not None:
            self.on_write()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        return None


def restore_frames(frames, runner: ModelRunner, window: int, padding: str = "reflection_circle", batch: int = 1,
                   on_write=None) -> list[np.ndarray]:
    """The restore loop over `frames` ((h, w, 3) uint8 RGB, a stream of unknown length) as one
    pass: `runner` on each window; the outputs in the order written."""
    source = Source((Frame((frame,), idx) for idx, frame in enumerate(frames)), None, Fraction(25), None, None)
    written: list[np.ndarray] = []
    output = SegmentOutput(None, None, folder=False, deinterlaced=False, whole=True)
    for _ in restore_segments(source, Uint8Planes(runner), [ONE_PASS], None, window, padding, batch, output,
                              lambda segment: Path("unused"), open_writer=ListWriter(written, on_write)):
        pass
    return written


def run(*args: str):
    return CliRunner().invoke(command, [str(arg) for arg in args])


def audio_seconds(path: Path, track: int = 0) -> float:
    """Decoded length of an audio track: samples / rate (edit lists and priming applied)."""
    result = subprocess.run([FFMPEG, "-v", "error", "-i", str(path), "-map", f"0:a:{track}", "-ac", "1",
                             "-ar", "48000", "-f", "s16le", "-"], capture_output=True, check=True)
    return len(result.stdout) / 2 / 48000


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255 ** 2 / mse)


# ------------------------------------------------------------------- the window buffer (no I/O)


def numbered_frames(num_frames: int, size=(2, 10)):
    """Frames whose every pixel is their index: (h, w, 3) uint8."""
    for idx in range(num_frames):
        yield np.full((*size, 3), idx, np.uint8)


@pytest.mark.parametrize("padding", PADDING_MODES)
@pytest.mark.parametrize("window", WINDOW_SIZES)
def test_streamed_windows_equal_the_windows_of_the_known_length_clip(padding, window):
    """One pass does not know the clip's length: each window is formed once the frames it depends
    on have arrived, and equals the window of the clip whose length is known."""
    for num_frames in (1, 2, 4, 9, 13):
        for known in (None, num_frames):
            emitted = list(segment_windows(enumerate(numbered_frames(num_frames)), ONE_PASS, known, window,
                                           padding))
            assert [idx for idx, _ in emitted] == list(range(num_frames))
            for idx, frames in emitted:
                assert [int(f[0, 0, 0]) for f in frames] == window_indices(idx, num_frames, window, padding)


@pytest.mark.parametrize("window", WINDOW_SIZES)
def test_memory_is_bounded_by_window_plus_reach(window):
    num_frames = 40
    bound = window + max_reach(window)
    refs, alive_counts, pulled_ahead = [], [], []

    def reader():  # a fake decoder that watches how many of its frames are still alive
        for idx in range(num_frames):
            frame = np.full((4, 6, 3), idx, np.uint8)
            refs.append(weakref.ref(frame))
            alive_counts.append(sum(ref() is not None for ref in refs))
            yield frame
            del frame

    def on_write():  # frames decoded minus frames written, so far
        pulled_ahead.append(len(refs) - len(pulled_ahead) - 1)

    written = restore_frames(reader(), ModelRunner(identity_edvr(window), "cpu"), window, on_write=on_write)
    assert [int(frame[0, 0, 0]) for frame in written] == list(range(num_frames))
    assert max(alive_counts) == bound  # the window buffer and the frame just decoded: nothing else keeps frames
    assert max(pulled_ahead) <= max_reach(window) + 1  # the reader is not drained ahead


class WindowReporter(nn.Module):
    """Writes the value of window frame j into output column j (row 0): shows which frames it got."""

    scale = 1

    def __init__(self, num_frame):
        super().__init__()
        self.num_frame = num_frame

    def forward(self, x):  # (n, t, 3, h, w) -> (n, 3, h, w)
        out = torch.zeros_like(x[:, 0])
        out[:, :, 0, :self.num_frame] = x[:, :, :, 0, 0].transpose(1, 2)
        return out


@pytest.mark.parametrize("padding", PADDING_MODES)
@pytest.mark.parametrize("batch", [1, 3])
def test_each_output_frame_saw_its_padded_window(padding, batch):
    for window in (3, 9):
        for num_frames in (1, 5, 12):
            written = restore_frames(numbered_frames(num_frames), ModelRunner(WindowReporter(window), "cpu"),
                                     window, padding, batch)
            assert [list(frame[0, :window, 0]) for frame in written] == [
                window_indices(idx, num_frames, window, padding) for idx in range(num_frames)]


class RefusesLargeInputs(nn.Module):
    """`inner`, but "out of memory" (CUDA's error) for inputs larger than `limit` pixels a side."""

    def __init__(self, inner, limit: int):
        super().__init__()
        self.inner, self.limit, self.scale, self.num_frame = inner, limit, inner.scale, inner.num_frame

    def forward(self, x):
        if max(x.shape[-2:]) > self.limit:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 1 GiB")
        return self.inner(x)


def test_out_of_memory_retry_neither_skips_nor_repeats_frames():

    frames = [np.random.default_rng(idx).integers(0, 256, (48, 64, 3), dtype=np.uint8) for idx in range(7)]
    notes = []
    runner = ModelRunner(RefusesLargeInputs(identity_edvr(3), 56), "cpu", tile_overlap=8, notify=notes.append)
    written = restore_frames(iter(frames), runner, 3, batch=2)
    assert len(written) == 7
    assert all(np.array_equal(out, frame) for out, frame in zip(written, frames))
    assert len(notes) == 1 and runner.tile == 32


# ------------------------------------------------------------------- enhance() with fakes


class FakeWriter:
    def __init__(self, path, notify=None):
        self.path, self.frames = Path(path), []
        if notify is not None:
            notify("a note from the writer")

    def write(self, frame):
        self.frames.append(frame)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *rest):
        if exc_type is None:
            self.path.write_bytes(b"encoded")


def gray_format(width: int, height: int) -> FrameFormat:
    return FrameFormat(PlaneLayout("gray", 8), width, height, full_range=True)


def fake_source(frames, fps=Fraction(30000, 1001)):
    """A Source of 8-bit gray frames, each an (h, w) plane."""
    def open_source(path, folder_fps, deinterlace, notify):
        fmt = gray_format(frames[0].shape[1], frames[0].shape[0])
        return Source(iter(Frame((plane,), idx) for idx, plane in enumerate(frames)), fmt, fps, len(frames), None)
    return open_source


def test_enhance_with_fake_reader_and_writer(tmp_path):
    (tmp_path / "in.mp4").write_bytes(b"not read: the fake reader stands in")
    frames = [np.full((12, 20), 10 * idx, np.uint8) for idx in range(6)]
    writers = []

    def open_writer(path, fmt, time_base, source, encoder, folder, deinterlaced, notify, segment, start_number):
        assert not segment and start_number == 1  # one pass: the output itself, its other streams too
        assert not folder and (fmt.width, fmt.height) == (20, 12) and path.parent == tmp_path
        assert path.name.startswith(".") and time_base == Fraction(1001, 30000)
        writers.append(FakeWriter(path, notify))
        return writers[-1]

    model = LoadedModel(identity_edvr(3), "identity", "identity.pth")
    result = enhance(tmp_path / "in.mp4", tmp_path / "out.mp4", model, EnhanceSettings(device="cpu", batch=4),
                     open_source=fake_source(frames), open_writer=open_writer)
    assert (tmp_path / "out.mp4").read_bytes() == b"encoded"
    assert [int(f.planes[0][0, 0]) for f in writers[0].frames] == [0, 10, 20, 30, 40, 50]
    assert [f.pts for f in writers[0].frames] == [0, 1, 2, 3, 4, 5]
    assert (result.frames, result.video_fps, result.window, result.notes) == (6, "30000/1001", 3,
                                                                                ["a note from the writer"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4", "out.mp4"]


@pytest.mark.parametrize("announced", [None, 4, 9])
def test_one_pass_restores_every_frame_that_decodes_whatever_was_announced(tmp_path, announced):
    """A stream of unknown length (a PNG folder being filled, a pipe) or one whose container
    announced another count (a truncated file) is restored frame for frame, with a note when the
    count was wrong."""
    (tmp_path / "in.mp4").write_bytes(b"not read: the fake reader stands in")
    frames = [np.full((12, 20), 10 * idx, np.uint8) for idx in range(6)]
    writers = []

    def open_source(*args):
        source = fake_source(frames)(*args)
        source.num_frames = announced
        return source

    def open_writer(path, *args, **kwargs):
        writers.append(FakeWriter(path))
        return writers[-1]

    result = enhance(tmp_path / "in.mp4", tmp_path / "out.mp4", LoadedModel(identity_edvr(5), "identity", "id.pth"),
                     EnhanceSettings(device="cpu", batch=2), open_source=open_source, open_writer=open_writer)
    assert [int(f.planes[0][0, 0]) for f in writers[0].frames] == [0, 10, 20, 30, 40, 50]
    assert (result.frames, result.segments) == (6, 1)
    assert result.notes == ([] if announced is None else [
        f"{tmp_path / 'in.mp4'}: decoded 6 frames where the container announced {announced}; all decoded frames "
        f"were restored"])


def test_the_result_reports_the_tile_the_runner_ended_with(tmp_path):
    """After an out-of-memory retry the summary's tile is the smaller one the runner reported."""
    (tmp_path / "in.mp4").write_bytes(b"not read: the fake reader stands in")
    frames = [np.full((48, 64), 10 * idx, np.uint8) for idx in range(4)]

    def open_writer(path, *args, **kwargs):
        return FakeWriter(path)

    model = LoadedModel(RefusesLargeInputs(identity_edvr(3), 40), "refuses", "refuses.pth")
    result = enhance(tmp_path / "in.mp4", tmp_path / "out.mp4", model,
                     EnhanceSettings(device="cpu", tile_overlap=4), open_source=fake_source(frames),
                     open_writer=open_writer)
    assert result.tile == 32 and len(result.notes) == 1 and "32 px tiles" in result.notes[0]


def test_interrupt_leaves_no_output(tmp_path):
    (tmp_path / "in.mp4").write_bytes(b"x")
    frames = [Frame((np.zeros((8, 8), np.uint8),))] * 5

    def interrupted():
        yield from frames[:3]
        raise KeyboardInterrupt

    def open_source(path, folder_fps, deinterlace, notify):
        return Source(interrupted(), gray_format(8, 8), Fraction(25), 5, None)

    def open_writer(path, *args, **kwargs):
        path.write_bytes(b"partial")  # as ffmpeg would have started the file
        return FakeWriter(path)

    with pytest.raises(KeyboardInterrupt):
        enhance(tmp_path / "in.mp4", tmp_path / "out.mp4", LoadedModel(identity_edvr(3), "m", "m"),
                EnhanceSettings(device="cpu"), open_source=open_source, open_writer=open_writer)
    assert [p.name for p in tmp_path.iterdir()] == ["in.mp4"]


# ------------------------------------------------------------------- the command, real ffmpeg


@pytest.mark.parametrize("padding", PADDING_MODES)
@pytest.mark.parametrize("window", WINDOW_SIZES)
def test_output_frames_equal_input_frames_in_order(files, tmp_path, padding, window):
    output = tmp_path / "out.mkv"
    result = run(files["clip"], "-o", output, "--model", files[f"id{window}"], "--frames", window,
                 "--padding", padding, "--quiet", *LOSSLESS)
    assert result.exit_code == 0, result.output
    source, restored = decode(files["clip"]), decode(output)
    assert len({frame.tobytes() for frame in source}) == 11  # every input frame is distinct
    assert len(restored) == 11
    assert all(np.array_equal(a, b) for a, b in zip(restored, source))


@pytest.mark.parametrize("fps", ["24000/1001", "25", "30"])
def test_exact_rate_and_audio_kept(files, tmp_path, fps):
    clip = make_clip(tmp_path / "in.mp4", 64, 48, num_frames=10, fps=fps, audio=True,
                     codec_args=("-c:v", "libx264"), pix_fmt="yuv420p")
    output = tmp_path / "out.mp4"
    result = run(clip, "-o", output, "--model", files["id5"], "--quiet")
    assert result.exit_code == 0, result.output
    info = probe(output)
    assert info.fps == Fraction(fps) and info.num_frames == 10 and not info.is_vfr
    assert [s.kind for s in info.streams] == ["video", "audio"]
    assert abs(audio_seconds(output) - audio_seconds(clip)) <= 1 / Fraction(fps)
    assert abs(audio_seconds(output) - 10 / Fraction(fps)) <= 1 / Fraction(fps)


def test_two_audio_tracks_and_subtitles_survive_in_mkv(files, tmp_path):
    subtitles = tmp_path / "subs.srt"
    subtitles.write_text("1\n00:00:00,000 --> 00:00:00,200\nhello\n")
    source = tmp_path / "in.mkv"
    subprocess.run([FFMPEG, "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=64x48:rate=25",
                    "-f", "lavfi", "-i", "sine=frequency=440:duration=0.32",
                    "-f", "lavfi", "-i", "sine=frequency=880:duration=0.32", "-i", str(subtitles),
                    "-map", "0:v", "-map", "1:a", "-map", "2:a", "-map", "3:s", "-frames:v", "8",
                    "-c:v", "ffv1", "-c:a", "flac", "-c:s", "srt", "-metadata:s:a:0", "language=eng",
                    "-metadata:s:a:1", "language=fra", "-metadata:s:s:0", "language=deu", str(source)],
                   check=True, capture_output=True)
    output = tmp_path / "out.mkv"
    result = run(source, "-o", output, "--model", files["id5"], "--quiet", *LOSSLESS)
    assert result.exit_code == 0, result.output
    streams = [(s.kind, s.codec, s.language) for s in probe(output).streams]
    assert streams == [("video", "ffv1", None), ("audio", "flac", "eng"), ("audio", "flac", "fra"),
                       ("subtitle", "subrip", "deu")]
    assert abs(audio_seconds(output, 1) - audio_seconds(source, 1)) < 1e-3


def test_odd_size_is_kept_exactly_also_with_the_ensemble(files, tmp_path):
    clip = marked_clip(tmp_path / "odd.mkv", 3, 175, 143)
    output = tmp_path / "out.mkv"
    result = run(clip, "-o", output, "--model", files["id5"], "--ensemble", "--quiet", *LOSSLESS)
    assert result.exit_code == 0, result.output
    assert (probe(output).width, probe(output).height) == (175, 143)
    assert all(np.array_equal(a, b) for a, b in zip(decode(output), decode(clip)))


def test_x4_model_output_is_four_times_larger(files, tmp_path):
    clip = marked_clip(tmp_path / "small.mkv", 3, 35, 27)
    output = tmp_path / "out.mkv"
    result = run(clip, "-o", output, "--model", files["x4"], "--json", *LOSSLESS)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert (summary["width"], summary["height"], summary["scale"]) == (140, 108, 4)
    restored = decode(output)
    assert len(restored) == 3 and restored[0].shape == (108, 140, 3)
    for frame, out in zip(decode(clip), restored):  # the zeroed network adds nothing to bilinear x4
        x = torch.from_numpy(frame).permute(2, 0, 1)[None].float() / 255
        expected = F.interpolate(x, scale_factor=4, mode="bilinear", align_corners=False)
        expected = (expected.clamp(0, 1) * 255).round().byte()[0].permute(1, 2, 0).numpy()
        # written as the source's 8-bit limited-range YUV 4:4:4: quantising there moves RGB by <= 2
        difference = np.abs(out.astype(int) - expected)
        assert difference.max() <= 2 and difference.mean() < 0.5


def test_tiled_command_equals_untiled(files, tmp_path):
    clip = marked_clip(tmp_path / "odd.mkv", 2, 175, 143)
    result = run(clip, "-o", tmp_path / "tiled.mkv", "--model", files["id3"], "--tile", "48",
                 "--tile-overlap", "16", "--batch", "2", "--quiet", *LOSSLESS)
    assert result.exit_code == 0, result.output
    assert all(np.array_equal(a, b) for a, b in zip(decode(tmp_path / "tiled.mkv"), decode(clip)))


def packet_times(path: Path) -> list[Fraction]:
    """Presentation times of a file's video packets, in seconds, sorted."""
    text = subprocess.run([FFMPEG, "-v", "error", "-i", str(path), "-map", "0:v:0", "-c", "copy", "-f",
                           "framecrc", "-"], check=True, capture_output=True).stdout.decode()
    num, den = text.split("#tb 0: ")[1].split()[0].split("/")
    pts = [int(line.split(",")[2]) for line in text.splitlines() if line and not line.startswith("#")]
    return sorted(p * Fraction(int(num), int(den)) for p in pts)


def test_variable_frame_rate_keeps_every_frame_at_its_own_time(files, tmp_path):
    clip = tmp_path / "vfr.mkv"
    # frames 0-4 at 1/25 s, frames 5-9 at 2/25 s
    subprocess.run([FFMPEG, "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=64x48:rate=25",
                    "-frames:v", "10", "-vf", "setpts='(N+if(gte(N,5),N-5,0))/25/TB'",
                    "-fps_mode", "passthrough", "-c:v", "ffv1", str(clip)], check=True, capture_output=True)
    assert probe(clip).is_vfr
    for suffix in (".mkv", ".mp4"):
        output = tmp_path / f"out{suffix}"
        result = run(clip, "-o", output, "--model", files["id5"], "--json", *LOSSLESS)
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["variable_frame_rate"] is True
        assert packet_times(output) == packet_times(clip) == [
            Fraction(n + max(n - 5, 0), 25) for n in range(10)]
        assert all(np.array_equal(a, b) for a, b in zip(decode(output), decode(clip)))


def test_one_frame_video(files, tmp_path):
    clip = make_clip(tmp_path / "one.mkv", 64, 48, num_frames=1)
    output = tmp_path / "out.mkv"
    assert run(clip, "-o", output, "--model", files["id9"], "--quiet", *LOSSLESS).exit_code == 0
    restored = decode(output)
    assert len(restored) == 1 and np.array_equal(restored[0], decode(clip)[0])


def test_ten_bit_input_keeps_ten_bits(files, tmp_path):
    clip = make_clip(tmp_path / "ten.mp4", 64, 48, num_frames=4, codec_args=("-c:v", "libx264", "-qp", "0"),
                     pix_fmt="yuv420p10le")
    output = tmp_path / "out.mp4"
    result = run(clip, "-o", output, "--model", files["id5"], "--quiet")
    assert result.exit_code == 0, result.output
    info = probe(output)
    assert (info.pix_fmt, info.bit_depth, info.num_frames) == ("yuv420p10le", 10, 4)
    # libx264 at crf 17 on 4:2:0 chroma of a 64x48 test pattern: about 32 dB; a wrong frame is < 20
    assert all(psnr(a, b) >= 30 for a, b in zip(decode(output), decode(clip)))


def test_folders_of_frames_in_and_out(files, tmp_path):
    frames_dir = tmp_path / "frames"
    assert run(files["clip"], "-o", frames_dir, "--model", files["id5"], "--quiet").exit_code == 0
    names = sorted(p.name for p in frames_dir.iterdir())
    assert names == [f"{idx:06d}.png" for idx in range(1, 12)]
    assert all(np.array_equal(a, b) for a, b in zip(decode(frames_dir), decode(files["clip"])))

    video = tmp_path / "from_frames.mkv"
    # RGB frames become 4:2:0 video by default; --pix-fmt bgr0 keeps them RGB, losslessly
    result = run(frames_dir, "-o", video, "--model", files["id5"], "--fps", "24000/1001", "--quiet", *LOSSLESS)
    assert result.exit_code == 0, result.output
    assert (probe(video).fps, probe(video).pix_fmt) == (Fraction(24000, 1001), "yuv420p")
    result = run(frames_dir, "-o", video, "--model", files["id5"], "--fps", "24000/1001", "--quiet",
                 "--overwrite", "--pix-fmt", "bgr0", *LOSSLESS)
    assert result.exit_code == 0, result.output
    assert probe(video).pix_fmt == "bgr0"
    assert all(np.array_equal(a, b) for a, b in zip(decode(video), decode(frames_dir)))

    # --overwrite replaces a frame folder as a whole (no stale frames), never a folder of other files
    for idx in range(12, 20):
        (frames_dir / f"{idx:06d}.png").write_bytes((frames_dir / "000001.png").read_bytes())
    assert run(files["clip"], "-o", f"{frames_dir}/", "--model", files["id5"], "--quiet",
               "--overwrite").exit_code == 0
    assert len(list(frames_dir.iterdir())) == 11
    (frames_dir / "notes.txt").write_text("mine")
    result = run(files["clip"], "-o", frames_dir, "--model", files["id5"], "--overwrite")
    assert result.exit_code == 1 and "holds files other than images" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["frames", "from_frames.mkv"]


def test_json_summary(files, tmp_path):
    output = tmp_path / "out.mkv"
    result = run(files["clip"], "-o", output, "--model", files["id5"], "--json", "--device", "cpu", *LOSSLESS)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert {key: summary[key] for key in ("input", "output", "frames", "video_fps", "device", "precision",
                                          "model", "window", "padding")} == {
        "input": str(files["clip"]), "output": str(output), "frames": 11, "video_fps": "25",
        "device": "cpu", "precision": "fp32", "model": str(files["id5"]), "window": 5,
        "padding": "reflection_circle"}
    assert summary["seconds"] > 0 and summary["fps"] > 0


def test_summary_line_and_help(files, tmp_path):
    result = run(files["clip"], "-o", tmp_path / "out.mkv", "--model", files["id5"], *LOSSLESS)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("11 frames in ") and "fps" in result.stdout
    assert "yuv444p, cpu, fp32; ffv1 yuv444p)" in result.stdout  # planes written; encoder used
    help_text = run("--help").output
    assert "Examples:" in help_text and "[default: reflection_circle]" in help_text
    flat = " ".join(help_text.split())
    assert "variable frame rate" in flat and "bit for bit" in flat and "libx265 at --crf 8" in flat


def test_preset_with_weights(tmp_path):
    torch.manual_seed(0)
    weights = tmp_path / "small.pth"
    save_model(build_model("small"), weights)
    clip = make_clip(tmp_path / "in.mkv", 64, 48, num_frames=2)
    result = run(clip, "-o", tmp_path / "out.mkv", "--model", "small", "--weights", weights, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["model"] == f"small + {weights}"
    assert probe(tmp_path / "out.mkv").num_frames == 2


def test_builtin_weights_become_the_default(files, tmp_path, monkeypatch):
    monkeypatch.setattr(model_choice, "builtin_weights_dir", lambda: tmp_path / "weights")
    (tmp_path / "weights").mkdir()
    result = run(files["clip"], "-o", tmp_path / "out.mkv")
    assert result.exit_code == 1 and result.output.count("\n") == 1
    assert "no model given" in result.output and "--model" in result.output
    (tmp_path / "weights" / "builtin-qe.pth").write_bytes(files["id5"].read_bytes())
    result = run(files["clip"], "-o", tmp_path / "out.mkv", "--json", *LOSSLESS)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["model"] == "builtin-qe"
    result = run(files["clip"], "-o", tmp_path / "x4.mkv", "--model", "builtin-sr4")
    assert result.exit_code == 1 and "builtin-sr4: not bundled" in result.output


def _refusal_cases(files, tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("not a video\n")
    audio_only = tmp_path / "tone.m4a"
    subprocess.run([FFMPEG, "-v", "error", "-f", "lavfi", "-i", "sine=duration=0.2", str(audio_only)],
                   check=True, capture_output=True)
    existing = tmp_path / "existing.mkv"
    existing.write_bytes(b"keep me")
    bad_model = tmp_path / "bad.pth"
    bad_model.write_text("this is no checkpoint")
    clip, model = files["clip"], files["id5"]
    out = tmp_path / "out.mkv"
    return {
        "existing output": ([clip, "-o", existing, "--model", model], "already exists; pass --overwrite"),
        "output is input": ([clip, "-o", clip, "--model", model], "would replace the input"),
        "missing input": ([tmp_path / "nope.mp4", "-o", out, "--model", model], "no such file"),
        "text file": ([text, "-o", out, "--model", model], "not a video file"),
        "audio only": ([audio_only, "-o", out, "--model", model], "no video stream"),
        "unwritable folder": ([clip, "-o", text / "out.mkv", "--model", model], "cannot write the output"),
        "bad model file": ([clip, "-o", out, "--model", bad_model], "not a loadable checkpoint"),
        "unknown model name": ([clip, "-o", out, "--model", "edvr_nonexistent"], "neither an existing file"),
        "weights without preset": ([clip, "-o", out, "--model", model, "--weights", model], "--weights goes"),
        "preset mismatch": ([clip, "-o", out, "--model", "small", "--weights", model], "does not fit"),
        "frames mismatch": ([clip, "-o", out, "--model", model, "--frames", "7"], "takes 5 frames"),
        "fp16 on cpu": ([clip, "-o", out, "--model", model, "--device", "cpu", "--precision", "fp16"],
                        "fp16 runs on CUDA only"),
        "bad encoder argument": ([clip, "-o", out, "--model", model, "--quiet", "--encoder-arg=-bogus_opt 1"],
                                 "encoding failed"),
        "unknown codec": ([clip, "-o", out, "--model", model, "--codec", "nosuchcodec"], "no encoder named"),
    }


def test_every_refusal_is_one_line_and_leaves_nothing(files, tmp_path, monkeypatch):
    monkeypatch.setattr(model_choice, "builtin_weights_dir", lambda: tmp_path / "no_weights")
    cases = _refusal_cases(files, tmp_path)
    cases["no --model"] = ([files["clip"], "-o", tmp_path / "out.mkv"], "no model given")
    before = sorted(p.name for p in tmp_path.iterdir())
    clip_bytes = files["clip"].read_bytes()
    for name, (args, message) in cases.items():
        result = run(*args)
        assert result.exit_code == 1, (name, result.output)
        assert result.output.startswith("Error: ") and result.output.count("\n") == 1, (name, result.output)
        assert message in result.output, (name, result.output)
        assert sorted(p.name for p in tmp_path.iterdir()) == before, name
    assert (tmp_path / "existing.mkv").read_bytes() == b"keep me"
    assert files["clip"].read_bytes() == clip_bytes


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only answer")
def test_cuda_asked_without_gpu(files, tmp_path):
    result = run(files["clip"], "-o", tmp_path / "out.mkv", "--model", files["id5"], "--device", "cuda")
    assert result.exit_code == 1 and "no CUDA GPU" in result.output and result.output.count("\n") == 1


def test_ctrl_c_exits_130_and_leaves_nothing(files, tmp_path, monkeypatch):
    calls = []

    def interrupt_on_third_call(self, windows):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return Restored(windows[:, windows.shape[1] // 2], 0)

    monkeypatch.setattr(ModelRunner, "run", interrupt_on_third_call)
    result = run(files["clip"], "-o", tmp_path / "out.mp4", "--model", files["id5"], "--quiet")
    assert result.exit_code == 130 and result.output == "Error: interrupted: " \
        f"{tmp_path / 'out.mp4'} was not written\n"
    assert list(tmp_path.iterdir()) == []


def test_library_errors_are_typed(files, tmp_path):
    with pytest.raises(OutputPathError, match="no such file"):
        enhance(tmp_path / "missing.mp4", tmp_path / "out.mp4", LoadedModel(identity_edvr(), "m", "m"))


def test_bad_input_is_reported_before_the_model_is_loaded(tmp_path):
    from edvr_cli.video import VideoError

    text = tmp_path / "notes.txt"
    text.write_text("not a video")
    loads = []
    with pytest.raises(VideoError, match="not a video file"):
        enhance(text, tmp_path / "out.mp4", lambda: loads.append(1))
    assert loads == []


def native_planes(path: Path) -> list[tuple[np.ndarray, ...]]:
    with PlaneReader(path) as reader:
        return [frame.planes for frame in reader]


def test_strength_scales_the_correction(files, tmp_path):
    """A network whose correction is +0.4 in R, G and B (zero conv_last weights, bias 0.4) on a
    limited-range 8-bit YUV 4:4:4 clip: --strength 0.5 adds exactly 0.2 x 219 = 43.8 -> 44 luma
    codes (clipped at 255) and leaves chroma alone; 0 returns the input's planes."""
    model = identity_edvr(5)
    nn.init.constant_(model.conv_last.bias, 0.4)
    save_model(model, tmp_path / "plus.pth")
    source = native_planes(files["clip"])
    result = run(files["clip"], "-o", tmp_path / "half.mkv", "--model", tmp_path / "plus.pth", "--strength", "0.5",
                 "--json", "--device", "cpu", *LOSSLESS)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["strength"] == 0.5
    for (y, u, v), (y_out, u_out, v_out) in zip(source, native_planes(tmp_path / "half.mkv")):
        assert np.array_equal(y_out, np.minimum(y.astype(int) + 44, 255))
        assert np.array_equal(u_out, u) and np.array_equal(v_out, v)
    assert run(files["clip"], "-o", tmp_path / "none.mkv", "--model", tmp_path / "plus.pth", "--strength", "0",
               "--quiet", *LOSSLESS).exit_code == 0
    assert all(np.array_equal(a, b) for planes, out in zip(source, native_planes(tmp_path / "none.mkv"))
               for a, b in zip(planes, out))
    result = run(files["clip"], "-o", tmp_path / "more.mkv", "--model", tmp_path / "plus.pth", "--strength", "1.5")
    assert result.exit_code == 2 and "1.5 is not in the range 0<=x<=1" in result.output
    assert not (tmp_path / "more.mkv").exists()
    with pytest.raises(SettingError, match="1.5 is not in the range 0<=x<=1") as refused:  # the library's own check
        enhance(files["clip"], tmp_path / "more.mkv", LoadedModel(model, "plus", "plus"), EnhanceSettings(strength=1.5))
    assert refused.value.option == "--strength" and isinstance(refused.value, EnhanceError)
    assert not (tmp_path / "more.mkv").exists()


def test_anamorphic_input_keeps_its_display_shape(files, tmp_path):
    """A DVD-like clip (SAR 8:9, 64x48 shown as 4:3 x 8/9) enlarged x4 keeps SAR 8:9."""
    clip = tmp_path / "dvd.mkv"
    subprocess.run([FFMPEG, "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=64x48:rate=25", "-frames:v", "3",
                    "-vf", "setsar=8/9", "-c:v", "ffv1", str(clip)], check=True, capture_output=True)
    result = run(clip, "-o", tmp_path / "x4.mp4", "--model", files["x4"], "--quiet")
    assert result.exit_code == 0, result.output
    info = probe(tmp_path / "x4.mp4")
    assert (info.width, info.height, info.sample_aspect) == (256, 192, Fraction(8, 9))
    result = run(clip, "-o", tmp_path / "frames", "--model", files["x4"])
    assert result.exit_code == 0, result.output
    assert "PNG frames have square pixels; the input's are 8:9 (anamorphic)" in result.output
