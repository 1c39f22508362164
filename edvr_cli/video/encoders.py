"""Which encoder, settings and pixel format a video output gets.

`EncoderSettings` holds what the user asked for (None = the default); `resolve_encoder` fills the
container's defaults and refuses what cannot work (a codec the container cannot hold, a preset
the encoder does not know) in one line; `choose_pix_fmt` keeps the frames' own layout whenever
the encoder takes it. The encoder's own options are read from `ffmpeg -h encoder=NAME`.
"""

from __future__ import annotations

import functools
import os
import re
import subprocess
from dataclasses import dataclass, replace
from pathlib import Path

from edvr_cli.video.ffmpeg import VideoError, ffmpeg_exe
from edvr_cli.video.pixel_format import PlaneLayout, family_of, subsampling_of
from edvr_cli.video.probe import bit_depth_of
from models.errors import OptionError


@dataclass(frozen=True)
class EncoderSettings:
    """ffmpeg encoder controls; None = the default for the output container (`resolve_encoder`)."""

    codec: str | None = None
    crf: float | None = None
    preset: str | None = None
    pix_fmt: str | None = None
    extra_args: tuple[str, ...] = ()


# Defaults chosen by measurement (benchmarks/pipe_loss.py, table in benchmarks/README.md): on
# x265 QP 37 footage a re-encode at these settings loses at most ~0.03 dB against its input.
DEFAULT_ENCODERS = {
    ".webm": EncoderSettings("libvpx-vp9", 12, None),
    ".avi": EncoderSettings("ffv1", None, None),
    ".nut": EncoderSettings("ffv1", None, None),
}
DEFAULT_ENCODER = EncoderSettings("libx265", 8, "medium")


# Containers that hold only some video codecs (others fail deep inside ffmpeg's muxer)
CONTAINER_CODECS = {
    ".webm": ("libvpx-vp9", "libvpx", "libaom-av1", "libsvtav1", "librav1e"),
    ".ogv": ("libtheora",),
}


_X26X_SPEEDS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow",
                "placebo")
X26X_PRESETS = {"libx264": _X26X_SPEEDS, "libx264rgb": _X26X_SPEEDS, "libx265": _X26X_SPEEDS}


def resolve_encoder(settings: EncoderSettings, output_path: str | os.PathLike) -> EncoderSettings:
    """Fill what the user left unset with the container's defaults; refuse codecs it cannot hold."""
    suffix = Path(output_path).suffix.lower()
    allowed = CONTAINER_CODECS.get(suffix)
    if allowed and settings.codec is not None and settings.codec not in allowed:
        raise VideoError(f"{output_path}: a {suffix} file cannot hold {settings.codec} video; "
                         f"use --codec {' or '.join(allowed[:3])} (or omit --codec), or another container")
    default = DEFAULT_ENCODERS.get(suffix, DEFAULT_ENCODER)
    if settings.codec is None:
        settings = replace(settings, codec=default.codec,
                           crf=settings.crf if settings.crf is not None else default.crf,
                           preset=settings.preset if settings.preset is not None else default.preset)
    if settings.crf is None and settings.codec == default.codec:
        settings = replace(settings, crf=default.crf)
    if settings.preset is None and settings.codec == default.codec:
        settings = replace(settings, preset=default.preset)
    speeds = X26X_PRESETS.get(settings.codec)
    if speeds and settings.preset is not None and settings.preset not in speeds:
        raise VideoError(f"--preset {settings.preset}: {settings.codec} takes {', '.join(speeds)}")
    return settings


@functools.lru_cache(maxsize=None)
def encoder_help(codec: str) -> str:
    result = subprocess.run([ffmpeg_exe(), "-hide_banner", "-h", f"encoder={codec}"],
                            capture_output=True, check=False)
    text = result.stdout.decode("utf-8", errors="replace")
    if "is not recognized" in text or not text.strip():
        raise VideoError(f"ffmpeg has no encoder named {codec!r}")
    return text


# The quality scale of encoders whose ffmpeg option range says nothing (x264/x265: "-1 to FLT_MAX").
CRF_RANGES = {"libx264": (0, 51), "libx264rgb": (0, 51), "libx265": (0, 51)}
_CRF_OPTION = re.compile(r"^\s+-crf\s+<(\w+)>.*\(from (\S+) to (\S+)\)", re.MULTILINE)


def crf_range(codec: str) -> tuple[str, float, float | None] | None:
    """(value type "int"/"float", lowest, highest or None) of the encoder's -crf; None if it has none."""
    match = _CRF_OPTION.search(encoder_help(codec))
    if match is None:
        return None
    kind, low, high = match.groups()
    if codec in CRF_RANGES:
        return (kind, *CRF_RANGES[codec])
    return kind, max(0.0, _number(low) or 0.0), _number(high)  # ffmpeg's -1 means "not set"


def _number(text: str) -> float | None:
    return float(text) if re.fullmatch(r"-?\d+(\.\d+)?", text) else None  # not FLT_MAX / INT_MAX


def check_crf(crf: float, codec: str) -> None:
    """Raise OptionError unless `crf` is within what `codec` takes."""
    scale = crf_range(codec)
    if scale is None:
        raise OptionError("--crf", f"{codec} has no constant rate factor; omit --crf (a quality option of its "
                                   f"own goes in --encoder-arg)")
    kind, low, high = scale
    if kind == "int" and crf != int(crf):
        raise OptionError("--crf", f"{codec} takes a whole number, got {crf:g}")
    if crf < low or (high is not None and crf > high):
        where = f"{low:g} to {high:g}" if high is not None else f"{low:g} or more"
        raise OptionError("--crf", f"{crf:g} is outside {codec}'s range, {where} (lower = better quality, "
                                   f"bigger file)")


def encoder_pix_fmts(codec: str) -> tuple[str, ...]:
    """Pixel formats the ffmpeg encoder `codec` accepts (empty when it does not say)."""
    match = re.search(r"Supported pixel formats: (.*)", encoder_help(codec))
    return tuple(match.group(1).split()) if match else ()


def encoder_has_option(codec: str, option: str) -> bool:
    return re.search(rf"^\s+-{option}\s", encoder_help(codec), re.MULTILINE) is not None


def is_repacking(layout: PlaneLayout, pix_fmt: str) -> bool:
    """Whether `pix_fmt` holds exactly the samples of `layout` (same family, depth, chroma)."""
    name = pix_fmt.lower()
    if re.search(r"(yuva|rgba|bgra|argb|abgr|gbrap|ya8|ya16|f16|f32|bayer|pal8)", name):
        return False
    subsampling = subsampling_of(name) if layout.family == "yuv" else (1, 1)
    return (family_of(name) == layout.family and bit_depth_of(name) == layout.depth
            and subsampling == (layout.sub_x, layout.sub_y) and not name.startswith("yuvj"))


def _holds_size(pix_fmt: str, width: int, height: int) -> bool:
    sub_x, sub_y = subsampling_of(pix_fmt)
    return width % sub_x == 0 and height % sub_y == 0


def choose_pix_fmt(codec: str, layout: PlaneLayout, width: int, height: int) -> str:
    """The output pixel format when none is given.

    The frames' own layout if the encoder takes it and its chroma subsampling fits the frame
    size (then nothing is converted); otherwise the 4:4:4 format of the same bit depth, then
    yuv444p, then the encoder's first format without chroma subsampling, then its first format.
    So 175x143 frames become yuv444p with libx264: yuv420p cannot hold odd sizes and frames are
    never rescaled.
    """
    supported = encoder_pix_fmts(codec)
    depth = layout.depth
    # the same samples in another packing first (gbrp -> bgr0 for ffv1): still lossless
    options = [layout.pix_fmt] + [fmt for fmt in supported if is_repacking(layout, fmt)]
    if layout.family == "yuv" or not any(family_of(fmt) == layout.family for fmt in supported):
        options += ["yuv444p" if depth == 8 else f"yuv444p{depth}le", "yuv444p"]
    options += [fmt for fmt in supported if subsampling_of(fmt) == (1, 1) and bit_depth_of(fmt) == depth]
    options += [fmt for fmt in supported if subsampling_of(fmt) == (1, 1)]
    options += list(supported)
    for pix_fmt in options:
        if (not supported or pix_fmt in supported) and _holds_size(pix_fmt, width, height):
            return pix_fmt
    raise VideoError(f"encoder {codec} has no pixel format that holds {width}x{height} frames")
