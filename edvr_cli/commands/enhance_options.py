"""`edvr enhance`'s option types and the checks Click cannot make alone (frame rates, --crf)."""

from __future__ import annotations

import re
from fractions import Fraction

import click

MAX_FPS = 1000


class FrameRate(click.ParamType):
    """A frame rate as an integer, decimal or fraction: 25, 29.97, 24000/1001 (above 0, at most 1000)."""

    name = "FPS"

    def convert(self, value, param, ctx):
        if isinstance(value, Fraction):
            return value
        try:
            rate = Fraction(str(value).strip())
        except (ValueError, ZeroDivisionError):
            self.fail(f"{value!r} is not a frame rate (e.g. 25, 29.97, 24000/1001)", param, ctx)
        if not 0 < rate <= MAX_FPS:
            self.fail(f"the frame rate must be above 0 and at most {MAX_FPS}, got {value}", param, ctx)
        if rate.denominator > 1_000_000:
            self.fail(f"{value} has too many decimals for a frame rate; write it as a fraction, "
                      f"e.g. 30000/1001", param, ctx)
        return rate


class TimeValue(click.ParamType):
    """A time in ffmpeg's syntax (90, 90.5, 1:30, 00:01:30.5, 1500ms), as exact seconds."""

    name = "TIME"

    def convert(self, value, param, ctx):
        from edvr_cli.enhance.frame_range import parse_time
        from models.errors import EdvrError

        if isinstance(value, Fraction):
            return value
        try:
            return parse_time(value, "")
        except EdvrError as error:
            self.fail(str(error).strip(), param, ctx)


# The quality scale of encoders whose ffmpeg option range says nothing (x264/x265: "-1 to FLT_MAX").
CRF_RANGES = {"libx264": (0, 51), "libx264rgb": (0, 51), "libx265": (0, 51)}
_CRF_OPTION = re.compile(r"^\s+-crf\s+<(\w+)>.*\(from (\S+) to (\S+)\)", re.MULTILINE)


def crf_range(codec: str) -> tuple[str, float, float | None] | None:
    """(value type "int"/"float", lowest, highest or None) of the encoder's -crf; None if it has none."""
    from edvr_cli.video.encoders import encoder_help

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
    """Raise click.BadParameter unless `crf` is within what `codec` takes."""
    scale = crf_range(codec)
    if scale is None:
        raise click.BadParameter(f"{codec} has no constant rate factor; omit --crf (a quality option of its "
                                 f"own goes in --encoder-arg)", param_hint="'--crf'")
    kind, low, high = scale
    if kind == "int" and crf != int(crf):
        raise click.BadParameter(f"{codec} takes a whole number, got {crf:g}", param_hint="'--crf'")
    if crf < low or (high is not None and crf > high):
        where = f"{low:g} to {high:g}" if high is not None else f"{low:g} or more"
        raise click.BadParameter(f"{crf:g} is outside {codec}'s range, {where} (lower = better quality, "
                                 f"bigger file)", param_hint="'--crf'")
