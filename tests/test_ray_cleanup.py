"""A run that starts a Ray instance of its own (`--ray local`) ends it: afterwards no process of it is
left and nothing in the temporary folder it was given (TMPDIR), whether the run finished, was
stopped by SIGTERM, or was killed (SIGKILL: its watchdog process cleans up after it).

Real `edvr enhance --ray local` processes on tiny clips; the run's processes are found by the
TMPDIR in their environment, which Ray's processes inherit. Skipped without Ray.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from edvr_cli.enhance.workfolder import work_folder_path
from tests.test_segments import _edvr, _signal_after_a_segment, clip, long_clip, model_file  # noqa: F401 (fixtures)

pytestmark = pytest.mark.slow


@pytest.fixture
def own_tmpdir():
    """A fresh, short TMPDIR (Ray's socket paths inside it must fit in 107 bytes), and the
    environment that sets it."""
    pytest.importorskip("ray")
    folder = Path(tempfile.mkdtemp(prefix="edvr-t-", dir="/tmp"))
    yield folder, {**os.environ, "TMPDIR": str(folder)}
    shutil.rmtree(folder, ignore_errors=True)


def processes_with(environ_entry: str) -> list[int]:
    """The ids of the processes whose environment holds `environ_entry` (e.g. "TMPDIR=/tmp/x")."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid():
            try:
                environ = Path(f"/proc/{entry}/environ").read_bytes().split(b"\0")
            except OSError:
                continue
            if environ_entry.encode() in environ:
                found.append(int(entry))
    return found


def left_behind(folder: Path, seconds: float) -> tuple[list[int], list[str]]:
    """The run's processes and the entries of its TMPDIR, once both are gone or after `seconds`."""
    deadline = time.monotonic() + seconds
    while True:
        processes, entries = processes_with(f"TMPDIR={folder}"), sorted(os.listdir(folder))
        if not (processes or entries) or time.monotonic() > deadline:
            return processes, entries
        time.sleep(0.2)


def test_a_finished_local_ray_run_leaves_no_process_and_no_temporary_folder(clip, model_file, own_tmpdir, tmp_path):
    folder, env = own_tmpdir
    done = subprocess.run(_edvr(str(clip), "-o", str(tmp_path / "out.mkv"), "--model", str(model_file), "--codec",
                                "ffv1", "--segment-frames", "12", "--ray", "local", "--workers", "2", "--quiet"),
                          capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    assert left_behind(folder, 10) == ([], [])
    assert sorted(os.listdir(tmp_path)) == ["out.mkv"]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_a_stopped_or_killed_local_ray_run_leaves_no_process_and_no_temporary_folder(long_clip, model_file,
                                                                                      own_tmpdir, tmp_path, signum):
    folder, env = own_tmpdir
    output = tmp_path / "out.mkv"

    def ray_runs_with_its_files_there():
        assert processes_with(f"TMPDIR={folder}") and os.listdir(folder)

    returncode, stderr = _signal_after_a_segment(
        [str(long_clip), "-o", str(output), "--model", str(model_file), "--codec", "ffv1", "--segment-frames", "4",
         "--ray", "local", "--workers", "2", "--quiet"], work_folder_path(output), signum, env=env,
        before_signal=ray_runs_with_its_files_there)
    assert returncode == (143 if signum == signal.SIGTERM else -signal.SIGKILL), stderr
    assert left_behind(folder, 30) == ([], [])
