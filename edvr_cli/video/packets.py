"""A video stream's packet timestamps (stream copy, no decoding): frame count and constant or
variable frame rate, as `probe` reports them.

A file cut short (a partial download, a recording that was stopped) loses the packets after the
cut in decoding order. With B-frames those include frames shown before some frames that were
kept, so the kept timestamps have holes near the end; the rate is judged on the timestamps
before those holes (`rate_from_scan`), not on an average that counts the holes as time.
"""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass
from fractions import Fraction

from edvr_cli.video.ffmpeg import ffmpeg_exe, ffmpeg_path

_NOPTS = -(2 ** 63)  # ffmpeg's AV_NOPTS_VALUE, printed for packets without a pts


@dataclass
class PacketScan:
    time_base: Fraction
    pts: list[int]  # presentation timestamps of the kept packets, in file order
    last_duration: int  # duration of the packet with the largest pts (0 if unknown)
    complete: bool  # False when the scan stopped at the time limit or on an error
    last_dts: int | None = None  # decoding time of the last packet in file order


def scan_packets(path: str, video_index: int, max_scan_seconds: float) -> PacketScan:
    """Timestamps of the video packets (stream copy, no decoding), for at most max_scan_seconds."""
    args = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-v", "error", "-i", ffmpeg_path(path),
            "-map", f"0:{video_index}", "-c", "copy", "-f", "framecrc", "-"]
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    time_base, pts, last_pts, last_duration, last_dts = Fraction(1), [], None, 0, None
    deadline = time.monotonic() + max_scan_seconds
    stopped_early = False
    try:
        for raw_line in process.stdout:
            line = raw_line.decode("ascii", errors="replace")
            if line.startswith("#tb 0:"):
                num, den = line.split(":")[1].strip().split("/")
                time_base = Fraction(int(num), int(den))
            elif not line.startswith("#"):
                # stream, dts, pts, duration, size, checksum[, F=0x..]
                fields = [field.strip() for field in line.split(",")]
                flags = next((int(f[2:], 16) for f in fields[6:] if f.startswith("F=")), 1)
                # 0x4: discarded (MP4 edit list); an empty packet (AVI's "drop frame") decodes
                # to no frame, so neither counts.
                if len(fields) >= 5 and not flags & 0x4 and int(fields[4]) > 0:
                    # AVI packets carry no pts (NOPTS); their dts is the presentation time.
                    pts.append(int(fields[2]) if int(fields[2]) != _NOPTS else int(fields[1]))
                    last_dts = int(fields[1]) if int(fields[1]) != _NOPTS else pts[-1]
                    if last_pts is None or pts[-1] > last_pts:
                        last_pts, last_duration = pts[-1], int(fields[3])
            if time.monotonic() > deadline:
                stopped_early = True
                break
    finally:
        if stopped_early:
            process.kill()
        process.stdout.close()
        returncode = process.wait()
    return PacketScan(time_base, pts, max(last_duration, 0), not stopped_early and returncode == 0,
                      last_dts=last_dts)


def shown_before_the_cut(scan: PacketScan, fps: Fraction) -> list[int]:
    """The scan's timestamps in presentation order, without the frames that follow a hole left
    by a cut (see the module docstring).

    Only a hole later than the last packet's decoding time is such a cut: a packet lost after
    the end of the file is decoded after the last one kept, and no frame is shown before it is
    decoded. In a complete file only the frames still waiting to be shown when the last one is
    decoded (those B-frames wait for, one or two) are that late, so a pause of a variable-rate
    video is kept unless it falls among them.
    """
    times = sorted(scan.pts)
    if scan.last_dts is None:
        return times
    hole = Fraction(3, 2) / fps / scan.time_base  # more than a frame and a half between two frames
    for idx in range(1, len(times)):
        if times[idx - 1] >= scan.last_dts and times[idx] - times[idx - 1] > hole:
            return times[:idx]
    return times


def rate_from_scan(scan: PacketScan,
                    guessed_fps: Fraction | None) -> tuple[Fraction | None, bool]:
    """(frame rate, is_vfr) from packet timestamps checked against `guessed_fps`'s grid.

    For variable frame rate the rate is the one at which the frames fill the stream's time:
    frames / (last timestamp + its duration - first timestamp). A file cut short is judged on
    the frames shown before the cut (`shown_before_the_cut`).
    """
    times = sorted(scan.pts) if guessed_fps is None else shown_before_the_cut(scan, guessed_fps)
    if len(times) < 2:
        return guessed_fps, False
    span = (times[-1] - times[0]) * scan.time_base  # seconds, exact
    if span <= 0:
        return guessed_fps, False
    last_duration = scan.last_duration * scan.time_base or span / (len(times) - 1)
    average = len(times) / (span + last_duration)
    if guessed_fps is None:
        return average.limit_denominator(1001), True
    # constant rate: every timestamp within a tenth of a frame (or one tick) of the ideal grid
    tolerance = max(Fraction(1, 10) / guessed_fps, scan.time_base)
    start = times[0] * scan.time_base
    is_vfr = any(abs(t * scan.time_base - start - i / guessed_fps) > tolerance
                 for i, t in enumerate(times))
    if is_vfr:
        return average.limit_denominator(1001), True
    return guessed_fps, False
