"""`edvr compare`: inputs side by side (video), zoomed crops (PNG) or a before/after page (HTML)."""

from __future__ import annotations

import json
from dataclasses import asdict
from fractions import Fraction

import click

from edvr_cli.commands.enhance_options import FrameRate, TimeValue
from edvr_cli.commands.failures import reported


class Times(click.ParamType):
    """TIME[,TIME...] in ffmpeg's syntax, as exact seconds."""

    name = "TIME[,TIME...]"

    def convert(self, value, param, ctx):
        if isinstance(value, list):
            return value
        return [TimeValue().convert(part, param, ctx) for part in str(value).split(",") if part.strip()]


class Box(click.ParamType):
    """X,Y,W,H in whole pixels."""

    name = "X,Y,W,H"

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        parts = str(value).split(",")
        if len(parts) != 4 or not all(part.strip().isdigit() for part in parts):
            self.fail(f"{value!r} is not X,Y,W,H in whole pixels (e.g. 100,80,64,48)", param, ctx)
        return tuple(int(part) for part in parts)


@click.command(name="compare", short_help="Compare videos side by side (video, crops, HTML page).")
@click.argument("inputs", metavar="A B [C...]", nargs=-1, required=True)
@click.option("-o", "--output", "output_path", required=True, type=click.Path(),
              help="The comparison: a video (.mp4, .mkv, ...), with --crops a .png, with --html an .html file.")
@click.option("--layout", type=click.Choice(["side", "split", "stack"]), default="side", show_default=True,
              help="Video layout: panels side by side, split (left part from A, right part from B, a line "
                   "between), or stacked top to bottom.")
@click.option("--split-at", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.5,
              show_default=True, help="Where the split line is, as a fraction of the width (--layout split).")
@click.option("--crops", is_flag=True,
              help="Write a PNG grid of zoomed crops instead of a video: one column per input, one row per "
                   "--at time, the region of --box (or where A and B differ most).")
@click.option("--html", "as_html", is_flag=True,
              help="Write one self-contained HTML page instead of a video: a before/after slider (A against "
                   "each other input) per --at time, with PSNR/SSIM against --gt.")
@click.option("--at", "at", type=Times(), default=None,
              help="Times of the frames shown by --crops and --html (ffmpeg's syntax, comma-separated: "
                   "1.5,0:03).  [default: the middle frame]")
@click.option("--box", type=Box(), default=None,
              help="The region of --crops in the panels' pixels (the largest input's).  [default: a quarter of "
                   "the frame across and down, where A and B differ most over the chosen frames]")
@click.option("--zoom", type=click.IntRange(min=1), default=4, show_default=True,
              help="How many times larger each crop is shown (--crops; nearest neighbour).")
@click.option("--gt", default=None, type=click.Path(),
              help="Ground truth (video or frame folder) to score each input against on the --html page "
                   "(PSNR/SSIM on RGB, as `edvr eval` computes them).")
@click.option("--label", "labels", multiple=True,
              help="A panel's label; repeat once per input, in order.  [default: the inputs' file names]")
@click.option("--no-labels", is_flag=True, help="Draw no labels on the video's panels.")
@click.option("--upscale", "upscale_mode", type=click.Choice(["nearest", "bicubic"]), default="nearest",
              show_default=True,
              help="How a smaller input (e.g. the x4 model's input) is scaled up to the largest one's size.")
@click.option("--fps", "folder_fps", type=FrameRate(), default=Fraction(25), show_default=True,
              help="Frame rate of inputs that are folders of frames (videos keep their own).")
@click.option("--codec", default=None,
              help="ffmpeg video encoder of the comparison video, e.g. ffv1 (lossless), libx264.  "
                   "[default: the container's, as for edvr enhance: libx265 crf 8 for .mp4/.mkv]")
@click.option("--crf", type=float, default=None, help="Constant rate factor of the comparison video.")
@click.option("--preset", default=None, help="Encoder speed preset of the comparison video.")
@click.option("--pix-fmt", default=None,
              help="Pixel format of the comparison video.  [default: yuv420p (yuv444p for odd sizes); "
                   "RGB for lossless codecs such as ffv1]")
@click.option("--overwrite", is_flag=True, help="Replace an existing output.")
@click.option("--quiet", is_flag=True, help="No progress bar and no summary line.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary to stdout instead of the summary line.")
def command(inputs: tuple[str, ...], output_path: str, crops: bool, as_html: bool, labels: tuple[str, ...],
            no_labels: bool, quiet: bool, as_json: bool, **options) -> None:
    """Compare A with B (and C...): videos or folders of frames of the same length, e.g. a
    restored output, its input, and the ground truth or another model's output.

    By default a video with the inputs side by side, each panel labelled; a smaller input (the
    input of a x4 model) is scaled up to the largest one's size with nearest neighbour, so its
    pixels stay visible. The audio, subtitles and chapters are the first input's. --crops writes a
    PNG grid of zoomed crops for the detail a screen-size video hides; --html a page with a
    before/after slider per frame.

    \b
    Examples:
      edvr compare restored.mp4 input.mp4 -o side.mp4
      edvr compare restored.mp4 input.mp4 -o split.mp4 --layout split
      edvr compare x4.mkv low_res.mkv gt.mkv -o stacked.mkv --layout stack --codec ffv1
      edvr compare restored.mp4 input.mp4 -o crops.png --crops --at 2,5.5 --zoom 4
      edvr compare restored.mp4 input.mp4 -o page.html --html --at 1,2,3 --gt gt.mp4
    """
    if crops and as_html:
        raise click.BadParameter("--crops and --html write different outputs; choose one", param_hint="'--html'")
    with reported(f"{output_path} was not written"):
        result = _run(list(inputs), output_path, crops, as_html, list(labels) or None, no_labels, quiet, **options)
    if as_json:
        click.echo(json.dumps(asdict(result), indent=2))
    elif not quiet:
        size = f"{result.width}x{result.height}"
        what = {"video": f"{result.frames} frames, {size}, {result.video_fps} fps",
                "crops": f"{result.frames} frame{'s' if result.frames != 1 else ''}, box {result.box}, {size}",
                "html": f"{result.frames} frame{'s' if result.frames != 1 else ''}, panels {size}"}[result.kind]
        click.echo(f"{' vs '.join(result.labels)} -> {result.output} ({what}; {result.seconds:.1f} s)")


def _run(inputs, output_path, crops, as_html, labels, no_labels, quiet, layout, split_at, at, box, zoom, gt,
         upscale_mode, folder_fps, codec, crf, preset, pix_fmt, overwrite):
    from edvr_cli.commands.enhance_report import ProgressReporter
    from edvr_cli.compare import compare_crops, compare_html, compare_video

    if at and not (crops or as_html):
        raise click.BadParameter("is for --crops or --html", param_hint="'--at'")
    if box is not None and not crops:
        raise click.BadParameter("is for --crops", param_hint="'--box'")
    if gt is not None and not as_html:
        raise click.BadParameter("is for --html", param_hint="'--gt'")
    reporter = ProgressReporter(quiet, desc="comparing")
    common = dict(labels=labels, upscale_mode=upscale_mode, folder_fps=folder_fps, overwrite=overwrite,
                  reporter=reporter)
    if crops:
        return compare_crops(inputs, output_path, at=at, box=box, zoom=zoom, **common)
    if as_html:
        return compare_html(inputs, output_path, at=at, gt=gt, **common)
    return compare_video(inputs, output_path, layout=layout, split_at=split_at, codec=codec, crf=crf, preset=preset,
                         pix_fmt=pix_fmt, show_labels=not no_labels, **common)
