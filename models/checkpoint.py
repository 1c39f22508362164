"""Reading EDVR checkpoints of every common layout, and writing our own.

Layouts recognised (all mapped onto BasicSR's parameter names, which `EDVR` uses):
- ours: {"edvr_config": {...}, "params": state_dict, ...}; the configuration travels with the weights.
- BasicSR: {"params": ..., "params_ema": ...}; `params_ema` is preferred, as BasicSR tests with it.
- MMEditing / MMagic: {"state_dict": {"generator.<name>": ...}} with ConvModule's `.conv` level and
  renamed modules (pcd_alignment, feat_l2_conv1, upsample1.upsample_conv, ...).
- original xinntao/EDVR: a bare state dict (tsa_fusion, recon_trunk, HRconv, L1_dcnpack, ...).
Only tensors and plain containers are read (`torch.load(weights_only=True)`): no code runs.
"""

from __future__ import annotations

import errno
import os
import re
import tempfile
import warnings
from pathlib import Path

from typing import Callable

import torch

from models.edvr import EDVR
from models.errors import EdvrError

FORMAT_VERSION = 1


class CheckpointError(EdvrError, ValueError):
    """A checkpoint that cannot be read or does not fit the network; the message is one line."""


# --- foreign names -> BasicSR names -------------------------------------------------------------

_MMEDIT_RENAMES = [
    (r"^pcd_alignment\.", "pcd_align."),
    (r"^feat_l([23])_conv([12])\.", r"conv_l\1_\2."),
    (r"^upsample([12])\.upsample_conv\.", r"upconv\1."),
    (r"\.conv\.(weight|bias)$", r".\1"),  # ConvModule wraps its nn.Conv2d as `.conv`
]

_ORIGINAL_RENAMES = [
    # predeblur (hr_in): conv_first_1/2/3 are the entry conv and the two stride-2 convs
    (r"^pre_deblur\.conv_first_1\.", "predeblur.conv_first."),
    (r"^pre_deblur\.conv_first_2\.", "predeblur.stride_conv_hr1."),
    (r"^pre_deblur\.conv_first_3\.", "predeblur.stride_conv_hr2."),
    (r"^pre_deblur\.conv_first\.", "predeblur.conv_first."),
    (r"^pre_deblur\.deblur_L([23])_conv\.", r"predeblur.stride_conv_l\1."),
    (r"^pre_deblur\.RB_L3_1\.", "predeblur.resblock_l3."),
    (r"^pre_deblur\.RB_L2_([12])\.", r"predeblur.resblock_l2_\1."),
    (r"^pre_deblur\.RB_L1_([1-5])\.", lambda m: f"predeblur.resblock_l1.{int(m.group(1)) - 1}."),
    # hr_in without predeblur
    (r"^conv_first_1\.", "conv_first."),
    (r"^conv_first_2\.", "stride_conv_hr1."),
    (r"^conv_first_3\.", "stride_conv_hr2."),
    (r"^fea_L([23])_conv([12])\.", r"conv_l\1_\2."),
    (r"^pcd_align\.L([123])_offset_conv([123])\.", r"pcd_align.offset_conv\2.l\1."),
    (r"^pcd_align\.L([123])_dcnpack\.", r"pcd_align.dcn_pack.l\1."),
    (r"^pcd_align\.L([12])_fea_conv\.", r"pcd_align.feat_conv.l\1."),
    (r"\.conv_offset_mask\.", ".conv_offset."),
    # the original's tAtt_2 embeds the reference frame, as BasicSR's temporal_attn1 does
    (r"^tsa_fusion\.tAtt_2\.", "fusion.temporal_attn1."),
    (r"^tsa_fusion\.tAtt_1\.", "fusion.temporal_attn2."),
    (r"^tsa_fusion\.fea_fusion\.", "fusion.feat_fusion."),
    (r"^tsa_fusion\.sAtt_add_([12])\.", r"fusion.spatial_attn_add\1."),
    (r"^tsa_fusion\.sAtt_L([123])\.", r"fusion.spatial_attn_l\1."),
    (r"^tsa_fusion\.sAtt_([1-5])\.", r"fusion.spatial_attn\1."),
    (r"^tsa_fusion\.", "fusion."),  # without TSA the fusion is one conv
    (r"^recon_trunk\.", "reconstruction."),
    (r"^HRconv\.", "conv_hr."),
]


def _rename(state: dict, rules) -> dict:
    renamed = {}
    for key, value in state.items():
        new_key = key
        for pattern, replacement in rules:
            new_key = re.sub(pattern, replacement, new_key)
        renamed[new_key] = value
    return renamed


def _strip_prefix(state: dict, prefix: str) -> dict:
    if state and all(key.startswith(prefix) for key in state):
        return {key[len(prefix):]: value for key, value in state.items()}
    return state


def to_basicsr_layout(checkpoint) -> tuple[str, dict, dict | None]:
    """Find the weights in a loaded checkpoint and name them as BasicSR does.

    Returns (layout name, state dict with BasicSR names, stored config or None).
    """
    if not isinstance(checkpoint, dict) or not checkpoint:
        raise CheckpointError("not an EDVR checkpoint: expected a dict of weights")
    if "edvr_config" in checkpoint and "params" in checkpoint:
        return "edvr", dict(checkpoint["params"]), dict(checkpoint["edvr_config"])
    if "params_ema" in checkpoint or "params" in checkpoint:
        state = checkpoint.get("params_ema") or checkpoint["params"]
        return "basicsr", _strip_prefix(dict(state), "module."), None
    if "state_dict" in checkpoint:
        state = {k[len("generator."):]: v for k, v in checkpoint["state_dict"].items()
                 if k.startswith("generator.")}
        if not state:
            raise CheckpointError("MMEditing checkpoint without `generator.` weights")
        return "mmediting", _rename(state, _MMEDIT_RENAMES), None
    state = _strip_prefix({k: v for k, v in checkpoint.items() if isinstance(v, torch.Tensor)}, "module.")
    if not state:
        raise CheckpointError("not an EDVR checkpoint: no weights found")
    if any(key.startswith(("tsa_fusion.", "recon_trunk.", "fea_L2_conv1.", "pre_deblur.")) for key in state):
        return "original", _rename(state, _ORIGINAL_RENAMES), None
    return "basicsr", state, None


def _count_blocks(state: dict, prefix: str) -> int:
    pattern = re.compile(rf"^{re.escape(prefix)}\.(\d+)\.conv1\.weight$")
    indices = {int(m.group(1)) for key in state if (m := pattern.match(key))}
    return max(indices) + 1 if indices else 0


def infer_config(state: dict) -> dict:
    """EDVR constructor arguments read off BasicSR-named tensors' names and shapes."""
    try:
        num_feat = state["conv_l2_1.weight"].shape[0]
        with_predeblur = "predeblur.conv_first.weight" in state
        hr_in = "predeblur.stride_conv_hr1.weight" in state or "stride_conv_hr1.weight" in state
        with_tsa = "fusion.temporal_attn1.weight" in state
        fusion_weight = state["fusion.feat_fusion.weight" if with_tsa else "fusion.weight"]
        offset_weight = state["pcd_align.dcn_pack.l1.conv_offset.weight"]
        first_conv = state["predeblur.conv_first.weight" if with_predeblur else "conv_first.weight"]
        conv_hr = state["conv_hr.weight"]
    except KeyError as error:
        raise CheckpointError(f"not an EDVR checkpoint: no tensor {error.args[0]!r}") from None
    num_taps = offset_weight.shape[-1] * offset_weight.shape[-2]
    num_upsample_stages = 2 if "upconv1.weight" in state else 1 if "upconv2.weight" in state else 0
    feature_stride = 4 if hr_in else 1
    return dict(
        num_in_ch=first_conv.shape[1],
        num_out_ch=state["conv_last.weight"].shape[0],
        num_feat=num_feat,
        num_frame=fusion_weight.shape[1] // num_feat,
        deformable_groups=offset_weight.shape[0] // (3 * num_taps),
        num_extract_block=_count_blocks(state, "feature_extraction"),
        num_reconstruct_block=_count_blocks(state, "reconstruction"),
        hr_in=hr_in,
        with_predeblur=with_predeblur,
        with_tsa=with_tsa,
        scale=max(2 ** num_upsample_stages // feature_stride, 1),
        car="reconstruction.0.attention.squeeze.weight" in state,
        nonlocal_attn="nonlocal_attn.query.weight" in state,
        num_hr_feat=conv_hr.shape[0],
    )


def load_checkpoint_file(path: str | Path, map_location="cpu"):
    """The file's contents as `torch.load(weights_only=True)` reads them: tensors and plain
    containers, never code. Every checkpoint this project reads (weights, training state) comes
    through here; a missing or unloadable file is one CheckpointError line."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        with warnings.catch_warnings():
            # torch warns about legacy (pre-zip) files, TypedStorage and such: none of it helps here
            warnings.simplefilter("ignore")
            return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # pickle, zip and unsafe-global errors all mean "not loadable"
        raise CheckpointError(f"{path}: not a loadable checkpoint ({_load_failure(error)})") from None


def read_checkpoint(path: str | Path, map_location="cpu") -> tuple[str, dict, dict]:
    """Load a checkpoint file safely. Returns (layout, BasicSR-named float32 state dict, config)."""
    layout, state, config = to_basicsr_layout(load_checkpoint_file(path, map_location))
    # Half-precision bundles are stored small; the network computes in float32.
    state = {key: value.float() if value.is_floating_point() else value for key, value in state.items()}
    inferred = infer_config(state)
    if config is None:
        config = inferred
    return layout, state, config


_UNSAFE_GLOBAL = re.compile(r"Unsupported global: GLOBAL ([\w.]+)")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _load_failure(error: Exception) -> str:
    """Why torch.load(weights_only=True) refused, in one line, without torch's advice to load
    with weights_only=False (which would run whatever code the file carries)."""
    text = _ANSI.sub("", str(error)).strip()
    if match := _UNSAFE_GLOBAL.search(text):
        return (f"it holds a pickled Python object ({match.group(1)}), not only tensors; only weights are "
                f"read, never code. Save just the state dict from the program that wrote it")
    if "WeightsUnpickler error:" in text:
        detail = next((line.strip() for line in text.split("WeightsUnpickler error:", 1)[1].splitlines()
                       if line.strip()), "unreadable data")
        return f"not a PyTorch checkpoint, or a damaged one: {detail}"
    if "zip archive" in text or (isinstance(error, OSError) and error.errno == errno.EINVAL):
        return "damaged or cut short: its zip archive cannot be read"
    lines = [line.strip() for line in text.splitlines() if line.strip() and "weights_only" not in line]
    return lines[0] if lines else f"torch.load failed ({type(error).__name__})"


def load_state_checked(model: EDVR, state: dict, source: str = "checkpoint") -> None:
    """Load `state` into `model`, or raise one line naming the missing and unexpected keys."""
    expected = model.state_dict()
    missing = [key for key in expected if key not in state]
    unexpected = [key for key in state if key not in expected]
    wrong_shape = [key for key in expected if key in state and state[key].shape != expected[key].shape]

    def listed(keys):
        return ", ".join(keys[:4]) + (f" (+{len(keys) - 4} more)" if len(keys) > 4 else "")

    problems = []
    if missing:
        problems.append(f"missing keys: {listed(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {listed(unexpected)}")
    if wrong_shape:
        problems.append(f"wrong shapes: {listed(wrong_shape)}")
    if problems:
        raise CheckpointError(f"{source} does not fit the network; " + "; ".join(problems))
    model.load_state_dict(state, strict=True)


def load_model(path: str | Path, map_location="cpu", dcn_backend: str = "pytorch", **overrides) -> EDVR:
    """Build the network a checkpoint describes and load its weights; returns it in eval mode.

    `overrides` change constructor arguments the weights cannot tell (e.g. center_frame_idx).
    """
    layout, state, config = read_checkpoint(path, map_location)
    config.update(overrides)
    try:
        model = EDVR(**config, dcn_backend=dcn_backend)
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"{path}: cannot build EDVR from its configuration ({error})") from None
    load_state_checked(model, state, source=f"{path} ({layout} layout)")
    return model.eval()


def model_config(model: EDVR) -> dict:
    """The constructor arguments of `model` (a copy)."""
    return dict(model.config)


def save_model(model: EDVR, path: str | Path, extra: dict | None = None, half: bool = False) -> None:
    """Write `model` in our format: BasicSR's `params` plus `edvr_config`, atomically.

    Args:
        extra: more plain entries to store (training state, provenance).
        half: store floating tensors as float16 (bundled weights: half the size).
    """
    params = {key: (value.half() if half and value.is_floating_point() else value).detach().cpu()
              for key, value in model.state_dict().items()}
    checkpoint = {"format_version": FORMAT_VERSION, "edvr_config": model_config(model), "params": params}
    checkpoint.update(extra or {})
    write_atomically(path, lambda tmp_name: torch.save(checkpoint, tmp_name))


def write_atomically(path: str | Path, write: Callable[[str], None]) -> None:
    """`write(tmp_name)` into a hidden file beside `path`, then rename it onto `path`; on any
    failure (or Ctrl-C) the hidden file is removed and `path` is untouched."""
    path = Path(path)
    handle, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent or ".")
    os.close(handle)
    try:
        write(tmp_name)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_name, 0o666 & ~umask)  # mkstemp makes 0600; a written file is an ordinary one
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
