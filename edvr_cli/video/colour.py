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
  conversion, on which the bundled models were trained); its exact adjoint; `fit_chroma_change`,
  the least-squares chroma-grid change whose upsampling best matches a full-resolution change
  (conjugate gradients on the normal equations, so it too goes through the adjoint); and the
  adjoint normalised so that a
  constant plane stays that constant — used to bring a full-resolution chroma *change* (or, at
  x4, a full-resolution chroma plane) back to the chroma grid.
"""

from __future__ import annotations

import functools

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
    to_rgb = torch.tensor([[1, 0, 2 * (1 - kr)],
                           [1, -2 * (1 - kb) * kb / kg, -2 * (1 - kr) * kr / kg],
                           [1, 2 * (1 - kb), 0]], dtype=y.dtype, device=y.device)
    return torch.einsum("ij,...jhw->...ihw", to_rgb, torch.stack((y, cb, cr), dim=-3))


def rgb_to_ycbcr(rgb: torch.Tensor, matrix: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """RGB (..., 3, h, w) -> normalised (Y, Cb, Cr), each (..., h, w); linear, so it also maps
    an RGB *change* to the YCbCr change."""
    kr, kg, kb = _weights(matrix)
    to_ycbcr = torch.tensor([[kr, kg, kb],
                             [-kr / (2 * (1 - kb)), -kg / (2 * (1 - kb)), 0.5],
                             [0.5, -kg / (2 * (1 - kr)), -kb / (2 * (1 - kr))]], dtype=rgb.dtype, device=rgb.device)
    return torch.einsum("ij,...jhw->...ihw", to_ycbcr, rgb).unbind(dim=-3)


# ------------------------------------------------------------------- chroma resampling
# Linear interpolation with centred siting is exactly PyTorch's bilinear resize with
# align_corners=False (source position (i + 0.5) / sub - 0.5, clamped at the borders), and its
# exact adjoint is that resize's backward pass: both are single native kernels, also on a GPU.


def _as_4d(plane: torch.Tensor) -> tuple[torch.Tensor, torch.Size]:
    return plane.reshape(-1, 1, *plane.shape[-2:]), plane.shape[:-2]


def upsample_chroma(plane: torch.Tensor, height: int, width: int, sub_y: int, sub_x: int) -> torch.Tensor:
    """Chroma plane (..., ceil(h/sub_y), ceil(w/sub_x)) -> (..., height, width), centred siting."""
    if sub_x == 1 and sub_y == 1:
        return plane
    flat, lead = _as_4d(plane)
    rows, cols = flat.shape[-2] * sub_y, flat.shape[-1] * sub_x
    up = torch.nn.functional.interpolate(flat, size=(rows, cols), mode="bilinear", align_corners=False)
    return up[..., :height, :width].reshape(*lead, height, width)


def chroma_adjoint(full: torch.Tensor, sub_y: int, sub_x: int) -> torch.Tensor:
    """The exact adjoint (transpose) of `upsample_chroma`: <up(c), f> == <c, adjoint(f)>."""
    if sub_x == 1 and sub_y == 1:
        return full
    flat, lead = _as_4d(full)
    height, width = flat.shape[-2:]
    small = (-(-height // sub_y), -(-width // sub_x))
    padded = torch.nn.functional.pad(flat, (0, small[1] * sub_x - width, 0, small[0] * sub_y - height))
    if sub_y in (1, 2) and sub_x in (1, 2):  # the common case, one strided convolution
        adjoint = _halving_adjoint(padded, sub_y, sub_x)
    else:  # PyTorch's backward of the resize (slow on the CPU, but exact for any factor)
        adjoint = torch.ops.aten.upsample_bilinear2d_backward(
            padded, [small[0] * sub_y, small[1] * sub_x], list(flat.shape[:2]) + list(small), False, None, None)
    return adjoint.reshape(*lead, *small)


def _halving_adjoint(y: torch.Tensor, sub_y: int, sub_x: int) -> torch.Tensor:
    """Adjoint of centred x2 linear upsampling (on each axis whose sub is 2), y (n, 1, h, w) even.

    Sample k was spread 3/4 to outputs 2k and 2k+1 and 1/4 to 2k-1 and 2k+2; at the borders the
    outer quarter fell back on the edge sample, which replicate padding by one reproduces."""
    taps = torch.tensor([0.25, 0.75, 0.75, 0.25], dtype=y.dtype, device=y.device)
    one = torch.ones(1, dtype=y.dtype, device=y.device)
    kernel = torch.outer(taps if sub_y == 2 else one, taps if sub_x == 2 else one)[None, None]
    pad = (1 if sub_x == 2 else 0,) * 2 + (1 if sub_y == 2 else 0,) * 2
    padded = torch.nn.functional.pad(y, pad, mode="replicate")
    return torch.nn.functional.conv2d(padded, kernel, stride=(sub_y, sub_x))


def downsample_chroma(full: torch.Tensor, sub_y: int, sub_x: int) -> torch.Tensor:
    """A full-resolution chroma plane (or change) on the chroma grid: the adjoint of
    `upsample_chroma` divided by its column sums, so a constant stays the same constant and a
    zero change stays exactly zero. It is also a proper low-pass filter (taps 1/8, 3/8, 3/8, 1/8
    on each subsampled axis, for 4:2:0 and 4:2:2)."""
    if sub_x == 1 and sub_y == 1:
        return full
    return chroma_adjoint(full, sub_y, sub_x) / _column_sums(tuple(full.shape[-2:]), sub_y, sub_x, full.dtype,
                                                             full.device)


def fit_chroma_change(full: torch.Tensor, height: int, width: int, sub_y: int, sub_x: int,
                      iterations: int = 4) -> torch.Tensor:
    """The chroma-grid change c minimising |upsample(c) - full|^2, from c = 0.

    A network's full-resolution chroma change averaged onto the grid (`downsample_chroma`) loses
    its finer part, about a quarter of builtin-qe's gain on QP 37 footage; solving the normal
    equations U^T U c = U^T full by conjugate gradients keeps most of it (4 steps: the system is
    well conditioned). A zero change gives exactly zero.
    """
    if sub_x == 1 and sub_y == 1:
        return full
    rhs = chroma_adjoint(full, sub_y, sub_x)
    change = torch.zeros_like(rhs)
    residual, direction = rhs.clone(), rhs.clone()
    norm = (residual * residual).sum()
    for _ in range(iterations):
        if float(norm) == 0.0:
            break
        product = chroma_adjoint(upsample_chroma(direction, height, width, sub_y, sub_x), sub_y, sub_x)
        step = norm / (direction * product).sum()
        change = change + step * direction
        residual = residual - step * product
        new_norm = (residual * residual).sum()
        direction = residual + (new_norm / norm) * direction
        norm = new_norm
    return change


@functools.lru_cache(maxsize=8)
def _column_sums(shape: tuple[int, int], sub_y: int, sub_x: int, dtype, device) -> torch.Tensor:
    """How much of the full grid each chroma sample covers (the adjoint of ones); one per frame size."""
    return chroma_adjoint(torch.ones(shape, dtype=dtype, device=device), sub_y, sub_x)
