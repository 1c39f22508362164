"""Modulated deformable convolution (DCNv2) in pure PyTorch, with torchvision as an option.

Layout conventions are those of mmcv, BasicSR and torchvision, so weights move between them:
- offset: (n, 2 * groups * kh * kw, h_out, w_out); for deformable group g and kernel tap k
  (row-major over the kernel) channel 2 * (g * kh * kw + k) is the y offset and the next the x offset.
- mask: (n, groups * kh * kw, h_out, w_out), already passed through a sigmoid.
Samples falling outside the input read zeros (bilinear weights of out-of-range corners are dropped).
"""

from __future__ import annotations

import math
import warnings

import torch
import torch.nn.functional as F
from torch import nn

DCN_BACKENDS = ("pytorch", "torchvision", "auto")
OFFSET_WARN_ABSMEAN = 50.0  # BasicSR's threshold for "alignment is diverging"


def _pair(value: int | tuple[int, int]) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else tuple(value)


def modulated_deform_conv2d(x: torch.Tensor, offset: torch.Tensor, mask: torch.Tensor,
                            weight: torch.Tensor, bias: torch.Tensor | None,
                            stride=1, padding=0, dilation=1) -> torch.Tensor:
    """DCNv2 forward with grid_sample; differentiable in every argument.

    Args:
        x: (n, c_in, h, w) input.
        offset: (n, 2 * g * kh * kw, h_out, w_out) sampling offsets in pixels, (y, x) pairs.
        mask: (n, g * kh * kw, h_out, w_out) modulation scalars.
        weight: (c_out, c_in, kh, kw). Convolution groups are not supported (EDVR uses none).
        bias: (c_out,) or None.
    Returns:
        (n, c_out, h_out, w_out)
    """
    n, c_in, h, w = x.shape
    c_out, weight_c_in, kh, kw = weight.shape
    if weight_c_in != c_in:
        raise ValueError(f"weight expects {weight_c_in} input channels, input has {c_in}")
    stride_h, stride_w = _pair(stride)
    pad_h, pad_w = _pair(padding)
    dil_h, dil_w = _pair(dilation)
    h_out, w_out = offset.shape[-2:]
    num_taps = kh * kw
    groups = offset.shape[1] // (2 * num_taps)
    if offset.shape[1] != 2 * groups * num_taps or mask.shape[1] != groups * num_taps or c_in % groups:
        raise ValueError(f"offset {tuple(offset.shape)} / mask {tuple(mask.shape)} do not fit a "
                         f"{kh}x{kw} kernel over {c_in} channels")

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


def torchvision_available() -> bool:
    try:
        from torchvision.ops import deform_conv2d  # noqa: F401
    except Exception:  # ImportError, or a torchvision built for another torch
        return False
    return True


def resolve_backend(backend: str, device: torch.device) -> str:
    """'auto' takes torchvision on CUDA when importable (faster there), pure PyTorch elsewhere."""
    if backend not in DCN_BACKENDS:
        raise ValueError(f"unknown DCN backend {backend!r}; choose one of {', '.join(DCN_BACKENDS)}")
    if backend == "auto":
        return "torchvision" if device.type == "cuda" and torchvision_available() else "pytorch"
    if backend == "torchvision" and not torchvision_available():
        raise ValueError("DCN backend 'torchvision' asked for, but torchvision is not installed "
                         "(pip install torchvision matching your torch), or use 'pytorch'")
    return backend


class DCNv2Pack(nn.Module):
    """A modulated deformable conv whose offsets and mask come from a conv over given features.

    Same parameters as BasicSR's `DCNv2Pack` (`weight`, `bias`, `conv_offset.*`), so checkpoints
    load unchanged. `conv_offset` starts at zero: an untrained pack is a plain convolution
    (at half weight, as every mask starts at sigmoid(0) = 0.5).

    Args:
        in_channels (int): input and offset-feature channels.
        out_channels (int): output channels.
        kernel_size (int): square kernel size. Default: 3.
        stride, padding, dilation (int): as in nn.Conv2d. Defaults: 1, 1, 1.
        deformable_groups (int): channel groups with their own offsets. Default: 8.
        backend (str): 'pytorch' (default), 'torchvision' or 'auto'.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1,
                 padding: int = 1, dilation: int = 1, deformable_groups: int = 8,
                 backend: str = "pytorch"):
        super().__init__()
        if backend not in DCN_BACKENDS:
            raise ValueError(f"unknown DCN backend {backend!r}; choose one of {', '.join(DCN_BACKENDS)}")
        self.stride, self.padding, self.dilation = stride, padding, dilation
        self.deformable_groups = deformable_groups
        self.backend = backend
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.empty(out_channels))
        self.conv_offset = nn.Conv2d(in_channels, deformable_groups * 3 * kernel_size * kernel_size,
                                     kernel_size, stride, padding, dilation)
        # Kept on the device, read only when someone asks: no GPU sync per call.
        self.last_offset_absmean: torch.Tensor | None = None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        stdv = 1.0 / math.sqrt(self.weight[0].numel())
        nn.init.uniform_(self.weight, -stdv, stdv)
        nn.init.zeros_(self.bias)
        nn.init.zeros_(self.conv_offset.weight)
        nn.init.zeros_(self.conv_offset.bias)

    def forward(self, x: torch.Tensor, offset_feat: torch.Tensor) -> torch.Tensor:
        """x: (n, c_in, h, w) features to sample; offset_feat: (n, c_in, h, w) features that predict
        the offsets and mask. Returns (n, c_out, h_out, w_out)."""
        out = self.conv_offset(offset_feat)
        o1, o2, mask = torch.chunk(out, 3, dim=1)
        offset = torch.cat((o1, o2), dim=1)
        mask = torch.sigmoid(mask)

        absmean = offset.detach().abs().mean()
        self.last_offset_absmean = absmean
        if absmean.device.type == "cpu" and absmean.item() > OFFSET_WARN_ABSMEAN:
            warnings.warn(f"DCN offset mean {absmean.item():.1f} > {OFFSET_WARN_ABSMEAN:g}: alignment "
                          "is diverging", RuntimeWarning, stacklevel=2)

        if resolve_backend(self.backend, x.device) == "torchvision":
            from torchvision.ops import deform_conv2d
            return deform_conv2d(x, offset, self.weight, self.bias, stride=self.stride,
                                 padding=self.padding, dilation=self.dilation, mask=mask)
        return modulated_deform_conv2d(x, offset, mask, self.weight, self.bias,
                                       self.stride, self.padding, self.dilation)


def max_offset_absmean(model: nn.Module) -> float | None:
    """Largest mean |offset| seen by any DCN pack in its last forward (one sync, for logging)."""
    values = [m.last_offset_absmean for m in model.modules()
              if isinstance(m, DCNv2Pack) and m.last_offset_absmean is not None]
    return max(float(v) for v in values) if values else None
