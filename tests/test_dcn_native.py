"""The C++ DCN kernel (models/dcn_native.cpp): that it builds and is what the CPU runs, what it
computes where the answer is known exactly, and what happens where it cannot be built. Its
agreement with the reference DCN, gradients included, is in test_dcn_fast_path.py."""

import warnings

import pytest
import torch
import torch.nn.functional as F

from models import EDVR, dcn_native
from models.dcn_ops import modulated_deform_conv2d, modulated_deform_conv2d_reference


@pytest.fixture(autouse=True)
def kernel_enabled(monkeypatch):
    monkeypatch.setenv(dcn_native.DISABLE_VARIABLE, "1")


def test_the_kernel_builds_here_and_runs_edvrs_cpu_forward_and_training(monkeypatch):
    assert dcn_native.available()
    calls = []
    for name in ("_forward_in_bands", "_NativeDCN"):
        original = getattr(dcn_native, name)
        if name == "_NativeDCN":
            monkeypatch.setattr(original, "apply", staticmethod(lambda *a, o=original.apply: calls.append("grad") or o(*a)))
        else:
            monkeypatch.setattr(dcn_native, name, lambda *a, o=original: calls.append("bands") or o(*a))
    model = EDVR(num_in_ch=3, num_out_ch=3, num_feat=8, num_frame=3, deformable_groups=2, num_extract_block=1,
                 num_reconstruct_block=1, with_tsa=False, hr_in=True)
    frames = torch.rand(1, 3, 3, 16, 16)
    with torch.no_grad():
        model.eval()(frames)
    # PCD's four DCNs, each once for the window's three frames batched together
    assert calls.count("bands") == 4 and "grad" not in calls
    model.train()(frames).sum().backward()
    assert calls.count("grad") == 4


def _cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            return next((set(line.split(":", 1)[1].split()) for line in cpuinfo if line.startswith("flags")), set())
    except OSError:
        return set()


def test_the_avx2_build_runs_where_the_cpu_has_it_and_the_portable_one_when_asked(monkeypatch):
    assert dcn_native.available()
    expected = "avx2" if {"avx2", "fma"} <= _cpu_flags() else "portable"
    assert torch.ops.edvr_dcn.vector_isa() == expected
    monkeypatch.setenv(dcn_native.ISA_VARIABLE, "portable")
    assert torch.ops.edvr_dcn.vector_isa() == "portable"


@pytest.mark.parametrize("stride,padding,dilation", [(1, 1, 1), (2, 1, 1), (1, 2, 2), (1, 0, 1)])
@pytest.mark.parametrize("threads", [1, 2])
def test_zero_offsets_and_unit_mask_are_exactly_a_convolution(stride, padding, dilation, threads):
    # Every sample then falls on a pixel centre (fractions 0) or in the zero border, so the
    # kernel must reproduce conv2d up to the summation order, in float64.
    gen = torch.Generator().manual_seed(11)
    x = torch.randn(3, 16, 10, 12, generator=gen, dtype=torch.float64).contiguous(memory_format=torch.channels_last)
    x.requires_grad_()
    weight = torch.randn(7, 16, 3, 3, generator=gen, dtype=torch.float64)
    bias = torch.randn(7, generator=gen, dtype=torch.float64)
    expected = F.conv2d(x, weight, bias, stride, padding, dilation)
    h_out, w_out = expected.shape[-2:]
    offset = torch.zeros(3, 2 * 4 * 9, h_out, w_out, dtype=torch.float64)
    mask = torch.ones(3, 4 * 9, h_out, w_out, dtype=torch.float64)
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        ours = modulated_deform_conv2d(x, offset, mask, weight, bias, stride, padding, dilation)
        (grad_ours,) = torch.autograd.grad(ours.square().sum(), x)
        (grad_expected,) = torch.autograd.grad(expected.square().sum(), x)
    finally:
        torch.set_num_threads(previous)
    assert (ours - expected).abs().max().item() < 1e-12
    assert (grad_ours - grad_expected).abs().max().item() < 1e-11


def test_samples_outside_the_input_read_zeros_and_pass_no_gradient():
    x = torch.ones(1, 4, 5, 5, dtype=torch.float64, requires_grad=True)
    offset = torch.full((1, 2 * 9, 5, 5), -40.0, dtype=torch.float64, requires_grad=True)
    mask = torch.ones(1, 9, 5, 5, dtype=torch.float64, requires_grad=True)
    weight = torch.ones(2, 4, 3, 3, dtype=torch.float64)
    out = modulated_deform_conv2d(x, offset, mask, weight, None, 1, 1, 1)
    out.sum().backward()
    assert out.abs().max().item() == 0
    assert x.grad.abs().max().item() == offset.grad.abs().max().item() == mask.grad.abs().max().item() == 0


def test_float32_edvr_m_sizes_agree_with_the_reference():
    # EDVR-M's PCD: 64 channels, 8 groups (8 channels each), offsets of a few pixels.
    gen = torch.Generator().manual_seed(12)
    x = torch.randn(1, 64, 24, 40, generator=gen).contiguous(memory_format=torch.channels_last)
    offset = (torch.rand(1, 2 * 8 * 9, 24, 40, generator=gen) - 0.5) * 8
    mask = torch.rand(1, 8 * 9, 24, 40, generator=gen)
    weight = torch.randn(64, 64, 3, 3, generator=gen) / 24
    bias = torch.randn(64, generator=gen)
    with torch.no_grad():
        ours = modulated_deform_conv2d(x, offset, mask, weight, bias, 1, 1, 1)
    expected = modulated_deform_conv2d_reference(x, offset, mask, weight, bias, 1, 1, 1)
    assert ours.is_contiguous(memory_format=torch.channels_last)
    assert (ours - expected).abs().max().item() < 2e-5


@pytest.mark.parametrize("groups,layout", [(4, "channels_last"), (8, "default")])
def test_float32_gradients_agree_with_the_float64_reference(groups, layout):
    # The other gradient tests run in float64; training runs in float32.
    gen = torch.Generator().manual_seed(13)
    x = torch.randn(3, 32, 12, 20, generator=gen, dtype=torch.float64)
    offset = (torch.rand(3, 2 * groups * 9, 12, 20, generator=gen, dtype=torch.float64) - 0.5) * 6
    mask = torch.rand(3, groups * 9, 12, 20, generator=gen, dtype=torch.float64)
    weight = torch.randn(16, 32, 3, 3, generator=gen, dtype=torch.float64) / 17
    bias = torch.randn(16, generator=gen, dtype=torch.float64)
    grad_out = torch.randn(3, 16, 12, 20, generator=gen, dtype=torch.float64)
    results = []
    for dtype in (torch.float32, torch.float64):
        inputs = [t.to(dtype).requires_grad_() for t in (x, offset, mask, weight, bias)]
        if layout == "channels_last":
            inputs[:3] = [t.detach().contiguous(memory_format=torch.channels_last).requires_grad_() for t in inputs[:3]]
        dcn = modulated_deform_conv2d if dtype == torch.float32 else modulated_deform_conv2d_reference
        out = dcn(*inputs, 1, 1, 1)
        out.backward(grad_out.to(dtype))
        results.append([out.detach().double()] + [t.grad.double() for t in inputs])
    for ours, expected in zip(*results):
        scale = expected.abs().max().item()
        assert (ours - expected).abs().max().item() <= 2e-5 * scale


def test_a_kernel_that_cannot_be_built_warns_once_and_the_pytorch_dcn_runs(monkeypatch, tmp_path):
    broken = tmp_path / "dcn_native.cpp"
    broken.write_text("this is not C++\n")
    monkeypatch.setenv("EDVR_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(dcn_native, "SOURCE", broken)
    dcn_native._load.cache_clear()
    try:
        with pytest.warns(RuntimeWarning, match="could not be built.*using the slower pure-PyTorch one"):
            assert not dcn_native.available()
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no second warning
            assert not dcn_native.applies_to(torch.zeros(1))
            gen = torch.Generator().manual_seed(13)
            x = torch.randn(1, 4, 6, 6, generator=gen, dtype=torch.float64)
            offset = torch.randn(1, 18, 6, 6, generator=gen, dtype=torch.float64)
            mask = torch.rand(1, 9, 6, 6, generator=gen, dtype=torch.float64)
            weight = torch.randn(3, 4, 3, 3, generator=gen, dtype=torch.float64)
            ours = modulated_deform_conv2d(x, offset, mask, weight, None, 1, 1, 1)
        expected = modulated_deform_conv2d_reference(x, offset, mask, weight, None, 1, 1, 1)
        assert (ours - expected).abs().max().item() < 1e-12
    finally:
        dcn_native._load.cache_clear()


def test_a_library_built_for_another_torch_is_never_loaded(monkeypatch):
    name = dcn_native._extension_name()
    monkeypatch.setattr(torch, "__version__", torch.__version__ + "+other")
    assert dcn_native._extension_name() != name
