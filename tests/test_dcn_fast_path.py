"""The fast DCNv2 and EDVR's channels_last CPU path against the straightforward reference code.

The reference (`modulated_deform_conv2d_reference`, itself checked against a per-pixel textbook
version in test_dcn.py) is what the optimised paths must reproduce, outputs and gradients, in
float64 so that any difference beyond rounding is a bug. Each test runs three times: through the C++
kernel (models/dcn_native.cpp), in both of its builds, and through the pure-PyTorch operations it
replaces where it cannot be built."""

import imageio_ffmpeg
import numpy as np
import pytest
import torch

import models.dcn as dcn
import models.dcn_ops as dcn_ops
from models import dcn_native
from models import load_model
from models.dcn_ops import modulated_deform_conv2d, modulated_deform_conv2d_reference

TOLERANCE = 1e-10
CITY_CLIP = "tests/data/city_qp37.mkv"


@pytest.fixture(autouse=True, params=["native", "native-portable", "pytorch"])
def dcn_path(request, monkeypatch):
    """Which CPU DCN runs: the kernel in the build this CPU gets (AVX2 on most x86 machines), the
    kernel's portable build (EDVR_DCN_ISA=portable), or (EDVR_NATIVE_DCN=0) the pure-PyTorch
    operations."""
    native = request.param.startswith("native")
    monkeypatch.setenv(dcn_native.DISABLE_VARIABLE, "1" if native else "0")
    if request.param == "native-portable":
        monkeypatch.setenv(dcn_native.ISA_VARIABLE, "portable")
    if native:
        assert dcn_native.available(), "the C++ DCN kernel did not build on this machine"
    return request.param


def _dcn_inputs(batch, stride, padding, dilation, gen, channels=8, groups=2):
    x = torch.randn(batch, channels, 9, 13, generator=gen, dtype=torch.float64)
    h_out = (9 + 2 * padding - dilation * 2 - 1) // stride + 1
    w_out = (13 + 2 * padding - dilation * 2 - 1) // stride + 1
    # Offsets up to +-3 px: many samples cross the border, where zeros are read.
    offset = (torch.rand(batch, 2 * groups * 9, h_out, w_out, generator=gen, dtype=torch.float64) - 0.5) * 6
    mask = torch.rand(batch, groups * 9, h_out, w_out, generator=gen, dtype=torch.float64)
    weight = torch.randn(5, channels, 3, 3, generator=gen, dtype=torch.float64)
    bias = torch.randn(5, generator=gen, dtype=torch.float64)
    return x, offset, mask, weight, bias


def _as_layout(tensor, layout):
    return tensor.contiguous(memory_format=torch.channels_last) if layout == "channels_last" else tensor


@pytest.mark.parametrize("layout", ["default", "channels_last"])
@pytest.mark.parametrize("batch,stride,padding,dilation", [(1, 1, 1, 1), (2, 1, 1, 1), (2, 2, 1, 1), (1, 1, 2, 2)])
def test_fast_dcn_equals_the_reference_without_grad(monkeypatch, layout, batch, stride, padding, dilation):
    monkeypatch.setattr(dcn_ops, "_band_bytes", lambda: 1)  # one output row per band: the banding is exercised
    x, offset, mask, weight, bias = _dcn_inputs(batch, stride, padding, dilation, torch.Generator().manual_seed(3))
    expected = modulated_deform_conv2d_reference(x, offset, mask, weight, bias, stride, padding, dilation)
    with torch.no_grad():
        ours = modulated_deform_conv2d(*(_as_layout(t, layout) for t in (x, offset, mask)), weight, bias,
                                       stride, padding, dilation)
    assert ours.shape == expected.shape
    assert ours.is_contiguous(memory_format=torch.channels_last) == (layout == "channels_last")
    assert (ours - expected).abs().max().item() <= TOLERANCE


@pytest.mark.parametrize("layout", ["default", "channels_last"])
@pytest.mark.parametrize("batch,stride", [(1, 1), (2, 2)])
# channels per deformable group: 4 (the case above), 8 and 16 (the kernel's unrolled widths), 3 (any other)
@pytest.mark.parametrize("channels,groups", [(8, 2), (8, 1), (16, 1), (6, 2)])
def test_fast_dcn_gradients_equal_the_reference(layout, batch, stride, channels, groups):
    inputs = _dcn_inputs(batch, stride, 1, 1, torch.Generator().manual_seed(4), channels, groups)
    ours_leaves = [_as_layout(t.clone(), layout).requires_grad_() if t.dim() == 4 else t.clone().requires_grad_()
                   for t in inputs]
    reference_leaves = [t.clone().requires_grad_() for t in inputs]
    ours = modulated_deform_conv2d(*ours_leaves, stride, 1, 1)
    expected = modulated_deform_conv2d_reference(*reference_leaves, stride, 1, 1)
    upstream = torch.randn(expected.shape, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    (ours * upstream).sum().backward()
    (expected * upstream).sum().backward()
    for name, a, b in zip(("x", "offset", "mask", "weight", "bias"), ours_leaves, reference_leaves):
        assert (a.grad - b.grad).abs().max().item() <= TOLERANCE, name


def test_fast_dcn_samples_at_float32_positions_under_bf16_autocast():
    # A bf16 grid would put samples pixels away on this 256-wide map; the reference in float32
    # is within bf16 rounding of the matmul inputs only.
    gen = torch.Generator().manual_seed(6)
    x = torch.rand(1, 8, 4, 256, generator=gen)
    offset = torch.full((1, 2 * 2 * 9, 4, 256), 0.3)
    mask = torch.ones(1, 2 * 9, 4, 256)
    weight = torch.randn(4, 8, 3, 3, generator=gen) / 9
    expected = modulated_deform_conv2d_reference(x, offset, mask, weight, None, 1, 1, 1)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        ours = modulated_deform_conv2d(x.bfloat16().contiguous(memory_format=torch.channels_last),
                                       offset.bfloat16(), mask.bfloat16(), weight, None, 1, 1, 1)
    assert (ours.float() - expected).abs().max().item() < 0.05


def _city_frames(num_frames=3, crop=(40, 56)):
    """The first frames of the bundled QP 37 clip, a crop of (num_frames, 3, h, w) in [0, 1]."""
    reader = imageio_ffmpeg.read_frames(CITY_CLIP, pix_fmt="rgb24")
    meta = next(reader)
    width, height = meta["size"]
    frames = []
    for raw in reader:
        frame = np.frombuffer(raw, np.uint8).reshape(height, width, 3)
        frames.append(torch.from_numpy(frame[:crop[0], :crop[1]].copy()).permute(2, 0, 1))
        if len(frames) == num_frames:
            break
    reader.close()
    return torch.stack(frames).double() / 255


def test_builtin_qe_fast_path_equals_the_reference_path_with_gradients(monkeypatch):
    frames = _city_frames()[None]  # (1, 3 frames, 3, 40, 56): not a multiple of 4, so padded too
    target = frames[:, 1].flip(-1)

    def run(model):
        output = model(frames)
        loss = ((output - target) ** 2).mean()
        loss.backward()
        return output.detach(), {name: p.grad for name, p in model.named_parameters()}

    fast_model = load_model("models/weights/builtin-qe.pth").double().train()
    fast_output, fast_grads = run(fast_model)

    reference_model = load_model("models/weights/builtin-qe.pth").double().train()
    reference_model.cpu_channels_last = False
    monkeypatch.setattr(dcn, "modulated_deform_conv2d", modulated_deform_conv2d_reference)
    reference_output, reference_grads = run(reference_model)

    assert fast_model.state_dict().keys() == reference_model.state_dict().keys()
    assert (fast_output - reference_output).abs().max().item() <= 1e-9
    for name, grad in reference_grads.items():
        scale = grad.abs().max().item() + 1e-12
        assert (fast_grads[name] - grad).abs().max().item() <= 1e-9 * scale + 1e-15, name



@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_channels_last_1x1_conv_and_pixel_shuffle_equal_torchs_layers_with_gradients(dtype):
    # EDVR's Conv1x1 and PixelShuffle take another route for channels_last CPU input (oneDNN in
    # float32, a matmul otherwise; one dense copy): they must give nn.Conv2d's and
    # nn.PixelShuffle's values and gradients, computed here in float64
    from torch import nn

    from models.blocks import Conv1x1, PixelShuffle

    gen = torch.Generator().manual_seed(7)
    conv = Conv1x1(12, 8).to(dtype)
    reference_conv = nn.Conv2d(12, 8, 1).double()
    reference_conv.load_state_dict(conv.state_dict())
    x = torch.randn(2, 12, 5, 7, generator=gen, dtype=torch.float64)
    x_ours = x.to(dtype).contiguous(memory_format=torch.channels_last).requires_grad_()
    x_reference = x.clone().requires_grad_()
    out = PixelShuffle(2)(conv(x_ours))
    expected = nn.PixelShuffle(2)(reference_conv(x_reference))
    tolerance = TOLERANCE if dtype == torch.float64 else 1e-5
    assert out.shape == expected.shape == (2, 2, 10, 14)
    assert out.is_contiguous(memory_format=torch.channels_last)  # the layout is kept
    assert (out - expected).abs().max().item() <= tolerance
    upstream = torch.randn(expected.shape, generator=gen, dtype=torch.float64)
    (out * upstream.to(dtype)).sum().backward()
    (expected * upstream).sum().backward()
    for ours, reference in ((x_ours, x_reference), (conv.weight, reference_conv.weight),
                            (conv.bias, reference_conv.bias)):
        assert (ours.grad - reference.grad).abs().max().item() <= tolerance


def test_a_1x1_convolution_of_one_image_stays_channels_last_whatever_its_batch_stride():
    """A reshape gives a batch of one an arbitrary batch stride (TSA's weighted frames have 320);
    oneDNN read such input as NCHW, copied it and returned NCHW, 4-6x slower at 320 x 180 x 320."""
    from torch import nn

    from models.blocks import Conv1x1

    torch.manual_seed(0)
    conv = Conv1x1(12, 8)
    x = torch.rand(5, 7, 1, 12).permute(2, 3, 0, 1)  # (1, 12, 5, 7), batch stride 12
    assert x.is_contiguous(memory_format=torch.channels_last) and x.stride()[0] == 12
    out = conv(x)
    assert out.stride() == (8 * 5 * 7, 1, 7 * 8, 8)
    reference = nn.Conv2d(12, 8, 1)
    reference.load_state_dict(conv.state_dict())
    assert (out - reference(x.contiguous())).abs().max() < 1e-6
