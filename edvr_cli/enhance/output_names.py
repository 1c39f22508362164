"""Errors and notes name the user's output, never the hidden staging file or work folder the
run writes first."""

from __future__ import annotations

import os
import re
from pathlib import Path

from edvr_cli.enhance.planes import NonFiniteOutputError
from edvr_cli.enhance.errors import EnhanceError
from edvr_cli.enhance.workfolder import work_folder_path
from edvr_cli.output_files import temporary_output_path
from edvr_cli.video import VideoError


def hidden_paths(output_path, tag: str) -> re.Pattern:
    """This run's hidden staging entry and the work folder's segment files, as the writers and
    ffmpeg name them (as given or absolute, `file:` or not): lines for the user name the output."""
    target = Path(os.fspath(output_path).rstrip("/\\") or ".")
    staging = [target.parent / f".{target.name}.{tag}.partial", temporary_output_path(target, tag)]
    names = {os.fspath(path) for entry in staging for path in (entry, Path(os.path.abspath(entry)))}
    work = re.escape(os.fspath(work_folder_path(output_path))) + r"/seg-\d+(\.partial)?[^\s:]*"
    alternatives = "|".join([work, *(re.escape(name) for name in sorted(names, key=len, reverse=True))])
    return re.compile(rf"(?:file:)?(?:{alternatives})")


def explain_failure(job, error: BaseException) -> BaseException:
    """The error as the user should read it (for a `job.Job`): broken weights named, the output's own name."""
    if isinstance(error, NonFiniteOutputError):
        hint = " or overflow in --precision fp16 (try bf16 or fp32)" if job.settings.precision == "fp16" else ""
        return EnhanceError(f"{job.loaded.path}: {error}: its weights are broken{hint}; nothing was written")
    if isinstance(error, (VideoError, OSError)) and job.staging is not None:
        return naming_output(error, job.staging, job.target)
    if isinstance(error, VideoError) and job.work is not None:  # a segment being written
        hidden = re.compile(r"(?:file:)?" + re.escape(os.fspath(job.work.path)) + r"/seg-\d+\.partial[^\s:]*")
        return VideoError(hidden.sub(os.fspath(job.target), str(error)), error.stderr)
    return error


def naming_output(error: BaseException, staging: Path, target: Path) -> BaseException:
    """`error` with the hidden staging path replaced by the user's output path."""
    def renamed(text: str) -> str:
        for name in ("file:" + os.path.abspath(staging), os.path.abspath(staging), os.fspath(staging)):
            text = text.replace(name, os.fspath(target))
        return text

    if isinstance(error, VideoError):
        return VideoError(renamed(str(error)), renamed(error.stderr))
    if isinstance(error, OSError) and error.filename is not None:
        return type(error)(error.errno, error.strerror, renamed(os.fspath(error.filename)))
    return error


__all__ = ["hidden_paths", "explain_failure", "naming_output"]
