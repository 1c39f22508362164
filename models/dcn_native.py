"""DCNv2 on the CPU through a small C++ kernel (models/dcn_native.cpp), built on first use.

The pure-PyTorch DCN (models/dcn_ops.py) spends most of its time outside arithmetic: grid_sample
writes every sample, a separate pass multiplies the mask in and lays the samples out for the
matmul, and in training autograd keeps and re-reads each of those tensors. The kernel does the
sampling, the mask and the layout in one pass (im2col) and, backwards, the gradients of the
input, the offsets and the mask in one more (col2im). The products with the weight are oneDNN
1x1 convolutions (models/pointwise.py); the weight's gradient is a PyTorch matmul.

It is compiled once per machine with torch's extension builder (a C++ compiler and ninja are
needed; about 10 s) into edvr's cache folder (`~/.cache/edvr/kernels/`, or under $EDVR_CACHE_DIR),
under a name that carries a hash of the source, torch's and Python's versions. Where it cannot be
built, or with EDVR_NATIVE_DCN=0, the pure-PyTorch DCN runs instead, after one warning.

On x86 its row loops are built twice, portable and for AVX2 with FMA, and the CPU's support picks
one at run time (`torch.ops.edvr_dcn.vector_isa()` says which); EDVR_DCN_ISA=portable forces the
portable build. The two differ only in rounding (FMA).
"""

from __future__ import annotations

import functools
import hashlib
import os
import sys
import threading
import warnings
from pathlib import Path

import torch

from models.pointwise import pixels_times_weight, product_in_bands
from models.download import default_cache_dir

SOURCE = Path(__file__).with_name("dcn_native.cpp")
DISABLE_VARIABLE = "EDVR_NATIVE_DCN"
ISA_VARIABLE = "EDVR_DCN_ISA"  # read by the kernel on each call
PAD = 2  # zero pixels around the input, as the kernel expects (kPad)
_build_lock = threading.Lock()


def _extension_name() -> str:
    """A name per source, torch and Python: a library built against another torch must never load."""
    identity = SOURCE.read_bytes() + f"{torch.__version__} {sys.version}".encode()
    return f"edvr_dcn_{hashlib.sha256(identity).hexdigest()[:12]}"


def _library_folder(name: str) -> Path:
    """Where the kernel is built and kept: edvr's cache folder (see models.download), not torch's,
    so that loading a built kernel never imports torch's extension builder."""
    return default_cache_dir() / "kernels" / name


@functools.cache
def _load() -> bool:
    """Load the kernel, building it first where it was never built; False where it cannot be."""
    name = _extension_name()
    try:
        folder = _library_folder(name)
        library = folder / f"{name}.so"
        if library.is_file():
            torch.ops.load_library(str(library))
            return True
        print("edvr: building the CPU deformable-convolution kernel (once per machine, about 10 s)",
              file=sys.stderr, flush=True)
        from torch.utils.cpp_extension import load
        folder.mkdir(parents=True, exist_ok=True)
        load(name, [str(SOURCE)], extra_cflags=["-O3"], build_directory=str(folder), is_python_module=False,
             verbose=False)
        return True
    except Exception as error:  # no compiler, no ninja, a read-only cache folder, ...
        first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
        warnings.warn(f"the CPU deformable-convolution kernel could not be built ({first_line[:200]}); "
                      "using the slower pure-PyTorch one", RuntimeWarning, stacklevel=3)
        return False


def available() -> bool:
    """Whether the kernel can run here (built now if need be), unless EDVR_NATIVE_DCN=0."""
    if os.environ.get(DISABLE_VARIABLE, "1") == "0":
        return False
    with _build_lock:
        return _load()


def applies_to(x: torch.Tensor) -> bool:
    """The kernel takes float32/float64 CPU tensors (fp16/bf16 keep the PyTorch path, which
    samples in float32)."""
    return x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64) and available()


def _kernel_geometry(weight: torch.Tensor, stride, padding, dilation) -> list[int]:
    """kh, kw, stride, padding, dilation as the kernel's `conv` argument (ints or (h, w) pairs)."""
    pairs = [(value, value) if isinstance(value, int) else tuple(value) for value in (stride, padding, dilation)]
    return [*weight.shape[-2:], *(number for pair in pairs for number in pair)]


def _padded_nhwc(x: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.pad(x.permute(0, 2, 3, 1), (0, 0, PAD, PAD, PAD, PAD))


def _nhwc(t: torch.Tensor) -> torch.Tensor:
    """A free view for channels_last tensors, one copy otherwise."""
    return t.permute(0, 2, 3, 1).contiguous()


def _weight_rows(weight: torch.Tensor) -> torch.Tensor:
    """(c_out, taps * c_in): the weight in the kernel's column order (tap-major, then channel)."""
    return weight.permute(0, 2, 3, 1).reshape(weight.shape[0], -1)


class _NativeDCN(torch.autograd.Function):
    """Whole-batch im2col, one matmul, and col2im for the gradients."""

    @staticmethod
    def forward(ctx, x, offset, mask, weight, bias, geometry):
        n = x.shape[0]
        h_out, w_out = offset.shape[-2:]
        padded, offset_nhwc, mask_nhwc = _padded_nhwc(x), _nhwc(offset), _nhwc(mask)
        columns = x.new_empty(n, h_out * w_out, weight[0].numel())
        for b in range(n):
            torch.ops.edvr_dcn.im2col(padded, offset_nhwc, mask_nhwc, columns[b], geometry, b, 0, h_out)
        # A channels_last tensor of its own: a view returned from here could not be modified in
        # place later (EDVR's in-place activations follow DCNs).
        out = pixels_times_weight(columns.view(n, h_out, w_out, -1), _weight_rows(weight), bias)
        columns = columns.view(n * h_out * w_out, -1)
        ctx.save_for_backward(padded, offset_nhwc, mask_nhwc, weight, columns)
        ctx.geometry, ctx.has_bias = geometry, bias is not None
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        padded, offset_nhwc, mask_nhwc, weight, columns = ctx.saved_tensors
        grad_rows = grad_out.permute(0, 2, 3, 1).reshape(-1, weight.shape[0])
        grad_x = grad_offset = grad_mask = grad_weight = grad_bias = None
        if ctx.needs_input_grad[3]:
            grad_weight = (grad_rows.t() @ columns).view(weight.shape[0], *weight.shape[2:], -1).permute(0, 3, 1, 2)
        if ctx.has_bias and ctx.needs_input_grad[4]:
            grad_bias = grad_rows.sum(0)
        if any(ctx.needs_input_grad[:3]):
            grad_columns = pixels_times_weight(grad_out.permute(0, 2, 3, 1), _weight_rows(weight).t())
            grad_columns = grad_columns.permute(0, 2, 3, 1).reshape(columns.shape)
            grad_padded = torch.zeros_like(padded)
            grad_offset, grad_mask = torch.empty_like(offset_nhwc), torch.empty_like(mask_nhwc)
            torch.ops.edvr_dcn.col2im(padded, offset_nhwc, mask_nhwc, grad_columns, grad_padded, grad_offset,
                                      grad_mask, ctx.geometry)
            grad_x = grad_padded[:, PAD:-PAD, PAD:-PAD].permute(0, 3, 1, 2)
            grad_offset, grad_mask = grad_offset.permute(0, 3, 1, 2), grad_mask.permute(0, 3, 1, 2)
        return grad_x, grad_offset, grad_mask, grad_weight, grad_bias, None


def _forward_in_bands(x, offset, mask, weight, bias, geometry, band_bytes: int) -> torch.Tensor:
    """Without grad: im2col and the product a band of rows at a time (pointwise.product_in_bands)."""
    n = x.shape[0]
    h_out, w_out = offset.shape[-2:]
    padded, offset_nhwc, mask_nhwc = _padded_nhwc(x), _nhwc(offset), _nhwc(mask)
    rows = _weight_rows(weight)

    def im2col(b: int, top: int, bottom: int, flat: torch.Tensor) -> torch.Tensor:
        columns = flat.view(-1, rows.shape[1])
        torch.ops.edvr_dcn.im2col(padded, offset_nhwc, mask_nhwc, columns, geometry, b, top, bottom)
        return columns

    return product_in_bands(im2col, rows, bias, n, h_out, w_out, band_bytes, x.dtype, x.device)


def modulated_deform_conv2d_native(x, offset, mask, weight, bias, stride, padding, dilation,
                                   band_bytes: int) -> torch.Tensor:
    """DCNv2 through the kernel, its output in `x`'s layout. The caller checked `applies_to(x)` and
    the shapes."""
    geometry = _kernel_geometry(weight, stride, padding, dilation)
    dtype = x.dtype
    offset, mask, weight = offset.to(dtype), mask.to(dtype), weight.to(dtype)
    bias = None if bias is None else bias.to(dtype)
    if torch.is_grad_enabled() and any(t.requires_grad for t in (x, offset, mask, weight, bias) if t is not None):
        out = _NativeDCN.apply(x, offset, mask, weight, bias, geometry)
    else:
        out = _forward_in_bands(x, offset, mask, weight, bias, geometry, band_bytes)
    return out if x.is_contiguous(memory_format=torch.channels_last) else out.contiguous()
