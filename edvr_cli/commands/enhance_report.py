"""What `edvr enhance` prints: the progress bar, the summary line, the table of many inputs."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict

import click


def report(results, as_json: bool, quiet: bool) -> None:
    """One input's summary line (or JSON), or the table (or JSON list) of many."""
    if isinstance(results, list):
        report_many(results, as_json, quiet)
    elif as_json:
        click.echo(json.dumps(asdict(results), indent=2))
    elif not quiet:
        click.echo(summary(results))


def summary(result) -> str:
    return (f"{result.frames} frames in {result.seconds:.1f} s ({result.fps:.2f} fps) "
            f"-> {result.output} ({result.width}x{result.height}, {result.video_fps} fps, "
            f"{result.pix_fmt}, {result.device}, {result.precision}"
            + (f"; {describe_encoder(result.encoder)}" if result.encoder else "") + ")")


def report_many(outcomes, as_json: bool, quiet: bool) -> None:
    """A table (or JSON list) of every input's result; exit status 1 if any failed."""
    failed = [item for item in outcomes if item.error is not None]
    if as_json:
        click.echo(json.dumps([{"input": item.input, "output": item.output, "ok": item.error is None,
                                "skipped": item.skipped, "error": item.error,
                                "result": asdict(item.result) if item.result else None}
                               for item in outcomes], indent=2))
    else:
        width = max(len(item.input) for item in outcomes)
        for item in (failed if quiet else outcomes):  # --quiet still names what failed, on stderr
            click.echo(f"{item.input:<{width}}  {_status(item)}", err=quiet)
    if failed:
        click.echo(f"Error: {len(failed)} of {len(outcomes)} inputs failed", err=True)
        raise SystemExit(1)


def _status(item) -> str:
    if item.error is not None:
        return f"FAILED  {item.error}"
    if item.skipped:
        return f"skipped {item.output} exists"
    return f"ok      {item.result.frames} frames, {item.result.seconds:.1f} s -> {item.output}"


def describe_encoder(encoder: dict) -> str:
    parts = [encoder["codec"]]
    if encoder.get("crf") is not None:
        parts.append(f"crf {encoder['crf']:g}")
    if encoder.get("preset"):
        parts.append(f"preset {encoder['preset']}")
    return " ".join(parts) + f" {encoder['pix_fmt']}"


class ProgressReporter:
    """tqdm progress (frames, fps, ETA) on stderr; notes printed above the bar.

    `shared`: one bar for several inputs run side by side (Ray): each start() adds to its total,
    and only finish() closes it."""

    def __init__(self, quiet: bool, shared: bool = False, desc: str = "enhancing"):
        self.quiet = quiet
        self.desc = desc
        self.shared = shared
        self.bar = None

    def start(self, num_frames: int | None) -> None:
        from tqdm import tqdm

        if self.shared and self.bar is not None:
            self.bar.total = (self.bar.total or 0) + (num_frames or 0)
            self.bar.refresh()
            return
        self.bar = tqdm(total=num_frames, unit="frame", desc=self.desc, disable=self.quiet,
                        file=sys.stderr, dynamic_ncols=True)

    def advance(self) -> None:
        if self.bar is not None:
            self.bar.update(1)

    def resumed(self, num_frames: int) -> None:
        if self.bar is not None:
            self.bar.update(num_frames)

    def note(self, message: str) -> None:
        from tqdm import tqdm

        tqdm.write(f"note: {message}", file=sys.stderr)

    def close(self) -> None:
        if not self.shared:
            self.finish()

    def finish(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
