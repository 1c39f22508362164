"""The `edvr` command group.

Subcommands live in `edvr_cli.commands.<name>` and are imported only when used, so
`edvr --help` stays fast (no torch import).
"""

from __future__ import annotations

import importlib

import click

from edvr_cli import __version__

# name -> (module under edvr_cli.commands, one-line help shown by `edvr --help`)
SUBCOMMANDS = {
    "enhance": ("enhance", "Restore or upscale a video (or a folder of frames) with EDVR."),
    "compare": ("compare", "Compare videos side by side (video, crops, HTML page)."),
    "eval": ("evaluate", "Score restored frames against ground truth (PSNR/SSIM, as the papers do)."),
    "train": ("train", "Train EDVR with the seed's presets (small, large, edvr-m, edvr-l)."),
    "models": ("zoo", "List the named EDVR checkpoints (bundled and published)."),
    "export": ("export", "Export a model to ONNX (for ONNX Runtime, TensorRT, VapourSynth)."),
}


class LazyGroup(click.Group):
    """A group whose subcommands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(SUBCOMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in SUBCOMMANDS:
            return None
        module_name, short_help = SUBCOMMANDS[cmd_name]
        module = importlib.import_module(f"edvr_cli.commands.{module_name}")
        command = module.command
        command.short_help = command.short_help or short_help
        return command


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="edvr")
def main() -> None:
    """Restore compressed, low-resolution or blurry video with EDVR.

    \b
    Typical use:
      edvr enhance clip.mp4 -o clip_x4.mp4 --model builtin-sr4
      edvr compare clip_x4.mp4 clip.mp4 -o side_by_side.mp4
      edvr eval --gt frames/gt --pred frames/restored --lq frames/input
      edvr train --preset small --gt footage/ --degrade compress --val-clips clip07

    Run `edvr COMMAND --help` for each command's options.
    """
