"""The deformable convolution's one product: each output pixel's samples times the weight.

Both DCNs (models/dcn_native.py, models/dcn_ops.py) lay their samples out as a (pixels, k) matrix
and multiply it by a (c_out, k) weight; backwards, the kernel's DCN multiplies the output gradient
by the weight the other way round. Each is a 1x1 convolution over the pixels, and on the CPU in
float32 it runs as one: oneDNN's 1x1 convolution is 1.5-2.7x faster than the BLAS matmul at these
shapes (a few dozen output channels, many pixels; benchmarks/README.md). PyTorch's own conv2d
would not take oneDNN here: it sends a 1x1 convolution with a batch under 16 on one thread to that
same matmul. Other dtypes and devices keep the matmul.
"""

from __future__ import annotations

import torch


def _onednn_applies(pixels: torch.Tensor) -> bool:
    """Not under torch.compile, whose fake tensors cannot run the oneDNN op (it compiles the matmul)."""
    return (pixels.device.type == "cpu" and pixels.dtype == torch.float32 and torch.backends.mkldnn.is_available()
            and not torch.compiler.is_compiling())


def pixels_times_weight(pixels: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """pixels (n, h, w, k), weight (c, k), bias (c,) or None: each pixel's k values times weightᵀ,
    plus bias, as an (n, c, h, w) channels_last tensor."""
    n, h, w, k = pixels.shape
    if _onednn_applies(pixels):
        return torch.ops.aten.mkldnn_convolution(pixels.contiguous().permute(0, 3, 1, 2), weight[:, :, None, None],
                                                 bias, [0, 0], [1, 1], [1, 1], 1)
    # A tensor of its own, not a view of the matmul's result: callers modify it in place.
    out = torch.empty(n, weight.shape[0], h, w, dtype=pixels.dtype, device=pixels.device,
                      memory_format=torch.channels_last)
    target = out.permute(0, 2, 3, 1).view(-1, weight.shape[0])
    if bias is None:
        torch.mm(pixels.reshape(-1, k), weight.t(), out=target)
    else:
        torch.addmm(bias, pixels.reshape(-1, k), weight.t(), out=target)
    return out
