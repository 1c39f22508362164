"""How the commands turn an error into the one line the user sees."""

from __future__ import annotations


def one_line(error: BaseException) -> str:
    """An OSError as "path: reason"; anything else as the first line of its message."""
    if isinstance(error, OSError) and error.strerror:
        where = f"{error.filename}: " if error.filename else ""
        return f"{where}{error.strerror}"
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__
