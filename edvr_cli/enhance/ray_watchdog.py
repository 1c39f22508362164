"""Ends a local Ray instance whose run was killed (SIGKILL), and removes its temporary folder.

Run as a script by `ray_local.LocalRay` (standard library only, nothing of the package is
imported): `python ray_watchdog.py RUN_PID FOLDER`, its stdin a pipe from the run. While the
pipe is open it notes the run's descendants every second (their ids and start times, from
/proc). When the pipe closes without the run having written "closed" (it ended without shutting
Ray down: it was killed), it ends the noted processes that are still the same processes (SIGTERM,
then SIGKILL after a few seconds) and removes FOLDER. Where there is no /proc, only the folder
is removed.
"""

from __future__ import annotations

import os
import select
import shutil
import signal
import sys
import time

SAMPLE_SECONDS = 1.0
TERM_WAIT_SECONDS = 3.0


def start_time(pid: int) -> int | None:
    """The start time of process `pid` (clock ticks after boot), None if it is gone."""
    stat = _stat(pid)
    return None if stat is None else int(stat[19])


def _stat(pid: int | str) -> list[str] | None:
    """Fields 3 onwards of /proc/PID/stat (state, ppid, ...), None if the process is gone."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as file:
            return file.read().rpartition(")")[2].split()
    except OSError:
        return None


def descendants(root: int) -> dict[int, int]:
    """{pid: start time} of every descendant of `root` (empty without /proc)."""
    try:
        entries = [entry for entry in os.listdir("/proc") if entry.isdigit()]
    except OSError:
        return {}
    children: dict[int, list[tuple[int, int]]] = {}
    for entry in entries:
        stat = _stat(entry)
        if stat is not None:
            children.setdefault(int(stat[1]), []).append((int(entry), int(stat[19])))
    found: dict[int, int] = {}
    todo = [root]
    while todo:
        for pid, started in children.get(todo.pop(), []):
            if pid not in found:
                found[pid] = started
                todo.append(pid)
    return found


def end_processes(processes: dict[int, int]) -> None:
    """SIGTERM to each process still running with the same start time, SIGKILL to those left."""
    for signum, wait in ((signal.SIGTERM, TERM_WAIT_SECONDS), (signal.SIGKILL, 0.0)):
        alive = {pid: started for pid, started in processes.items() if start_time(pid) == started}
        for pid in alive:
            try:
                os.kill(pid, signum)
            except OSError:
                pass
        deadline = time.monotonic() + wait
        while alive and time.monotonic() < deadline:
            time.sleep(0.1)
            alive = {pid: started for pid, started in alive.items() if start_time(pid) == started}
        processes = alive


def watch(run_pid: int, folder: str) -> None:
    """Note `run_pid`'s descendants until stdin closes; then clean up unless told "closed"."""
    seen: dict[int, int] = {}
    closed = False
    while True:
        ready, _, _ = select.select([sys.stdin], [], [], SAMPLE_SECONDS)
        if ready:
            line = sys.stdin.readline()
            if not line:
                break  # the run ended
            closed = closed or line.strip() == "closed"
            continue
        seen.update(descendants(run_pid))
        seen.pop(os.getpid(), None)
    if not closed:
        end_processes(seen)
    shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the run's Ctrl-C is the run's to handle
    watch(int(sys.argv[1]), sys.argv[2])
