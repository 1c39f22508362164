"""The one base of every error a user can fix (a path, an option, a file to fetch).

The CLI turns an `EdvrError` into a one-line message and lets anything else -- a bug -- keep its
traceback. It lives in `models/`, the bottom layer, so the network code's own errors (checkpoints,
downloads, model names) share it without importing the CLI.
"""

from __future__ import annotations


class EdvrError(Exception):
    """An error whose message says what to change; shown as one line, without a traceback."""


__all__ = ["EdvrError"]
