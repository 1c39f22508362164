"""Join encoded segments into one video without re-encoding, with the source's other streams.

Each segment holds its frames at their final presentation times (so each is rounded to the
container's time base once, as in a single pass). ffmpeg's concat demuxer shifts file k's
timestamps by (sum of the durations before it) - (file k's in-point), so each file gets its
first frame's time as `inpoint` and the gap to the next one's as `duration`, both in whole
microseconds from the same rounded times: the shift is then exactly zero and every frame keeps
its time. (ffmpeg's own reading of a file's start is not used: it is missing for short HEVC
segments in Matroska.)
The source's audio, subtitles, attachments, metadata and chapters are copied in the same pass.
"""

from __future__ import annotations

import math
import os
import subprocess
from fractions import Fraction
from pathlib import Path
from typing import Callable, Sequence

from edvr_cli.video.ffmpeg import StderrCollector, ffmpeg_exe, ffmpeg_failed, ffmpeg_path, stop_process
from edvr_cli.video.probe import VideoInfo
from edvr_cli.video.writer import HVC1_CONTAINERS, source_stream_args


def _microseconds(seconds: Fraction) -> int:
    return math.floor(seconds * 1_000_000 + Fraction(1, 2))


def concat_list(segments: Sequence[Path], starts: Sequence[Fraction], folder: Path | None = None) -> str:
    """An ffconcat script: each segment from its first frame's time, lasting until the next one's.

    `starts` are seconds from the first segment's first frame (the first is 0). Segments in
    `folder` (the script's own) are named relative to it: a line-based script cannot hold a
    path with a line break."""
    lines = ["ffconcat version 1.0"]
    for index, segment in enumerate(segments):
        name = segment.name if folder is not None and Path(segment).parent == Path(folder) else ffmpeg_path(segment)
        escaped = name.replace("'", "'\\''")
        lines.append(f"file '{escaped}'")
        here = _microseconds(starts[index])
        if index > 0:
            lines.append(f"inpoint {here}us")
        if index + 1 < len(segments):
            lines.append(f"duration {_microseconds(starts[index + 1]) - here}us")
    return "\n".join(lines) + "\n"


def join_segments(segments: Sequence[Path], starts: Sequence[Fraction], output: Path, source: VideoInfo | None,
                  codec: str,
                  start_offset: Fraction = Fraction(0), notify: Callable[[str], None] | None = None,
                  source_cut: tuple[Fraction, Fraction] | None = None, script: Path | None = None) -> None:
    """Write `output` from `segments` (same codec and parameters, in order) by stream copy.

    Args:
        starts: each segment's first frame's time, seconds from the first's.
        source: probed input whose audio, subtitles, attachments, metadata and chapters go along.
        codec: the segments' encoder (HEVC is tagged hvc1 in MP4/MOV, as a single pass does).
        start_offset: seconds from the source's start to its first video frame.
        source_cut: (start, length) in seconds from the source's start: only that part of its
            other streams goes along, from the output's time 0 (a preview of part of a video).
        script: where the concat list is written (default: beside `output`); removed after.
    """
    notify = notify or (lambda message: None)
    if not segments:
        raise ValueError("no segments to join")
    script = Path(script or Path(output).with_name(Path(output).name + ".ffconcat"))
    script.write_text(concat_list(segments, starts, script.parent), encoding="utf-8")
    try:
        args = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-v", "error", "-y"]
        if start_offset:
            args += ["-itsoffset", f"{float(start_offset):.6f}"]
        args += ["-f", "concat", "-safe", "0", "-i", ffmpeg_path(script)]
        stream_args: list[str] = []
        if source is not None:
            if source_cut is not None:
                args += ["-ss", f"{float(source_cut[0]):.6f}", "-t", f"{float(source_cut[1]):.6f}"]
            args += ["-i", ffmpeg_path(source.path)]
            stream_args = source_stream_args(source, os.fspath(output), notify, cut=source_cut is not None)
        args += ["-map", "0:v:0", "-c:v", "copy"]
        if codec == "libx265" and Path(output).suffix.lower() in HVC1_CONTAINERS:
            args += ["-tag:v", "hvc1"]
        args += [*stream_args, ffmpeg_path(output)]
        _run(args, f"{output}: joining {len(segments)} segments failed")
    finally:
        script.unlink(missing_ok=True)


def _run(args: list[str], what: str) -> None:
    """Run ffmpeg to the end (stopped on Ctrl-C); VideoError naming `what` if it fails."""
    process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    stderr = StderrCollector(process.stderr)
    stderr.start()
    try:
        returncode = process.wait()
    except BaseException:
        stop_process(process)
        raise
    finally:
        stderr.join()
        process.stderr.close()
    if returncode != 0:
        raise ffmpeg_failed(what, returncode, stderr.text)
