"""The last check before an output is put in place: it holds exactly the frames restored.

A join reads finished segments back from disk; whatever went wrong on the way (a segment damaged
after its check, a demuxer that dropped frames) must end as an error, never as an output that is
shorter than the summary says.
"""

from __future__ import annotations

import os
from pathlib import Path

from edvr_cli.enhance.errors import EnhanceError
from edvr_cli.video.packets import scan_packets


def check_output_frames(staging: Path, folder: bool, expected: int, target: Path) -> None:
    """EnhanceError naming `target` unless `staging` (a video, or a PNG folder) holds `expected` frames."""
    if folder:
        names = sorted(entry.name for entry in os.scandir(staging) if entry.is_file())
        wanted = [f"{number:06d}.png" for number in range(1, expected + 1)]
        found = len(names) if names == wanted else len(set(names) & set(wanted))
    else:
        scan = scan_packets(os.fspath(staging), 0, max_scan_seconds=float("inf"))  # the video is mapped first
        found = len(scan.pts) if scan.complete else None
    if found != expected:
        held = "cannot be read back" if found is None else f"holds {found} of the {expected} frames restored"
        raise EnhanceError(f"{target}: the joined output {held}; it was not written. Run the same command again "
                           f"(finished segments that still check out are reused)")
