"""The hidden folder beside an output where finished segments wait for the join, and resume.

`.NAME.edvr-work/` holds `manifest.json` (what the segments were made from: the input's
fingerprint, the model file's hash, every option that changes pixels or encoding) and one file
per finished segment, `seg-00003.mkv`, with its record beside it (`seg-00003.record`: the exact
time of its first frame, what the join places it by, and what `segment_check` measured). A
segment is written under a temporary name and renamed when complete (fsynced first); after
Ctrl-C, SIGKILL or a power loss the next identical run reuses it if it still measures as
recorded, and restores it again otherwise (as it does when the record cannot be read). A run
whose manifest differs or cannot be read starts over. The join's own files (`join.ffconcat`)
live here too. The folder is removed once the output is in place.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from fractions import Fraction
from pathlib import Path

from edvr_cli.enhance.segment_check import file_hash, measure, reuse_problem
from edvr_cli.enhance.errors import EnhanceError
from models.errors import EdvrError

MANIFEST_VERSION = 2  # 1: no segment records
_MANIFEST = "manifest.json"
_WORK_SUFFIX = ".edvr-work"
_COMMITTED = re.compile(r"seg-\d{5}(?!\.record$)(\.\w+)?")  # seg-00003.mkv or seg-00003/, not .partial


class WorkFolderError(EdvrError, OSError):
    """The work folder cannot be used (not writable, or not ours)."""


def work_folder_path(output: str | os.PathLike) -> Path:
    """`out/clip.mp4` -> `out/.clip.mp4.edvr-work` (for a frames folder `out/frames/`: `out/.frames.edvr-work`)."""
    target = Path(os.path.abspath(os.fspath(output).rstrip("/\\") or "."))
    return target.with_name(f".{target.name}{_WORK_SUFFIX}")


def kept_segments(output: str | os.PathLike) -> int:
    """How many finished segments an interrupted run left for the next one: in the output's own
    work folder, and for an output folder of many inputs in the work folders inside it."""
    folders = [work_folder_path(output)]
    if os.path.isdir(output):
        folders += [entry.path for entry in os.scandir(output) if entry.name.endswith(_WORK_SUFFIX)]
    count = 0
    for folder in folders:
        try:
            count += sum(1 for name in os.listdir(folder) if _COMMITTED.fullmatch(name))
        except OSError:
            pass  # no work folder: nothing kept
    return count


def file_fingerprint(path: str | os.PathLike) -> dict:
    """What identifies an input file's contents cheaply: path, size, modification time."""
    stat = os.stat(path)
    return {"path": os.path.abspath(path), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def folder_fingerprint(path: str | os.PathLike) -> dict:
    """An image folder's fingerprint: each image's name, size and modification time."""
    entries = sorted(os.scandir(path), key=lambda entry: entry.name)
    return {"path": os.path.abspath(path),
            "files": [[entry.name, entry.stat().st_size, entry.stat().st_mtime_ns]
                      for entry in entries if entry.is_file()]}


class WorkFolder:
    """Finished segments of one output, keyed by segment index.

    Args:
        path: the folder (created when missing).
        manifest: JSON-able description of the job; a folder made for another one is emptied.
        suffix: the segments' file suffix (the output's container), "" for folders of frames.
    """

    def __init__(self, path: Path, manifest: dict, suffix: str):
        self.path = Path(path)
        self.suffix = suffix
        self.manifest = {"version": MANIFEST_VERSION, **manifest}
        self.started_over = False  # a folder of another job was emptied
        self.redone: list[tuple[int, str]] = []  # (index, why) of finished segments that failed their check
        try:
            self._open()
        except OSError as error:
            raise WorkFolderError(f"{self.path}: cannot use the work folder: {error.strerror or error}") from None

    def _open(self) -> None:
        manifest_file = self.path / _MANIFEST
        if self.path.is_dir():
            try:
                previous = json.loads(manifest_file.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                previous = None
            if previous == self.manifest:
                self._remove_partials()
                return
            self.started_over = any(self.path.iterdir())
            shutil.rmtree(self.path)
        self.path.mkdir(parents=True)
        _write_synced(manifest_file, json.dumps(self.manifest, indent=1, sort_keys=True).encode("utf-8"))

    def _remove_partials(self) -> None:
        """What a killed run was writing: never reused."""
        for entry in self.path.iterdir():
            if ".partial" in entry.name:
                shutil.rmtree(entry) if entry.is_dir() else entry.unlink()

    def segment_path(self, index: int) -> Path:
        return self.path / f"seg-{index:05d}{self.suffix}"

    def partial_path(self, index: int, tag: str = "") -> Path:
        """Where segment `index` is written before it is complete (`tag` keeps writers apart)."""
        return self.path / f"seg-{index:05d}.partial{tag}{self.suffix}"

    @property
    def join_script(self) -> Path:
        """The join's concat list: a short fixed name here, whatever the output's name."""
        return self.path / "join.ffconcat"

    def is_done(self, index: int, num_frames: int) -> bool:
        """Whether segment `index` is finished and still holds its `num_frames` frames as
        committed; a damaged or unverifiable one is removed (its reason kept in `redone`)."""
        path = self.segment_path(index)
        if not path.exists():
            return False
        problem = reuse_problem(path, self.suffix == "", self._record(index), num_frames)
        if problem is None:
            return True
        self.redone.append((index, problem))
        self.discard(index)
        return False

    def discard(self, index: int) -> None:
        """Remove segment `index`, finished or partial, and its record."""
        for path in [self.segment_path(index), self._record_path(index), *self.path.glob(f"seg-{index:05d}.partial*")]:
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)

    def start_of(self, index: int) -> Fraction:
        """The time of a finished segment's first frame, seconds from the clip's first frame."""
        record = self._record(index)
        if record is None:  # checked by is_done: only another program can have changed it since
            raise WorkFolderError(f"{self.path}: the record of finished segment {index + 1} changed during the "
                                  f"run; run the same command again to restore that segment anew")
        return Fraction(record["start"])

    def _record_path(self, index: int) -> Path:
        return self.path / f"seg-{index:05d}.record"

    def _record(self, index: int) -> dict | None:
        """A segment's record, None when missing or unreadable (a video's must hold its start)."""
        try:
            record = json.loads(self._record_path(index).read_text(encoding="utf-8"))
            if self.suffix:
                Fraction(record["start"])
        except (OSError, ValueError, TypeError, KeyError, ZeroDivisionError):
            return None
        return record if isinstance(record, dict) else None

    def commit(self, index: int, partial: Path, num_frames: int, start: Fraction | None = None) -> Path:
        """Measure a complete segment of `num_frames` frames, make it and its record (with its
        first frame's time) durable, then give it its final name (atomically): only then does
        it count as done."""
        final = self.segment_path(index)
        for file in ([partial] if partial.is_file() else sorted(partial.iterdir())):
            _fsync(file)
        record = measure(partial, self.suffix == "")
        if record["frames"] != num_frames:  # the encoder lost frames: never join such a segment
            raise EnhanceError(f"the encoder wrote {record['frames']} of the {num_frames} frames of segment "
                               f"{index + 1}")
        record["start"] = None if start is None else str(Fraction(start))
        _write_synced(self._record_path(index), json.dumps(record, sort_keys=True).encode("utf-8"))
        os.replace(partial, final)
        _fsync(self.path)
        return final

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def _fsync(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems cannot fsync a folder
    finally:
        os.close(fd)


def _write_synced(path: Path, data: bytes) -> None:
    partial = path.with_name(path.name + ".partial")
    with open(partial, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(partial, path)
