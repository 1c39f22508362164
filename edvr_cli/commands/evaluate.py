"""`edvr eval`: score restored frames against ground truth, as the papers do."""

from __future__ import annotations

import os
import time
from pathlib import Path

import click

from edvr_cli.commands.failures import reported

SOURCE = click.Path(path_type=Path)  # existence is checked by the library, in one line
OUTPUT = click.Path(dir_okay=False, writable=True, path_type=Path)


def _default_workers() -> int:
    return max(1, min(4, os.cpu_count() or 1))


@click.command(name="eval", short_help="Score restored frames against ground truth (PSNR/SSIM).")
@click.option("--gt", "gt_path", type=SOURCE, required=True,
              help="Ground truth: a folder of frames, a video file, or a folder of clip "
                   "sub-folders / videos (REDS, LDV layout).")
@click.option("--pred", "pred_path", type=SOURCE, required=True,
              help="Restored frames, laid out like --gt (same clip names, frame counts, sizes).")
@click.option("--lq", "lq_path", type=SOURCE, default=None,
              help="Optional degraded input, laid out like --gt: scored as the baseline, and the "
                   "gain (ΔPSNR, ΔSSIM) is reported.")
@click.option("--channel", type=click.Choice(["rgb", "y"]), default="rgb", show_default=True,
              help="Score RGB, or the BT.601 Y channel (BasicSR/MATLAB: 16 + (65.481 R + "
                   "128.553 G + 24.966 B)/255, not rounded).")
@click.option("--crop-border", type=click.IntRange(min=0), default=0, show_default=True,
              help="Pixels removed from every edge before scoring.")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Frames scored in parallel.  [default: number of CPUs, at most 4]")
@click.option("--json", "json_path", type=OUTPUT, default=None,
              help="Write per-frame, per-clip and overall values to this JSON file.")
@click.option("--csv", "csv_path", type=OUTPUT, default=None,
              help="Write per-frame, per-clip and overall values to this CSV file.")
@click.option("--plot", "plot_path", type=OUTPUT, default=None,
              help="Draw per-frame PSNR curves per clip to this image (needs matplotlib).")
@click.option("--overwrite", is_flag=True,
              help="Replace existing --json/--csv/--plot files (never one of the inputs).")
def command(gt_path: Path, pred_path: Path, lq_path: Path | None, channel: str, crop_border: int,
            workers: int | None, json_path: Path | None, csv_path: Path | None,
            plot_path: Path | None, overwrite: bool) -> None:
    """Score restored frames (--pred) against ground truth (--gt) with PSNR and SSIM.

    \b
    Conventions (BasicSR, as the EDVR papers report):
    - 8-bit values, float64 arithmetic; PSNR = 10 log10(255^2 / MSE) in dB.
    - SSIM: 11x11 Gaussian window (sigma 1.5), C1 = (0.01*255)^2, C2 = (0.03*255)^2,
      mean over the valid region, averaged over channels; range [-1, 1].
    - A clip's value is the mean over its frames; the OVERALL value is the MEAN OF THE
      CLIP MEANS (each clip weighs the same).
    - Identical frames have PSNR inf; a mean including an inf is inf. JSON writes it as
      the string "inf", CSV as inf. A gain between two inf values is 0.

    \b
    Frames pair by sorted (natural) name within each clip, or by decode order for videos;
    single-clip sources pair with each other, folders of clips pair by clip name. Any
    mismatch in clip names, frame counts or sizes is an error; nothing is skipped.

    \b
    Examples:
      edvr eval --gt val/gt --pred val/restored --lq val/input --json scores.json
      edvr eval --gt clip_gt.mp4 --pred clip_restored.mkv --channel y --crop-border 4
    """
    if plot_path is not None:
        try:
            import matplotlib  # noqa: F401  (checked first: fail before minutes of scoring)
        except ImportError:
            raise click.ClickException("--plot needs matplotlib: pip install matplotlib") from None
    from edvr_cli.evaluate.report_files import check_report_paths

    reports = {option: path for option, path in (("--json", json_path), ("--csv", csv_path), ("--plot", plot_path))
               if path is not None}
    with reported("scoring stopped"):
        # before minutes of scoring
        check_report_paths(reports, [path for path in (gt_path, pred_path, lq_path) if path is not None], overwrite)
        _score(gt_path, pred_path, lq_path, channel, crop_border, workers, json_path, csv_path, plot_path)


def _score(gt_path: Path, pred_path: Path, lq_path: Path | None, channel: str, crop_border: int,
           workers: int | None, json_path: Path | None, csv_path: Path | None, plot_path: Path | None) -> None:
    from tqdm import tqdm

    from edvr_cli.evaluate.report_files import write_whole
    from edvr_cli.evaluate.scoring import evaluate, format_table, write_csv, write_json, write_plot

    started = time.perf_counter()
    with tqdm(unit="frame", desc="scoring", disable=None, leave=False) as progress:
        result = evaluate(gt_path, pred_path, lq_path, channel=channel, crop_border=crop_border,
                          workers=workers or _default_workers(), on_frame=progress.update)
    elapsed = time.perf_counter() - started
    click.echo(format_table(result))
    click.echo(f"{result.num_frames} frames in {len(result.clips)} clip(s) scored in {elapsed:.1f} s")
    for path, writer in ((json_path, write_json), (csv_path, write_csv), (plot_path, write_plot)):
        if path is not None:
            try:
                write_whole(path, lambda temporary, writer=writer: writer(result, temporary))
            except OSError as error:  # e.g. a full disk: the user's name, not the hidden one's
                raise click.ClickException(f"{path}: cannot be written ({error.strerror or error})") from None
            click.echo(f"wrote {path}")
