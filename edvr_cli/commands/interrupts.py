"""Ctrl-C, SIGTERM and SIGHUP for the commands: stop cleanly, say so in one line, exit 128 + signal.

`stop_on_signals()` turns the first of these signals into `Stopped` (a KeyboardInterrupt) in the
main thread, so every `finally` on the way out runs (staging files are removed, ffmpeg is
stopped); signals arriving while that cleanup runs are ignored, so a second Ctrl-C cannot cut it
short. The command then raises `Interrupted`, whose exit status is what a shell reports for a
process ended by that signal: 130 for SIGINT (Ctrl-C), 143 for SIGTERM, 129 for SIGHUP.
"""

from __future__ import annotations

import signal
import sys
import threading
from contextlib import contextmanager
from typing import Iterator

import click

STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))


class Stopped(KeyboardInterrupt):
    """Raised in the main thread by `stop_on_signals` for the signal `signum`."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def signal_name(signum: int) -> str:
    return signal.Signals(signum).name


class Interrupted(click.ClickException):
    """One line on stderr and exit status 128 + signal (130 after Ctrl-C)."""

    def __init__(self, message: str, signum: int = signal.SIGINT):
        super().__init__(message)
        self.exit_code = 128 + int(signum)

    def show(self, file=None) -> None:
        try:
            super().show(file)
        except OSError:
            pass  # SIGHUP: the terminal may be gone; the exit status still tells


def signum_of(interrupt: BaseException | None, received: list[int]) -> int:
    """The signal that stopped the run: the first one received, else SIGINT (a plain KeyboardInterrupt)."""
    if received:
        return received[0]
    return getattr(interrupt, "signum", signal.SIGINT)


def interrupted_message(what: str, signum: int) -> str:
    """"interrupted: ..." after Ctrl-C, "stopped by SIGTERM: ..." otherwise."""
    if signum == signal.SIGINT:
        return f"interrupted: {what}"
    return f"stopped by {signal_name(signum)}: {what}"


@contextmanager
def stop_on_signals(signals: tuple[int, ...] = STOP_SIGNALS) -> Iterator[list[int]]:
    """While inside, the first of `signals` raises `Stopped` in the main thread; later ones are ignored.

    Yields the list of signals received (empty unless one arrived), which stays filled after the
    block: an error raised by the cleanup (an ffmpeg that died of the same Ctrl-C) can then still
    be reported as the interruption it was. Outside the main thread it does nothing.
    """
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return

    def handler(signum, frame):
        received.append(signum)
        if len(received) == 1:
            # The exception can land inside any library call; objects it left half-built (an
            # imageio writer, say) may complain from __del__ later. The run is ending: keep the
            # one-line message the only output.
            sys.unraisablehook = lambda unraisable: None
            raise Stopped(signum)

    previous = {sig: signal.signal(sig, handler) for sig in signals}
    try:
        yield received
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


@contextmanager
def signals_seen() -> Iterator[list[int]]:
    """Record which signals Python handled while inside, whoever's handler ran.

    For code that installs its own handlers (the trainer's graceful stop on Ctrl-C or SIGTERM):
    the command still learns which signal it was, through `signal.set_wakeup_fd`. The list is
    filled when the block ends. Outside the main thread it stays empty.
    """
    import socket

    seen: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield seen
        return
    reader, writer = socket.socketpair()
    reader.setblocking(False)
    writer.setblocking(False)
    previous = signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
    try:
        yield seen
    finally:
        signal.set_wakeup_fd(previous)
        try:
            while data := reader.recv(512):
                seen.extend(data)
        except BlockingIOError:
            pass
        reader.close()
        writer.close()
