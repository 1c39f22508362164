"""Which of a source's audio, subtitle and attachment streams go into the output, and how.

Each is copied if the output container takes it (ffmpeg tries to write its header into a scratch
file of the same type), else transcoded, else left out with a note.
"""

from __future__ import annotations

import functools
import os
import re
import subprocess
import tempfile
from pathlib import Path

from edvr_cli.video.ffmpeg import ffmpeg_exe, ffmpeg_path
from edvr_cli.video.probe import StreamInfo, VideoInfo

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
                        first_output_index: int = 1, cut: bool = False) -> tuple[list[str], list[str]]:
    """ffmpeg arguments that bring `source`'s audio, subtitle and attachment streams along.

    Every such stream is mapped from input 1. Each is copied if the output container takes it
    (ffmpeg tries to write its header into a scratch file of the same type), else transcoded
    (audio -> aac, or opus for WebM; text subtitles -> mov_text for MP4/MOV, webvtt for WebM,
    srt otherwise), else left out. PCM audio becomes aac in MP4 although ffmpeg can store it
    there: few players read it. Data streams and further video streams are left out. With `cut`
    (part of the source, read with -ss/-t), audio is transcoded too: copied packets would start
    before the cut and end after it, each by up to a few tens of milliseconds.

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
        copyable = not (prefer_transcode and prefer_transcode.match(stream.codec)) and not (
            cut and stream.kind == "audio")
        if copyable and _muxes(source, stream.index, suffix, "copy"):
            codec = "copy"
        else:
            codec = _transcode_codec(suffix, stream)
            if codec is None or not _muxes(source, stream.index, suffix, codec):
                notes.append(f"{label} left out: a {suffix or 'this'} file cannot hold it")
                continue
            notes.append(f"{label} converted to {codec} for the {suffix} container" if not (
                cut and stream.kind == "audio") else f"{label} re-encoded as {codec} to be cut exactly")
        args += ["-map", f"1:{stream.index}", f"-c:{output_index}", codec]
        output_index += 1
    return args, notes
