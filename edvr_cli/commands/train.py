"""`edvr train`: train EDVR with the seed's recipes; every preset value can be overridden."""

from __future__ import annotations

import signal
from pathlib import Path

import click

from edvr_cli.commands.failures import reported
from edvr_cli.commands.interrupts import STOP_SIGNALS, Interrupted, interrupted_message, signals_seen
from edvr_cli.windows import DEFAULT_PADDING, PADDING_MODES

# train.config.PRESETS' names (a test holds them equal): importing the table here would import
# torch (models/) for `edvr train --help`.
PRESET_NAMES = ("small", "large", "edvr-m-wotsa", "edvr-l-wotsa", "edvr-m", "edvr-l", "tiny")


class NumberList(click.ParamType):
    """A comma-separated list of numbers, e.g. `50000,50000,100000`."""

    def __init__(self, kind: type):
        self.kind = kind
        self.name = f"{kind.__name__}[,{kind.__name__}...]"

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        try:
            return tuple(self.kind(part) for part in str(value).split(",") if part.strip())
        except ValueError:
            self.fail(f"{value!r} is not a comma-separated list of {self.kind.__name__}s", param, ctx)


class NameList(click.ParamType):
    name = "name[,name...]"

    def convert(self, value, param, ctx):
        return value if isinstance(value, tuple) else tuple(p.strip() for p in str(value).split(",") if p.strip())


PATH = click.Path(path_type=Path)

# CLI option -> TrainConfig field, for options whose names differ.
FIELD_NAMES = {"frames": "num_frame", "blocks": "num_reconstruct_block", "extract_blocks": "num_extract_block",
               "workers": "num_workers", "loss": "loss_reduction", "bitrate": "bitrate_kbps",
               "predeblur": "with_predeblur", "tsa": "with_tsa", "nonlocal_": "nonlocal_attn", "threads": "cpu_threads",
               "keep_colour": "keep_input_colour"}


@click.command(name="train", short_help="Train EDVR with the seed's presets (small, large, edvr-m, edvr-l).")
@click.option("--preset", type=click.Choice(PRESET_NAMES), default="small", show_default=True,
              help="Recipe to start from: small/large = the seed's compressed-video runs (scale 1); "
                   "edvr-m/edvr-l(-wotsa) = BasicSR's x4 REDS stages; tiny = tests and CPU smoke runs.")
@click.option("--print-config", is_flag=True, help="Show the resolved configuration and exit.")
# data
@click.option("--gt", type=PATH, help="Ground truth: a video, a folder of frames, or a folder of clip "
                                      "folders / videos (REDS/LDV layout).")
@click.option("--lq", type=PATH, help="Paired input laid out like --gt (same clip names and frame counts).")
@click.option("--degrade", type=click.Choice(["compress", "compress3", "bicubic4"]),
              help="Make the input from --gt (once, cached): compress = x265 at --qp, compress3 = x265 "
                   "at --bitrate (two-pass), bicubic4 = x4 bicubic downsampling.  [preset default]")
@click.option("--qp", type=click.IntRange(0, 51), help="x265 QP for --degrade compress.  [default: 37]")
@click.option("--bitrate", type=click.IntRange(min=1), help="kbps for --degrade compress3.  [default: 200]")
@click.option("--cache-dir", type=PATH, help="Decoded/degraded clip cache.  [default: <EDVR cache>/train]")
@click.option("--val-clips", type=NameList(), help="Clip names held out for validation, comma-separated.")
@click.option("--val-frames", type=click.IntRange(min=0), help="Validate on the first N frames of each "
                                                              "clip (0 = all).  [default: 0]")
@click.option("--val-padding", type=click.Choice(PADDING_MODES),
              help=f"Temporal padding at clip ends in validation.  [default: {DEFAULT_PADDING}]")
@click.option("--patch", type=click.IntRange(min=1), help="Ground-truth patch side in pixels.")
@click.option("--batch", type=click.IntRange(min=1), help="Patches per GPU (per process) per step.")
@click.option("--intervals", type=NumberList(int), help="Temporal strides to draw from, e.g. 1,2 "
                                                         "(the seed's interval1_2).")
@click.option("--augment/--no-augment", default=None, help="Random flips and rotations.  [default: on]")
@click.option("--workers", type=click.IntRange(min=0), help="DataLoader workers per process.")
# network
@click.option("--frames", type=click.IntRange(min=1), help="Input frames per output frame (odd).")
@click.option("--num-feat", type=click.IntRange(min=1), help="Feature channels.")
@click.option("--blocks", type=click.IntRange(min=0), help="Reconstruction residual blocks.")
@click.option("--extract-blocks", type=click.IntRange(min=0), help="Feature-extraction residual blocks.")
@click.option("--num-hr-feat", type=click.IntRange(min=1), help="Channels of the last full-resolution convs.")
@click.option("--deformable-groups", type=click.IntRange(min=1), help="DCN offset groups.")
@click.option("--tsa/--no-tsa", default=None, help="TSA fusion, or a 1x1 conv over the frames.")
@click.option("--predeblur/--no-predeblur", default=None, help="Predeblur module for the first features.")
@click.option("--hr-in/--no-hr-in", default=None, help="High-resolution input (features at 1/4 size).")
@click.option("--scale", type=click.Choice(["1", "2", "4"]), help="Output size / input size.")
@click.option("--car/--no-car", default=None, help="Channel attention in reconstruction (seed's `car`).")
@click.option("--nonlocal/--no-nonlocal", "nonlocal_", default=None, help="Non-local attention (seed's `nonlocal`).")
@click.option("--dcn-backend", type=click.Choice(["pytorch", "torchvision", "auto"]),
              help="Deformable conv implementation.  [default: auto]")
# optimisation
@click.option("--iters", type=click.IntRange(min=1), help="Total iterations; the preset's periods scale "
                                                            "to it unless --periods is given.")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), help="Adam learning rate.")
@click.option("--periods", type=NumberList(int), help="Cosine-restart cycle lengths, e.g. 50000,50000,50000,100000.")
@click.option("--restart-weights", type=NumberList(float), help="lr multiplier per cycle, e.g. 1,0.5,0.5.")
@click.option("--eta-min", type=click.FloatRange(min=0), help="lr at each cycle's end.")
@click.option("--tsa-warmup", type=click.IntRange(min=0), help="Iterations training only the fusion module "
                                                                 "(needs --init from a no-TSA run).")
@click.option("--dcn-lr-mul", type=click.FloatRange(min=0), help="lr multiplier of the DCN layers.")
@click.option("--grad-clip", type=click.FloatRange(min=0), help="Clip the gradient norm (0 = off).")
@click.option("--criterion", type=click.Choice(["charbonnier", "l2"]), help="Pixel loss: the seed's "
              "Charbonnier (~L1) or l2 (squared error, what PSNR measures).  [default: charbonnier]")
@click.option("--keep-colour", is_flag=True, default=None, help="Train towards the "
              "ground truth moved to the input's mean colour (per patch): the network removes artefacts but "
              "learns no colour casts, which rarely carry over from a few training clips.")
@click.option("--loss", type=click.Choice(["sum", "mean"]), help="Loss reduction.  [default: sum]")
@click.option("--loss-weight", type=click.FloatRange(min=0, min_open=True),
              help="Loss weight.  [default: the seed's rule, (256*256*4) / (patch^2 * batch)]")
@click.option("--weight-decay", type=click.FloatRange(min=0), help="Adam weight decay.")
# loop
@click.option("--amp", type=click.Choice(["auto", "bf16", "fp16", "off"]),
              help="Mixed precision on GPU (CPU: always fp32).  [default: auto]")
@click.option("--max-bad-steps", type=click.IntRange(min=1), help="Stop after this many non-finite losses "
                                                                   "in a row.  [default: 20]")
@click.option("--log-every", type=click.IntRange(min=1), help="Iterations between log lines.")
@click.option("--val-every", type=click.IntRange(min=1), help="Iterations between validations.")
@click.option("--save-every", type=click.IntRange(min=1), help="Iterations between checkpoints.")
@click.option("--snapshot-every", type=click.IntRange(min=0), help="Also keep the weights every N "
              "iterations as snapshots/iter_N.pth, to pick one after the run.  [default: 0 = off]")
@click.option("--stop-at", type=click.IntRange(min=1), help="End this session after iteration N "
                                                             "(checkpoint written; resume later).")
@click.option("--threads", type=click.IntRange(min=0), help="torch threads on the CPU (0 = torch's "
                                                            "default).  [default: 0]")
@click.option("--seed", type=int, help="Seed for initialisation and sampling.  [default: 10]")
@click.option("--out", type=PATH, help="Run folder (last.pth, best.pth, log.jsonl).  [default: runs/edvr]")
@click.option("--init", type=PATH, help="Start from these weights (any layout `enhance` reads).")
@click.option("--identity-start", is_flag=True, default=None, help="Zero the last conv so training "
              "starts from the input itself (useful for short compressed-video runs).")
@click.option("--resume", type=PATH, help="Continue exactly from a run's last.pth (its configuration wins).")
@click.option("--overwrite", is_flag=True, help="Start a new run in an --out folder that holds one (its "
                                                 "checkpoints and log are removed when the new run starts).")
@click.option("--progress/--no-progress", default=True, show_default=True, help="Progress bars.")
def command(preset: str, print_config: bool, progress: bool, overwrite: bool, **options) -> None:
    """Train EDVR on your footage with the seed's recipes.

    \b
    Data: paired --gt/--lq folders of clip folders (REDS/LDV layout), or ground truth only
    (--gt videos or frame folders) with --degrade making the input once into a cache.
    Validation (--val-clips) reports PSNR/SSIM on whole frames against the input's own score.

    \b
    Examples:
      edvr train --preset small --gt footage/ --degrade compress --val-clips clip07
      edvr train --preset edvr-m-wotsa --gt REDS/train_sharp --lq REDS/train_sharp_bicubic \\
          --val-clips 000,011,015,020 --out runs/m-wotsa
      edvr train --preset edvr-m --init runs/m-wotsa/last.pth ... (TSA stage)
      torchrun --standalone --nproc_per_node 8 --no-python edvr train --preset large ...
      edvr train --resume runs/edvr/last.pth

    Ctrl-C (or SIGTERM) finishes the current step, saves last.pth and exits with status 130
    (143 after SIGTERM); a second Ctrl-C stops at once.
    """
    # Ctrl-C before the loop, or a second one inside it, stops at once: "training stopped".
    with reported("training stopped"), signals_seen() as seen:
        result, config = _train(preset, print_config, progress, options, overwrite)
    if result is None:
        return
    end_iter = min(config.iters, config.stop_at) if config.stop_at is not None else config.iters
    if result.iteration < end_iter:  # the loop's graceful stop: it finished the step and saved
        signum = next((sig for sig in seen if sig in STOP_SIGNALS), signal.SIGINT)
        raise Interrupted(interrupted_message(
            f"training stopped at iteration {result.iteration}; {Path(config.out) / 'last.pth'} is saved, "
            f"continue with --resume {Path(config.out) / 'last.pth'}", signum), signum)


def _train(preset: str, print_config: bool, progress: bool, options: dict, overwrite: bool):
    """Resolve the configuration and train; returns (TrainResult or None for --print-config, config)."""
    from edvr_cli.train.config import format_config, resolve_config, resume_config
    from edvr_cli.train.loop import train
    from edvr_cli.train.run_folder import check_run_folder

    overrides = {FIELD_NAMES.get(key, key): value for key, value in options.items() if value is not None}
    for key in ("gt", "lq", "cache_dir", "out", "init", "resume"):
        if key in overrides:
            overrides[key] = str(overrides[key])
    if "scale" in overrides:
        overrides["scale"] = int(overrides["scale"])
    if "resume" in overrides:
        from edvr_cli.train.checkpointing import read_training_checkpoint
        _, stored, _ = read_training_checkpoint(overrides["resume"])
        config = resume_config(stored, overrides)
    else:
        config = resolve_config(preset, overrides)
    if print_config:
        click.echo(format_config(config))
        return None, config
    check_run_folder(config.out, config.resume, overwrite)  # before the data is loaded
    from tqdm import tqdm

    return train(config, show_progress=progress, echo=tqdm.write, replace_run=overwrite), config
