"""`edvr export`: an EDVR model as an ONNX file for ONNX Runtime, TensorRT and VapourSynth."""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path

import click

from edvr_cli.commands.failures import reported


@click.command(name="export", short_help="Export a model to ONNX (for ONNX Runtime, TensorRT, VapourSynth).")
@click.option("--model", default=None,
              help="What to export: a checkpoint file, a name from `edvr models`, builtin-qe / builtin-sr4, "
                   "or a preset name with --weights.  [default: builtin-qe]")
@click.option("--weights", default=None, help="Checkpoint for a preset name given as --model.")
@click.option("--cache-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Download cache for model names.  [default: $EDVR_CACHE_DIR, else "
                   "$XDG_CACHE_HOME/edvr, else ~/.cache/edvr]")
@click.option("-o", "--output", "output_text", required=True, type=click.Path(),
              help="The .onnx file to write.")
@click.option("--fp16", is_flag=True,
              help="Convolutions in float16, weights too (a smaller file; for GPUs and TensorRT). "
                   "Input and output stay float32; the deformable sampling stays float32.")
@click.option("--opset", type=click.IntRange(min=1), default=None,
              help="ONNX opset.  [default: 16, the lowest with GridSample, which the deformable "
                   "convolution needs]")
@click.option("--layout", type=click.Choice(["ntchw", "nchw"]), default="ntchw", show_default=True,
              help="ntchw: input `frames` (N, T, 3, H, W). nchw: input `input` (N, 3T, H, W), the T frames' "
                   "RGB planes stacked frame-major, as VapourSynth's vs-mlrt feeds its clips.")
@click.option("--verify/--no-verify", default=True, show_default=True,
              help="Compare ONNX Runtime's output with PyTorch's at two frame sizes before writing "
                   "(needs onnxruntime).")
@click.option("--overwrite", is_flag=True, help="Replace an existing output file.")
@click.option("--json", "as_json", is_flag=True, help="Print what was written (path, size, metadata) as JSON.")
def command(model: str | None, weights: str | None, cache_dir: Path | None, output_text: str, fp16: bool,
            opset: int | None, layout: str, verify: bool, overwrite: bool, as_json: bool) -> None:
    """Export MODEL to an ONNX file that runs without PyTorch.

    The graph takes `frames` (N, T, 3, H, W) float32 RGB in [0, 1] and returns `restored`
    (N, 3, scale*H, scale*W); N, H and W are dynamic, and the graph pads H and W to the model's
    size multiple itself. With --layout nchw the input is `input` (N, 3T, H, W) instead. The file's metadata holds scale, frames (T), centre frame, size
    multiple, padding and the source checkpoint's sha256. Run it with
    `edvr enhance clip.mp4 -o out.mkv --model model.onnx`, or in ONNX Runtime (see docs/EXPORT.md).

    \b
    Examples:
      edvr export --model builtin-sr4 -o edvr_sr4.onnx
      edvr export --model EDVR_M_x4_SR_REDS_official -o edvr_m.onnx --fp16
      edvr export --model small --weights runs/small/best.pth -o small.onnx
      edvr export --model builtin-qe -o qe_vsmlrt.onnx --layout nchw    # for vs-mlrt
    """
    from edvr_cli.model_choice import load_enhance_model

    if output_text.endswith(("/", os.sep)):  # as for enhance, a trailing slash names a folder
        raise click.ClickException(f"{output_text}: names a folder; name the .onnx file to write, e.g. "
                                   f"{Path(output_text) / 'model.onnx'}")
    output_path = Path(output_text)
    if output_path.suffix.lower() != ".onnx":
        raise click.ClickException(f"{output_path}: the output name must end in .onnx "
                                   f"(that is how `edvr enhance --model` recognises it)")
    if model is not None and model.lower().endswith(".onnx"):
        raise click.ClickException(f"--model {model} is already an ONNX file; export a checkpoint, "
                                   f"a model name or a preset with --weights")
    try:
        import onnx  # noqa: F401
    except ImportError:
        raise click.ClickException("edvr export needs the onnx package: pip install 'edvr[onnx]'") from None
    if verify:
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            raise click.ClickException("--verify needs onnxruntime: pip install 'edvr[onnx]', "
                                       "or pass --no-verify") from None

    from edvr_cli.onnx.export import MIN_OPSET, export_onnx

    with reported(f"{output_path} was not written"):
        loaded = load_enhance_model(model, weights, cache_dir, progress=not as_json)
        info = export_onnx(loaded.network, output_path, opset=opset or MIN_OPSET, fp16=fp16,
                           source=loaded.name, source_path=loaded.path, verify=verify, overwrite=overwrite,
                           layout=layout)
    if as_json:
        click.echo(json.dumps(asdict(info), indent=2))
        return
    meta = info.metadata
    verified = ("verified against PyTorch: max |difference| "
                + ", ".join(f"{diff:.1e} at {size}" for size, diff in info.max_abs_diff.items())
                if info.max_abs_diff else "not verified (--no-verify)")
    click.echo(f"{info.path}: {info.bytes / 1e6:.1f} MB, opset {info.opset}, {info.precision}, "
               f"x{meta['scale']}, {meta['num_frame']} frames, any size (padded to multiples of "
               f"{meta['size_multiple']} inside); {verified}")


