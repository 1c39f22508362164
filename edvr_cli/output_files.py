"""Where `edvr enhance` writes: checks before any work, an exclusive claim on the output, a
hidden staging file or folder beside it, and the rename that puts it in place once complete.

What an output path may name is `output_kinds`' to say (a folder of PNG frames, or a video in a
container ffmpeg writes). An existing output is replaced only when asked, a folder only if it
holds nothing but images, and the input never.

One run at a time per output: `claim_output` takes an exclusive lock (`flock`) on a hidden
`.NAME.edvr-lock` file beside the output and writes its pid there. A second run aimed at the
same output refuses in one line naming that pid; the lock dies with its process, so after a
SIGKILL the next run takes it over and removes what the dead run left (its staging file or
folder). The staging name carries the run's pid (`.clip.edvr-4242.partial.mp4`,
`.frames.edvr-4242.partial`), and `OutputClaim.commit` renames it onto the output only while the
claim is still held and the staging entry is the one this run created.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import tempfile
from pathlib import Path

from edvr_cli.output_kinds import OutputPathError, check_output_name, is_folder_output

try:
    import fcntl
except ImportError:  # Windows: no flock; claims then rely on O_EXCL and the owner's pid
    fcntl = None

_LOCK_SUFFIX = ".edvr-lock"


def temporary_output_path(final_path: str | os.PathLike, tag: str | None = None) -> Path:
    """A hidden file beside `final_path`, same suffix (ffmpeg picks the container from it).

    `out/clip.mp4` -> `out/.clip.partial.mp4`, or with `tag="edvr-42"` `out/.clip.edvr-42.partial.mp4`.
    """
    final_path = Path(final_path)
    middle = f".{tag}" if tag else ""
    return final_path.with_name(f".{final_path.stem}{middle}.partial{final_path.suffix}")


class OutputExistsError(OutputPathError):
    """The output is already there and --overwrite was not given."""


def output_exists(target: str | os.PathLike) -> bool:
    """Whether something (a file, a folder, even a dangling link) is at the output's path."""
    return os.path.lexists(target)


class OutputBusyError(OutputPathError):
    """Another live run is writing the same output."""


def _holds_only_images(folder: Path) -> bool:
    from edvr_cli.image_io import IMAGE_SUFFIXES

    return all(entry.is_file() and entry.suffix.lower() in IMAGE_SUFFIXES for entry in folder.iterdir())


def check_paths(input_path: str | os.PathLike, output_path: str | os.PathLike, overwrite: bool = False) -> None:
    """Refuse what cannot or must not be done before any work starts.

    Checks: the input exists; the output's name can be a video file or a PNG folder (a trailing
    slash always means a folder); output is not the input; an existing output is replaced only
    with `overwrite` (and a folder only when it holds nothing but images); the output's folder
    exists or can be created, and a file can be written in it.
    """
    source, target = Path(input_path), Path(output_path)
    folder_output = is_folder_output(output_path)
    if not source.exists():
        raise OutputPathError(f"{source}: no such file or folder")
    check_output_name(output_path, folder_output)
    if target.resolve() == source.resolve():
        raise OutputPathError(f"{target}: the output would replace the input; choose another name")
    _check_existing(target, folder_output, overwrite)
    parent = target.resolve().parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=parent):
            pass
    except OSError as error:
        raise OutputPathError(f"{parent}: cannot write the output there ({_reason(error)})") from None


def _check_existing(target: Path, folder_output: bool, overwrite: bool) -> None:
    if not output_exists(target):
        return
    if not overwrite:
        raise OutputExistsError(f"{target}: already exists; pass --overwrite to replace it")
    if folder_output and not target.is_dir():
        raise OutputPathError(f"{target}: exists and is a file, but a path ending in / or without extension "
                              f"means a folder of PNG frames; remove it or name a video file")
    if not folder_output and target.is_dir():
        raise OutputPathError(f"{target}: exists and is a folder; remove it or choose another name")
    if folder_output and not _holds_only_images(target):
        raise OutputPathError(f"{target}: holds files other than images; --overwrite replaces only "
                              f"frame folders, remove it yourself")


def _reason(error: OSError) -> str:
    if error.errno == errno.ENOSPC:
        return "no space left on device"
    return error.strerror or str(error)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    return True


class OutputClaim:
    """This run's exclusive right to write `target` (from `claim_output`); release() when done.

    Attributes:
        target: the output path.
        folder: whether the output is a folder of PNG frames.
        lock_path: the hidden lock file beside the output.
        tag: `edvr-<pid>`, part of this run's staging name.
    """

    def __init__(self, target: Path, folder: bool, lock_path: Path, fd: int):
        self.target = target
        self.folder = folder
        self.lock_path = lock_path
        self.tag = f"edvr-{os.getpid()}"
        self._fd: int | None = fd
        self._staging: Path | None = None
        self._staging_id: tuple[int, int] | None = None

    # ------------------------------------------------------------------ staging
    def staging_path(self) -> Path:
        """Create this run's hidden staging entry beside the output and return its path.

        A folder for PNG frames; for a video an empty file with the output's suffix that ffmpeg
        then fills (it keeps the inode, which is how `commit` knows the file is still ours).
        """
        parent = self.target.parent
        if self.folder:
            path = parent / f".{self.target.name}.{self.tag}.partial"
            os.mkdir(path)
        else:
            path = temporary_output_path(self.target, self.tag)
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        info = os.lstat(path)
        self._staging, self._staging_id = path, (info.st_dev, info.st_ino)
        return path

    def remove_staging(self) -> None:
        if self._staging is not None:
            remove_output(self._staging)
            self._staging = self._staging_id = None

    def _stale_entries(self) -> list[Path]:
        """Hidden entries beside the output left by runs that died (or by older versions)."""
        parent = self.target.parent
        name, stem, suffix = self.target.name, self.target.stem, self.target.suffix
        if self.folder:
            pattern = re.compile(rf"^\.{re.escape(name)}\.(edvr-\d+\.partial|edvr-\d+\.old|"
                                 rf"[a-z0-9_]{{8}}\.partial|[a-z0-9_]{{8}}\.old)$")
        else:
            pattern = re.compile(rf"^\.{re.escape(stem)}\.(edvr-\d+\.)?partial{re.escape(suffix)}$")
        try:
            names = os.listdir(parent)
        except OSError:
            return []
        return [parent / entry for entry in names if pattern.match(entry)]

    def remove_stale(self) -> list[Path]:
        """Remove what dead runs left for this output; returns what was removed.

        Only called while this claim is held, so no live run owns any of it. An `.old` folder
        whose output is missing (a run killed in the middle of replacing a folder) is the user's
        previous output: it is put back rather than deleted.
        """
        removed = []
        for path in self._stale_entries():
            if path.name.endswith(".old") and not (self.target.exists() or self.target.is_symlink()):
                inner = path / self.target.name
                try:
                    os.replace(inner if inner.is_dir() else path, self.target)
                except OSError:
                    pass
                else:
                    if path.exists():
                        shutil.rmtree(path, ignore_errors=True)
                    continue
            remove_output(path)
            removed.append(path)
        return removed

    # ------------------------------------------------------------------ commit
    def still_held(self) -> bool:
        """Whether the lock file at `lock_path` is still the one this run holds."""
        if self._fd is None:
            return False
        try:
            return _same_file(os.stat(self.lock_path), os.fstat(self._fd))
        except OSError:
            return False

    def commit(self, staging: Path, overwrite: bool) -> None:
        """Move the finished staging entry onto the output.

        Only while the claim is held and `staging` is the entry `staging_path` created; an output
        that appeared meanwhile is replaced only with `overwrite`. Raises OutputPathError otherwise.
        """
        target = self.target
        if not self.still_held():
            raise OutputPathError(f"{target}: this run's claim ({self.lock_path}) was removed while it was "
                                  f"writing; nothing was written")
        try:
            info = os.lstat(staging)
        except FileNotFoundError:
            raise OutputPathError(f"{target}: the finished output vanished before it could be put in "
                                  f"place; nothing was written") from None
        if staging != self._staging or (info.st_dev, info.st_ino) != self._staging_id:
            raise OutputPathError(f"{target}: the staged output was replaced by something else; nothing "
                                  f"was written")
        _check_existing(target, self.folder, overwrite)
        commit_output(staging, target, old_name=f".{target.name}.{self.tag}.old")
        self._staging = self._staging_id = None

    # ------------------------------------------------------------------ release
    def release(self) -> None:
        """Remove the staging entry (if not committed), then the lock file, then the lock."""
        self.remove_staging()
        if self._fd is None:
            return
        try:
            if self.still_held():
                os.unlink(self.lock_path)
        except OSError:
            pass
        finally:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "OutputClaim":
        return self

    def __exit__(self, *exc_info) -> None:
        self.release()


def _same_file(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _read_owner(fd: int) -> int | None:
    """The pid recorded in a lock file (None when not written yet)."""
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        text = os.read(fd, 64).decode("ascii", errors="replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _busy(target: Path, pid: int | None) -> OutputBusyError:
    who = f"another edvr run (pid {pid})" if pid else "another edvr run"
    return OutputBusyError(f"{target}: {who} is writing this output; wait for it to finish or choose "
                           f"another name")


def claim_output(output_path: str | os.PathLike, overwrite: bool = False) -> OutputClaim:
    """Take the exclusive claim on `output_path` and clean up after dead runs.

    Raises:
        OutputBusyError: a live run holds the claim (the message names its pid).
        OutputPathError: the output appeared since `check_paths` (and no `overwrite`), or the lock
            file cannot be written.
    """
    folder = is_folder_output(output_path)
    target = Path(output_path)
    lock_path = target.parent / f".{target.name}{_LOCK_SUFFIX}"
    for _ in range(20):  # retried only when a finishing run unlinked the lock file under us
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
        except OSError as error:
            raise OutputPathError(f"{target}: cannot claim the output ({lock_path}: {_reason(error)})") from None
        try:
            if not _lock(fd, lock_path):
                raise _busy(target, _read_owner(fd))
            try:
                if not _same_file(os.stat(lock_path), os.fstat(fd)):
                    os.close(fd)
                    continue
            except FileNotFoundError:
                os.close(fd)
                continue
            os.ftruncate(fd, 0)
            os.lseek(fd, 0, os.SEEK_SET)
            os.write(fd, f"{os.getpid()}\n".encode())
        except OSError as error:
            os.close(fd)
            raise OutputPathError(f"{target}: cannot claim the output ({lock_path}: {_reason(error)})") from None
        except BaseException:
            os.close(fd)
            raise
        claim = OutputClaim(target, folder, lock_path, fd)
        try:
            claim.remove_stale()
            _check_existing(target, folder, overwrite)  # a run that finished since check_paths
        except BaseException:
            claim.release()
            raise
        return claim
    raise OutputPathError(f"{target}: cannot claim the output: {lock_path} keeps changing")


def _lock(fd: int, lock_path: Path) -> bool:
    """Exclusive non-blocking lock on `fd`; False when a live process holds it."""
    if fcntl is not None:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True
    owner = _read_owner(fd)  # no flock: the recorded pid decides
    return owner is None or owner == os.getpid() or not _pid_alive(owner)


def remove_output(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def commit_output(staging: Path, target: Path, old_name: str | None = None) -> None:
    """Move the finished output into place (an existing target was allowed by check_paths).

    A folder replaces an existing folder by moving the old one aside (`old_name`, hidden), moving
    the new one in and deleting the old one; if that is interrupted, the old one is put back.
    """
    if staging.is_dir() and target.is_dir():
        # os.replace cannot replace a non-empty folder: swap it aside, then delete it.
        old = target.parent / (old_name or f".{target.name}.edvr-{os.getpid()}.old")
        os.replace(target, old)
        try:
            os.replace(staging, target)
        except BaseException:
            if not target.exists():
                os.replace(old, target)
            raise
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(staging, target)
