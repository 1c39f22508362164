"""Frames in and out of videos through ffmpeg pipes, and of folders of PNG frames.

Frames are numpy arrays of shape (h, w, 3), dtype uint8, RGB, everywhere in this module.

- `FrameReader(path)`: an ffmpeg process decodes to raw RGB on a pipe; a background thread
  reads exactly w*h*3 bytes per frame into a bounded queue, so memory does not grow with the
  video's length. No frame is dropped or duplicated (`-fps_mode passthrough`), also for
  variable-frame-rate input. Rotation tags are applied (ffmpeg's autorotate), so
  `reader.width/height` are the rotated size. 10/12/16-bit input is converted to 8-bit RGB: the
  model works on 8-bit frames.
- `FrameWriter(path, width, height, fps)`: a second ffmpeg encodes frames fed through a bounded
  queue at exactly `fps`; no rescaling (odd sizes are kept, see `choose_pix_fmt`). With `source`
  it copies the source's audio, subtitle and attachment streams, transcoding only the ones the
  output container cannot hold (see `plan_source_streams`); `writer.notes` says what changed.
  For variable-frame-rate input, `probe().fps` is the average rate: writing at it keeps every
  frame and the total duration (so the copied audio stays in sync overall), not each frame's
  own timing. Rotation is not tagged again: the frames are already upright.
- `temporary_output_path(final)`: where to write before an atomic `os.replace` onto `final`.
- `PngFolderWriter` / `FolderFrameReader`: the same interfaces over folders of images.

Every ffmpeg failure raises `VideoError` with a one-line message and ffmpeg's full stderr.
"""

from __future__ import annotations

import functools
import os
import queue
import re
import subprocess
import tempfile
import threading
from fractions import Fraction
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from edvr_cli.image_io import ImageFolderError, list_image_files, read_image, write_png
from edvr_cli.video_probe import (StreamInfo, VideoError, VideoInfo, bit_depth_of, count_frames,
                                  ffmpeg_exe, ffmpeg_failed, ffmpeg_path, probe)

__all__ = ["VideoError", "VideoInfo", "StreamInfo", "probe", "count_frames", "FrameReader",
           "FrameWriter", "PngFolderWriter", "FolderFrameReader", "temporary_output_path",
           "choose_pix_fmt", "plan_source_streams", "ffmpeg_exe"]

_END = object()  # end-of-stream marker in the queues
_POLL_SECONDS = 0.1  # how often blocked queue operations look for a dead thread or a stop


class _StderrCollector(threading.Thread):
    """Drains a process's stderr so ffmpeg never blocks on a full pipe; keeps all of it."""

    def __init__(self, stream):
        super().__init__(daemon=True)
        self._stream = stream
        self._chunks: list[bytes] = []

    def run(self) -> None:
        for chunk in iter(lambda: self._stream.read(4096), b""):
            self._chunks.append(chunk)

    @property
    def text(self) -> str:
        return b"".join(self._chunks).decode("utf-8", errors="replace")


def _stop_process(process: subprocess.Popen) -> None:
    """End `process` (SIGTERM, then SIGKILL after 2 s) and reap it."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=2.0)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# ----------------------------------------------------------------------------------- reading

_SWSCALE_MATRIX = {"bt709": "bt709", "smpte170m": "smpte170m", "bt470bg": "bt470",
                   "bt601": "bt601", "fcc": "fcc", "smpte240m": "smpte240m",
                   "bt2020nc": "bt2020", "bt2020c": "bt2020"}


def _untagged_matrix(width: int, height: int) -> str:
    # Players treat untagged HD as BT.709 and SD as BT.601; ffmpeg alone would always use 601.
    return "bt709" if width >= 1280 or height >= 720 else "smpte170m"


def _is_yuv(pix_fmt: str) -> bool:
    return bool(re.match(r"^(yuv|yuvj|nv|p0|p2|p4|y2|xv|v30|uyv|yuyv|yvyu|ayuv|vuy)", pix_fmt))


class FrameReader:
    """Decode a video into (h, w, 3) uint8 RGB frames, in order, with bounded memory.

    Rotation tags are applied, so `width`/`height` are the size of the yielded frames (the
    probe's size swapped for a 90-degree rotation). Higher bit depths are converted to 8 bits.
    Untagged YUV is read with BT.709 at HD sizes, BT.601 below, as video players do.

    A damaged file yields the frames ffmpeg can decode (ffmpeg conceals broken packets); the
    reader raises VideoError only when ffmpeg exits non-zero or its output ends mid-frame.
    Compare `num_frames_read` with `info.num_frames` to notice missing frames.

    Args:
        path: video file.
        info: its `probe()` result, when already known.
        queue_size: decoded frames held ahead of the consumer (memory: queue_size + 2 frames).
    """

    def __init__(self, path: str | os.PathLike, info: VideoInfo | None = None, queue_size: int = 8):
        self.path = os.fspath(path)
        self.info = info if info is not None else probe(self.path)
        self.width, self.height = self.info.decoded_width, self.info.decoded_height
        self.num_frames_read = 0
        self._frame_size = self.width * self.height * 3
        args = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-v", "error",
                "-i", ffmpeg_path(self.path), "-map", f"0:{self.info.video_index}",
                "-fps_mode", "passthrough"]
        if _is_yuv(self.info.pix_fmt) and self.info.color_space is None:
            matrix = _untagged_matrix(self.info.width, self.info.height)
            args += ["-vf", f"scale=in_color_matrix={matrix}"]
        args += ["-f", "rawvideo", "-pix_fmt", "rgb24", "-"]
        self.process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE)
        self._stderr = _StderrCollector(self.process.stderr)
        self._stderr.start()
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, queue_size))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read_frames, daemon=True)
        self._thread.start()
        self._closed = False

    @property
    def stderr(self) -> str:
        """ffmpeg's stderr so far (warnings about damaged packets land here)."""
        return self._stderr.text

    def _put(self, item) -> bool:
        """Queue `item` unless the reader is being closed; False when it was."""
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=_POLL_SECONDS)
                return True
            except queue.Full:
                continue
        return False

    def _read_frames(self) -> None:
        try:
            self._read_frames_until_end()
        except Exception as error:  # never leave the consumer waiting on an empty queue
            self._put(VideoError(f"{self.path}: reading ffmpeg output failed: {error}",
                                 self._stderr.text))

    def _read_frames_until_end(self) -> None:
        stdout = self.process.stdout
        num_frames = 0
        while not self._stop.is_set():
            buffer = bytearray(self._frame_size)  # a fresh buffer: the consumer owns the frame
            view = memoryview(buffer)
            filled = 0
            while filled < self._frame_size:
                count = stdout.readinto(view[filled:])
                if not count:
                    break
                filled += count
            if filled == 0:
                break
            if filled < self._frame_size:
                self._finish(f"{self.path}: ffmpeg output ended inside frame {num_frames + 1} "
                             f"({filled} of {self._frame_size} bytes)")
                return
            num_frames += 1
            if not self._put(np.frombuffer(buffer, np.uint8).reshape(self.height, self.width, 3)):
                return
        self._finish(None)

    def _finish(self, short_read_message: str | None) -> None:
        """After ffmpeg's output ended: queue the error its exit status or a short read means."""
        if self._stop.is_set():
            return
        returncode = self.process.wait()
        self._stderr.join()
        if returncode != 0:
            self._put(ffmpeg_failed(f"{self.path}: decoding failed", returncode, self._stderr.text))
        elif short_read_message:
            self._put(VideoError(short_read_message, self._stderr.text))
        else:
            self._put(_END)

    def __iter__(self) -> Iterator[np.ndarray]:
        while not self._closed:
            item = self._queue.get()
            if item is _END:
                self._queue.put(_END)  # a second iteration ends at once as well
                return
            if isinstance(item, VideoError):
                self._queue.put(item)
                raise item
            self.num_frames_read += 1
            yield item  # (h, w, 3) uint8 RGB

    def close(self) -> None:
        """Stop decoding (ffmpeg is ended if still running) and release the threads."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        _stop_process(self.process)
        self._thread.join()
        self._stderr.join()
        self.process.stdout.close()
        self.process.stderr.close()

    def __enter__(self) -> "FrameReader":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


# ----------------------------------------------------------------------------------- writing


@functools.lru_cache(maxsize=None)
def _encoder_help(codec: str) -> str:
    result = subprocess.run([ffmpeg_exe(), "-hide_banner", "-h", f"encoder={codec}"],
                            capture_output=True, check=False)
    text = result.stdout.decode("utf-8", errors="replace")
    if "is not recognized" in text or not text.strip():
        raise VideoError(f"ffmpeg has no encoder named {codec!r}")
    return text


def encoder_pix_fmts(codec: str) -> tuple[str, ...]:
    """Pixel formats the ffmpeg encoder `codec` accepts (empty when it does not say)."""
    match = re.search(r"Supported pixel formats: (.*)", _encoder_help(codec))
    return tuple(match.group(1).split()) if match else ()


def _encoder_has_option(codec: str, option: str) -> bool:
    return re.search(rf"^\s+-{option}\s", _encoder_help(codec), re.MULTILINE) is not None


def chroma_subsampling(pix_fmt: str) -> tuple[int, int]:
    """(horizontal, vertical) chroma subsampling factors of a pixel format: yuv420p -> (2, 2)."""
    if match := re.match(r"^yuva?j?(4\d\d)p", pix_fmt):
        return {"420": (2, 2), "422": (2, 1), "440": (1, 2), "411": (4, 1),
                "410": (4, 4)}.get(match.group(1), (1, 1))
    if re.match(r"^(nv12|nv21|p01\d)", pix_fmt):
        return 2, 2
    if re.match(r"^(nv16|nv20|p21\d|y21\d|yuyv|uyvy|yvyu)", pix_fmt):
        return 2, 1
    return 1, 1


def _holds_size(pix_fmt: str, width: int, height: int) -> bool:
    sub_x, sub_y = chroma_subsampling(pix_fmt)
    return width % sub_x == 0 and height % sub_y == 0


def choose_pix_fmt(codec: str, width: int, height: int, source_pix_fmt: str | None = None) -> str:
    """The output pixel format when none is given.

    Rule: the source's pixel format (or yuv420p without a source) if the encoder supports it and
    its chroma subsampling fits the frame size; otherwise the 4:4:4 format of the same bit depth,
    then yuv444p, then the encoder's first format without chroma subsampling, then its first
    format. So 175x143 frames become yuv444p with libx264: yuv420p cannot hold odd sizes and
    frames are never rescaled.
    """
    supported = encoder_pix_fmts(codec)
    candidate = source_pix_fmt or "yuv420p"
    depth = bit_depth_of(candidate)
    full_chroma = "yuv444p" if depth == 8 else f"yuv444p{depth}le"
    options = [candidate, full_chroma, "yuv444p"]
    options += [fmt for fmt in supported if chroma_subsampling(fmt) == (1, 1)]
    options += list(supported)
    for pix_fmt in options:
        if (not supported or pix_fmt in supported) and _holds_size(pix_fmt, width, height):
            return pix_fmt
    raise VideoError(f"encoder {codec} has no pixel format that holds {width}x{height} frames")


def temporary_output_path(final_path: str | os.PathLike) -> Path:
    """A hidden file beside `final_path`, same suffix (ffmpeg picks the container from it).

    `out/clip.mp4` -> `out/.clip.partial.mp4`. Write there, then `os.replace` it onto the final
    path on success; delete it on error or interruption.
    """
    final_path = Path(final_path)
    return final_path.with_name(f".{final_path.stem}.partial{final_path.suffix}")


# Codecs that copy into a container without error but that its players mostly cannot play.
_TRANSCODE_ANYWAY = {(".mp4", "audio"): re.compile(r"^pcm_"),
                     (".m4v", "audio"): re.compile(r"^pcm_")}
_TEXT_SUBTITLES = {"subrip", "srt", "ass", "ssa", "webvtt", "mov_text", "text", "microdvd",
                   "subviewer", "subviewer1", "jacosub", "sami", "realtext", "pjs", "mpl2",
                   "vplayer", "stl"}
_MP4_FAMILY = (".mp4", ".m4v", ".mov", ".3gp", ".3g2")


def _transcode_codec(suffix: str, stream: StreamInfo) -> str | None:
    """The codec to transcode `stream` to when `suffix`'s container cannot hold it as is."""
    if stream.kind == "audio":
        return "libopus" if suffix == ".webm" else "aac"
    if stream.kind == "subtitle" and stream.codec in _TEXT_SUBTITLES:
        if suffix in _MP4_FAMILY:
            return "mov_text"
        return "webvtt" if suffix == ".webm" else "srt"
    return None  # bitmap subtitles and attachments cannot be converted


@functools.lru_cache(maxsize=None)
def _muxes(source: str, stream_index: int, suffix: str, codec: str) -> bool:
    """Whether ffmpeg can put stream `stream_index` of `source`, as `codec`, in a `suffix` file."""
    with tempfile.TemporaryDirectory() as folder:
        target = os.path.join(folder, f"trial{suffix}")
        args = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-v", "error", "-i", ffmpeg_path(source),
                "-map", f"0:{stream_index}", "-c", codec, "-frames", "0", "-y", target]
        result = subprocess.run(args, capture_output=True, check=False)
    return result.returncode == 0


def plan_source_streams(source: str, info: VideoInfo, output_path: str | os.PathLike,
                        first_output_index: int = 1) -> tuple[list[str], list[str]]:
    """ffmpeg arguments that bring `source`'s audio, subtitle and attachment streams along.

    Every such stream is mapped from input 1. Each is copied if the output container takes it
    (ffmpeg tries to write its header into a scratch file of the same type), else transcoded
    (audio -> aac, or opus for WebM; text subtitles -> mov_text for MP4/MOV, webvtt for WebM,
    srt otherwise), else left out. PCM audio becomes aac in MP4 although ffmpeg can store it
    there: few players read it. Data streams and further video streams are left out.

    Returns:
        (arguments, notes): ffmpeg output arguments, and one line per stream not copied as is.
    """
    suffix = Path(output_path).suffix.lower()
    args, notes = [], []
    output_index = first_output_index
    for stream in info.streams:
        label = f"{stream.kind} stream {stream.index} ({stream.codec})"
        if stream.index == info.video_index:
            continue
        if stream.kind not in ("audio", "subtitle", "attachment"):
            notes.append(f"{label} left out: only the enhanced video, audio, subtitles and "
                         "attachments are written")
            continue
        prefer_transcode = _TRANSCODE_ANYWAY.get((suffix, stream.kind))
        copyable = not (prefer_transcode and prefer_transcode.match(stream.codec))
        if copyable and _muxes(source, stream.index, suffix, "copy"):
            codec = "copy"
        else:
            codec = _transcode_codec(suffix, stream)
            if codec is None or not _muxes(source, stream.index, suffix, codec):
                notes.append(f"{label} left out: a {suffix or 'this'} file cannot hold it")
                continue
            notes.append(f"{label} converted to {codec} for the {suffix} container")
        args += ["-map", f"1:{stream.index}", f"-c:{output_index}", codec]
        output_index += 1
    return args, notes


def _color_args(pix_fmt: str, width: int, height: int, source_info: VideoInfo | None) -> list[str]:
    """Convert RGB to YUV with a stated matrix and tag the output with it.

    The matrix is the source's when tagged, else the one the reader assumed (BT.709 at HD
    sizes, BT.601 below); tags make players show the RGB the model produced. The source's
    primaries and transfer tags are kept (the RGB values are still in those).
    """
    if not _is_yuv(pix_fmt):
        return []
    if source_info is not None and source_info.color_space in _SWSCALE_MATRIX:
        tag = source_info.color_space
    else:
        probe_size = (source_info.width, source_info.height) if source_info else (width, height)
        tag = _untagged_matrix(*probe_size)
    out_range = "pc" if source_info is not None and source_info.color_range == "pc" else "tv"
    args = ["-vf", f"scale=out_color_matrix={_SWSCALE_MATRIX[tag]}:out_range={out_range}",
            "-colorspace", tag, "-color_range", out_range]
    if source_info is not None and source_info.color_primaries:
        args += ["-color_primaries", source_info.color_primaries]
    if source_info is not None and source_info.color_transfer:
        args += ["-color_trc", source_info.color_transfer]
    return args


class FrameWriter:
    """Encode (h, w, 3) uint8 RGB frames into a video file at exactly `fps`.

    Frames go through a bounded queue to a background thread that feeds ffmpeg; `write` blocks
    while the queue is full and copies the frame, so the caller may reuse its buffer.
    `close()` waits for ffmpeg and raises VideoError if it failed. On an exception inside a
    `with` block ffmpeg is stopped instead; the caller deletes the partial file.

    Args:
        path: output file; its suffix picks the container.
        width, height: frame size; kept exactly (never rescaled to a macro-block multiple).
        fps: output frame rate, exact (e.g. Fraction(24000, 1001)).
        codec: ffmpeg encoder name.
        crf, preset: quality settings, passed only to encoders that have these options.
        pix_fmt: output pixel format; None applies `choose_pix_fmt` to the source's format.
        extra_args: more ffmpeg output arguments, placed before the output path. Not "-vf" for
            YUV output: the writer sets its own filter for the RGB -> YUV conversion.
        source: file whose audio, subtitle and attachment streams are copied along.
        source_info: `probe(source)` when known (also gives the default pixel format and colour).
        queue_size: frames buffered ahead of ffmpeg.
        check_frame_count: after closing, count the output's video packets (no decoding) and
            raise VideoError unless they equal the frames written.
    """

    def __init__(self, path: str | os.PathLike, width: int, height: int, fps: Fraction,
                 codec: str = "libx264", crf: int | None = 17, preset: str | None = "medium",
                 pix_fmt: str | None = None, extra_args: Sequence[str] = (),
                 source: str | os.PathLike | None = None, source_info: VideoInfo | None = None,
                 queue_size: int = 8, check_frame_count: bool = True):
        if width <= 0 or height <= 0:
            raise ValueError(f"frame size must be positive, got {width}x{height}")
        fps = Fraction(fps)
        if fps <= 0:
            raise ValueError(f"fps must be positive, got {fps}")
        self.path = os.fspath(path)
        self.width, self.height, self.fps = width, height, fps
        self.check_frame_count = check_frame_count
        self.notes: list[str] = []
        self.num_frames_written = 0
        if source is not None and source_info is None:
            source_info = probe(source)
        self.pix_fmt = pix_fmt or choose_pix_fmt(codec, width, height,
                                                 source_info.pix_fmt if source_info else None)
        args = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-v", "error", "-y",
                "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}",
                "-r", f"{fps.numerator}/{fps.denominator}", "-i", "-"]
        stream_args: list[str] = []
        if source is not None:
            args += ["-i", ffmpeg_path(source)]
            stream_args, self.notes = plan_source_streams(os.fspath(source), source_info, self.path)
            stream_args += ["-map_metadata", "1", "-map_chapters", "1"]
        args += ["-map", "0:0", "-c:v", codec]
        if crf is not None and _encoder_has_option(codec, "crf"):
            args += ["-crf", str(crf)]
            if codec.startswith("libvpx"):
                args += ["-b:v", "0"]  # libvpx only honours crf without a bitrate target
        if preset is not None and _encoder_has_option(codec, "preset"):
            args += ["-preset", str(preset)]
        args += ["-pix_fmt", self.pix_fmt, *_color_args(self.pix_fmt, width, height, source_info)]
        if source_info is not None and source_info.sample_aspect is not None:
            # anamorphic source (DVD, HDV): keep its display shape; a x4 output has the same one
            display = Fraction(width, height) * source_info.sample_aspect
            args += ["-aspect", f"{display.numerator}:{display.denominator}"]
        args += ["-fps_mode", "passthrough", *stream_args, *extra_args, ffmpeg_path(self.path)]
        self.args = args
        self.process = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.PIPE)
        self._stderr = _StderrCollector(self.process.stderr)
        self._stderr.start()
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, queue_size))
        self._feed_error: BaseException | None = None
        self._thread = threading.Thread(target=self._feed, daemon=True)
        self._thread.start()
        self._closed = False

    def _feed(self) -> None:
        try:
            while (frame := self._queue.get()) is not _END:
                self.process.stdin.write(frame.data)
        except OSError as error:  # BrokenPipeError when ffmpeg has exited
            self._feed_error = error

    def _failure(self) -> VideoError:
        returncode = self.process.wait()
        self._stderr.join()
        return ffmpeg_failed(f"{self.path}: encoding failed", returncode, self._stderr.text)

    def _put(self, item) -> None:
        while True:
            if self._feed_error is not None or not self._thread.is_alive():
                raise self._failure()
            try:
                self._queue.put(item, timeout=_POLL_SECONDS)
                return
            except queue.Full:
                continue

    def write(self, frame: np.ndarray) -> None:
        """Queue one (height, width, 3) uint8 RGB frame for encoding."""
        if self._closed:
            raise VideoError(f"{self.path}: write after close")
        if frame.shape != (self.height, self.width, 3) or frame.dtype != np.uint8:
            raise ValueError(f"frame of shape {frame.shape} {frame.dtype} does not match the "
                             f"writer's ({self.height}, {self.width}, 3) uint8")
        self._put(np.array(frame, order="C", copy=True))
        self.num_frames_written += 1

    def close(self) -> None:
        """Flush the queue, finish the file, and raise VideoError if ffmpeg failed."""
        if self._closed:
            return
        self._closed = True
        try:
            self._put(_END)
            self._thread.join()
        finally:
            try:
                self.process.stdin.close()
            except OSError:
                pass  # ffmpeg already gone; its exit status tells why
        returncode = self.process.wait()
        self._stderr.join()
        self.process.stderr.close()
        if returncode != 0 or self._feed_error is not None:
            raise ffmpeg_failed(f"{self.path}: encoding failed", returncode, self._stderr.text)
        if self.check_frame_count and os.path.isfile(self.path):
            num_frames = probe(self.path, max_scan_seconds=60.0).num_frames
            if num_frames is not None and num_frames != self.num_frames_written:
                raise VideoError(f"{self.path}: {self.num_frames_written} frames were written but "
                                 f"the file holds {num_frames}", self._stderr.text)

    def abort(self) -> None:
        """Stop ffmpeg without finishing the file (the caller deletes it)."""
        if self._closed:
            return
        self._closed = True
        _stop_process(self.process)
        while True:  # unblock the feeder if it waits on a full queue or a dead pipe
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        self._queue.put(_END)
        self._thread.join()
        for stream in (self.process.stdin, self.process.stderr):
            try:
                stream.close()
            except OSError:
                pass
        self._stderr.join()

    def __enter__(self) -> "FrameWriter":
        return self

    def __exit__(self, exc_type, exc, traceback) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


# ------------------------------------------------------------------------------ image folders


class PngFolderWriter:
    """Write frames as `000001.png`, `000002.png`, ... into `folder` (created if missing).

    Same interface as FrameWriter: `write(frame)`, `close()`, `notes`, `num_frames_written`.
    """

    def __init__(self, folder: str | os.PathLike, start_number: int = 1):
        self.path = Path(folder)
        self.path.mkdir(parents=True, exist_ok=True)
        self.next_number = start_number
        self.num_frames_written = 0
        self.notes: list[str] = []

    def write(self, frame: np.ndarray) -> None:
        """Write one (h, w, 3) uint8 RGB frame as the next numbered PNG."""
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            raise ValueError(f"frame of shape {frame.shape} {frame.dtype} is not (h, w, 3) uint8")
        write_png(self.path / f"{self.next_number:06d}.png", frame)
        self.next_number += 1
        self.num_frames_written += 1

    def close(self) -> None:
        """Nothing to flush: each PNG is complete when `write` returns."""

    def abort(self) -> None:
        """Nothing to stop; written frames stay."""

    def __enter__(self) -> "PngFolderWriter":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


class FolderFrameReader:
    """Yield the images of a folder, in natural name order, as (h, w, 3) uint8 RGB frames.

    All frames must have the first frame's size; the first one that does not raises
    VideoError naming it. `width`, `height` and `num_frames` are known on construction.
    """

    def __init__(self, folder: str | os.PathLike):
        self.path = Path(folder)
        try:
            self.files = list_image_files(self.path)
        except ImageFolderError as error:
            raise VideoError(str(error)) from error
        if not self.files:
            raise VideoError(f"{self.path}: no image files in this folder")
        self._first = self._read(self.files[0])
        self.height, self.width = self._first.shape[:2]
        self.num_frames = len(self.files)
        self.num_frames_read = 0

    @staticmethod
    def _read(file: Path) -> np.ndarray:
        try:
            return read_image(file)
        except ImageFolderError as error:
            raise VideoError(str(error)) from error

    def __iter__(self) -> Iterator[np.ndarray]:
        self.num_frames_read = 0
        for index, file in enumerate(self.files):
            frame = self._first if index == 0 else self._read(file)
            if frame.shape[:2] != (self.height, self.width):
                raise VideoError(f"{file}: frame size {frame.shape[1]}x{frame.shape[0]} differs "
                                 f"from {self.width}x{self.height} of the first frame "
                                 f"{self.files[0].name}")
            self.num_frames_read += 1
            yield frame

    def close(self) -> None:
        """Nothing to release."""

    def __enter__(self) -> "FolderFrameReader":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
