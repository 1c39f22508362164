"""`edvr enhance`'s option types: frame rates and times."""

from __future__ import annotations

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
