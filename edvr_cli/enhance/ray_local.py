"""Joining Ray for `--ray`, and the end of a Ray instance the run started itself.

`connect(ray, address)`: "auto" or "ray://host:port" joins a running cluster, which is left as
it is at the end. Otherwise (`--ray local`) a Ray instance is started on this machine for this
run alone, and `LocalRay.close()` ends it: `ray.shutdown()` stops its processes, and its
temporary folder, one of its own (`edvr-ray-*` in the system's temporary folder, so TMPDIR
decides where), is removed. Left to itself Ray would keep a session folder under /tmp/ray after
every run. The command turns Ctrl-C, SIGTERM and SIGHUP into an exception, so `close` runs then
as well.

A SIGKILL cannot be caught. The processes a run starts itself die with it (Ray sets them to),
but the agents Ray's raylet starts (ray::DashboardAgent, ray::RuntimeEnvAgent) stay behind for a
minute or more. A watchdog process (`ray_watchdog.py`, in a session of its own so that a Ctrl-C
meant for the run does not end it first) covers that case: it ends the processes the run had
started and removes the folder once the run is gone without having closed Ray.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from contextlib import contextmanager
from typing import Iterator

from edvr_cli.enhance.errors import EnhanceError

WATCHDOG_WAIT_SECONDS = 5.0


class LocalRay:
    """A Ray instance started by this run, in `folder`, watched by a watchdog process."""

    def __init__(self, ray):
        self.ray = ray
        self.folder = tempfile.mkdtemp(prefix="edvr-ray-")
        script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "ray_watchdog.py")
        self.watchdog = subprocess.Popen([sys.executable, "-I", script, str(os.getpid()), self.folder],
                                         stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                         stderr=subprocess.DEVNULL, start_new_session=True)

    def close(self) -> None:
        """Shut Ray down, remove its folder, and tell the watchdog that all is done."""
        try:
            self.ray.shutdown()
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)
            try:
                self.watchdog.stdin.write(b"closed\n")
                self.watchdog.stdin.close()
                self.watchdog.wait(timeout=WATCHDOG_WAIT_SECONDS)
            except (OSError, subprocess.TimeoutExpired):
                pass  # it ends on its own once it reads the end of the pipe


def connect(ray, address: str) -> LocalRay | None:
    """Join the cluster at `address`, or start a Ray instance of this run's own ("local"); the
    LocalRay to close at the end, None when Ray was already running or a cluster was joined."""
    if ray.is_initialized():
        return None
    local = LocalRay(ray) if address == "local" else None
    options = {"_temp_dir": local.folder} if local is not None else {}
    # Ray's note that token authentication is on (its default) is not ours to print
    logging.getLogger("ray._private.authentication").setLevel(logging.ERROR)
    try:
        with _python_signal_handlers_kept():  # ray.init sets a C-level SIGTERM handler of its own
            ray.init(address=None if local is not None else address, include_dashboard=False,
                     log_to_driver=False, configure_logging=False, **options)
    except (ConnectionError, ValueError, RuntimeError) as error:
        if local is not None:
            local.close()
        raise EnhanceError(f"--ray {address}: cannot connect: {str(error).splitlines()[0]}") from None
    except BaseException:
        if local is not None:
            local.close()
        raise
    return local


@contextmanager
def _python_signal_handlers_kept(signals: tuple[str, ...] = ("SIGINT", "SIGTERM", "SIGHUP")) -> Iterator[None]:
    """Put Python's handlers for `signals` back after the block: a library that installs C-level
    handlers of its own (ray.init: a crash report and exit status 15 on SIGTERM) must not take
    over the command's clean stop. Outside the main thread it does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    numbers = [getattr(signal, name) for name in signals if hasattr(signal, name)]
    previous = {sig: signal.getsignal(sig) for sig in numbers}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            if handler is not None:  # None: not set from Python; nothing to put back
                signal.signal(sig, handler)


__all__ = ["LocalRay", "connect"]
