"""What a video file holds, read with the bundled ffmpeg (there is no ffprobe).

`probe(path)` returns a `VideoInfo`: frame size, exact frame rate as a `Fraction`, frame count
when cheap to know, pixel format and bit depth, rotation, and the list of streams. Everything
here comes from ffmpeg's own output, obtained with argument lists (never a shell):

1. `ffmpeg -i path` prints the container header: streams, codecs, languages, pixel format,
   size, duration, display matrix.
2. Decoding one frame into `-f framecrc` prints `#tb`, the time base ffmpeg gives the decoded
   stream, which is 1 / (its frame rate guess) as an exact rational: 24000/1001 stays exact,
   where the header's "23.98 fps" does not. `#dimensions` is the frame size after rotation.
3. Copying (not decoding) the video packets into `-f framecrc` lists every packet's timestamp:
   that counts the frames and shows whether they follow a constant rate. The scan stops after
   `max_scan_seconds`; then `num_frames` is None (see `count_frames` for a full decode).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from fractions import Fraction

from edvr_cli.video.ffmpeg import VideoError, decode_text, ffmpeg_failed, ffmpeg_path, run_ffmpeg, summarize_stderr
from edvr_cli.video.packets import rate_from_scan, scan_packets

STREAM_KINDS = ("video", "audio", "subtitle", "attachment", "data")

@dataclass(frozen=True)
class StreamInfo:
    """One stream of a media file, as ffmpeg numbers them (`-map 0:<index>`)."""

    index: int
    kind: str  # one of STREAM_KINDS
    codec: str  # ffmpeg codec name, e.g. "h264", "aac", "subrip"
    language: str | None  # ISO 639 code from the container; None when absent or "und"


@dataclass(frozen=True)
class VideoInfo:
    """A video file's main video stream plus the list of all streams.

    The main video stream is the one flagged default that is not an attached picture (cover
    art), else the first video stream that is not one; `notes` names it when there are several.

    `width`/`height` are the coded frame size before rotation. `rotation` is the display matrix
    angle in degrees counter-clockwise, as ffmpeg prints it (ffmpeg turns a legacy clockwise
    `rotate=90` tag into -90), normalised to (-180, 180]. `decoded_width`/`decoded_height` are
    the size of the frames ffmpeg decodes with its default autorotation, i.e. what
    `FrameReader` yields.

    `fps` is exact: ffmpeg's frame rate of the stream for constant-rate video, the average rate
    (as a Fraction with denominator <= 1001) when `is_vfr`. `is_vfr` is True when the scanned
    timestamps stray from a constant `fps` grid by more than a tenth of a frame.
    """

    path: str
    width: int
    height: int
    rotation: int
    decoded_width: int
    decoded_height: int
    fps: Fraction
    num_frames: int | None
    pix_fmt: str
    bit_depth: int
    duration: float | None  # seconds, from the container header
    is_vfr: bool
    video_index: int  # ffmpeg's index of the video stream described here
    color_space: str | None  # YUV matrix as tagged ("bt709", "smpte170m", ...), None if untagged
    color_range: str | None  # "tv" (limited) or "pc" (full), None if untagged
    color_primaries: str | None  # as tagged ("bt709", "bt2020", ...), None if untagged
    color_transfer: str | None  # as tagged ("bt709", "smpte2084", ...), None if untagged
    streams: tuple[StreamInfo, ...]
    # pixel width / pixel height of the decoded (autorotated) frames; None when square or unknown
    sample_aspect: Fraction | None = None
    # seconds per pts unit of the video stream (its packets' and decoded frames' time base)
    time_base: Fraction = Fraction(1, 1000)
    # seconds from the file's start (its earliest stream) to the video's first frame
    start_offset: Fraction = Fraction(0)
    # "tt", "bb", "tb", "bt" (ffmpeg's field orders) for interlaced video, None when progressive
    field_order: str | None = None
    # HDR side data of the first frame, in ffmpeg's words; None when absent
    mastering_display: str | None = None
    content_light: tuple[int, int] | None = None  # (MaxCLL, MaxFALL) in cd/m^2
    # lines worth telling the user about the file, e.g. which of several video streams is used
    notes: tuple[str, ...] = ()
    # num_frames is a count of all the stream's packets (not the container's claim, not None)
    frames_counted: bool = False


def bit_depth_of(pix_fmt: str) -> int:
    """Bits per component of an ffmpeg pixel format name ("yuv420p10le" -> 10, "rgb24" -> 8)."""
    name = pix_fmt.lower()
    special = {"rgb48": 16, "bgr48": 16, "rgba64": 16, "bgra64": 16, "ya16": 16, "p010": 10,
               "p012": 12, "p016": 16, "p210": 10, "p216": 16, "p410": 10, "p416": 16,
               "y210": 10, "y212": 12, "xv30": 10, "xv36": 12, "v30x": 10, "x2rgb10": 10,
               "x2bgr10": 10, "rgbf32": 32, "rgbaf32": 32, "grayf32": 32}
    for prefix, depth in special.items():
        if name.startswith(prefix):
            return depth
    match = re.search(r"(?:p|gray|gbrap?|yuva?\d+p|ya)(\d{1,2})(?:le|be|msb)?$", name)
    if match and 8 <= int(match.group(1)) <= 16:
        return int(match.group(1))
    return 8


def _split_top_level(text: str) -> list[str]:
    """Split a stream description at commas outside (), [] (e.g. "rawvideo (RGB[24] / ..)")."""
    parts, depth, current = [], 0, []
    for char in text:
        if char in "([":
            depth += 1
        elif char in ")]":
            depth -= 1
        if char == "," and depth == 0:
            parts.append("".join(current).strip())
            current = []
        else:
            current.append(char)
    parts.append("".join(current).strip())
    return parts


_STREAM_LINE = re.compile(r"^\s*Stream #\d+:(\d+)(?:\[[^\]]*\])?(?:\(([^)]*)\))?: "
                          r"(Video|Audio|Subtitle|Attachment|Data): (.*)$")
_DURATION = re.compile(r"Duration: (\d+):(\d\d):(\d\d(?:\.\d+)?)")
_START = re.compile(r"Duration: .*?, start: (-?\d+(?:\.\d+)?)")
_FIELD_ORDERS = {"top first": "tt", "bottom first": "bb", "top coded first (swapped)": "tb",
                 "bottom coded first (swapped)": "bt"}
_ROTATION = re.compile(r"display ?matrix: rotation of (-?[\d.]+) degrees", re.IGNORECASE)
_NUM_FRAMES_TAG = re.compile(r"^\s*NUMBER_OF_FRAMES(?:-\w+)?\s*:\s*(\d+)\s*$")
_COLOR_RANGES = ("tv", "pc")
_COLOR_SPACES = ("bt709", "smpte170m", "bt470bg", "bt2020nc", "bt2020c", "smpte240m", "fcc",
                 "ycgco", "gbr", "bt601")


@dataclass
class _Header:
    streams: list[StreamInfo]
    duration: float | None
    start: Fraction  # the file's start time, seconds
    video: dict  # fields of the chosen video stream
    cover_art: set[int]  # indices of "video" streams that are one attached picture
    notes: list[str] = field(default_factory=list)  # the choice among several video streams


_DISPOSITIONS = re.compile(r"\((default|forced|attached pic|dub|original|comment|lyrics|karaoke|"
                           r"hearing impaired|visual impaired|clean effects|captions|descriptions|"
                           r"metadata|dependent|still image|non diegetic|multilayer)\)")


def _parse_header(stderr: str) -> _Header:
    """Parse `ffmpeg -i` output into streams plus the main video stream's fields.

    The main video stream is the one flagged default that is not an attached picture (an MP4's
    cover art; an MKV's cover track is usually not flagged default), else the first video stream
    that is not an attached picture. When the file holds several, a note says which is used.
    """
    streams: list[StreamInfo] = []
    duration = None
    start = Fraction(0)
    cover_art: set[int] = set()
    candidates: list[tuple[dict, bool]] = []  # (fields, flagged default) of each real video stream
    current: dict | None = None  # the video stream whose side data lines follow
    for line in stderr.splitlines():
        if duration is None and (match := _DURATION.search(line)):
            hours, minutes, seconds = match.groups()
            duration = int(hours) * 3600 + int(minutes) * 60 + float(seconds)
            if start_match := _START.search(line):
                start = Fraction(start_match.group(1))
        if match := _STREAM_LINE.match(line):
            index, language, kind, description = match.groups()
            current = None
            if any(stream.index == int(index) for stream in streams):
                continue  # listed again under a "Stream group"
            language = language if language and language != "und" else None
            parts = _split_top_level(description)
            codec = parts[0].split(" ")[0]
            if codec == "none" and (tag := re.search(r"\((\w+) / 0x", parts[0])):
                codec = tag.group(1)  # e.g. a QuickTime timecode track: "none (tmcd / 0x..)"
            streams.append(StreamInfo(int(index), kind.lower(), codec, language))
            dispositions = set(_DISPOSITIONS.findall(description))
            if "attached pic" in dispositions:
                cover_art.add(int(index))
            elif kind == "Video":
                current = _parse_video_description(int(index), parts)
                candidates.append((current, "default" in dispositions))
            continue
        if current is not None:
            if match := _ROTATION.search(line):
                current["rotation"] = float(match.group(1))
            elif match := _NUM_FRAMES_TAG.match(line):
                current["num_frames"] = int(match.group(1))
    video: dict = {}
    notes: list[str] = []
    if candidates:
        flagged = [fields for fields, default in candidates if default]
        video = flagged[0] if flagged else candidates[0][0]
        if len(candidates) > 1:
            why = "the one flagged default" if flagged else "the first; none is flagged default"
            notes.append(f"{len(candidates)} video streams: restoring stream {video['index']} ({why})")
    return _Header(streams, duration, start, video, cover_art, notes)


def _parse_video_description(index: int, parts: list[str]) -> dict:
    """Fields of a "Video:" line split at top-level commas: codec, pix_fmt(...), WxH, ..."""
    fields: dict = {"index": index, "pix_fmt": "unknown", "color_space": None, "color_range": None,
                    "field_order": None,
                    "color_primaries": None, "color_transfer": None}
    if len(parts) > 1:
        pix_match = re.match(r"^([0-9a-z_]+)(?:\((.*)\))?", parts[1])
        if pix_match and not re.match(r"^\d+x\d+", parts[1]):
            fields["pix_fmt"] = pix_match.group(1)
            for item in (pix_match.group(2) or "").split(","):
                item = item.strip()
                if item in _COLOR_RANGES:
                    fields["color_range"] = item
                elif item in _FIELD_ORDERS:
                    fields["field_order"] = _FIELD_ORDERS[item]
                elif item.split("/")[0] in _COLOR_SPACES or item.count("/") == 2:
                    # "bt709" when matrix, primaries and transfer agree, else "matrix/prim/trc"
                    names = item.split("/") if "/" in item else [item] * 3
                    keys = ("color_space", "color_primaries", "color_transfer")
                    for key, name in zip(keys, names):
                        fields[key] = None if name in ("unknown", "reserved") else name
    for part in parts[1:]:
        if size := re.match(r"^(\d+)x(\d+)", part):
            fields["width"], fields["height"] = int(size.group(1)), int(size.group(2))
            break
    # "64x48, SAR 8:9 DAR 32:27" or "720x480 [SAR 8:9 DAR 4:3]"; "SAR 0:1" means unknown
    if (sar := re.search(r"\bSAR (\d+):(\d+) DAR", ", ".join(parts[1:]))) and int(sar.group(1)) and int(sar.group(2)):
        fields["sample_aspect"] = Fraction(int(sar.group(1)), int(sar.group(2)))
    return fields


def _normalise_rotation(degrees: float) -> int:
    angle = int(round(degrees)) % 360
    return angle - 360 if angle > 180 else angle


@dataclass
class _FirstFrame:
    fps: Fraction | None  # ffmpeg's frame rate guess: 1 / the decoded stream's time base
    width: int  # autorotated
    height: int
    mastering_display: str | None
    content_light: tuple[int, int] | None


# ffmpeg's demuxers on a file that ends inside the data its header announced (MP4/MOV, Matroska)
_CUT_SHORT = re.compile(r": partial file$|File ended prematurely", re.MULTILINE)
_MASTERING = re.compile(r"side data - Mastering display metadata: (.*)$", re.IGNORECASE)
_LIGHT_LEVEL = re.compile(r"side data - Content light level metadata: MaxCLL=(\d+), MaxFALL=(\d+)",
                          re.IGNORECASE)


def _first_frame_props(path: str, video_index: int) -> _FirstFrame:
    """Rate guess, autorotated size and HDR side data of the first decoded frame.

    framecrc prints the time base and size; the showinfo filter prints the frame's side data.
    """
    result = run_ffmpeg(["-v", "info", "-nostats", "-i", ffmpeg_path(path), "-map", f"0:{video_index}",
                         "-frames:v", "1", "-vf", "showinfo", "-f", "framecrc", "-"])
    text = decode_text(result.stdout)
    stderr = decode_text(result.stderr)
    decoded = any(line and not line.startswith("#") for line in text.splitlines())  # a frame's line
    if result.returncode != 0 or "#dimensions" not in text or not decoded:
        raise _first_frame_error(path, result.returncode, stderr)
    time_base = re.search(r"^#tb 0: (\d+)/(\d+)", text, re.MULTILINE)
    size = re.search(r"^#dimensions 0: (\d+)x(\d+)", text, re.MULTILINE)
    fps = None
    if time_base and int(time_base.group(1)) > 0:
        fps = Fraction(int(time_base.group(2)), int(time_base.group(1)))
    mastering = next((m.group(1).strip() for m in map(_MASTERING.search, stderr.splitlines()) if m), None)
    light = next(((int(m.group(1)), int(m.group(2)))
                  for m in map(_LIGHT_LEVEL.search, stderr.splitlines()) if m), None)
    return _FirstFrame(fps, int(size.group(1)), int(size.group(2)), mastering, light)


def _first_frame_error(path: str, returncode: int, stderr: str) -> VideoError:
    """Why no frame decodes; a file cut short (its index up front, its frames missing) says so."""
    what = f"{path}: cannot decode the first video frame"
    if _CUT_SHORT.search(stderr):
        return VideoError(f"{what}: the file is cut short (a download or recording that did not finish?)", stderr)
    if returncode == 0:
        return VideoError(f"{what}: ffmpeg decoded none ({summarize_stderr(stderr)})", stderr)
    return ffmpeg_failed(what, returncode, stderr)


def _starts_like_mp4(path: str) -> bool:
    """Whether the file opens with an MP4/MOV box (ffmpeg says "moov atom not found" of any bytes
    in a .mp4 file, cut recordings and files that are no video alike)."""
    with open(path, "rb") as handle:
        head = handle.read(12)
    return len(head) == 12 and head[4:8] in (b"ftyp", b"mdat", b"free", b"wide", b"skip", b"moov")


def probe(path: str | os.PathLike, max_scan_seconds: float = 5.0) -> VideoInfo:
    """Describe a video file (see the module docstring for how).

    Args:
        path: a video file. Image folders are not probed here.
        max_scan_seconds: time allowed for the packet scan that counts frames; when it runs out,
            `num_frames` is None unless the container states the count.

    Raises:
        VideoError: missing file, not a media file, no video stream, or ffmpeg failing.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise VideoError(f"{path}: no such file")
    if os.path.isdir(path):
        raise VideoError(f"{path}: is a folder, not a video file")
    result = run_ffmpeg(["-i", ffmpeg_path(path)])
    stderr = decode_text(result.stderr)
    if "Input #0" not in stderr:
        if summarize_stderr(stderr) == "moov atom not found" and _starts_like_mp4(path):  # index written last
            raise VideoError(f"{path}: the MP4/MOV index (moov atom) is missing: the file is cut short, or "
                             f"its recording did not finish", stderr)
        raise VideoError(f"{path}: not a video file ({summarize_stderr(stderr)})", stderr)
    header = _parse_header(stderr)
    video = header.video
    if not video:
        kinds = ", ".join(sorted({"cover art" if s.index in header.cover_art else s.kind
                                  for s in header.streams})) or "no streams"
        raise VideoError(f"{path}: no video stream (holds {kinds})", stderr)
    if "width" not in video:
        raise VideoError(f"{path}: ffmpeg reports no frame size for the video stream", stderr)
    first = _first_frame_props(path, video["index"])
    scan = scan_packets(path, video["index"], max_scan_seconds)
    fps, is_vfr = rate_from_scan(scan, first.fps)
    if fps is None:
        raise VideoError(f"{path}: ffmpeg reports no frame rate for the video stream", stderr)
    num_frames = len(scan.pts) if scan.complete else video.get("num_frames")
    rotation = _normalise_rotation(video.get("rotation", 0.0))
    # a video that starts after its audio (or before it) must keep that offset when remuxed
    start_offset = min(scan.pts) * scan.time_base - header.start if scan.pts else Fraction(0)
    sample_aspect = video.get("sample_aspect")
    if sample_aspect is not None and rotation in (90, -90):
        sample_aspect = 1 / sample_aspect  # autorotation turns pixel columns into rows
    return VideoInfo(
        path=path, width=video["width"], height=video["height"],
        rotation=rotation,
        decoded_width=first.width, decoded_height=first.height, fps=fps,
        num_frames=num_frames, pix_fmt=video["pix_fmt"], bit_depth=bit_depth_of(video["pix_fmt"]),
        duration=header.duration, is_vfr=is_vfr, video_index=video["index"],
        color_space=video["color_space"], color_range=video["color_range"],
        color_primaries=video["color_primaries"], color_transfer=video["color_transfer"],
        streams=tuple(header.streams), sample_aspect=sample_aspect if sample_aspect != 1 else None,
        time_base=scan.time_base, start_offset=start_offset, field_order=video["field_order"],
        mastering_display=first.mastering_display, content_light=first.content_light,
        notes=tuple(f"{path}: {line}" for line in header.notes), frames_counted=scan.complete)


def count_frames(path: str | os.PathLike, video_index: int | None = None) -> int:
    """Decode the whole video stream and count its frames (exact, slow for long videos).

    Counts what `FrameReader` yields: every decoded frame, none dropped or duplicated.
    """
    path = os.fspath(path)
    if video_index is None:
        video_index = probe(path, max_scan_seconds=0.0).video_index
    result = run_ffmpeg(["-v", "error", "-nostats", "-progress", "pipe:1",
                          "-i", ffmpeg_path(path), "-map", f"0:{video_index}",
                          "-fps_mode", "passthrough", "-f", "null", "-"], timeout=None)
    if result.returncode != 0:
        raise ffmpeg_failed(f"{path}: cannot count frames", result.returncode,
                            decode_text(result.stderr))
    counts = re.findall(r"^frame=(\d+)", decode_text(result.stdout), re.MULTILINE)
    if not counts:
        raise VideoError(f"{path}: ffmpeg reported no frame count", decode_text(result.stderr))
    return int(counts[-1])

