"""Small building blocks shared by the EDVR modules."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn import init

from models.pointwise import conv1x1_onednn, onednn_applies

LRELU_SLOPE = 0.1  # EDVR's leaky ReLU slope


def upsample2(x: torch.Tensor) -> torch.Tensor:
    """Bilinear x2 (align_corners=False), what EDVR's pyramids use between levels."""
    return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)


def _runs_channels_last(x: torch.Tensor) -> bool:
    """A 4-d CPU tensor in channels_last order (and no trace recording this call's branch)."""
    return (x.device.type == "cpu" and x.dim() == 4 and not x.is_contiguous()
            and x.is_contiguous(memory_format=torch.channels_last) and not torch.jit.is_tracing())


class Conv1x1(nn.Conv2d):
    """A 1x1 convolution (nn.Conv2d's parameters) that keeps channels_last CPU input in its layout:
    by oneDNN in float32 (models/pointwise.py), else as one matmul over the channels. PyTorch runs
    single-threaded 1x1 convolutions of small batches through its own kernel, which copies
    channels_last input to the default layout first and returns that layout."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not _runs_channels_last(x):
            return super().forward(x)
        if onednn_applies(x):
            return conv1x1_onednn(x, self.weight, self.bias)
        return F.linear(x.permute(0, 2, 3, 1), self.weight.flatten(1), self.bias).permute(0, 3, 1, 2)


class PixelShuffle(nn.PixelShuffle):
    """nn.PixelShuffle that turns channels_last input into channels_last output in one dense copy
    (PyTorch's kernel gathers such input element by element, ~10x slower at 256 x 360 x 640)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not _runs_channels_last(x):
            return super().forward(x)
        n, c, h, w = x.shape
        r = self.upscale_factor
        # (n, h, w, c', r, r) -> (n, h, r, w, r, c'): output row h * r + i, column w * r + j
        out = x.permute(0, 2, 3, 1).reshape(n, h, w, c // (r * r), r, r).permute(0, 1, 4, 2, 5, 3)
        return out.reshape(n, h * r, w * r, c // (r * r)).permute(0, 3, 1, 2)


def scaled_kaiming_init(modules: list[nn.Module], scale: float = 0.1) -> None:
    """Kaiming-normal init scaled down, as BasicSR does for residual branches (stable deep trunks)."""
    for module in modules:
        init.kaiming_normal_(module.weight)
        module.weight.data.mul_(scale)
        if module.bias is not None:
            module.bias.data.zero_()


class ResidualBlockNoBN(nn.Module):
    """x + conv(relu(conv(x))), no batch norm. Parameters `conv1`, `conv2` as in BasicSR.

    Args:
        num_feat (int): channels. Default: 64.
    """

    def __init__(self, num_feat: int = 64):
        super().__init__()
        self.conv1 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv2 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.relu = nn.ReLU(inplace=True)
        scaled_kaiming_init([self.conv1, self.conv2])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(self.relu(self.conv1(x)))


class ChannelAttention(nn.Module):
    """Squeeze-and-excitation channel attention (RCAN): x * sigmoid(mlp(avgpool(x)))."""

    def __init__(self, num_feat: int, reduction: int = 16):
        super().__init__()
        hidden = max(num_feat // reduction, 1)
        self.squeeze = nn.Conv2d(num_feat, hidden, 1)
        self.excite = nn.Conv2d(hidden, num_feat, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weights = torch.relu(self.squeeze(x.mean(dim=(2, 3), keepdim=True)))
        return x * torch.sigmoid(self.excite(weights))


class ResidualBlockCA(ResidualBlockNoBN):
    """The seed's `car` block: a residual block whose branch ends in channel attention."""

    def __init__(self, num_feat: int = 64):
        super().__init__(num_feat)
        self.attention = ChannelAttention(num_feat)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.attention(self.conv2(self.relu(self.conv1(x))))


def make_layer(block: type[nn.Module], num_blocks: int, **kwargs) -> nn.Sequential:
    """`num_blocks` copies of `block(**kwargs)` in a Sequential (keys `0.`, `1.`, ...)."""
    return nn.Sequential(*(block(**kwargs) for _ in range(num_blocks)))


class NonLocalBlock(nn.Module):
    """Embedded-Gaussian non-local attention over all frames and positions of aligned features.

    Keys and values are max-pooled 2x2 to keep the attention matrix at a quarter of the
    positions; the output projection starts at zero, so a new block is an identity.

    Args:
        num_feat (int): channels. Default: 64.
    """

    def __init__(self, num_feat: int = 64):
        super().__init__()
        inner = max(num_feat // 2, 1)
        self.query = nn.Conv2d(num_feat, inner, 1)
        self.key = nn.Conv2d(num_feat, inner, 1)
        self.value = nn.Conv2d(num_feat, inner, 1)
        self.out = nn.Conv2d(inner, num_feat, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, feat: torch.Tensor) -> torch.Tensor:
        """feat: (b, t, c, h, w) with even h, w. Returns the same shape."""
        b, t, c, h, w = feat.shape
        flat = feat.reshape(b * t, c, h, w)
        query = self.query(flat).reshape(b, t, -1, h * w).permute(0, 1, 3, 2).reshape(b, t * h * w, -1)
        pooled = nn.functional.max_pool2d(flat, 2)
        key = self.key(pooled).reshape(b, t, -1, pooled.shape[-2] * pooled.shape[-1])
        key = key.permute(0, 2, 1, 3).reshape(b, key.shape[2], -1)  # (b, inner, t * h/2 * w/2)
        value = self.value(pooled).reshape(b, t, -1, pooled.shape[-2] * pooled.shape[-1])
        value = value.permute(0, 1, 3, 2).reshape(b, -1, value.shape[2])  # (b, t * h/2 * w/2, inner)
        attention = torch.softmax(torch.bmm(query, key) / key.shape[1] ** 0.5, dim=-1)
        context = torch.bmm(attention, value)  # (b, t*h*w, inner)
        context = context.reshape(b, t, h * w, -1).permute(0, 1, 3, 2).reshape(b * t, -1, h, w)
        return feat + self.out(context).reshape(b, t, c, h, w)
