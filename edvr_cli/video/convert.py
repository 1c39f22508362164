"""Frames' planes <-> the network's RGB, in float on the model's device (one conversion each way).

`FrameConverter(fmt, device)`:
- `to_rgb(planes)`: codes -> normalised values (the format's range) -> chroma upsampled to the
  luma grid -> RGB with the format's matrix: (3, h, w) float32, not clamped.
- `apply_change(planes, change, strength)`: the residual reconstruction of scale-1 restoration.
  The network's RGB change is taken to the format's own space (Y, Cb, Cr; or RGB; or gray), the
  chroma change brought to the chroma grid as the least-squares fit through the upsampling's
  adjoint (`colour.fit_chroma_change`), and
  `strength` times it added to the input's codes, rounded once. A zero change (or strength 0)
  returns the input planes bit for bit.
- `from_rgb(rgb)`: RGB (clamped to [0, 1]) to planes of the format, chroma by the same
  low-pass downsampling; for x4 outputs, PNG frames and RGB sources written as YUV.

Uploads to a CUDA device go through pinned (page-locked) host memory without blocking the host
(`to_device`); on the CPU a plane's tensor is the array itself, as before.
"""

from __future__ import annotations

import numpy as np
import torch

from edvr_cli.video import colour
from edvr_cli.video.frame import FrameFormat


def to_device(host: torch.Tensor, device: torch.device | str) -> torch.Tensor:
    """A CPU tensor on `device`.

    On CUDA it is copied into a pinned host buffer and from there without blocking the host
    (the copy is queued on the current stream, so later work on that stream sees it; PyTorch's
    pinned-memory cache records an event and reuses the buffer only once the copy is done, and
    the caller's array may be reused at once). If pinning fails (no page-locked memory left),
    a plain blocking copy. On the CPU (or any other device) `host.to(device)`: no copy at all."""
    device = torch.device(device)
    if device.type != "cuda":
        return host.to(device)
    try:
        staged = host.pin_memory()
    except RuntimeError:
        return host.to(device)
    return staged.to(device, non_blocking=True)


def upload(plane: np.ndarray, device: torch.device) -> torch.Tensor:
    """A uint8/uint16 plane as float32 codes on `device` (uint16 travels as int16 bits); on CUDA
    through pinned memory without blocking (`to_device`), the codes made there."""
    if plane.dtype == np.uint8:
        return to_device(torch.from_numpy(np.ascontiguousarray(plane)), device).to(torch.float32)
    bits = to_device(torch.from_numpy(np.ascontiguousarray(plane).view(np.int16)), device)
    return (bits.to(torch.int32) & 0xFFFF).to(torch.float32)


def download(codes: torch.Tensor, dtype: np.dtype) -> np.ndarray:
    """int32 codes (valid for `dtype`) on any device -> a numpy plane of `dtype`.

    Narrowed on the device first (less to copy); uint16 travels as int16 bits."""
    if dtype == np.uint8:
        return codes.to(torch.uint8).cpu().numpy()
    return codes.to(torch.int16).cpu().numpy().view(np.uint16).astype(dtype, copy=False)


class FrameConverter:
    """Conversions between planes of `fmt` and RGB float tensors on `device`."""

    def __init__(self, fmt: FrameFormat, device: torch.device | str = "cpu"):
        self.format = fmt
        self.device = torch.device(device)
        layout = fmt.layout
        self._family, self._depth = layout.family, layout.depth
        self._sub_y, self._sub_x = layout.sub_y, layout.sub_x

    # ---------------------------------------------------------------------------- to RGB

    def upload(self, planes: tuple[np.ndarray, ...]) -> list[torch.Tensor]:
        """Planes -> their codes as float32 tensors on the device (on CUDA: pinned, non-blocking
        copies of the uint8/uint16 planes, converted to float there)."""
        return [upload(plane, self.device) for plane in planes]

    def to_rgb(self, planes: tuple[np.ndarray, ...]) -> torch.Tensor:
        """Planes -> RGB (3, h, w) float32 on the device, not clamped."""
        return self.codes_to_rgb(self.upload(planes))

    def codes_to_rgb(self, codes: list[torch.Tensor]) -> torch.Tensor:
        fmt, depth = self.format, self._depth
        if self._family == "rgb":
            green, blue, red = (colour.normalise(c, depth, True, False) for c in codes)
            return torch.stack((red, green, blue))
        luma = colour.normalise(codes[0], depth, fmt.full_range, False)
        if self._family == "gray":
            return luma.expand(3, *luma.shape).clone()
        height, width = luma.shape
        cb, cr = (colour.upsample_chroma(colour.normalise(c, depth, fmt.full_range, True), height, width,
                                         self._sub_y, self._sub_x) for c in codes[1:])
        return colour.ycbcr_to_rgb(luma, cb, cr, fmt.matrix)

    # ----------------------------------------------------------------------- reconstruct

    def _space_change(self, rgb: torch.Tensor) -> list[tuple[torch.Tensor, bool]]:
        """An RGB change (or image) in the format's own space: [(plane, is_chroma)], full size."""
        if self._family == "rgb":
            red, green, blue = rgb.unbind(0)
            return [(green, False), (blue, False), (red, False)]
        luma, cb, cr = colour.rgb_to_ycbcr(rgb, self.format.matrix)
        if self._family == "gray":
            return [(luma, False)]
        return [(luma, False), (cb, True), (cr, True)]

    def _on_grid(self, plane: torch.Tensor, is_chroma: bool) -> torch.Tensor:
        if not is_chroma:
            return plane
        return colour.downsample_chroma(plane, self._sub_y, self._sub_x)

    def _full_range(self, is_chroma: bool) -> bool:
        return True if self._family == "rgb" else self.format.full_range

    def changed_codes(self, planes: tuple[np.ndarray, ...] | list[torch.Tensor], change: torch.Tensor,
                      strength: float = 1.0) -> list[torch.Tensor]:
        """Input planes (or their uploaded codes) + strength x the network's RGB `change`
        (3, h, w), in the format's space; rounded once: int32 codes on the device."""
        out = []
        for plane, (delta, is_chroma) in zip(planes, self._space_change(change.float())):
            codes = plane if isinstance(plane, torch.Tensor) else upload(plane, self.device)
            scale = colour.code_scale(self._depth, self._full_range(is_chroma), is_chroma)
            if is_chroma:
                delta = colour.fit_chroma_change(delta, *change.shape[-2:], self._sub_y, self._sub_x)
            out.append(colour.round_codes(codes + (strength * scale) * delta, self._depth))
        return out

    def apply_change(self, planes: tuple[np.ndarray, ...] | list[torch.Tensor], change: torch.Tensor,
                     strength: float = 1.0) -> tuple[np.ndarray, ...]:
        """`changed_codes` as numpy planes of the format."""
        dtype = self.format.layout.dtype
        return tuple(download(codes, dtype) for codes in self.changed_codes(planes, change, strength))

    def from_rgb(self, rgb: torch.Tensor) -> tuple[np.ndarray, ...]:
        """RGB (3, h, w), clamped to [0, 1], -> planes of the format."""
        dtype = self.format.layout.dtype
        out = []
        for value, is_chroma in self._space_change(rgb.float().clamp(0, 1)):
            codes = colour.to_codes(self._on_grid(value, is_chroma), self._depth,
                                    self._full_range(is_chroma), is_chroma)
            out.append(download(codes, dtype))
        return tuple(out)
