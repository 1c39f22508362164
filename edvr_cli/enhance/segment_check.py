"""What a finished segment holds: measured when it is committed, checked before it is reused.

A segment kept in the work folder can be damaged after it was written (a power cut before the
disk had it, a full disk, another program): joined as is, the output would silently hold fewer or
wrong frames. So the commit records the segment's frame count, its first and last frames' times
(a packet scan, no decoding) and a SHA-256 of its bytes, and a rerun reuses a segment only while
it still measures the same.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from edvr_cli.video.packets import scan_packets


def measure(path: Path, folder: bool) -> dict:
    """The segment file's (or PNG folder's) frame count, first and last frame times and checksum."""
    if folder:
        return _measure_folder(path)
    scan = scan_packets(os.fspath(path), 0, max_scan_seconds=float("inf"))  # a segment holds one stream
    times = sorted(scan.pts)
    return {"frames": len(times) if scan.complete else None,
            "first": str(times[0] * scan.time_base) if times else None,
            "last": str(times[-1] * scan.time_base) if times else None,
            "sha256": file_hash(path)}


def reuse_problem(path: Path, folder: bool, record: dict | None, num_frames: int) -> str | None:
    """Why the committed segment at `path` must not be reused (None: it is as committed, with
    `num_frames` frames)."""
    if record is None:
        return "its record of what it held is missing or unreadable"
    try:
        now = measure(path, folder)
    except OSError as error:
        return f"it cannot be read ({error.strerror or error})"
    if now["frames"] is None:
        return "it is no longer a readable video"
    if now["frames"] != num_frames:
        return f"it holds {now['frames']} of its {num_frames} frames"
    if any(now[key] != record.get(key) for key in now if key != "sha256"):
        return "its frames' times or names changed"
    if now["sha256"] != record.get("sha256"):
        return "its bytes changed since it was written"
    return None


def _measure_folder(path: Path) -> dict:
    names = sorted(entry.name for entry in os.scandir(path) if entry.is_file())
    digest = hashlib.sha256()
    for name in names:
        digest.update(name.encode("utf-8") + b"\0")
        digest.update(file_hash(path / name).encode("ascii"))
    return {"frames": len(names), "first": names[0] if names else None, "last": names[-1] if names else None,
            "sha256": digest.hexdigest()}


def file_hash(path: str | os.PathLike) -> str:
    """SHA-256 of a file, read in 1 MiB pieces."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()
