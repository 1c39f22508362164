"""EDVR against facts recorded from BasicSR's own implementation (tests/data/basicsr_edvr.json)."""

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from models import EDVR, PRESETS, build_model

BASICSR = json.loads((Path(__file__).parent / "data" / "basicsr_edvr.json").read_text())


def num_params(model):
    return sum(p.numel() for p in model.parameters())


def test_published_parameter_counts():
    assert num_params(build_model("edvr-m")) == 3_300_131
    assert num_params(build_model("edvr-l")) == 20_633_827


@pytest.mark.parametrize("name", sorted(BASICSR["models"]))
def test_parameter_names_and_shapes_equal_basicsr(name):
    entry = BASICSR["models"][name]
    ours = {key: list(value.shape) for key, value in EDVR(**entry["config"]).state_dict().items()}
    assert ours == entry["keys"]


def seeded_weights(keys: dict) -> dict:
    """The weights the reference outputs were recorded with: randn * 0.05 in BasicSR's key order."""
    gen = torch.Generator().manual_seed(0)
    return {key: torch.randn(shape, generator=gen, dtype=torch.float64) * 0.05 for key, shape in keys.items()}


@pytest.mark.parametrize("name", sorted(BASICSR["reference_outputs"]))
def test_outputs_equal_basicsr_reference(name):
    reference = BASICSR["reference_outputs"][name]
    model = EDVR(**reference["config"]).double().eval()
    model.load_state_dict(seeded_weights(BASICSR["models"][name]["keys"]))
    h, w = reference["input_hw"]
    x = torch.rand(1, reference["config"]["num_frame"], 3, h, w,
                   generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    with torch.no_grad():
        out = model(x)
    expected = torch.tensor(reference["output"], dtype=torch.float64).reshape(reference["output_shape"])
    assert out.shape == expected.shape
    assert (out - expected).abs().max().item() <= 1e-10


def tiny(**overrides):
    config = dict(num_feat=16, num_frame=3, deformable_groups=2, num_extract_block=1, num_reconstruct_block=1)
    config.update(overrides)
    return EDVR(**config).eval()


@pytest.mark.parametrize("overrides,expected_scale", [
    ({}, 4), ({"scale": 2}, 2), ({"scale": 1}, 1), ({"hr_in": True}, 1),
    ({"hr_in": True, "with_predeblur": True}, 1), ({"with_predeblur": True, "with_tsa": False}, 4),
    ({"car": True, "nonlocal_attn": True}, 4),
])
def test_any_input_size_gives_the_scaled_size(overrides, expected_scale):
    model = tiny(**overrides)
    assert model.scale == expected_scale
    with torch.no_grad():
        out = model(torch.rand(2, 3, 3, 35, 47))
    assert out.shape == (2, 3, 35 * expected_scale, 47 * expected_scale)


def test_padding_only_extends_the_frame():
    # A frame already of the needed multiple is not padded, so cropping a padded result
    # must give the same pixels away from the padded border's receptive field.
    model = tiny(scale=1).double()
    x = torch.rand(1, 3, 3, 32, 32, dtype=torch.float64)
    with torch.no_grad():
        full = model(x)
        cropped = model(x[..., :30, :30])
    assert cropped.shape == (1, 3, 30, 30)
    assert not torch.equal(full[..., :30, :30], cropped)  # the border does change
    assert (full[..., :8, :8] - cropped[..., :8, :8]).abs().max().item() < 1e-2


def test_untrained_scale1_model_adds_to_the_centre_frame():
    model = tiny(hr_in=True, with_predeblur=True)
    for param in (model.conv_last.weight, model.conv_last.bias):
        torch.nn.init.zeros_(param)
    x = torch.rand(1, 3, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(model(x), x[:, 1])


@pytest.mark.parametrize("kwargs,message", [
    ({"num_frame": 4}, "odd"), ({"hr_in": True, "scale": 4}, "scale"), ({"scale": 3}, "scale"),
    ({"center_frame_idx": 5}, "center_frame_idx"), ({"num_feat": 12, "deformable_groups": 8}, "divisible"),
])
def test_bad_arguments_raise_value_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        EDVR(**kwargs)


def test_wrong_input_shape_is_a_value_error():
    with pytest.raises(ValueError, match=r"expects \(n, 3, 3, h, w\)"):
        tiny()(torch.rand(1, 5, 3, 16, 16))


def test_presets_are_plain_dicts_of_arguments():
    assert PRESETS["small"]["hr_in"] and PRESETS["small"]["with_predeblur"]
    assert PRESETS["large"]["num_feat"] == 128 and PRESETS["large"]["num_reconstruct_block"] == 40
    assert build_model("edvr-m", num_frame=7).num_frame == 7


@pytest.mark.parametrize("hr_in, scale", [(False, 1), (True, 1), (False, 4)])
def test_scale_residual_scales_what_the_network_adds(hr_in, scale):
    torch.manual_seed(0)
    model = EDVR(num_feat=8, num_frame=3, deformable_groups=1, num_extract_block=1, num_reconstruct_block=1,
                 with_tsa=False, hr_in=hr_in, scale=scale).eval()
    frames = torch.rand(1, 3, 3, 16, 16)
    base = frames[:, 1] if scale == 1 else F.interpolate(frames[:, 1], scale_factor=scale, mode="bilinear",
                                                         align_corners=False)
    with torch.no_grad():
        residual = model(frames) - base
        model.scale_residual(0.25)
        assert torch.allclose(model(frames) - base, 0.25 * residual, atol=1e-6)
        model.scale_residual(0.0)
        assert torch.equal(model(frames), base)


@pytest.mark.parametrize("with_tsa", [False, True])
def test_aligning_the_window_in_one_batch_equals_aligning_it_frame_by_frame(monkeypatch, with_tsa):
    import models.edvr as edvr_module
    from models.dcn import DCNv2Pack

    torch.manual_seed(0)
    model = EDVR(num_feat=8, num_frame=3, deformable_groups=2, num_extract_block=1, num_reconstruct_block=1,
                 with_tsa=with_tsa).double()
    with torch.no_grad():  # offsets start at zero; trained ones move the samples
        for module in model.modules():
            if isinstance(module, DCNv2Pack):
                module.conv_offset.weight.normal_(0, 0.05)
    calls = []
    original = model.pcd_align.forward
    monkeypatch.setattr(model.pcd_align, "forward", lambda *a: calls.append(a[0][0].shape[0]) or original(*a))
    frames = torch.rand(2, 3, 3, 16, 16, dtype=torch.float64)
    results = {}
    for name, limit in (("batched", edvr_module.BATCHED_ALIGNMENT_BYTES), ("frame by frame", 0)):
        monkeypatch.setattr(edvr_module, "BATCHED_ALIGNMENT_BYTES", limit)
        calls.clear()
        model.zero_grad()
        out = model(frames)
        out.square().sum().backward()
        results[name] = (calls.copy(), out.detach(), [p.grad.clone() for p in model.parameters()])
    assert results["batched"][0] == [2 * 3]  # one call for the 3 frames of both windows
    assert results["frame by frame"][0] == [2, 2, 2]
    assert (results["batched"][1] - results["frame by frame"][1]).abs().max() < 1e-12
    for batched, by_frame in zip(results["batched"][2], results["frame by frame"][2]):
        assert (batched - by_frame).abs().max() < 1e-12


@pytest.mark.parametrize("batched_bytes", [0, 1 << 30], ids=["frame by frame", "batched"])
def test_one_window_is_aligned_in_the_channels_last_layout(monkeypatch, batched_bytes):
    """The alignment's concatenations keep the features' NHWC layout for a single window too. A
    one-window slice taken by reshape and index has an arbitrary batch stride, and torch.cat then
    returned the default layout, so every alignment layer after it ran (and copied) in NCHW."""
    import models.edvr as edvr_module

    monkeypatch.setattr(edvr_module, "BATCHED_ALIGNMENT_BYTES", batched_bytes)
    model = tiny().eval()
    layouts = []
    model.pcd_align.offset_conv1["l1"].register_forward_pre_hook(
        lambda module, args: layouts.append(args[0].is_contiguous(memory_format=torch.channels_last)))
    with torch.no_grad():
        model(torch.rand(1, 3, 3, 16, 16))
    assert layouts and all(layouts)


def test_tsa_from_the_frames_list_equals_tsa_from_their_stack():
    """EDVR hands TSA the aligned frames as a list, so that its per-frame embedding convolution
    reads each frame's own channels_last tensor instead of copying a strided view of the stack."""
    from models import TSAFusion

    torch.manual_seed(0)
    fusion = TSAFusion(num_feat=8, num_frame=3, center_frame_idx=1).double().eval()
    frames = [torch.rand(2, 8, 16, 16, dtype=torch.float64).contiguous(memory_format=torch.channels_last)
              for _ in range(3)]
    dense = []
    fusion.temporal_attn2.register_forward_pre_hook(
        lambda module, args: dense.append(args[0].is_contiguous(memory_format=torch.channels_last)))
    with torch.no_grad():
        from_list = fusion(frames)
        assert dense == [True] * 3
        from_stack = fusion(torch.stack(frames, dim=1))
    assert (from_list - from_stack).abs().max() < 1e-12
