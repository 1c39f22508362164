"""Colour maths between a video's planes and the network's RGB, as pure torch functions.

Values here are floats: luma/RGB in [0, 1], chroma in [-0.5, 0.5] ("normalised"); codes are the
integers stored in the planes. Nothing rounds except `to_codes`, so a conversion and its inverse
agree to float precision.

- `normalise` / `to_codes`: codes <-> normalised values for a bit depth and range (limited
  "tv": luma 16..235 and chroma 16..240 scaled by 2^(depth-8); full "pc": 0..2^depth-1).
- `ycbcr_to_rgb` / `rgb_to_ycbcr`: the matrix of BT.601, BT.709, BT.2020 (non-constant
  luminance), SMPTE 240M or FCC, by its luma weights.
- `upsample_chroma` / `chroma_adjoint` / `downsample_chroma`: chroma planes to the luma grid by
  linear interpolation with each chroma sample centred on the luma samples it covers (the
  siting ffmpeg's scaler assumes, so frames look as they did through ffmpeg's own RGB
  conversion, on which the bundled models were trained); its exact adjoint; and the adjoint
  normalised so that a
  constant plane stays that constant — used to bring a full-resolution chroma *change* (or, at
  x4, a full-resolution chroma plane) back to the chroma grid.
"""

from __future__ import annotations

import torch

# Luma weights (Kr, Kb) of each matrix, by ffmpeg's colorspace names.
LUMA_WEIGHTS = {
    "bt709": (0.2126, 0.0722),
    "bt470bg": (0.299, 0.114), "smpte170m": (0.299, 0.114), "bt601": (0.299, 0.114),
    "bt2020nc": (0.2627, 0.0593), "bt2020c": (0.2627, 0.0593),
    "smpte240m": (0.212, 0.087),
    "fcc": (0.30, 0.11),
}


def normalise(codes: torch.Tensor, depth: int, full_range: bool, chroma: bool) -> torch.Tensor:
    """Integer plane codes (any dtype) -> float: luma in [0, 1], chroma in [-0.5, 0.5]."""
    codes = codes.to(torch.float32) if not codes.is_floating_point() else codes
    if full_range:
        peak = float(2 ** depth - 1)
        return (codes - 2 ** (depth - 1)) / peak if chroma else codes / peak
    step = float(2 ** (depth - 8))
    return (codes - 128 * step) / (224 * step) if chroma else (codes - 16 * step) / (219 * step)


def code_scale(depth: int, full_range: bool, chroma: bool) -> float:
    """Codes per unit of normalised value (the slope of `to_codes`)."""
    if full_range:
        return float(2 ** depth - 1)
    return float((224 if chroma else 219) * 2 ** (depth - 8))


def to_codes_float(values: torch.Tensor, depth: int, full_range: bool, chroma: bool) -> torch.Tensor:
    """Normalised values -> codes as floats, not rounded (the inverse of `normalise`)."""
    if full_range:
        offset = 2 ** (depth - 1) if chroma else 0
    else:
        offset = (128 if chroma else 16) * 2 ** (depth - 8)
    return values * code_scale(depth, full_range, chroma) + offset


def round_codes(codes: torch.Tensor, depth: int) -> torch.Tensor:
    """Float codes -> the nearest valid integer code (int32), the one rounding of the path."""
    return codes.round().clamp_(0, 2 ** depth - 1).to(torch.int32)


def to_codes(values: torch.Tensor, depth: int, full_range: bool, chroma: bool) -> torch.Tensor:
    """Normalised values -> integer codes (int32), rounded and clamped to the depth."""
    return round_codes(to_codes_float(values, depth, full_range, chroma), depth)


def _weights(matrix: str) -> tuple[float, float, float]:
    try:
        kr, kb = LUMA_WEIGHTS[matrix]
    except KeyError:
        raise ValueError(f"unknown YUV matrix {matrix!r}; known: {', '.join(LUMA_WEIGHTS)}") from None
    return kr, 1.0 - kr - kb, kb


def ycbcr_to_rgb(y: torch.Tensor, cb: torch.Tensor, cr: torch.Tensor, matrix: str) -> torch.Tensor:
    """Normalised Y, Cb, Cr planes of one size (..., h, w) -> RGB (..., 3, h, w), not clamped."""
    kr, kg, kb = _weights(matrix)
    r = y + 2 * (1 - kr) * cr
    b = y + 2 * (1 - kb) * cb
    g = (y - kr * r - kb * b) / kg
    return torch.stack((r, g, b), dim=-3)


def rgb_to_ycbcr(rgb: torch.Tensor, matrix: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """RGB (..., 3, h, w) -> normalised (Y, Cb, Cr), each (..., h, w); linear, so it also maps
    an RGB *change* to the YCbCr change."""
    kr, kg, kb = _weights(matrix)
    r, g, b = rgb.unbind(dim=-3)
    y = kr * r + kg * g + kb * b
    return y, (b - y) / (2 * (1 - kb)), (r - y) / (2 * (1 - kr))


# ------------------------------------------------------------------- chroma resampling


def _taps(full: int, sub: int, cosited: bool, device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Linear interpolation from ceil(full / sub) chroma samples to `full` luma positions.

    Returns (left index, right index, right weight) per luma position; left weight = 1 - right.
    Co-sited: chroma sample k sits on luma k*sub. Centred: in the middle of its `sub` luma samples.
    """
    num_chroma = -(-full // sub)
    positions = torch.arange(full, dtype=torch.float64, device=device) / sub
    if not cosited:
        positions = positions - (sub - 1) / (2 * sub)
    left = torch.floor(positions)
    weight = (positions - left).to(torch.float32)
    left = left.long()
    return left.clamp(0, num_chroma - 1), (left + 1).clamp(0, num_chroma - 1), weight


def _axis_up(x: torch.Tensor, dim: int, full: int, sub: int, cosited: bool) -> torch.Tensor:
    if sub == 1:
        return x
    left, right, weight = _taps(full, sub, cosited, x.device)
    shape = [1] * x.dim()
    shape[dim] = full
    weight = weight.view(shape).to(x.dtype)
    return x.index_select(dim, left) * (1 - weight) + x.index_select(dim, right) * weight


def _axis_adjoint(y: torch.Tensor, dim: int, sub: int, cosited: bool) -> torch.Tensor:
    if sub == 1:
        return y
    full = y.shape[dim]
    left, right, weight = _taps(full, sub, cosited, y.device)
    shape = [1] * y.dim()
    shape[dim] = full
    weight = weight.view(shape).to(y.dtype)
    out_shape = list(y.shape)
    out_shape[dim] = -(-full // sub)
    out = y.new_zeros(out_shape)
    out.index_add_(dim, left, y * (1 - weight))
    out.index_add_(dim, right, y * weight)
    return out


def upsample_chroma(plane: torch.Tensor, height: int, width: int, sub_y: int, sub_x: int) -> torch.Tensor:
    """Chroma plane (..., ceil(h/sub_y), ceil(w/sub_x)) -> (..., height, width), centred siting."""
    return _axis_up(_axis_up(plane, -1, width, sub_x, False), -2, height, sub_y, False)


def chroma_adjoint(full: torch.Tensor, sub_y: int, sub_x: int) -> torch.Tensor:
    """The exact adjoint (transpose) of `upsample_chroma`: <up(c), f> == <c, adjoint(f)>."""
    return _axis_adjoint(_axis_adjoint(full, -2, sub_y, False), -1, sub_x, False)


def downsample_chroma(full: torch.Tensor, sub_y: int, sub_x: int) -> torch.Tensor:
    """A full-resolution chroma plane (or change) on the chroma grid: the adjoint of
    `upsample_chroma` divided by its column sums, so a constant stays the same constant and a
    zero change stays exactly zero. It is also a proper low-pass filter (taps 1/8, 3/8, 3/8, 1/8
    on each subsampled axis, for 4:2:0 and 4:2:2)."""
    if sub_x == 1 and sub_y == 1:
        return full
    ones = torch.ones(full.shape[-2:], dtype=full.dtype, device=full.device)
    return chroma_adjoint(full, sub_y, sub_x) / chroma_adjoint(ones, sub_y, sub_x)
