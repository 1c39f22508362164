"""`edvr enhance`: restore or upscale a video (or a folder of frames) with EDVR."""

from __future__ import annotations

import shlex
from fractions import Fraction
from pathlib import Path

import click

from edvr_cli.commands.enhance_options import FrameRate, TimeValue
from edvr_cli.commands.enhance_report import ProgressReporter, report
from edvr_cli.commands.failures import reported
from edvr_cli.enhance.settings import DEFAULTS
from edvr_cli.windows import PADDING_MODES


@click.command(name="enhance", short_help="Restore or upscale a video (or a folder of frames) with EDVR.")
@click.argument("inputs", metavar="INPUT...", nargs=-1, required=True)
@click.option("-o", "--output", "output_path", required=True, type=click.Path(),  # str: keeps a trailing /
              help="Output video file (its extension picks the container: .mp4, .mkv, ...), or a path "
                   "ending in / (or without extension) for a folder of numbered PNG frames. With several "
                   "inputs (or a folder or glob of videos): the folder that receives one output per input, "
                   "same name and container.")
@click.option("--model", default=None,
              help="A checkpoint file (BasicSR, MMEditing, original EDVR or our own layout), a name "
                   "from `edvr models` (downloaded on first use), builtin-qe / builtin-sr4, or a preset "
                   "(small, large, edvr-m, edvr-l) together with --weights.  [default: builtin-qe, "
                   "the bundled compressed-video model]")
@click.option("--weights", default=None,
              help="Checkpoint for a preset name given as --model (file or `edvr models` name).")
@click.option("--cache-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Download cache for model names.  [default: $EDVR_CACHE_DIR, else "
                   "$XDG_CACHE_HOME/edvr, else ~/.cache/edvr]")
@click.option("--frames", "window", type=int, default=None,
              help="Frames per temporal window. Must equal the model's own count (the default).")
@click.option("--padding", type=click.Choice(PADDING_MODES), default=DEFAULTS.padding,
              show_default=True,
              help="How windows are filled at the clip's ends (BasicSR's modes; its REDS tests use "
                   "reflection_circle, its deblur tests replicate).")
@click.option("--tile", type=click.IntRange(min=0), default=DEFAULTS.tile, show_default=True,
              help="Process frames in tiles of this many input pixels (0 = whole frames). Lowers "
                   "memory; on out-of-memory the size is halved automatically.")
@click.option("--tile-overlap", type=click.IntRange(min=0), default=DEFAULTS.tile_overlap, show_default=True,
              help="Context margin around each tile, in input pixels; the margin is cropped away, so "
                   "a margin covering the network's receptive field leaves no seam.")
@click.option("--batch", type=click.IntRange(min=1), default=DEFAULTS.batch, show_default=True,
              help="Windows per forward pass (more is faster on a GPU and needs more memory).")
@click.option("--device", default=DEFAULTS.device, show_default=True,
              help="auto (CUDA when available, else CPU), cpu, cuda or cuda:N.")
@click.option("--precision", type=click.Choice(["fp32", "fp16", "bf16"]), default=DEFAULTS.precision,
              show_default=True,
              help="Autocast precision. fp16 needs CUDA; bf16 works on CUDA and CPU.")
@click.option("--ensemble", is_flag=True,
              help="x8 self-ensemble: average the outputs for the 8 flips/transposes of each window "
                   "(8x slower, usually a little better).")
@click.option("--compile", "compile_network", is_flag=True,
              help="Run the network through torch.compile (inductor), which fuses its operations into "
                   "fewer, faster kernels, mostly worth it on a GPU for a long video. The first frames "
                   "(and the first of each new tile size) are slow while it compiles, a minute or more; "
                   "the results then match the uncompiled network's up to float rounding. If compiling "
                   "fails (no C++ compiler, an unsupported operation) a note says so and the network runs "
                   "uncompiled.")
@click.option("--strength", type=float, default=DEFAULTS.strength, show_default=True,
              help="How much of the network's correction to apply, 0 to 1: 1 = all of it, 0.5 = half way "
                   "between the input and the restoration, 0 = none. Lower it if the result looks "
                   "over-processed.")
@click.option("--codec", default=None,
              help="ffmpeg video encoder, e.g. libx265, libx264, ffv1 (lossless), libsvtav1, libvpx-vp9.  "
                   "[default: libx265 at --crf 8 for .mp4/.mkv/.mov (loses about 0.01 dB when "
                   "re-encoding compressed footage, see benchmarks/README.md), libvpx-vp9 for .webm, "
                   "ffv1 for .avi/.nut]")
@click.option("--crf", type=float, default=None,
              help="Constant rate factor (lower = better, bigger): 0-51 for libx264/libx265, 0-63 for "
                   "libvpx-vp9/libaom-av1/libsvtav1; an encoder without one refuses it.  "
                   "[default: the container's default codec's, e.g. 8 for libx265]")
@click.option("--preset", default=None,
              help="Encoder speed preset for encoders that have one (ultrafast ... veryslow).  "
                   "[default: medium for libx265]")
@click.option("--pix-fmt", default=None,
              help="Output pixel format.  [default: the input's own (same bit depth and chroma "
                   "subsampling, so nothing is converted), or a 4:4:4 one when the frame size "
                   "does not fit its chroma subsampling]")
@click.option("--encoder-arg", "encoder_args", multiple=True, metavar="ARGS",
              help="More ffmpeg output arguments, split like a shell line; repeatable. "
                   "E.g. --encoder-arg='-tune film' --encoder-arg='-x264-params keyint=48'.")
@click.option("--fps", "folder_fps", type=FrameRate(), default=None,
              help="Frame rate of a folder of images as input, up to 1000. Refused for a video input, "
                   f"which keeps its own exact rate.  [default: {DEFAULTS.folder_fps}]")
@click.option("--deinterlace", is_flag=True,
              help="Deinterlace interlaced input first (ffmpeg's bwdif, one output frame per input "
                   "frame). Without it, interlaced frames are restored as they are and written "
                   "interlaced with the input's field order.")
@click.option("--start", type=TimeValue(), default=None,
              help="Restore only from this time on (ffmpeg's syntax: 90, 1:30, 00:01:30.5), counted from the "
                   "first frame, to try settings on a few seconds first. The frames around the range are read "
                   "as the windows' real neighbours; the output starts at 0, with audio, subtitles and chapters "
                   "cut to the same range (audio re-encoded, to cut it exactly).  [default: the first frame]")
@click.option("--duration", type=TimeValue(), default=None,
              help="Restore only the frames within this long from --start (same syntax).  [default: to the end]")
@click.option("--segment-frames", type=click.IntRange(min=0), default=DEFAULTS.segment_frames, show_default=True,
              help="Restore in segments of this many frames, each kept in a hidden work folder beside the "
                   "output until the end, so that rerunning the same command after an interruption (Ctrl-C, "
                   "a crash, a power cut) reuses the finished ones. Each frame is restored exactly as in one "
                   "pass (bit for bit through a lossless codec such as ffv1). 0 = one pass, nothing to resume.")
@click.option("--ray", "ray_address", default=None, metavar="ADDRESS",
              help="Run the segments on a Ray cluster: `local` starts one on this machine, `auto` or "
                   "ray://host:port joins a running one (pip install 'edvr[ray]'). Inputs must be readable "
                   "at the same path on every node.")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Model replicas for --ray.  [default: one per GPU in the cluster, else 1]")
@click.option("--overwrite", is_flag=True, help="Replace an existing output.")
@click.option("--skip-existing", is_flag=True,
              help="With several inputs: an input whose output already exists is skipped (listed as "
                   "`skipped`), so an interrupted batch goes on with only what is left.")
@click.option("--quiet", is_flag=True, help="No progress bar and no summary line (notes still go to stderr).")
@click.option("--json", "as_json", is_flag=True,
              help="Print a JSON summary to stdout (input, output, frames, fps, seconds, device, "
                   "precision, model, ...) instead of the summary line.")
def command(inputs: tuple[str, ...], output_path: str, as_json: bool, **options) -> None:
    """Restore INPUT (a video, or a folder of images) with EDVR and write it to -o OUTPUT.

    Each output frame is the network's restoration of the input frame at the centre of a window
    of --frames neighbours. The output has exactly the input's frames, in order, at the input's
    exact frame rate (e.g. 24000/1001), each frame at its input frame's time (variable frame rate
    and a late-starting video stay in sync with the audio), and is --model's scale times larger.
    At scale 1 the output is the input's own planes plus the network's change: same pixel
    format, bit depth and colour tags, so --strength 0 through a lossless codec gives back the
    input bit for bit. Audio, subtitle and attachment tracks are copied from the input (converted
    only where the container cannot hold them; a note says so).

    The video is streamed: only the frames the current windows need are in memory. The output is
    written to a hidden file beside it and renamed when complete, so an error, Ctrl-C, SIGTERM or
    SIGHUP never leaves a partial file (exit status 130, 143, 129 after those signals). Only one
    run at a time may write an output: a second one refuses, naming the first one's pid.

    Long videos are restored in --segment-frames segments: rerun the same command after an
    interruption and only the unfinished segments are restored. Several inputs go into one
    output folder (a failing one is reported and the others go on; --skip-existing goes on after
    an interruption); --ray spreads the segments of all inputs over a Ray cluster's GPUs.

    \b
    Examples:
      edvr enhance clip.mp4 -o restored.mp4          # builtin-qe: x265/HEVC artefact removal
      edvr enhance small.mp4 -o small_x4.mp4 --model builtin-sr4
      edvr enhance clip.mp4 -o clip_x4.mp4 --model EDVR_M_x4_SR_REDS_official
      edvr enhance clip.mp4 -o clip_qe.mkv --model small --weights runs/small/net_latest.pth
      edvr enhance clip.mp4 -o clip_qe.mp4 --model ckpt.pth --device cuda --precision fp16 --tile 512
      edvr enhance frames/ -o restored/ --model ckpt.pth        # folder of PNGs in and out
      edvr enhance frames/ -o clip.mp4 --model ckpt.pth --fps 24000/1001 --crf 12
      edvr enhance clip.mp4 -o out.mp4 --model ckpt.pth --codec libx265 --encoder-arg='-tag:v hvc1'
      edvr enhance film.mkv -o film_qe.mkv                # rerun after Ctrl-C: resumes
      edvr enhance film.mkv -o try.mkv --start 1:30 --duration 5   # a 5-second preview
      edvr enhance a.mp4 b.mkv videos/ -o restored/       # one output per input
      edvr enhance films/ -o out/ --ray auto --workers 8  # on a running Ray cluster
    """
    with reported(lambda: _not_written(inputs, output_path)):
        results = _run(inputs, output_path, **options)  # the options' names are _run's parameters
    report(results, as_json, options["quiet"])


def _not_written(inputs: tuple[str, ...], output_path: str) -> str:
    """What an interrupted run says it left: nothing, or the segments and outputs a rerun reuses."""
    from edvr_cli.enhance.workfolder import kept_segments

    kept = kept_segments(output_path)
    segments = f"{kept} finished segment{'' if kept == 1 else 's'} kept"
    try:
        many = _is_many(inputs, _input_paths(inputs))
    except Exception:  # the inputs cannot be listed any more: say what holds for one input
        many = False
    if many:
        return (f"not every input was written to {output_path}{f' ({segments})' if kept else ''}; "
                f"run the same command with --skip-existing to go on")
    if not kept:
        return f"{output_path} was not written"
    return f"{output_path} was not written; {segments}: run the same command again to resume"


def _is_many(inputs: tuple[str, ...], paths: list[Path]) -> bool:
    """Several inputs, a folder of videos or a glob: outputs go into the -o folder."""
    return len(paths) > 1 or len(inputs) > 1 or paths[0] != Path(inputs[0])


def _run(inputs: tuple[str, ...], output_path: str, model: str | None, weights: str | None, cache_dir: Path | None,
         window: str | None, padding: str, tile: int, tile_overlap: int, batch: int, device: str, precision: str,
         ensemble: bool, strength: float, codec: str | None, crf: float | None, preset: str | None,
         pix_fmt: str | None, encoder_args: tuple[str, ...], folder_fps: Fraction | None, deinterlace: bool,
         segment_frames: int, ray_address: str | None, workers: int | None, overwrite: bool, skip_existing: bool,
         quiet: bool, compile_network: bool = False, start: Fraction | None = None, duration: Fraction | None = None):
    """Check what Click cannot check alone, then run `enhance` on one input or `enhance_many`."""
    from edvr_cli.enhance import EnhanceSettings
    from edvr_cli.model_choice import load_enhance_model

    settings = EnhanceSettings(window=window, padding=padding, tile=tile,
                               tile_overlap=tile_overlap, batch=batch, device=device,
                               precision=precision, ensemble=ensemble, strength=strength,
                               folder_fps=folder_fps if folder_fps is not None else DEFAULTS.folder_fps,
                               deinterlace=deinterlace, segment_frames=segment_frames, compile=compile_network,
                               start=start, duration=duration)  # checks --strength
    paths = _input_paths(inputs)
    many = _is_many(inputs, paths)
    if skip_existing and (overwrite or not many):
        raise click.BadParameter("with --overwrite it would have nothing to do" if overwrite else
                                 "is for several inputs (or a folder of videos) into an -o folder",
                                 param_hint="'--skip-existing'")
    if folder_fps is not None and any(path.exists() and not path.is_dir() for path in paths):
        raise click.BadParameter(f"sets the rate of a folder of images; {paths[0]} is a video, which keeps "
                                 f"its own exact frame rate (re-time the result with ffmpeg to change it)",
                                 param_hint="'--fps'")
    if workers is not None and ray_address is None:
        raise click.BadParameter("sets the model replicas of a --ray run; add --ray local (or a cluster address)",
                                 param_hint="'--workers'")
    encoder = _encoder(codec, crf, preset, pix_fmt, encoder_args)
    # The model is loaded (maybe downloaded) only once the (first) input has been probed.
    loaded = []

    def load():
        if not loaded:
            loaded.append(load_enhance_model(model, weights, cache_dir, progress=not quiet))
        return loaded[0]

    if not many:  # an output that cannot be written is refused before Ray or the model starts
        from edvr_cli.output_files import check_paths

        check_paths(paths[0], output_path, overwrite)
    pool = _ray_pool(ray_address, workers, load) if ray_address else None
    try:
        return _dispatch(paths, output_path, many, load, settings, encoder, overwrite, skip_existing, quiet, pool)
    finally:
        if pool is not None:
            pool.close()


def _dispatch(paths, output_path, many, load, settings, encoder, overwrite, skip_existing, quiet, pool):
    from edvr_cli.enhance import enhance
    from edvr_cli.enhance.many import enhance_many, enhance_on_pool
    from edvr_cli.output_files import is_folder_output

    if many:
        if not is_folder_output(output_path) and not Path(output_path).is_dir():
            raise click.BadParameter(f"with several inputs, -o names the folder that receives them; "
                                     f"{output_path} looks like a file (end it with /)", param_hint="'-o'")
        shared = ProgressReporter(quiet, shared=True)
        try:
            return enhance_many(paths, Path(output_path), load, settings, encoder, overwrite,
                                lambda path: shared if pool is not None else ProgressReporter(quiet), pool,
                                skip_existing=skip_existing)
        finally:
            shared.finish()
    if pool is not None:
        reporter = ProgressReporter(quiet, shared=True)
        try:
            return enhance_on_pool(paths[0], output_path, load, settings, encoder, overwrite, reporter, pool)
        finally:
            reporter.finish()
    return enhance(paths[0], output_path, load, settings, encoder, overwrite, ProgressReporter(quiet))


def _input_paths(inputs: tuple[str, ...]) -> list[Path]:
    from edvr_cli.enhance.many import expand_inputs

    return expand_inputs(list(inputs))


def _encoder(codec, crf, preset, pix_fmt, encoder_args):
    from edvr_cli.enhance import EncoderSettings

    try:
        extra_args = tuple(arg for text in encoder_args for arg in shlex.split(text))
    except ValueError as error:
        raise click.ClickException(f"--encoder-arg: {error}") from None
    # The codec, and so the --crf range, is resolved per output from its container (start_job).
    return EncoderSettings(codec=codec, crf=crf, preset=preset, pix_fmt=pix_fmt, extra_args=extra_args)


def _ray_pool(address: str, workers: int | None, load):
    from edvr_cli.enhance.ray_pool import RayPool

    return RayPool(address, workers, load().network)

