"""Where a run's numbers go: `log.jsonl` always, TensorBoard when installed, a line for people.

Only rank 0 creates a RunLog with `enabled=True`; the others get a silent one.
Each JSONL record has an "event": "train" (iter, loss, lr, it_per_s, offset_absmean),
"val" (iter, psnr, ssim, clips), "baseline" (input PSNR/SSIM), "skip" (non-finite loss),
"warning" and "note".
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Callable


def _plain(value):
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # JSON has no inf/nan
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    return value


class RunLog:
    """Append-only run log.

    Args:
        folder: run folder; `log.jsonl` (and `tensorboard/`) go there.
        enabled: False on ranks other than 0: nothing is written or printed.
        echo: prints one human-readable line (the CLI passes tqdm.write so bars stay intact).
        replace_run: the folder may hold an earlier run, to be replaced (its files go at the first record).
    """

    def __init__(self, folder: Path, enabled: bool = True, echo: Callable[[str], None] = print,
                 replace_run: bool = False):
        self.replace_run = replace_run  # remove an earlier run's files first (--overwrite)
        self.enabled = enabled
        self.echo = echo if enabled else (lambda line: None)
        self.path = folder / "log.jsonl"
        self.folder = folder
        self.tensorboard = None
        self._opened = False

    def _open(self) -> None:
        """The run folder and TensorBoard writer appear with the first record, not before."""
        self._opened = True
        self.folder.mkdir(parents=True, exist_ok=True)
        if self.replace_run:
            from edvr_cli.train.run_folder import clear_run

            clear_run(self.folder)
        try:  # optional: TensorBoard's SummaryWriter needs the tensorboard package
            from torch.utils.tensorboard import SummaryWriter
            self.tensorboard = SummaryWriter(str(self.folder / "tensorboard"))
        except ImportError:
            pass

    def record(self, event: str, **values) -> None:
        if not self.enabled:
            return
        if not self._opened:
            self._open()
        with open(self.path, "a") as handle:
            handle.write(json.dumps(_plain({"event": event, "time": round(time.time(), 3), **values})) + "\n")
        if self.tensorboard is not None and "iter" in values:
            for key, value in values.items():
                if key != "iter" and isinstance(value, (int, float)) and value is not None:
                    self.tensorboard.add_scalar(f"{event}/{key}", value, values["iter"])

    def note(self, line: str) -> None:
        self.record("note", text=line)
        self.echo(line)

    def warning(self, line: str, **values) -> None:
        self.record("warning", text=line, **values)
        self.echo(f"warning: {line}")

    def close(self) -> None:
        if self.tensorboard is not None:
            self.tensorboard.close()


def read_log(path: str | Path) -> list[dict]:
    """All records of a log.jsonl."""
    with open(path) as handle:
        return [json.loads(line) for line in handle if line.strip()]
