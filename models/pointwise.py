"""Per-pixel products with a weight (1x1 convolutions), run by oneDNN on the CPU.

The deformable convolutions (models/dcn_native.py, models/dcn_ops.py) lay their samples out as a
(pixels, k) matrix and multiply it by a (c_out, k) weight, and backwards the kernel's DCN
multiplies the output gradient by the weight the other way round; EDVR's 1x1 convolutions
(`models.blocks.Conv1x1`) are the same product over feature channels. PyTorch's conv2d sends a
1x1 convolution with a batch under 16 on one thread to the BLAS matmul. On an AMD EPYC that
matmul runs at about 95 GFLOP/s (MKL takes its AVX2 path there) and oneDNN's convolution, called
directly, is 1.5-2.7x faster at these shapes (a few dozen output channels, many pixels); on an
Intel Xeon the two are within 25% of each other, either way round (benchmarks/README.md). Other
dtypes and devices keep the matmul, and so does torch.compile, whose fake tensors cannot run
the oneDNN operator.
"""

from __future__ import annotations

import torch


# Asked once: under torch.compile the call would break the graph, and a function compiled
# apart from its caller can end up run eagerly inside a trace, where it would say "not compiling".
_HAS_ONEDNN = torch.backends.mkldnn.is_available()


def onednn_applies(x: torch.Tensor) -> bool:
    """float32 on the CPU, where PyTorch has oneDNN, outside torch.compile."""
    return not torch.compiler.is_compiling() and _HAS_ONEDNN and x.device.type == "cpu" and x.dtype == torch.float32


def conv1x1_onednn(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """A 1x1 convolution (weight (c_out, c_in, 1, 1)) of channels_last x by oneDNN, differentiable;
    channels_last output. The caller checked `onednn_applies(x)` and x's layout."""
    n, c, h, w = x.shape
    dense = (c * h * w, 1, w * c, c)
    if x.stride() != dense:
        # A batch of one may carry any batch stride (a reshape makes one up); oneDNN would read
        # such a tensor as NCHW, copy it, and return NCHW.
        x = x.as_strided(x.shape, dense)
    return torch.ops.aten.mkldnn_convolution(x, weight, bias, [0, 0], [1, 1], [1, 1], 1)


def pixels_times_weight(pixels: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """pixels (n, h, w, k), weight (c, k), bias (c,) or None: each pixel's k values times weightᵀ,
    plus bias, as an (n, c, h, w) channels_last tensor. Not differentiable off oneDNN (the DCNs
    call it without grad or inside their own backward)."""
    n, h, w, k = pixels.shape
    if onednn_applies(pixels):
        return conv1x1_onednn(pixels.contiguous().permute(0, 3, 1, 2), weight[:, :, None, None], bias)
    # A tensor of its own, not a view of the matmul's result: callers modify it in place.
    out = torch.empty(n, weight.shape[0], h, w, dtype=pixels.dtype, device=pixels.device,
                      memory_format=torch.channels_last)
    target = out.permute(0, 2, 3, 1).view(-1, weight.shape[0])
    if bias is None:
        torch.mm(pixels.reshape(-1, k), weight.t(), out=target)
    else:
        torch.addmm(bias, pixels.reshape(-1, k), weight.t(), out=target)
    return out


def product_in_bands(fill_band, weight: torch.Tensor, bias: torch.Tensor | None, n: int, h_out: int, w_out: int,
                     band_bytes: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """The DCNs' inference product, a band of output rows at a time in one reused buffer, so the
    samples stay in cache between being written and multiplied: fill_band(b, top, bottom, flat)
    writes image b's samples of rows top..bottom into the flat buffer `flat` and returns them as
    (pixels, k) rows; times weight (c, k), plus bias. An (n, c, h_out, w_out) channels_last tensor."""
    k = weight.shape[1]
    out = torch.empty(n, weight.shape[0], h_out, w_out, dtype=dtype, device=device, memory_format=torch.channels_last)
    band = max(1, band_bytes // (k * w_out * out.element_size()))
    buffer = out.new_empty(min(band, h_out) * w_out * k)
    for b in range(n):
        for top in range(0, h_out, band):
            bottom = min(top + band, h_out)
            columns = fill_band(b, top, bottom, buffer[:(bottom - top) * w_out * k])
            out[b:b + 1, :, top:bottom] = pixels_times_weight(columns.view(1, -1, w_out, k), weight, bias)
    return out
