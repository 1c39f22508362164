"""Which network `edvr enhance` runs: `--model` / `--weights` resolved to a loaded EDVR.

A name can be a checkpoint file (any layout `models.load_model` reads), a registry name from
`edvr models` (downloaded once into the cache), a bundled model (`builtin-qe`, `builtin-sr4`:
models/weights/<name>.pth), a preset name together with `--weights`, or an `edvr export` ONNX
file (`*.onnx`, run by ONNX Runtime: edvr_cli/onnx/runtime.py).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from models.errors import EdvrError

BUILTIN_MODELS = ("builtin-qe", "builtin-sr4")
DEFAULT_MODEL = "builtin-qe"  # used when --model is not given
# task and measured held-out gain of each bundled model, as `edvr models` lists them
# (the measurements and how they were made: models/weights/README.md)
BUILTIN_SUMMARY = {
    "builtin-qe": ("qe-x265-qp37", "ours: +0.175 dB vs QP37 input"),
    "builtin-sr4": ("sr-x4", "ours: +2.99 dB vs bicubic"),
}


class ModelChoiceError(EdvrError, ValueError):
    """--model / --weights name nothing usable; the message is one line."""


@dataclass
class LoadedModel:
    """A network ready for `enhance`, and where it came from (for messages and --json)."""

    network: nn.Module
    name: str  # what the user asked for (preset, registry name, path)
    path: str  # checkpoint file


def builtin_weights_dir() -> Path:
    """Where the project's bundled weights live: models/weights/<name>.pth."""
    import models

    return Path(models.__file__).resolve().parent / "weights"


def builtin_weights_path(name: str) -> Path:
    """The file of bundled model `name` (it may be absent from this version)."""
    return builtin_weights_dir() / f"{name}.pth"


def bundled_models() -> list[str]:
    """The BUILTIN_MODELS whose weights this version ships."""
    return [name for name in BUILTIN_MODELS if builtin_weights_path(name).is_file()]


def load_enhance_model(model: str | None, weights: str | None = None, cache_dir: str | os.PathLike | None = None,
                       progress: bool = True) -> LoadedModel:
    """The network `--model` / `--weights` name.

    Args:
        model: a checkpoint path (any layout `models.load_model` reads); a registry name from
            `edvr models` (downloaded into the cache on first use); `builtin-qe` / `builtin-sr4`
            (models/weights/<name>.pth); a preset name (`small`, `edvr-m`, ...) with `weights`;
            or an `edvr export` file ending in .onnx (run by ONNX Runtime, see `edvr_cli.onnx.runtime`).
            None = `builtin-qe` when bundled.
        weights: checkpoint (path or registry name) for a preset name.
        cache_dir: download cache for registry names.
        progress: show a download progress bar.
    """
    from models import PRESETS, CheckpointError, build_model, load_model
    from models.checkpoint import load_state_checked, read_checkpoint
    from models.download import resolve_checkpoint

    if model is None:
        bundled = bundled_models()
        if DEFAULT_MODEL not in bundled:
            offer = f"--model {' / '.join(bundled)} (bundled), " if bundled else ""
            raise ModelChoiceError(f"no model given and this version bundles no default ({DEFAULT_MODEL}) "
                                   f"weights: pass {offer}--model PATH.pth, or a name from `edvr models`")
        model = DEFAULT_MODEL
    if model.lower().endswith(".onnx"):  # an `edvr export` file, run by ONNX Runtime
        if weights is not None:
            raise ModelChoiceError(f"--weights goes with a preset name, not with the ONNX model {model}")
        from edvr_cli.onnx.runtime import load_onnx_model

        return LoadedModel(load_onnx_model(model), model, str(model))
    if model in PRESETS:
        if weights is None:
            raise ModelChoiceError(f"--model {model} names an architecture; give its weights with --weights PATH")
        path = resolve_checkpoint(weights, cache_dir=cache_dir, progress=progress)
        network = build_model(model)
        _, state, _ = read_checkpoint(path)
        try:
            load_state_checked(network, state, source=f"{path} (for preset {model})")
        except CheckpointError as error:
            raise CheckpointError(f"{error}; drop the preset and pass --model {weights} alone to "
                                  f"use the checkpoint's own architecture") from None
        return LoadedModel(network.eval(), f"{model} + {weights}", str(path))
    if weights is not None:
        raise ModelChoiceError(f"--weights goes with a preset name ({', '.join(PRESETS)}), "
                               f"not with --model {model}")
    if model in BUILTIN_MODELS and not Path(model).exists():
        path = builtin_weights_path(model)
        if not path.is_file():
            raise ModelChoiceError(f"{model}: not bundled with this version (no {path})")
    else:
        path = resolve_checkpoint(model, cache_dir=cache_dir, progress=progress)
    if path.is_dir():
        raise CheckpointError(f"{path}: is a folder, not a checkpoint file")
    return LoadedModel(load_model(path), model, str(path))
