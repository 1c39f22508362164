"""The one base of every error a user can fix (a path, an option, a file to fetch).

The CLI turns an `EdvrError` into a one-line message and lets anything else -- a bug -- keep its
traceback. It lives in `models/`, the bottom layer, so the network code's own errors (checkpoints,
downloads, model names) share it without importing the CLI.
"""

from __future__ import annotations


class EdvrError(Exception):
    """An error whose message says what to change; shown as one line, without a traceback."""


class OptionError(EdvrError):
    """A value given for one option (e.g. "--crf") that cannot work; the CLI shows it as that
    option's usage error."""

    def __init__(self, option: str, message: str):
        super().__init__(message)
        self.option = option


def one_line(error: BaseException) -> str:
    """An OSError as "path: reason"; anything else as the first line of its message."""
    if isinstance(error, OSError) and error.strerror:
        where = f"{error.filename}: " if error.filename else ""
        return f"{where}{error.strerror}"
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


__all__ = ["EdvrError", "OptionError", "one_line"]
