"""The files `edvr eval` writes (--json, --csv, --plot): checked before any scoring, written whole.

The rule `edvr enhance` follows: an existing file is replaced only with --overwrite, and never
when it is one of the inputs (a --gt/--pred/--lq video, or a frame in their folders). Each report
is written to a hidden file beside it and renamed into place, so a failed write leaves the
previous file as it was.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable, Iterable

from models.errors import EdvrError


class ReportPathError(EdvrError, ValueError):
    """A report path that cannot or must not be written; the message is one line."""


def check_report_paths(reports: dict[str, Path], inputs: Iterable[Path], overwrite: bool) -> None:
    """Refuse, before the scoring, any report (option name -> path) that would replace an input,
    another report, or an existing file without `overwrite`, or whose folder cannot take it."""
    inputs = [Path(os.path.abspath(path)) for path in inputs]
    seen: dict[Path, str] = {}
    for option, path in reports.items():
        where = Path(os.path.abspath(path))
        if where in seen:
            raise ReportPathError(f"{path}: named by both {seen[where]} and {option}; give each its own file")
        seen[where] = option
        if _is_input(where, inputs):
            raise ReportPathError(f"{path}: is one of the inputs; {option} would replace it, choose another name")
        if os.path.lexists(where) and not overwrite:
            raise ReportPathError(f"{path}: already exists; pass --overwrite to replace it")
        if where.is_dir():
            raise ReportPathError(f"{path}: is a folder; {option} needs a file name")
        _check_writable_folder(path, where.parent)


def write_whole(path: Path, write: Callable[[Path], None]) -> None:
    """`write(temporary)` beside `path` (same suffix), then rename it onto `path`."""
    path = Path(path)
    temporary = path.with_name(f".{path.stem}.edvr-{os.getpid()}.partial{path.suffix}")
    try:
        write(temporary)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def _is_input(where: Path, inputs: list[Path]) -> bool:
    """`where` is an input file, or an existing file inside an input folder (a frame)."""
    for source in inputs:
        if where == source or (source.is_dir() and source in where.parents and os.path.lexists(where)):
            return True
        if os.path.exists(where) and os.path.exists(source) and os.path.samefile(where, source):
            return True  # the same file under another name (a link)
    return False


def _check_writable_folder(path: Path, folder: Path) -> None:
    if not folder.is_dir():
        raise ReportPathError(f"{path}: its folder {folder} does not exist")
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        raise ReportPathError(f"{path}: cannot write in {folder} ({error.strerror or error})") from None
