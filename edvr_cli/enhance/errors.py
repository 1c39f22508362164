"""The errors `enhance` raises for what a user can fix; each message is one line."""

from __future__ import annotations

from models.errors import EdvrError, OptionError


class EnhanceError(EdvrError, ValueError):
    """Bad input, output or settings for `enhance`; the message is one line."""


class SettingError(EnhanceError, OptionError):
    """A value of one option (e.g. "--strength") that `EnhanceSettings` refuses; the CLI shows it
    as that option's usage error."""


__all__ = ["EnhanceError", "SettingError"]
