"""The modulated deformable convolution (DCNv2) as plain PyTorch operations around grid_sample.

`modulated_deform_conv2d_reference` is the straightforward version: the documented reference,
and what a TorchScript/ONNX trace records. `modulated_deform_conv2d` computes the same thing
(up to float rounding) with far less memory traffic; its tests compare the two, gradients
included. The cost of either is dominated by full-resolution tensors of c_in * kh * kw values per
pixel, so the fast version is about touching those as few times as possible:
- the sampling grid is built in one fused multiply-add per axis (written in place when no
  gradient is needed) instead of a pass per arithmetic step;
- for channels_last inputs (what EDVR uses on the CPU) it reads the offsets and mask in their
  channels_last layout, samples every pixel's kernel taps next to each other, folds the mask
  multiply into the one pass that lays the samples out as matmul columns, and returns
  channels_last output straight from the matmul;
- the bias is added inside the matmul.

Layouts are those of mmcv, BasicSR and torchvision:
- offset: (n, 2 * groups * kh * kw, h_out, w_out); for deformable group g and kernel tap k
  (row-major over the kernel) channel 2 * (g * kh * kw + k) is the y offset and the next the x offset.
- mask: (n, groups * kh * kw, h_out, w_out), already passed through a sigmoid.
Samples falling outside the input read zeros (bilinear weights of out-of-range corners are dropped).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from models import dcn_native
from models.pointwise import product_in_bands


def _pair(value: int | tuple[int, int]) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else tuple(value)


def _check_shapes(x: torch.Tensor, offset: torch.Tensor, mask: torch.Tensor, weight: torch.Tensor) -> int:
    """Refuse inconsistent shapes; returns the number of deformable groups."""
    c_in = x.shape[1]
    weight_c_in, kh, kw = weight.shape[1:]
    if weight_c_in != c_in:
        raise ValueError(f"weight expects {weight_c_in} input channels, input has {c_in}")
    num_taps = kh * kw
    groups = offset.shape[1] // (2 * num_taps)
    if offset.shape[1] != 2 * groups * num_taps or mask.shape[1] != groups * num_taps or c_in % groups:
        raise ValueError(f"offset {tuple(offset.shape)} / mask {tuple(mask.shape)} do not fit a "
                         f"{kh}x{kw} kernel over {c_in} channels")
    return groups


def modulated_deform_conv2d_reference(x: torch.Tensor, offset: torch.Tensor, mask: torch.Tensor,
                                      weight: torch.Tensor, bias: torch.Tensor | None,
                                      stride=1, padding=0, dilation=1) -> torch.Tensor:
    """DCNv2 forward with grid_sample, written for clarity; differentiable in every argument.

    Args:
        x: (n, c_in, h, w) input.
        offset: (n, 2 * g * kh * kw, h_out, w_out) sampling offsets in pixels, (y, x) pairs.
        mask: (n, g * kh * kw, h_out, w_out) modulation scalars.
        weight: (c_out, c_in, kh, kw). Convolution groups are not supported (EDVR uses none).
        bias: (c_out,) or None.
    Returns:
        (n, c_out, h_out, w_out)
    """
    groups = _check_shapes(x, offset, mask, weight)
    n, c_in, h, w = x.shape
    c_out, _, kh, kw = weight.shape
    stride_h, stride_w = _pair(stride)
    pad_h, pad_w = _pair(padding)
    dil_h, dil_w = _pair(dilation)
    h_out, w_out = offset.shape[-2:]
    num_taps = kh * kw

    dtype, device = x.dtype, x.device
    # Where each kernel tap samples without offsets: (taps, h_out, w_out) per axis.
    tap_y = (torch.arange(kh, device=device, dtype=dtype) * dil_h).repeat_interleave(kw)
    tap_x = (torch.arange(kw, device=device, dtype=dtype) * dil_w).repeat(kh)
    out_y = torch.arange(h_out, device=device, dtype=dtype) * stride_h - pad_h
    out_x = torch.arange(w_out, device=device, dtype=dtype) * stride_w - pad_w
    base_y = tap_y[:, None, None] + out_y[None, :, None]
    base_x = tap_x[:, None, None] + out_x[None, None, :]

    offset = offset.reshape(n, groups, num_taps, 2, h_out, w_out)
    sample_y = base_y + offset[:, :, :, 0]  # (n, g, taps, h_out, w_out)
    sample_x = base_x + offset[:, :, :, 1]
    # grid_sample with align_corners=False puts pixel i at normalised (2i + 1) / size - 1.
    grid = torch.stack(((2 * sample_x + 1) / w - 1, (2 * sample_y + 1) / h - 1), dim=-1)
    grid = grid.reshape(n * groups, num_taps * h_out, w_out, 2)

    x_groups = x.reshape(n * groups, c_in // groups, h, w)
    sampled = F.grid_sample(x_groups, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    sampled = sampled.reshape(n, groups, c_in // groups, num_taps, h_out * w_out)
    sampled = sampled * mask.reshape(n, groups, 1, num_taps, h_out * w_out)
    columns = sampled.reshape(n, c_in * num_taps, h_out * w_out)  # channel-major, tap-minor like weight

    out = torch.matmul(weight.reshape(c_out, c_in * num_taps), columns)
    if bias is not None:
        out = out + bias[None, :, None]
    return out.reshape(n, c_out, h_out, w_out)


def _coordinate_dtype(dtype: torch.dtype) -> torch.dtype:
    """Sampling positions stay in float32 under fp16/bf16: a half-precision grid coordinate near 1
    is off by up to 2 ** -8 (bf16), which is several pixels across a wide frame."""
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def _needs_grad(*tensors: torch.Tensor) -> bool:
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)


def _base_coordinates(x_size: tuple[int, int], kernel: tuple[int, int], out_size: tuple[int, int],
                      stride, padding, dilation, dtype, device) -> tuple[torch.Tensor, torch.Tensor]:
    """grid_sample's normalised coordinates (align_corners=False) of every kernel tap's undeformed
    sampling position: y as (taps, h_out), x as (taps, w_out). Computed in float64, rounded once."""
    coordinates = []
    for size, n_out, taps, step, pad in (
            (x_size[0], out_size[0], torch.arange(kernel[0]).repeat_interleave(kernel[1]) * _pair(dilation)[0],
             _pair(stride)[0], _pair(padding)[0]),
            (x_size[1], out_size[1], torch.arange(kernel[1]).repeat(kernel[0]) * _pair(dilation)[1],
             _pair(stride)[1], _pair(padding)[1])):
        positions = taps[:, None].double() + torch.arange(n_out, dtype=torch.float64) * step - pad
        coordinates.append(((2 * positions + 1) / size - 1).to(dtype=dtype, device=device))
    return coordinates[0], coordinates[1]


def _broadcast_shape(*shapes: torch.Size) -> tuple[int, ...]:
    """torch.broadcast_shapes in plain Python: that one runs torch._refs, which imports sympy (a
    third of a second) on first use and costs tens of microseconds per call, here per band."""
    ndim = max(len(shape) for shape in shapes)
    result = []
    for sizes in zip(*((1,) * (ndim - len(shape)) + tuple(shape) for shape in shapes)):
        other = {size for size in sizes if size != 1}
        if len(other) > 1:
            raise ValueError(f"shapes {[tuple(shape) for shape in shapes]} do not broadcast")
        result.append(other.pop() if other else 1)
    return tuple(result)


def _grid_from(base_x: torch.Tensor, offset_x: torch.Tensor, base_y: torch.Tensor, offset_y: torch.Tensor,
               x_size: tuple[int, int]) -> torch.Tensor:
    """(..., 2) grid of (base_x + offset_x * 2 / w, base_y + offset_y * 2 / h): pixels to grid_sample's
    normalised units in one multiply-add per axis, written straight into the grid without grad."""
    h, w = x_size
    if _needs_grad(offset_x):
        return torch.stack((torch.add(base_x, offset_x, alpha=2 / w), torch.add(base_y, offset_y, alpha=2 / h)),
                           dim=-1)
    grid = base_x.new_empty(*_broadcast_shape(base_x.shape, offset_x.shape), 2)
    torch.add(base_x, offset_x, alpha=2 / w, out=grid[..., 0])
    torch.add(base_y, offset_y, alpha=2 / h, out=grid[..., 1])
    return grid


def _add_bias_matmul(bias: torch.Tensor | None, left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
    """left @ right + bias over the last dimension (bias None: none), the bias added by the BLAS call."""
    if bias is None:
        return torch.matmul(left, right)
    if left.dim() == 2 and right.dim() == 2:
        return torch.addmm(bias, left, right)
    return torch.baddbmm(bias, left, right)


# Bytes of samples (c_in * taps floats per output pixel) per band of rows in the inference path.
# On one thread, bands that stay in cache between being sampled, masked and multiplied are
# fastest; 4 MiB rather than 1 since oneDNN multiplies them (longer bands suit it: a whole
# EDVR-M DCN layer took 30 ms instead of 40). With several threads every op is a parallel region
# ending in a barrier, and where cores are shared a barrier can cost a scheduler time slice: a
# few large bands measured faster there (benchmarks/README.md).
BAND_BYTES_ONE_THREAD = 4 << 20
BAND_BYTES_THREADED = 64 << 20


def _band_bytes() -> int:
    return BAND_BYTES_ONE_THREAD if torch.get_num_threads() == 1 else BAND_BYTES_THREADED


def _deform_conv_pixel_major(x: torch.Tensor, offset: torch.Tensor, mask: torch.Tensor, weight: torch.Tensor,
                             bias: torch.Tensor | None, groups: int, stride, padding, dilation) -> torch.Tensor:
    """DCNv2 for channels_last tensors; returns channels_last output.

    Works pixel-major throughout: the grid is (n * g, rows, w_out * taps, 2), so each pixel's taps
    sample neighbouring input, and the columns are (pixels, c_in * taps) rows that multiply the
    transposed weight into (pixels, c_out), which is the channels_last output itself. Without
    grad it goes through the output a band of rows at a time, in buffers reused across bands."""
    n, c_in, h, w = x.shape
    c_out, _, kh, kw = weight.shape
    num_taps = kh * kw
    h_out, w_out = offset.shape[-2:]
    base_y, base_x = _base_coordinates((h, w), (kh, kw), (h_out, w_out), stride, padding, dilation,
                                       _coordinate_dtype(x.dtype), x.device)
    base_x, base_y = base_x.t()[None], base_y.t()[:, None]  # (1, w_out, taps), (h_out, 1, taps)
    # Views in the order channels_last stores them: (n, h_out, w_out, g, taps[, 2]).
    offset = offset.permute(0, 2, 3, 1).unflatten(-1, (groups, num_taps, 2))
    mask = mask.permute(0, 2, 3, 1).unflatten(-1, (groups, 1, num_taps))
    x_groups = x.contiguous().view(n * groups, c_in // groups, h, w).to(base_x.dtype)
    weight_t = weight.reshape(c_out, c_in * num_taps).t()

    def sample(rows: slice, batch: slice) -> torch.Tensor:
        """(n', rows, w_out, g, c_in / g, taps) view of the samples of output rows `rows`."""
        offset_rows = offset[batch, rows].permute(0, 3, 1, 2, 4, 5)  # (n', g, rows, w_out, taps, 2)
        grid = _grid_from(base_x, offset_rows[..., 1], base_y[rows], offset_rows[..., 0], (h, w))
        n_rows = grid.shape[2]
        sampled = F.grid_sample(x_groups.unflatten(0, (n, groups))[batch].flatten(0, 1),
                                grid.view(-1, n_rows, w_out * num_taps, 2),
                                mode="bilinear", padding_mode="zeros", align_corners=False)
        return sampled.view(-1, groups, c_in // groups, n_rows, w_out, num_taps).permute(0, 3, 4, 1, 2, 5)

    if _needs_grad(x, offset, mask):
        # Rows: pixels; columns: (g, c_in / g, taps) = (c_in, taps), the order of weight's last dims.
        columns = (sample(slice(None), slice(None)) * mask).contiguous().view(-1, c_in * num_taps)
        out = _add_bias_matmul(bias, columns.to(weight.dtype), weight_t)
        return out.view(n, h_out, w_out, c_out).permute(0, 3, 1, 2)

    # Computed in the samples' dtype (float32 under fp16/bf16 autocast) and returned in the input's.
    dtype = base_x.dtype
    weight_2d, bias = weight.reshape(c_out, c_in * num_taps).to(dtype), None if bias is None else bias.to(dtype)

    def sample_masked(b: int, top: int, bottom: int, flat: torch.Tensor) -> torch.Tensor:
        sampled = sample(slice(top, bottom), slice(b, b + 1))
        # the layout change and the mask multiply in one pass, into the reused buffer
        return torch.mul(sampled, mask[b:b + 1, top:bottom], out=flat.view(sampled.shape))

    out = product_in_bands(sample_masked, weight_2d, bias, n, h_out, w_out, _band_bytes(), dtype, x.device)
    return out.to(x.dtype)


def _deform_conv_planar(x: torch.Tensor, offset: torch.Tensor, mask: torch.Tensor, weight: torch.Tensor,
                        bias: torch.Tensor | None, groups: int, stride, padding, dilation) -> torch.Tensor:
    """DCNv2 for tensors in the default (contiguous) layout, e.g. on CUDA; the reference's data
    flow with the grid fused, the mask applied in place without grad and the bias in the matmul."""
    n, c_in, h, w = x.shape
    c_out, _, kh, kw = weight.shape
    num_taps = kh * kw
    h_out, w_out = offset.shape[-2:]
    base_y, base_x = _base_coordinates((h, w), (kh, kw), (h_out, w_out), stride, padding, dilation,
                                       _coordinate_dtype(x.dtype), x.device)
    offset = offset.unflatten(1, (groups, num_taps, 2))  # (n, g, taps, 2, h_out, w_out)
    grid = _grid_from(base_x[:, None, :], offset[:, :, :, 1], base_y[:, :, None], offset[:, :, :, 0], (h, w))

    x_groups = x.reshape(n * groups, c_in // groups, h, w).to(base_x.dtype)
    sampled = F.grid_sample(x_groups, grid.view(n * groups, num_taps * h_out, w_out, 2),
                            mode="bilinear", padding_mode="zeros", align_corners=False)
    sampled = sampled.view(n, groups, c_in // groups, num_taps, h_out, w_out)
    mask = mask.unflatten(1, (groups, 1, num_taps))
    sampled = sampled * mask if _needs_grad(sampled, mask) else sampled.mul_(mask)
    columns = sampled.view(n, c_in * num_taps, h_out * w_out).to(weight.dtype)  # channel-major, tap-minor
    bias = None if bias is None else bias[:, None]
    weight_2d = weight.reshape(c_out, c_in * num_taps)
    if n == 1:
        out = _add_bias_matmul(bias, weight_2d, columns[0])
    else:
        out = _add_bias_matmul(bias, weight_2d.expand(n, -1, -1), columns)
    return out.view(n, c_out, h_out, w_out)


def modulated_deform_conv2d(x: torch.Tensor, offset: torch.Tensor, mask: torch.Tensor,
                            weight: torch.Tensor, bias: torch.Tensor | None,
                            stride=1, padding=0, dilation=1) -> torch.Tensor:
    """DCNv2 forward, differentiable in every argument; the arguments and result of
    `modulated_deform_conv2d_reference`, computed faster. A channels_last `x` gives channels_last
    output. Under a TorchScript/ONNX trace the reference runs, so the graph keeps its shape
    arithmetic symbolic."""
    if torch.jit.is_tracing() or torch.jit.is_scripting():
        return modulated_deform_conv2d_reference(x, offset, mask, weight, bias, stride, padding, dilation)
    groups = _check_shapes(x, offset, mask, weight)
    if dcn_native.applies_to(x):
        return dcn_native.modulated_deform_conv2d_native(x, offset, mask, weight, bias, stride, padding, dilation,
                                                         _band_bytes())
    if x.dim() == 4 and x.shape[1] > 1 and x.is_contiguous(memory_format=torch.channels_last):
        return _deform_conv_pixel_major(x, offset, mask, weight, bias, groups, stride, padding, dilation)
    return _deform_conv_planar(x, offset, mask, weight, bias, groups, stride, padding, dilation)
