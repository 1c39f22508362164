"""The one error and stop policy of every command.

Inside `reported(...)`: an error a user can fix (an `EdvrError`, an OS error such as a full disk)
becomes one `Error: ...` line and exit status 1; Ctrl-C, SIGTERM or SIGHUP become one line saying
what was left undone and exit status 128 + signal. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator

import click

from edvr_cli.commands.interrupts import Interrupted, interrupted_message, signum_of, stop_on_signals
from models.errors import EdvrError, OptionError, one_line


@contextmanager
def reported(left_undone: str | Callable[[], str]) -> Iterator[list[int]]:
    """Run the block under the policy above; `left_undone` says what a stopped run did not finish.

    Yields the signals received so far (see `stop_on_signals`)."""
    with stop_on_signals() as received:  # first: Ctrl-C during a command's imports is handled too
        try:
            yield received
        except KeyboardInterrupt as interrupt:
            signum = signum_of(interrupt, received)
            raise Interrupted(interrupted_message(_text(left_undone), signum), signum) from None
        except (EdvrError, OSError, click.ClickException) as error:
            if received:  # e.g. ffmpeg, hit by the same Ctrl-C, failed first
                raise Interrupted(interrupted_message(_text(left_undone), received[0]), received[0]) from None
            if isinstance(error, click.ClickException):
                raise
            if isinstance(error, OptionError):
                raise click.BadParameter(str(error), param_hint=f"'{error.option}'") from None
            raise click.ClickException(one_line(error)) from None


def _text(left_undone: str | Callable[[], str]) -> str:
    return left_undone if isinstance(left_undone, str) else left_undone()
