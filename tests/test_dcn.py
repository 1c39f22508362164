"""The pure-PyTorch DCNv2 against a plain conv, a naive per-pixel reference, and gradcheck."""

import math
import warnings

import pytest
import torch
import torch.nn.functional as F

from models.dcn import DCNv2Pack, max_offset_absmean, modulated_deform_conv2d, resolve_backend


def naive_modulated_deform_conv(x, offset, mask, weight, bias, stride, padding, dilation):
    """Textbook DCNv2: for each output pixel and kernel tap, bilinearly sample the input at the
    offset position (zeros outside), scale by the mask, and accumulate weight * sample."""
    n, c_in, h, w = x.shape
    c_out, _, kh, kw = weight.shape
    h_out, w_out = offset.shape[-2:]
    groups = offset.shape[1] // (2 * kh * kw)
    channels_per_group = c_in // groups

    def pixel(b, c, y, xx):
        return x[b, c, y, xx] if 0 <= y < h and 0 <= xx < w else x.new_zeros(())

    def bilinear(b, c, y, xx):
        y0, x0 = math.floor(y), math.floor(xx)
        dy, dx = y - y0, xx - x0
        return ((1 - dy) * (1 - dx) * pixel(b, c, y0, x0) + (1 - dy) * dx * pixel(b, c, y0, x0 + 1)
                + dy * (1 - dx) * pixel(b, c, y0 + 1, x0) + dy * dx * pixel(b, c, y0 + 1, x0 + 1))

    out = x.new_zeros(n, c_out, h_out, w_out)
    for b in range(n):
        for oy in range(h_out):
            for ox in range(w_out):
                for c in range(c_in):
                    g = c // channels_per_group
                    for i in range(kh):
                        for j in range(kw):
                            k = i * kw + j
                            sy = oy * stride - padding + i * dilation + offset[b, 2 * (g * kh * kw + k), oy, ox].item()
                            sx = ox * stride - padding + j * dilation + offset[b, 2 * (g * kh * kw + k) + 1, oy, ox].item()
                            sample = bilinear(b, c, sy, sx) * mask[b, g * kh * kw + k, oy, ox]
                            out[b, :, oy, ox] += weight[:, c, i, j] * sample
        out[b] += bias[:, None, None]
    return out


def test_zero_offsets_and_unit_mask_equal_a_plain_conv():
    torch.manual_seed(0)
    x = torch.randn(2, 16, 19, 23)
    # Weights at the scale a conv is initialised with (std 1/sqrt(fan_in)), outputs of order 1:
    # the comparison then measures the DCN, not float32 summation order on huge values.
    weight, bias = torch.randn(8, 16, 3, 3) / 12, torch.randn(8)
    offset = torch.zeros(2, 2 * 4 * 9, 19, 23)
    mask = torch.ones(2, 4 * 9, 19, 23)
    ours = modulated_deform_conv2d(x, offset, mask, weight, bias, 1, 1, 1)
    assert (ours - F.conv2d(x, weight, bias, padding=1)).abs().max().item() <= 1e-5


@pytest.mark.parametrize("stride,padding,dilation", [(1, 1, 1), (2, 1, 1), (1, 2, 2)])
def test_random_offsets_match_the_naive_reference(stride, padding, dilation):
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(2, 4, 5, 6, generator=gen, dtype=torch.float64)
    weight = torch.randn(3, 4, 3, 3, generator=gen, dtype=torch.float64)
    bias = torch.randn(3, generator=gen, dtype=torch.float64)
    h_out = (5 + 2 * padding - dilation * 2 - 1) // stride + 1
    w_out = (6 + 2 * padding - dilation * 2 - 1) // stride + 1
    # Offsets up to +-3 px push many samples across the border, where zeros are read.
    offset = (torch.rand(2, 2 * 2 * 9, h_out, w_out, generator=gen, dtype=torch.float64) - 0.5) * 6
    mask = torch.rand(2, 2 * 9, h_out, w_out, generator=gen, dtype=torch.float64)
    ours = modulated_deform_conv2d(x, offset, mask, weight, bias, stride, padding, dilation)
    reference = naive_modulated_deform_conv(x, offset, mask, weight, bias, stride, padding, dilation)
    assert ours.shape == reference.shape == (2, 3, h_out, w_out)
    assert (ours - reference).abs().max().item() <= 1e-10


def test_gradcheck_in_float64():
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(1, 4, 3, 4, generator=gen, dtype=torch.float64, requires_grad=True)
    # Keep samples off integer positions: bilinear interpolation has kinks there.
    offset = ((torch.rand(1, 2 * 2 * 9, 3, 4, generator=gen, dtype=torch.float64) - 0.5) * 1.6 + 0.31
              ).requires_grad_()
    mask = torch.rand(1, 2 * 9, 3, 4, generator=gen, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(2, 4, 3, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(2, generator=gen, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda *args: modulated_deform_conv2d(*args, 1, 1, 1), (x, offset, mask, weight, bias), fast_mode=True)


def test_untrained_pack_is_a_plain_conv_at_half_weight():
    # conv_offset starts at zero: no offsets, and every mask is sigmoid(0) = 0.5.
    pack = DCNv2Pack(16, 16, deformable_groups=8)
    x = torch.randn(1, 16, 9, 11)
    expected = F.conv2d(x, pack.weight * 0.5, pack.bias, padding=1)
    assert (pack(x, torch.randn_like(x)) - expected).abs().max().item() <= 1e-5


def test_offset_warning_on_cpu_and_running_record():
    pack = DCNv2Pack(8, 8, deformable_groups=1)
    torch.nn.init.constant_(pack.conv_offset.bias, 60.0)  # every offset 60 px, masks sigmoid(60)
    x = torch.randn(1, 8, 6, 6)
    with pytest.warns(RuntimeWarning, match="alignment is diverging"):
        pack(x, x)
    assert max_offset_absmean(pack) == pytest.approx(60.0)
    torch.nn.init.zeros_(pack.conv_offset.bias)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pack(x, x)
    assert max_offset_absmean(pack) == 0.0


def test_backend_choice():
    assert resolve_backend("auto", torch.device("cpu")) == "pytorch"
    assert resolve_backend("pytorch", torch.device("cpu")) == "pytorch"
    with pytest.raises(ValueError, match="unknown DCN backend"):
        resolve_backend("cuda-magic", torch.device("cpu"))


def test_the_mean_offset_is_exact_over_a_full_frame():
    # 7.4 million offsets of -0.3: a one-pass float32 sum of them drifts by percents.
    pack = DCNv2Pack(2, 2, 3, padding=1, deformable_groups=1)
    with torch.no_grad():
        pack.conv_offset.bias[:18] = -0.3
    with torch.no_grad():
        pack(torch.rand(1, 2, 480, 854), torch.rand(1, 2, 480, 854))
    assert abs(max_offset_absmean(pack) - 0.3) < 1e-5


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("with_bias", [False, True])
@pytest.mark.parametrize("layout", ["nhwc", "strided"])
def test_the_samples_times_weight_product_is_a_channels_last_tensor_of_its_own(dtype, with_bias, layout):
    """Both DCNs' product of samples and weight: float32 on the CPU through oneDNN, other dtypes
    through the matmul; channels_last, and not a view (DCN outputs are modified in place)."""
    from models import pointwise

    generator = torch.Generator().manual_seed(0)
    pixels = torch.randn(2, 5, 7, 36, generator=generator, dtype=dtype)
    if layout == "strided":  # a gradient in the default layout, seen pixel-major
        pixels = pixels.permute(0, 3, 1, 2).contiguous().permute(0, 2, 3, 1)
    weight = torch.randn(8, 36, generator=generator, dtype=dtype)
    bias = torch.randn(8, generator=generator, dtype=dtype) if with_bias else None
    out = pointwise.pixels_times_weight(pixels, weight, bias)
    expected = torch.einsum("nhwk,ck->nchw", pixels.double(), weight.double())
    if with_bias:
        expected += bias.double()[:, None, None]
    assert out.shape == (2, 8, 5, 7) and out.dtype == dtype and out._base is None
    assert out.is_contiguous(memory_format=torch.channels_last)
    assert (out.double() - expected).abs().max() < (2e-5 if dtype == torch.float32 else 1e-12)
    assert pointwise.onednn_applies(pixels) == (dtype == torch.float32 and torch.backends.mkldnn.is_available())
