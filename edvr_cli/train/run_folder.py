"""A run folder (`--out`) holds one run: a new run never writes into another one's files.

Training into a folder that already holds a run would replace its `last.pth` and append to its
`log.jsonl`. So a new run there needs `--overwrite` (its files are removed when the new run
writes its first record, not before: a run that fails to start leaves them), and `--resume`
continues only the run whose checkpoint it names.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from models.errors import EdvrError

RUN_FILES = ("last.pth", "best.pth", "log.jsonl")
RUN_FOLDERS = ("snapshots", "tensorboard")


class RunFolderError(EdvrError, ValueError):
    """An --out that must not be written; the message is one line."""


def check_run_folder(out: str | os.PathLike, resume: str | None, overwrite: bool) -> None:
    """Refuse a run folder that is a file, or that holds another run (unless `overwrite`)."""
    out = Path(out)
    if resume and overwrite:
        raise RunFolderError("--resume continues a run, --overwrite starts a new one: pass only one")
    if os.path.lexists(out) and not out.is_dir():
        raise RunFolderError(f"{out}: is a file; --out names the run's folder")
    held = [name for name in RUN_FILES if (out / name).exists()]
    if not held or overwrite:
        return
    if resume and (out / "last.pth").exists() and os.path.samefile(resume, out / "last.pth"):
        return  # continuing the run that lives there
    advice = f"continue it with --resume {out / 'last.pth'}, or " if "last.pth" in held else ""
    raise RunFolderError(f"{out}: holds a training run already ({', '.join(held)}); {advice}pass --overwrite to "
                         f"start a new one there, or choose another --out")


def clear_run(out: str | os.PathLike) -> None:
    """Remove an earlier run's files (only those) from `out`."""
    out = Path(out)
    for name in RUN_FILES:
        (out / name).unlink(missing_ok=True)
    for name in RUN_FOLDERS:
        shutil.rmtree(out / name, ignore_errors=True)
