"""Running the bundled ffmpeg: where it is, safe path arguments, and what its failures mean.

Every ffmpeg failure becomes a `VideoError` whose message is one line (the line of stderr that
names the cause) and whose `.stderr` keeps ffmpeg's full output.
"""

from __future__ import annotations

import os
import re
import subprocess
import threading

import imageio_ffmpeg

from models.errors import EdvrError

POLL_SECONDS = 0.1  # how often blocked queue operations look for a dead thread or a stop
STOP_WAIT_SECONDS = 0.5  # how long a stop waits for a killed ffmpeg or a helper thread to end

# Lines ffmpeg prints after the real cause; they say nothing about what went wrong.
_GENERIC_STDERR = re.compile(
    r"^(Conversion failed!|Exiting normally.*|Error opening (input|output) files?:?.*"
    r"|Error opening output file.*|Error while filtering.*|Error closing file.*"
    r"|Task finished with error code.*|Terminating thread with return code.*"
    r"|Nothing was written into output file.*|Error writing trailer.*|Last message repeated.*"
    r"|At least one output file must be specified|Press \[q\].*"
    r"|frame=\s*\d+ .*|size=\s*\S+ time=.*|Consider increasing the value for .*)$")
# Lines that report the failure of a step because of an error printed before them.
_CONSEQUENCE_STDERR = re.compile(
    r"^(Error opening input: .*|Could not open encoder before EOF|Cannot determine format of .*"
    r"|Decode error rate .*|Error while (decoding|processing|opening) .*|Error muxing a packet"
    r"|Error submitting .*|Could not write header.*|Error splitting the argument list.*)$")
_LOG_PREFIX = re.compile(r"^(\[[^\]]*\]\s*)+")
# A full disk (or quota): whatever step reports it, that is the cause the user can act on.
_NO_SPACE = re.compile(r"No space left on device|Disk quota exceeded")


def ffmpeg_exe() -> str:
    """Path of the ffmpeg binary bundled with imageio-ffmpeg (or IMAGEIO_FFMPEG_EXE)."""
    try:
        return imageio_ffmpeg.get_ffmpeg_exe()
    except RuntimeError as error:
        raise VideoError(f"ffmpeg not found: {error}") from error


def ffmpeg_path(path: str | os.PathLike) -> str:
    """`path` as an ffmpeg URL that cannot be misread.

    "file:" + absolute path: a name such as "take:2.mp4" would otherwise name a protocol, and an
    output name starting with "-" an option.
    """
    return "file:" + os.path.abspath(os.fspath(path))


class VideoError(EdvrError):
    """A video cannot be read or written. `str()` is one line; `.stderr` is ffmpeg's full output."""

    def __init__(self, message: str, stderr: str = ""):
        super().__init__(message)
        self.stderr = stderr


def summarize_stderr(stderr: str) -> str:
    """The line of ffmpeg's stderr that best names the cause, without `[muxer @ 0x..]` prefixes.

    That is the last line that is neither boilerplate nor a consequence of an earlier error
    ("moov atom not found" rather than "Error opening input: Invalid data ..."), except that a
    full disk is always named as such: "no space left on device" (or "disk quota exceeded"),
    whichever of ffmpeg's lines reports it ("Error muxing a packet", "Error closing file: ...").
    """
    if no_space := _NO_SPACE.search(stderr):
        return "disk quota exceeded" if "quota" in no_space.group(0) else "no space left on device"
    lines = [_LOG_PREFIX.sub("", line).strip() for line in stderr.splitlines()]
    lines = [line for line in lines if line]
    if not lines:
        return "no message"
    specific = [line for line in lines if not _GENERIC_STDERR.match(line)]
    causes = [line for line in specific if not _CONSEQUENCE_STDERR.match(line)]
    return (causes or specific or lines)[-1]


def ffmpeg_failed(what: str, returncode: int, stderr: str) -> VideoError:
    """A VideoError for an ffmpeg run that exited with `returncode`.

    A full disk reads "{what}: no space left on device" (`what` names the file), without the
    exit status: that is all there is to know, and what to fix.
    """
    cause = summarize_stderr(stderr)
    if cause in ("no space left on device", "disk quota exceeded"):
        return VideoError(f"{what}: {cause}", stderr)
    return VideoError(f"{what}: ffmpeg failed (exit {returncode}): {cause}", stderr)


def run_ffmpeg(args: list[str], timeout: float | None = 60.0) -> subprocess.CompletedProcess:
    # bytes out: framecrc output and stderr may carry non-UTF-8 metadata
    try:
        return subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostdin", *args],
                              capture_output=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as error:
        stderr = decode_text(error.stderr or b"")
        raise VideoError(f"ffmpeg gave no answer within {timeout:g} s: {summarize_stderr(stderr)}",
                         stderr) from error


def decode_text(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")


class StderrCollector(threading.Thread):
    """Drains a process's stderr so ffmpeg never blocks on a full pipe; keeps all of it."""

    def __init__(self, stream):
        super().__init__(daemon=True)
        self._stream = stream
        self._chunks: list[bytes] = []

    def run(self) -> None:
        for chunk in iter(lambda: self._stream.read(4096), b""):
            self._chunks.append(chunk)

    @property
    def text(self) -> str:
        return b"".join(self._chunks).decode("utf-8", errors="replace")


def stop_process(process: subprocess.Popen) -> None:
    """End `process` at once (SIGKILL) and reap it; its output is being thrown away.

    Not SIGTERM: an ffmpeg blocked on a full or empty pipe (or already finishing after a Ctrl-C
    sent to the whole process group) does not act on it until that pipe moves, which made a
    Ctrl-C take seconds. A killed reader leaves nothing; a killed writer leaves a partial file
    that the caller deletes.
    """
    if process.poll() is None:
        process.kill()
    try:
        process.wait(timeout=STOP_WAIT_SECONDS)
    except subprocess.TimeoutExpired:
        pass  # not reaped yet (see ended_within); it is dead, and Python reaps it later


def ended_within(thread: threading.Thread, seconds: float = STOP_WAIT_SECONDS) -> bool:
    """Join `thread` for at most `seconds`; False when it is still running.

    A stop never waits longer: a signal that lands inside a queue operation of the main thread
    can leave that queue's lock held (CPython's `threading.Condition` is not safe against an
    exception raised by a signal handler), and a helper blocked on that lock never ends. The
    helpers are daemon threads, so they do not keep the process alive; the streams they use are
    closed only once they have ended.
    """
    thread.join(seconds)
    return not thread.is_alive()
