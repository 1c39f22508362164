"""The DCNv2 layer of EDVR (BasicSR's `DCNv2Pack`): pure PyTorch (models/dcn_ops.py), with
torchvision as an option. Layout conventions are those of mmcv, BasicSR and torchvision, so
weights move between them (see models/dcn_ops.py).
"""

from __future__ import annotations

import math
import warnings

import torch
import torch.nn.functional as F
from torch import nn

from models.dcn_ops import modulated_deform_conv2d, modulated_deform_conv2d_reference  # noqa: F401 (re-exported)

DCN_BACKENDS = ("pytorch", "torchvision", "auto")
OFFSET_WARN_ABSMEAN = 50.0  # BasicSR's threshold for "alignment is diverging"


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

    def _offset_and_mask(self, offset_feat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """conv_offset's output split as BasicSR does (first two thirds: offsets, last third:
        mask logits, through a sigmoid)."""
        conv = self.conv_offset
        if (isinstance(conv, nn.Conv2d) and offset_feat.is_contiguous(memory_format=torch.channels_last)
                and not torch.jit.is_tracing()):
            num_offsets = 2 * conv.out_channels // 3
            # Two convolutions over the same input, so each result is dense: a channels_last slice
            # of one output would make the sigmoid and the sampling read it strided.
            offset, mask = (F.conv2d(offset_feat, conv.weight[part], conv.bias[part], conv.stride,
                                     conv.padding, conv.dilation)
                            for part in (slice(None, num_offsets), slice(num_offsets, None)))
            return offset, torch.sigmoid_(mask)
        out = conv(offset_feat)  # also what an export's wrapped conv gets
        num_offsets = 2 * out.shape[1] // 3
        return out[:, :num_offsets], torch.sigmoid(out[:, num_offsets:])

    def forward(self, x: torch.Tensor, offset_feat: torch.Tensor) -> torch.Tensor:
        """x: (n, c_in, h, w) features to sample; offset_feat: (n, c_in, h, w) features that predict
        the offsets and mask. Returns (n, c_out, h_out, w_out)."""
        offset, mask = self._offset_and_mask(offset_feat)

        absmean = _abs_mean(offset.detach())
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


def _abs_mean(t: torch.Tensor) -> torch.Tensor:
    """mean |t| without a full-size |t| tensor. On the CPU, summed a million elements at a time:
    torch's one-pass L1 norm there drifts by percents over a 480p frame's offsets (float32
    running sum) and takes 3x longer. Elsewhere that norm is one kernel with a tree reduction."""
    if t.device.type != "cpu":
        return torch.linalg.vector_norm(t, ord=1) / t.numel()
    dense = t.permute(0, 2, 3, 1) if t.dim() == 4 and t.is_contiguous(memory_format=torch.channels_last) else t
    return sum(chunk.abs().sum() for chunk in dense.reshape(-1).split(1 << 20)) / t.numel()


def max_offset_absmean(model: nn.Module) -> float | None:
    """Largest mean |offset| seen by any DCN pack in its last forward (one sync, for logging)."""
    values = [m.last_offset_absmean for m in model.modules()
              if isinstance(m, DCNv2Pack) and m.last_offset_absmean is not None]
    return max(float(v) for v in values) if values else None
