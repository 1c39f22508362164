"""Decode a video into its native planes, each with its presentation time, through an ffmpeg pipe.

ffmpeg writes raw frames in the source's own planar layout (see `pixel_format.native_layout`:
nothing is converted for planar sources, so 10-bit stays 10-bit codes and chroma stays at its
own resolution) to stdout, and one line per frame, `{time base} {pts}`, to a second pipe
(`-stats_enc_pre`). A background thread pairs them into `Frame`s in a bounded queue, so memory
does not grow with the video's length. No frame is dropped or duplicated (`-fps_mode
passthrough`), also for variable-frame-rate input. Rotation tags are applied (ffmpeg's
autorotation), so `reader.width/height` are the rotated size.
"""

from __future__ import annotations

import os
import queue
import subprocess
import threading
from fractions import Fraction
from typing import Callable, Iterator

from edvr_cli.video.ffmpeg import (POLL_SECONDS, StderrCollector, VideoError, ended_within, ffmpeg_exe,
                                   ffmpeg_failed, ffmpeg_path, stop_process)
from edvr_cli.video.frame import Frame, source_format
from edvr_cli.video.probe import VideoInfo, probe

_END = object()  # end-of-stream marker in the queue


class FrameReader:
    """Decode a video into `Frame`s (native planes + pts), in order, with bounded memory.

    A damaged file yields the frames ffmpeg can decode (ffmpeg conceals broken packets); the
    reader raises VideoError only when ffmpeg exits non-zero or its output ends mid-frame.
    Compare `num_frames_read` with `info.num_frames` to notice missing frames.

    Args:
        path: video file.
        info: its `probe()` result, when already known.
        deinterlace: run ffmpeg's bwdif (one frame per frame: count and timestamps kept).
        queue_size: decoded frames held ahead of the consumer (memory: queue_size + 2 frames).
        notify: told what is converted on reading (a pixel format that cannot be held natively).
        seek_seconds: start decoding at this time from the file's start instead (ffmpeg's
            input seek: from a keyframe, frames before the time dropped); pts are unchanged.

    Attributes:
        format: layout, size and colour of the frames (`frame.FrameFormat`).
        time_base: seconds per pts unit, known once the first frame has been read.
    """

    def __init__(self, path: str | os.PathLike, info: VideoInfo | None = None, deinterlace: bool = False,
                 queue_size: int = 8, notify: Callable[[str], None] | None = None, seek_seconds: float = 0.0):
        self.path = os.fspath(path)
        self.info = info if info is not None else probe(self.path)
        self.format, note = source_format(self.info)
        if note and notify is not None:
            notify(f"{self.path}: {note}")
        self.width, self.height = self.format.width, self.format.height
        self.time_base: Fraction | None = None
        self.num_frames_read = 0
        layout = self.format.layout
        self._frame_size = layout.frame_bytes(self.width, self.height)
        stats_read, stats_write = os.pipe()
        args = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-v", "error"]
        if seek_seconds > 0:
            # start near a later frame; -copyts -start_at_zero keep every frame's pts what it is
            # without seeking, so the caller can tell which frames it got
            args += ["-ss", f"{seek_seconds:.6f}", "-copyts", "-start_at_zero"]
        args += ["-i", ffmpeg_path(self.path), "-map", f"0:{self.info.video_index}",
                "-fps_mode", "passthrough", "-enc_time_base:v", "demux"]
        if deinterlace:
            args += ["-vf", "bwdif=mode=send_frame:parity=auto:deint=all"]
        if self.info.pix_fmt not in (layout.pix_fmt, layout.pix_fmt.replace("yuv", "yuvj", 1)):
            args += ["-pix_fmt", layout.pix_fmt]  # repack (nv12 -> yuv420p, ...); else untouched
        args += ["-stats_enc_pre:v", f"pipe:{stats_write}", "-stats_enc_pre_fmt:v", "{tb} {pts}",
                 "-f", "rawvideo", "-c:v", "rawvideo", "-"]
        try:
            self.process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                            stderr=subprocess.PIPE, pass_fds=(stats_write,))
        finally:
            os.close(stats_write)
        self._stats = os.fdopen(stats_read, "rb")
        self._stderr = StderrCollector(self.process.stderr)
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
                self._queue.put(item, timeout=POLL_SECONDS)
                return True
            except queue.Full:
                continue
        return False

    def _read_frames(self) -> None:
        try:
            self._read_frames_until_end()
        except Exception as error:  # never leave the consumer waiting on an empty queue
            self._put(VideoError(f"{self.path}: reading ffmpeg output failed: {error}", self._stderr.text))

    def _next_timestamp(self) -> int | None:
        line = self._stats.readline().decode("ascii", errors="replace").split()
        if len(line) != 2:
            return None
        num, _, den = line[0].partition("/")
        if self.time_base is None and num.isdigit() and den.isdigit() and int(num) > 0:
            self.time_base = Fraction(int(num), int(den))
        return int(line[1]) if line[1].lstrip("-").isdigit() else None

    def _read_frames_until_end(self) -> None:
        stdout = self.process.stdout
        layout = self.format.layout
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
            frame = Frame(layout.split(buffer, self.width, self.height), self._next_timestamp())
            if not self._put(frame):
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

    def __iter__(self) -> Iterator[Frame]:
        while not self._closed:
            item = self._queue.get()
            if item is _END:
                self._queue.put(_END)  # a second iteration ends at once as well
                return
            if isinstance(item, VideoError):
                self._queue.put(item)
                raise item
            self.num_frames_read += 1
            yield item

    def close(self) -> None:
        """Stop decoding (ffmpeg is ended if still running) and release the threads."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        stop_process(self.process)
        if ended_within(self._thread):
            self.process.stdout.close()
            self._stats.close()
        if ended_within(self._stderr):
            self.process.stderr.close()

    def __enter__(self) -> "FrameReader":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
