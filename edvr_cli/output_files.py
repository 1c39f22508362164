"""Where `edvr enhance` writes: checks before any work, a hidden staging file or folder beside
the output, and the rename that puts it in place only once it is complete.

A path without an extension (or ending in a slash) is a folder of PNG frames. An existing output
is replaced only when asked, a folder only if it holds nothing but images, and the input never.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path



def temporary_output_path(final_path: str | os.PathLike) -> Path:
    """A hidden file beside `final_path`, same suffix (ffmpeg picks the container from it).

    `out/clip.mp4` -> `out/.clip.partial.mp4`. Write there, then `os.replace` it onto the final
    path on success; delete it on error or interruption.
    """
    final_path = Path(final_path)
    return final_path.with_name(f".{final_path.stem}.partial{final_path.suffix}")


class OutputPathError(ValueError):
    """An input or output path that cannot or must not be used; the message is one line."""


def is_folder_output(path: str | os.PathLike) -> bool:
    """An output path without a file extension (or ending in a slash) means a folder of PNGs."""
    text = os.fspath(path)
    return text.endswith(("/", os.sep)) or Path(text).suffix == ""


def _holds_only_images(folder: Path) -> bool:
    from edvr_cli.image_io import IMAGE_SUFFIXES

    return all(entry.is_file() and entry.suffix.lower() in IMAGE_SUFFIXES for entry in folder.iterdir())


def check_paths(input_path: str | os.PathLike, output_path: str | os.PathLike, overwrite: bool = False) -> None:
    """Refuse what cannot or must not be done before any work starts.

    Checks: the input exists; output is not the input; an existing output is replaced only with
    `overwrite` (and a folder only when it holds nothing but images); the output's folder exists
    or can be created, and a file can be written in it.
    """
    source, target = Path(input_path), Path(output_path)
    if not source.exists():
        raise OutputPathError(f"{source}: no such file or folder")
    if target.resolve() == source.resolve():
        raise OutputPathError(f"{target}: the output would replace the input; choose another name")
    folder_output = is_folder_output(output_path)
    if target.exists() or target.is_symlink():
        if not overwrite:
            raise OutputPathError(f"{target}: already exists; pass --overwrite to replace it")
        if folder_output and not target.is_dir():
            raise OutputPathError(f"{target}: exists and is a file, but a path without extension means a "
                                  f"folder of PNG frames; remove it or name a video file")
        if not folder_output and target.is_dir():
            raise OutputPathError(f"{target}: exists and is a folder; remove it or choose another name")
        if folder_output and not _holds_only_images(target):
            raise OutputPathError(f"{target}: holds files other than images; --overwrite replaces only "
                                  f"frame folders, remove it yourself")
    parent = target.resolve().parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=parent):
            pass
    except OSError as error:
        raise OutputPathError(f"{parent}: cannot write the output there ({error.strerror or error})") from None


def staging_path(target: Path, folder_output: bool) -> Path:
    if folder_output:
        return Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent))
    return temporary_output_path(target)


def remove_output(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def commit_output(staging: Path, target: Path) -> None:
    """Move the finished output into place (an existing target was allowed by check_paths)."""
    if staging.is_dir() and target.is_dir():
        # os.replace cannot replace a non-empty folder: swap it aside, then delete it.
        old = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=target.parent))
        os.replace(target, old / target.name)
        os.replace(staging, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(staging, target)
