"""Running the network on batches of temporal windows: device, precision, tiles, self-ensemble.

`ModelRunner(model, device, ...)` turns windows of uint8 frames (n, t, h, w, 3) into restored
uint8 frames (n, h * scale, w * scale, 3):

    uint8 -> float [0, 1] on the device -> (x8 dihedral transforms) -> tiled forward (autocast)
          -> inverse transforms, mean -> clamp, round -> uint8

When the device runs out of memory, the same windows are run again with tiles half the size
(down to a floor), so a frame is never skipped or repeated; the smaller size is kept for the
rest of the video and the caller is told once per such episode.

Each frame is in `num_frame` consecutive windows. For a network that splits into per-frame layers
and the rest (`frame_features`, `fuse`, `pad_to_multiple` and `center_frame_idx`, as EDVR does),
the runner keeps the latest frames' per-frame features (`FrameFeatureCache`, per tile and
ensemble transform) and runs each frame through those layers once instead of once per window
(`reuse_features=True`, the default). The outputs are those of the plain forward.

On the CPU the runner asks glibc's malloc to keep freed memory for reuse
(`edvr_cli.host_memory`): the network's full-resolution tensors are otherwise mapped and zeroed
afresh by the kernel in every layer of every window.

Optional fast paths (each falls back to the plain path; none changes what the CPU does):
- on CUDA, `__call__` uploads uint8 windows from pinned host memory without blocking (plain
  copy when pinning fails);
- `compile=True` (or a torch.compile backend name) runs the network through `torch.compile`;
  any failure of the compiled network other than running out of memory (no compiler, an
  unsupported op, a failed recompile for a new tile size) is told once through `notify`, and
  the network runs uncompiled from then on. Off by default. Shapes are static: each new input
  size (tile sizes, transposed frames of the ensemble) is compiled once, when first seen.
- `channels_last=True` runs the network's convolutions in NHWC: a copy of the network with its
  4-d weights in `torch.channels_last` (the caller's network is left as it is), and each frame
  of the windows handed to it in that layout (what cuDNN's tensor-core kernels read without
  transposing). Same values up to float rounding; off by default (not yet measured on a GPU).
"""

from __future__ import annotations

import contextlib
import copy
from typing import Callable, NamedTuple

import numpy as np
import torch
from torch import nn

from edvr_cli.enhance.frame_cache import FrameFeatureCache
from edvr_cli.host_memory import keep_freed_memory
from edvr_cli.enhance.tiling import DEFAULT_TILE_OVERLAP, run_tiled
from models.errors import EdvrError

PRECISIONS = ("fp32", "fp16", "bf16")
_AUTOCAST_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}
MIN_TILE = 32  # input pixels; below this, margins dwarf the cores and retrying is pointless


class InferenceError(EdvrError, ValueError):
    """A device, precision or memory problem the user can fix; the message is one line."""


def choose_device(spec: str = "auto") -> torch.device:
    """`auto` -> the first CUDA device if one is usable, else the CPU; or `cpu`, `cuda`, `cuda:N`."""
    spec = spec.strip().lower()
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(spec)
    except RuntimeError:
        raise InferenceError(f"unknown device {spec!r}; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cpu":
        return device
    if device.type != "cuda":
        raise InferenceError(f"unsupported device {spec!r}; use auto, cpu, cuda or cuda:N")
    if not torch.cuda.is_available():
        raise InferenceError(f"device {spec!r} asked for, but this PyTorch sees no CUDA GPU "
                             f"(CPU-only build or no driver); use --device cpu")
    if device.index is not None and device.index >= torch.cuda.device_count():
        raise InferenceError(f"device {spec!r} asked for, but only {torch.cuda.device_count()} "
                             f"CUDA device(s) exist (cuda:0..cuda:{torch.cuda.device_count() - 1})")
    return device


def autocast_dtype(device: torch.device, precision: str) -> torch.dtype | None:
    """The autocast dtype for `precision` on `device` (None = plain fp32)."""
    if precision not in PRECISIONS:
        raise InferenceError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    if precision == "fp16" and device.type == "cpu":
        raise InferenceError("fp16 runs on CUDA only; on the CPU use --precision fp32 or bf16")
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise InferenceError(f"{device} has no bf16 support (it came with Ampere GPUs); use --precision fp16")
    return _AUTOCAST_DTYPES.get(precision)


def is_out_of_memory(error: BaseException) -> bool:
    """CUDA's out-of-memory error, also as the plain RuntimeError older PyTorch raises."""
    if isinstance(error, torch.cuda.OutOfMemoryError):
        return True
    return isinstance(error, RuntimeError) and "out of memory" in str(error)


# --- x8 self-ensemble: the dihedral group of the square as (flip rows, flip columns, transpose)

DIHEDRAL = [(flip_h, flip_w, transpose) for transpose in (False, True)
            for flip_h in (False, True) for flip_w in (False, True)]


def transform(x: torch.Tensor, flip_h: bool, flip_w: bool, transpose: bool) -> torch.Tensor:
    """Flip the last two dims (rows, columns) as asked, then swap them if `transpose`."""
    dims = [d for d, flip in ((-2, flip_h), (-1, flip_w)) if flip]
    if dims:
        x = torch.flip(x, dims)
    return x.transpose(-2, -1) if transpose else x


def inverse_transform(x: torch.Tensor, flip_h: bool, flip_w: bool, transpose: bool) -> torch.Tensor:
    """Undo `transform(., flip_h, flip_w, transpose)`."""
    if transpose:
        x = x.transpose(-2, -1)
    dims = [d for d, flip in ((-2, flip_h), (-1, flip_w)) if flip]
    return torch.flip(x, dims) if dims else x


class Restored(NamedTuple):
    """What one `ModelRunner.run` gives back."""

    frames: torch.Tensor  # (n, c, h*s, w*s) float, not clamped
    tile: int  # tile size in input pixels they were run with (0 = whole frames)


class ModelRunner:
    """Restore batches of temporal windows with `model`.

    Args:
        model: maps (n, t, 3, h, w) float in [0, 1] to (n, 3, h * model.scale, w * model.scale);
            needs `scale` and `num_frame` attributes (EDVR has them; `size_multiple` is used if present).
        device: where to run; the model is moved there.
        precision: 'fp32', 'fp16' (CUDA only) or 'bf16': autocast dtype for the forward pass.
        tile: tile size in input pixels; 0 = whole frames (until memory runs out).
        tile_overlap: margin around each tile, input pixels (see edvr_cli.enhance.tiling).
        ensemble: average the outputs of the 8 flips/transposes of each window.
        notify: called with one line when the tile size is reduced after running out of memory
            (and when a `compile` fast path falls back).
        min_tile: smallest tile tried before giving up.
        compile: False (default), True (torch.compile with its default backend, inductor) or a
            torch.compile backend name; falls back to the plain network on any failure.
        channels_last: run the network in the channels_last (NHWC) memory format (see the
            module docstring); False (default) leaves the network and its input as they are.
        reuse_features: run each frame through the network's per-frame layers once for all the
            windows it is in (see the module docstring); used when the network has them and
            runs uncompiled. Default: True.
    """

    def __init__(self, model: nn.Module, device: torch.device | str = "cpu", precision: str = "fp32",
                 tile: int = 0, tile_overlap: int = DEFAULT_TILE_OVERLAP, ensemble: bool = False,
                 notify: Callable[[str], None] | None = None, min_tile: int = MIN_TILE,
                 compile: bool | str = False, channels_last: bool = False, reuse_features: bool = True):
        if tile < 0 or tile_overlap < 0:
            raise InferenceError(f"tile size and overlap must be >= 0, got {tile} and {tile_overlap}")
        self.device = torch.device(device)
        if self.device.type == "cpu":
            keep_freed_memory()
        self.precision = precision
        self.autocast = autocast_dtype(self.device, precision)
        self.channels_last = bool(channels_last)
        if self.channels_last:  # a copy: the caller's network (maybe shared by other runners) keeps its layout
            model = copy.deepcopy(model).to(memory_format=torch.channels_last)
        self.model = model.to(self.device).eval()
        self.scale = int(model.scale)
        self.num_frame = int(model.num_frame)
        self.align = int(getattr(model, "size_multiple", 1))
        self.tile = tile
        self.tile_overlap = tile_overlap
        self.ensemble = ensemble
        self.notify = notify or (lambda message: None)
        self.min_tile = max(min_tile, 2 * self.align)
        parameter = next(model.parameters(), None)
        self.dtype = parameter.dtype if parameter is not None else torch.float32
        self.compiled = _compiled(self.model, compile, self.notify) if compile else None
        splits = all(hasattr(model, name)
                     for name in ("frame_features", "fuse", "pad_to_multiple", "center_frame_idx"))
        self.feature_cache = FrameFeatureCache(self.num_frame) if reuse_features and splits else None

    def _autocast(self):
        if self.autocast is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast)

    def _forward(self, frames: torch.Tensor, tile: int, frame_ids: list[list[int]] | None,
                 flips: tuple[bool, bool, bool] = (False, False, False)) -> torch.Tensor:
        """(n, t, c, h, w) -> (n, c, h*s, w*s) float, tiled. `frame_ids`: the windows' frames as
        the feature cache knows them (None: no reuse); `flips`: the ensemble transform applied."""
        with self._autocast():
            if frame_ids is not None and self.compiled is None:
                out = run_tiled(lambda tile_frames, box: self._forward_reusing(tile_frames, frame_ids, (flips, box)),
                                frames, self.scale, tile, self.tile_overlap, self.align, with_tile=True)
            else:
                out = self._run_tiled(frames, tile)
        return out.to(self.dtype)

    def _forward_reusing(self, frames: torch.Tensor, frame_ids: list[list[int]], context) -> torch.Tensor:
        """The network's forward of windows (n, t, c, h, w), with the per-frame features of frames
        seen before in the same `context` (tile, transform) taken from the cache."""
        h, w = frames.shape[-2:]
        padded = self.model.pad_to_multiple(frames)
        pyramids = self.feature_cache.pyramids(frame_ids, context, padded, self._frame_features)
        out = self.model.fuse(pyramids, padded[:, self.model.center_frame_idx])
        return out[:, :, : h * self.scale, : w * self.scale]

    def _frame_features(self, frames: torch.Tensor) -> list[torch.Tensor]:
        if self.channels_last:
            frames = frames.contiguous(memory_format=torch.channels_last)
        return self.model.frame_features(frames)

    def _run_tiled(self, frames: torch.Tensor, tile: int) -> torch.Tensor:
        if self.compiled is not None:
            try:
                return run_tiled(self._network(self.compiled), frames, self.scale, tile, self.tile_overlap,
                                 self.align)
            except Exception as error:  # noqa: BLE001 - any failure of the compiled path falls back
                if is_out_of_memory(error):
                    raise  # the tile-size retry's business, compiled or not
                self.compiled = None
                self.notify(f"torch.compile failed ({_one_line(error)}); running the network uncompiled")
        return run_tiled(self._network(self.model), frames, self.scale, tile, self.tile_overlap, self.align)

    def _network(self, network: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[torch.Tensor], torch.Tensor]:
        """What run_tiled calls per tile: the network, given channels_last frames when asked."""
        if not self.channels_last:
            return network
        return lambda tile: network(frames_channels_last(tile))

    def _forward_ensemble(self, frames: torch.Tensor, tile: int, frame_ids: list[list[int]] | None) -> torch.Tensor:
        if not self.ensemble:
            return self._forward(frames, tile, frame_ids)
        total = None
        for flips in DIHEDRAL:
            out = inverse_transform(self._forward(transform(frames, *flips), tile, frame_ids, flips), *flips)
            total = out if total is None else total + out
        return total / len(DIHEDRAL)

    def restore(self, frames: torch.Tensor) -> torch.Tensor:
        """(n, t, c, h, w) float in [0, 1] on the device -> (n, c, h*s, w*s) float, not clamped."""
        return self.run(frames).frames

    def run(self, frames: torch.Tensor) -> "Restored":
        """`restore`, reporting the tile size these frames were run with.

        Runs again with smaller tiles when memory runs out (see the class docstring); that
        smaller size is then the runner's for the following windows.
        """
        if frames.dim() != 5 or frames.shape[1] != self.num_frame:
            raise InferenceError(f"expected windows of shape (n, {self.num_frame}, c, h, w), "
                                 f"got {tuple(frames.shape)}")
        height, width = frames.shape[-2:]
        tile = self.tile
        first_tile = tile
        frame_ids = None
        if self.feature_cache is not None:
            with torch.no_grad():
                frame_ids = self.feature_cache.frame_ids(frames)
        while True:
            try:
                with torch.no_grad():
                    out = self._forward_ensemble(frames, tile, frame_ids)
                break
            except (torch.cuda.OutOfMemoryError, RuntimeError) as error:
                if not is_out_of_memory(error):
                    raise
            if self.feature_cache is not None:
                self.feature_cache.clear_features()
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
            current = tile if 0 < tile < max(height, width) else max(height, width)
            if current <= self.min_tile:
                raise InferenceError(
                    f"{self.device} ran out of memory even with {current} px tiles "
                    f"({frames.shape[0]} window(s) of {width}x{height}, {self.precision}); "
                    f"lower --batch, use --precision fp16/bf16, or --device cpu")
            tile = max(self.min_tile, (current + 1) // 2)
        if tile != first_tile:
            before = f"{first_tile} px tiles" if 0 < first_tile < max(height, width) else "whole frames"
            self.notify(f"{self.device} ran out of memory with {before}: these frames were run again "
                        f"with {tile} px tiles (--tile {tile}), kept for the rest of the video")
            self.tile = tile
        if self.feature_cache is not None:
            self.feature_cache.release()
        return Restored(out, tile)

    def __call__(self, windows: np.ndarray) -> np.ndarray:
        """(n, t, h, w, 3) uint8 RGB windows -> (n, h*s, w*s, 3) uint8 RGB restored centre frames."""
        if windows.ndim != 5 or windows.shape[-1] != 3 or windows.dtype != np.uint8:
            raise InferenceError(f"expected (n, t, h, w, 3) uint8 windows, got {windows.shape} {windows.dtype}")
        frames = self._upload(windows)
        frames = frames.permute(0, 1, 4, 2, 3).to(self.dtype).div_(255)  # (n, t, 3, h, w) in [0, 1]
        out = self.restore(frames)
        out = out.clamp_(0, 1).mul_(255).round_().to(torch.uint8)
        return out.permute(0, 2, 3, 1).contiguous().cpu().numpy()  # (n, h*s, w*s, 3)

    def _upload(self, windows: np.ndarray) -> torch.Tensor:
        """uint8 windows as a tensor on the device: on CUDA copied from pinned memory without
        blocking the host (a plain copy if pinning fails); on the CPU the array itself."""
        host = torch.from_numpy(np.ascontiguousarray(windows))
        if self.device.type != "cuda":
            return host.to(self.device)
        try:
            # the pinned block is kept from reuse until the copy is done (PyTorch records an event)
            return host.pin_memory().to(self.device, non_blocking=True)
        except RuntimeError:
            return host.to(self.device)


def frames_channels_last(frames: torch.Tensor) -> torch.Tensor:
    """(n, t, c, h, w) with each frame in channels_last order: the same values, strides such that
    `frames.reshape(n * t, c, h, w)` (what EDVR does first) is a view that is
    `torch.channels_last`-contiguous. No copy when they already are (e.g. uint8 HWC windows)."""
    return frames.permute(0, 1, 3, 4, 2).contiguous().permute(0, 1, 4, 2, 3)


def _one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0][:200]}" if text else type(error).__name__


def _compiled(model: nn.Module, compile: bool | str, notify: Callable[[str], None]) -> Callable | None:
    """`torch.compile(model)` (compiling happens at the first call), or None where it cannot be.

    Static shapes (`dynamic=False`): a video has few input sizes (whole frames, or a few tile
    sizes), each compiled once; dynamo's automatic dynamic shapes would recompile the second
    size symbolically, which inductor cannot do for EDVR (torch 2.13: "ValueRangeError: Invalid
    ranges"), so every later size would fall back."""
    backend = compile if isinstance(compile, str) else "inductor"
    try:
        return torch.compile(model, backend=backend, dynamic=False)
    except Exception as error:  # noqa: BLE001 - e.g. a torch without dynamo, an unknown backend
        notify(f"torch.compile is not available ({_one_line(error)}); running the network uncompiled")
        return None
