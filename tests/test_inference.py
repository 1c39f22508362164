import numpy as np
import pytest
import torch
from torch import nn

from edvr_cli.enhance.inference import (DIHEDRAL, InferenceError, ModelRunner, autocast_dtype, choose_device,
                                inverse_transform, is_out_of_memory, transform)
from models import EDVR

needs_no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only answers")


def identity_edvr(num_frame=5):
    """A real tiny EDVR whose output is exactly its centre frame (conv_last zeroed)."""
    model = EDVR(num_feat=8, deformable_groups=1, num_extract_block=1, num_reconstruct_block=1,
                 hr_in=True, with_predeblur=False, scale=1, num_frame=num_frame, num_hr_feat=8)
    nn.init.zeros_(model.conv_last.weight)
    nn.init.zeros_(model.conv_last.bias)
    return model.eval()


class SkewedConv(nn.Module):
    """A model with no symmetry: a random 3x3 conv over the window, plus a ramp across x
    (`with_ramp`; without it the model is local, receptive radius 1, so tiles do not change it)."""

    def __init__(self, num_frame=3, scale=1, with_ramp=True):
        super().__init__()
        self.scale, self.num_frame, self.with_ramp = scale, num_frame, with_ramp
        self.conv = nn.Conv2d(num_frame * 3, 3 * scale * scale, 3, padding=1)
        self.shuffle = nn.PixelShuffle(scale)

    def forward(self, x):
        n, t, c, h, w = x.shape
        out = self.shuffle(self.conv(x.reshape(n, t * c, h, w)))
        return out + torch.linspace(0, 0.1, w * self.scale, dtype=x.dtype) if self.with_ramp else out


class RefusesLargeTiles(nn.Module):
    """Wraps a model; raises CUDA's out-of-memory error for inputs larger than `limit` pixels a side."""

    def __init__(self, inner, limit, error=torch.cuda.OutOfMemoryError):
        super().__init__()
        self.inner, self.limit, self.error = inner, limit, error
        self.scale, self.num_frame = inner.scale, inner.num_frame
        self.sizes = []

    def forward(self, x):
        self.sizes.append(tuple(x.shape[-2:]))
        if max(x.shape[-2:]) > self.limit:
            raise self.error("CUDA out of memory. Tried to allocate 2.00 GiB")
        return self.inner(x)


def test_auto_device_and_cpu():
    assert choose_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert choose_device("cpu") == torch.device("cpu")


@needs_no_cuda
@pytest.mark.parametrize("spec", ["cuda", "cuda:1"])
def test_cuda_without_gpu_is_a_clear_error(spec):
    with pytest.raises(InferenceError, match="no CUDA GPU.*--device cpu"):
        choose_device(spec)


@pytest.mark.parametrize("spec", ["tpu", "gpu0", "mps"])
def test_unknown_device_is_an_error(spec):
    with pytest.raises(InferenceError, match="device"):
        choose_device(spec)


def test_precisions():
    cpu = torch.device("cpu")
    assert autocast_dtype(cpu, "fp32") is None
    assert autocast_dtype(cpu, "bf16") is torch.bfloat16
    assert autocast_dtype(torch.device("cuda"), "fp16") is torch.float16
    with pytest.raises(InferenceError, match="fp16 runs on CUDA only"):
        autocast_dtype(cpu, "fp16")
    with pytest.raises(InferenceError, match="fp16 runs on CUDA only"):
        ModelRunner(identity_edvr(), "cpu", precision="fp16")


def test_out_of_memory_recognised():
    assert is_out_of_memory(torch.cuda.OutOfMemoryError("x"))
    assert is_out_of_memory(RuntimeError("CUDA error: out of memory"))
    assert not is_out_of_memory(RuntimeError("shape mismatch"))
    assert not is_out_of_memory(ValueError("out of memory"))


def test_identity_model_returns_centre_frames_exactly():
    rng = np.random.default_rng(0)
    windows = rng.integers(0, 256, (2, 5, 20, 36, 3), dtype=np.uint8)
    out = ModelRunner(identity_edvr(), "cpu")(windows)
    assert out.dtype == np.uint8 and out.shape == (2, 20, 36, 3)
    assert np.array_equal(out, windows[:, 2])


def test_bf16_on_cpu_runs():
    rng = np.random.default_rng(1)
    windows = rng.integers(0, 256, (1, 5, 16, 16, 3), dtype=np.uint8)
    out = ModelRunner(identity_edvr(), "cpu", precision="bf16")(windows)
    # conv_last is zero, so the result is the fp32 centre frame whatever the autocast dtype
    assert np.array_equal(out, windows[:, 2])


def test_window_length_must_match_the_model():
    with pytest.raises(InferenceError, match=r"\(n, 5, c, h, w\)"):
        ModelRunner(identity_edvr(), "cpu")(np.zeros((1, 3, 8, 8, 3), np.uint8))


def test_dihedral_transforms_are_eight_distinct_invertible_maps():
    x = torch.arange(2 * 3 * 4 * 5, dtype=torch.float64).reshape(1, 2, 3, 4, 5)
    images = {tuple(transform(x, *flips).flatten().tolist()) for flips in DIHEDRAL}
    assert len(images) == 8
    for flips in DIHEDRAL:
        assert torch.equal(inverse_transform(transform(x, *flips), *flips), x)


def test_ensemble_of_identity_model_is_identity():
    rng = np.random.default_rng(2)
    windows = rng.integers(0, 256, (1, 5, 16, 24, 3), dtype=np.uint8)
    assert np.array_equal(ModelRunner(identity_edvr(), "cpu", ensemble=True)(windows), windows[:, 2])


@pytest.mark.parametrize("scale", [1, 2])
def test_ensemble_equals_manual_average_of_rotations_and_flips(scale):
    torch.manual_seed(0)
    model = SkewedConv(scale=scale).double().eval()
    x = torch.rand(2, 3, 3, 9, 14, dtype=torch.float64)
    with torch.no_grad():
        outputs = []
        for mirror in (False, True):  # the 8 symmetries of the square as rotations x mirror
            for quarter_turns in range(4):
                y = torch.flip(x, [-1]) if mirror else x
                y = model(torch.rot90(y, quarter_turns, dims=(-2, -1)))
                y = torch.rot90(y, -quarter_turns, dims=(-2, -1))
                outputs.append(torch.flip(y, [-1]) if mirror else y)
        manual = torch.stack(outputs).mean(0)
        plain = model(x)
    ensembled = ModelRunner(model, "cpu", ensemble=True).restore(x)
    assert ensembled.shape == (2, 3, 9 * scale, 14 * scale)
    assert (ensembled - manual).abs().max().item() < 1e-12
    assert (ensembled - plain).abs().max().item() > 1e-3  # the model is not symmetric


@pytest.mark.parametrize("error", [torch.cuda.OutOfMemoryError, RuntimeError])
def test_out_of_memory_retries_with_smaller_tiles_and_says_so_once(error):
    torch.manual_seed(0)
    inner = SkewedConv(with_ramp=False).double().eval()
    model = RefusesLargeTiles(inner, limit=40, error=error)
    notes = []
    runner = ModelRunner(model, "cpu", tile=0, tile_overlap=2, notify=notes.append)
    batches = [torch.rand(2, 3, 3, 48, 64, dtype=torch.float64) for _ in range(3)]
    with torch.no_grad():
        expected = [inner(batch) for batch in batches]
    results = [runner.restore(batch) for batch in batches]
    for result, reference in zip(results, expected):
        assert (result - reference).abs().max().item() < 1e-12
    assert len(notes) == 1
    assert "whole frames" in notes[0] and "32 px tiles" in notes[0]
    assert runner.tile == 32
    assert model.sizes[0] == (48, 64)  # the first try was the whole frame, refused
    assert all(max(size) <= 40 for size in model.sizes[1:])


def test_out_of_memory_at_the_floor_is_a_clear_error():
    model = RefusesLargeTiles(SkewedConv(), limit=10)
    runner = ModelRunner(model, "cpu", tile=0, tile_overlap=2)
    with pytest.raises(InferenceError, match="out of memory even with 32 px tiles.*--batch"):
        runner.restore(torch.rand(1, 3, 3, 48, 64))


def test_other_runtime_errors_are_not_retried():
    class Broken(SkewedConv):
        def forward(self, x):
            raise RuntimeError("expected scalar type Float")

    model = Broken()
    with pytest.raises(RuntimeError, match="scalar type"):
        ModelRunner(model, "cpu").restore(torch.rand(1, 3, 3, 8, 8))


def random_edvr(scale=1, num_frame=3):
    """A real tiny EDVR with random weights everywhere (the offset convs too), so the DCN
    alignment, TSA fusion and reconstruction all shape the output: no symmetry, no identity."""
    torch.manual_seed(3)
    model = EDVR(num_feat=8, deformable_groups=1, num_extract_block=1, num_reconstruct_block=1,
                 hr_in=False, scale=scale, num_frame=num_frame, num_hr_feat=8, with_tsa=True).eval()
    with torch.no_grad():
        for param in model.parameters():
            param.copy_(torch.randn_like(param) * 0.1)
    return model


@pytest.mark.parametrize("scale", [1, 4])
def test_runner_tiles_match_whole_frames_with_a_random_edvr(scale):
    model = random_edvr(scale)
    rng = np.random.default_rng(4)
    windows = rng.integers(0, 256, (1, 3, 72, 100, 3), dtype=np.uint8)
    whole = ModelRunner(model, "cpu")(windows)
    tiled = ModelRunner(model, "cpu", tile=40, tile_overlap=32)(windows)
    assert whole.shape == (1, 72 * scale, 100 * scale, 3)
    if scale == 1:  # the network changes the frame: the comparison below means something
        assert np.abs(whole.astype(int) - windows[:, 1]).max() > 10
    # float32 sums in another order may round a code the other way, never more
    assert np.abs(tiled.astype(int) - whole).max() <= 1
    assert np.mean(tiled != whole) < 1e-3


def test_runner_ensemble_is_the_mean_over_the_eight_symmetries_of_a_random_edvr():
    model = random_edvr().double()
    x = torch.rand(1, 3, 3, 24, 36, dtype=torch.float64)
    with torch.no_grad():
        outputs = [inverse_transform(model(transform(x, *flips)), *flips) for flips in DIHEDRAL]
        manual = torch.stack(outputs).mean(0)
        plain = model(x)
    ensembled = ModelRunner(model, "cpu", ensemble=True).restore(x)
    assert (ensembled - manual).abs().max().item() < 1e-10
    # a real EDVR is far from symmetric: each transform gives another answer
    assert min((out - plain).abs().max().item() for out in outputs[1:]) > 1e-3
    assert (ensembled - plain).abs().max().item() > 1e-3


@pytest.mark.parametrize("precision, dtype", [("bf16", torch.bfloat16), ("fp32", torch.float32)])
def test_the_convolutions_run_in_the_precision_asked_for(precision, dtype):
    model = random_edvr()
    seen = []
    for module in (model.conv_first, model.reconstruction[0].conv1, model.conv_last):
        module.register_forward_hook(lambda module, inputs, output: seen.append(output.dtype))
    windows = np.random.default_rng(5).integers(0, 256, (1, 3, 16, 16, 3), dtype=np.uint8)
    out = ModelRunner(model, "cpu", precision=precision)(windows)
    assert seen == [dtype] * 3
    assert out.dtype == np.uint8 and out.shape == (1, 16, 16, 3)
    if precision == "bf16":  # and the result differs from fp32's, as bf16's 8-bit mantissa makes it
        assert not np.array_equal(out, ModelRunner(random_edvr(), "cpu")(windows))
