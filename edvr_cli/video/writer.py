"""Encode frames (native planes + presentation times) into a video file through an ffmpeg pipe.

The pipe carries an IVF stream of raw frames: a 32-byte header (layout fourcc, size, time base)
and, per frame, its size and 64-bit pts. ffmpeg's rawvideo decoder reads any planar layout from
it, so the planes reach the encoder as they are: no colour conversion, no rescaling, no rounding
when the output pixel format is the frames' own (the default whenever the encoder takes it).
Each frame keeps its own timestamp (`-fps_mode passthrough`), so variable-frame-rate video
keeps its timing, and `start_offset` shifts the video against the copied audio as in the source.

Colour tags (matrix, range, primaries, transfer), the field order of interlaced video and HDR
side data (libx265) are set on the output; with `source`, its audio, subtitle and attachment
streams are copied along (see `streams.plan_source_streams`); `notify` is told what changed.
"""

from __future__ import annotations

import math
import os
import queue
import re
import struct
import subprocess
import threading
from fractions import Fraction
from pathlib import Path
from typing import Callable

from edvr_cli.video.ffmpeg import (POLL_SECONDS, StderrCollector, VideoError, ended_within, ffmpeg_exe,
                                   ffmpeg_failed, ffmpeg_path, stop_process)
from edvr_cli.video.encoders import EncoderSettings, choose_pix_fmt, encoder_has_option, is_repacking, resolve_encoder
from edvr_cli.video.frame import Frame, FrameFormat
from edvr_cli.video.pixel_format import PlaneLayout
from edvr_cli.video.probe import VideoInfo, probe
from edvr_cli.video.streams import plan_source_streams

_END = object()
# Containers whose players want HEVC tagged hvc1 (QuickTime, iOS)
HVC1_CONTAINERS = (".mp4", ".m4v", ".mov")


def _setparams(fmt: FrameFormat, field_order: str | None) -> str:
    """A filter that tags the raw frames with their colour (ffmpeg takes encoder tags from the
    frames, not from -color_* output options) and field order."""
    params = [f"range={fmt.range_tag}"]
    if fmt.layout.family == "yuv":
        params.append(f"colorspace={fmt.matrix}")
    elif fmt.layout.family == "rgb":
        params.append("colorspace=gbr")
    if fmt.color_primaries:
        params.append(f"color_primaries={fmt.color_primaries}")
    if fmt.color_transfer:
        params.append(f"color_trc={fmt.color_transfer}")
    params.append(f"field_mode={ {'tt': 'tff', 'tb': 'tff', 'bb': 'bff', 'bt': 'bff'}.get(field_order, 'prog')}")
    return "setparams=" + ":".join(params)


def _x265_hdr_params(mastering: str | None, light: tuple[int, int] | None) -> str | None:
    """x265's master-display / max-cll values from ffmpeg's side-data description."""
    items = []
    if mastering:
        numbers = [float(n) for n in re.findall(r"-?\d+\.\d+|-?\d+", re.sub(r"has_\w+:\d", "", mastering))]
        if len(numbers) == 10:
            rx, ry, gx, gy, bx, by, wx, wy, min_l, max_l = numbers
            xy = lambda x, y: f"({round(x * 50000)},{round(y * 50000)})"  # noqa: E731
            items.append(f"master-display=G{xy(gx, gy)}B{xy(bx, by)}R{xy(rx, ry)}WP{xy(wx, wy)}"
                         f"L({round(max_l * 10000)},{round(min_l * 10000)})")
    if light:
        items.append(f"max-cll={light[0]},{light[1]}")
    return ":".join(items) or None


def source_stream_args(source: VideoInfo, output_path: str, notify: Callable[[str], None],
                       cut: bool = False) -> list[str]:
    """Output arguments that copy `source` (ffmpeg input 1)'s audio, subtitles, attachments,
    metadata and chapters into `output_path`; `notify` hears what cannot be copied as is. With
    `cut` (input 1 is read from a time on, for a while), audio is re-encoded, to be cut exactly."""
    stream_args, stream_notes = plan_source_streams(source.path, source, output_path, cut=cut)
    for line in stream_notes:
        notify(line)
    return stream_args + ["-map_metadata", "1", "-map_chapters", "1"]


def _source_video_args(source: VideoInfo | None, fmt: FrameFormat, codec: str, path: str,
                       notify: Callable[[str], None]) -> list[str]:
    """What the output video keeps of the source's: HDR side data, display aspect, hvc1 tag."""
    args = []
    hdr = _x265_hdr_params(source.mastering_display, source.content_light) if source else None
    if hdr and codec == "libx265":
        args += ["-x265-params", hdr]
    elif hdr:
        notify(f"{path}: the source's HDR mastering/light-level metadata is carried by libx265 only, not by {codec}")
    if codec == "libx265" and Path(path).suffix.lower() in HVC1_CONTAINERS:
        args += ["-tag:v", "hvc1"]
    if source is not None and source.sample_aspect is not None:
        # anamorphic source (DVD, HDV): keep its display shape; a x4 output has the same one
        display = Fraction(fmt.width, fmt.height) * source.sample_aspect
        args += ["-aspect", f"{display.numerator}:{display.denominator}"]
    return args


def ivf_header(layout: PlaneLayout, width: int, height: int, time_base: Fraction) -> bytes:
    """The IVF file header: rawvideo of `layout`, pts in units of `time_base` seconds."""
    if not (0 < width < 65536 and 0 < height < 65536):
        raise VideoError(f"frame size {width}x{height} is too large for the raw-frame pipe")
    return struct.pack("<4sHH4sHHIII4x", b"DKIF", 0, 32, layout.fourcc, width, height,
                       time_base.denominator, time_base.numerator, 0)


class FrameWriter:
    """Encode `Frame`s into a video file, each at its own presentation time.

    Frames go through a bounded queue to a background thread that feeds ffmpeg; `write` blocks
    while the queue is full. `close()` waits for ffmpeg and raises VideoError if it failed. On an
    exception inside a `with` block ffmpeg is stopped instead; the caller deletes the partial file.

    Args:
        path: output file; its suffix picks the container.
        fmt: layout, size and colour of the frames written.
        time_base: seconds per pts unit of the frames (e.g. Fraction(1001, 24000) with pts
            0, 1, 2, ... for constant-rate 23.976 fps video).
        encoder: codec, crf, preset, pixel format, extra ffmpeg output arguments (resolved with
            `resolve_encoder`); `encoder.pix_fmt` None keeps the frames' layout if it can.
        source: probed file whose audio, subtitle and attachment streams are copied along; its
            field order, sample aspect ratio and HDR side data are kept.
        start_offset: seconds from the source's start to its first video frame.
        deinterlaced: the frames were deinterlaced, so they are written progressive.
        queue_size: frames buffered ahead of ffmpeg.
        check_frame_count: after closing, count the output's packets and raise VideoError unless
            they equal the frames written.
        notify: told, one line each, what the output changes (streams converted or left out,
            a pixel-format conversion, HDR metadata not carried).
        segment: write the video alone, each frame at its time in the whole video, still with the
            source's field order, aspect and HDR data (`join.join_segments` adds the other streams).
    """

    def __init__(self, path: str | os.PathLike, fmt: FrameFormat, time_base: Fraction,
                 encoder: EncoderSettings = EncoderSettings(), source: VideoInfo | None = None,
                 start_offset: Fraction = Fraction(0), deinterlaced: bool = False, queue_size: int = 8,
                 check_frame_count: bool = True, notify: Callable[[str], None] | None = None,
                 segment: bool = False):
        self.path = os.fspath(path)
        self.format = fmt
        self.time_base = Fraction(time_base)
        if self.time_base <= 0:
            raise ValueError(f"time base must be positive, got {time_base}")
        # ffmpeg applies -itsoffset in the pipe's time base: make that fine enough to hold the
        # offset exactly (0.5 s at 25 fps would otherwise snap to 13 frames = 0.52 s)
        self._pipe_base = _common_unit(self.time_base, Fraction(start_offset)) if start_offset else self.time_base
        self._pts_factor = int(self.time_base / self._pipe_base)
        self.encoder = resolve_encoder(encoder, self.path)
        self.check_frame_count = check_frame_count
        self.num_frames_written = 0
        self._last_pts: int | None = None
        self.pix_fmt = self.encoder.pix_fmt or choose_pix_fmt(self.encoder.codec, fmt.layout, fmt.width, fmt.height)
        self.args = self._ffmpeg_args(source, start_offset, deinterlaced, segment,
                                      notify or (lambda message: None))
        self.process = subprocess.Popen(self.args, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.PIPE)
        self._stderr = StderrCollector(self.process.stderr)
        self._stderr.start()
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, queue_size))
        self._queue.put(ivf_header(fmt.layout, fmt.width, fmt.height, self._pipe_base))
        self._feed_error: BaseException | None = None
        self._stop = threading.Event()  # set by abort: the feeder ends without draining the queue
        self._thread = threading.Thread(target=self._feed, daemon=True)
        self._thread.start()
        self._closed = False

    def _ffmpeg_args(self, source: VideoInfo | None, start_offset: Fraction, deinterlaced: bool,
                     segment: bool, notify: Callable[[str], None]) -> list[str]:
        """The ffmpeg command: the raw-frame pipe (and the source's streams) in, the file out."""
        args = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-v", "error", "-y"]
        if segment:
            args += ["-copyts"]  # frames at their times in the whole video, not from 0
        if start_offset:
            args += ["-itsoffset", f"{float(start_offset):.6f}"]
        args += ["-f", "ivf", "-c:v", "rawvideo", "-i", "pipe:0"]
        stream_args: list[str] = []
        if source is not None and not segment:
            args += ["-i", ffmpeg_path(source.path)]
            stream_args = source_stream_args(source, self.path, notify)
        field_order = None if deinterlaced or source is None else source.field_order
        args += ["-map", "0:0", *self._codec_args(), *self._frame_args(field_order, notify)]
        args += _source_video_args(source, self.format, self.encoder.codec, self.path, notify)
        return args + ["-fps_mode", "passthrough", "-enc_time_base:v", "demux", *stream_args,
                       *self.encoder.extra_args, ffmpeg_path(self.path)]

    def _codec_args(self) -> list[str]:
        """Encoder, quality and speed."""
        codec = self.encoder.codec
        args = ["-c:v", codec]
        if self.encoder.crf is not None and encoder_has_option(codec, "crf"):
            args += ["-crf", f"{self.encoder.crf:g}"]
            if codec.startswith("libvpx"):
                args += ["-b:v", "0"]  # libvpx only honours crf without a bitrate target
        if self.encoder.preset is not None and encoder_has_option(codec, "preset"):
            args += ["-preset", str(self.encoder.preset)]
        return args

    def _frame_args(self, field_order: str | None, notify: Callable[[str], None]) -> list[str]:
        """Colour tags, any pixel-format conversion the encoder needs, and interlacing."""
        fmt, codec = self.format, self.encoder.codec
        filters = [_setparams(fmt, field_order)]
        if not is_repacking(fmt.layout, self.pix_fmt):
            # a conversion the encoder needs: state the matrix and range it converts with
            out_range = fmt.range_tag if self.pix_fmt.startswith(("yuv", "nv", "p0")) else "pc"
            filters.append(f"scale=out_color_matrix={_swscale_matrix(fmt.matrix)}:out_range={out_range}")
            notify(f"{self.path}: frames converted from {fmt.layout.pix_fmt} to {self.pix_fmt} for {codec}")
        args = ["-vf", ",".join(filters), "-pix_fmt", self.pix_fmt]
        if field_order is not None:
            args += ["-field_order", field_order]
            if codec in ("libx264", "libx265", "mpeg2video"):
                args += ["-flags", "+ildct+ilme"]  # interlaced coding; the frames' field_mode says which first
        return args

    def _feed(self) -> None:
        try:
            while not self._stop.is_set():
                try:
                    chunk = self._queue.get(timeout=POLL_SECONDS)
                except queue.Empty:
                    continue
                if chunk is _END:
                    return
                self.process.stdin.write(chunk)
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
                self._queue.put(item, timeout=POLL_SECONDS)
                return
            except queue.Full:
                continue

    def write(self, frame: Frame) -> None:
        """Queue one frame (planes in the writer's layout; pts None = one tick after the last)."""
        if self._closed:
            raise VideoError(f"{self.path}: write after close")
        layout, fmt = self.format.layout, self.format
        shapes = layout.plane_shapes(fmt.width, fmt.height)
        if len(frame.planes) != len(shapes) or any(
                plane.shape != shape or plane.dtype != layout.dtype for plane, shape in zip(frame.planes, shapes)):
            got = [(plane.shape, str(plane.dtype)) for plane in frame.planes]
            raise ValueError(f"frame planes {got} do not match the writer's {layout.pix_fmt} "
                             f"{fmt.width}x{fmt.height}")
        pts = frame.pts if frame.pts is not None else (self._last_pts + 1 if self._last_pts is not None else 0)
        if self._last_pts is not None and pts <= self._last_pts:
            pts = self._last_pts + 1  # presentation times must increase; never drop the frame
        self._last_pts = pts
        data = b"".join(plane.tobytes() for plane in frame.planes)
        self._put(struct.pack("<IQ", len(data), pts * self._pts_factor) + data)
        self.num_frames_written += 1

    def close(self) -> None:
        """Flush the queue, finish the file, and raise VideoError if ffmpeg failed."""
        if self._closed:
            return
        try:
            self._put(_END)
            self._thread.join()
        except BaseException:  # ffmpeg died, or a Ctrl-C while the last frames go out
            self.abort()
            raise
        self._closed = True
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
        stop_process(self.process)  # a feeder inside a write gets a broken pipe
        self._stop.set()  # one waiting on the queue sees this; the queue is never touched here
        for thread, stream in ((self._thread, self.process.stdin), (self._stderr, self.process.stderr)):
            if ended_within(thread):
                try:
                    stream.close()
                except OSError:
                    pass

    def __enter__(self) -> "FrameWriter":
        return self

    def __exit__(self, exc_type, exc, traceback) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def _common_unit(a: Fraction, b: Fraction) -> Fraction:
    """The largest time unit that divides both `a` and `b` (their gcd as fractions)."""
    a, b = abs(a), abs(b)
    return Fraction(math.gcd(a.numerator * b.denominator, b.numerator * a.denominator), a.denominator * b.denominator)


_SWSCALE_MATRIX = {"bt709": "bt709", "smpte170m": "smpte170m", "bt470bg": "bt470", "bt601": "bt601",
                   "fcc": "fcc", "smpte240m": "smpte240m", "bt2020nc": "bt2020", "bt2020c": "bt2020"}


def _swscale_matrix(matrix: str) -> str:
    return _SWSCALE_MATRIX.get(matrix, "bt709")
