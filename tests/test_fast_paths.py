"""The optional fast paths, on the CPU: each one off by default, and each one's output
checked against the plain fp32 path.

- the planes' upload (`edvr_cli.video.convert.to_device`): pinned, non-blocking copies on CUDA
  only; on the CPU the very same tensors as before (nothing pinned, nothing copied);
- `ModelRunner(channels_last=True)`: same outputs as the default layout within float rounding
  (`CHANNELS_LAST_ATOL` on the float output, at most 1 code on uint8), the caller's network
  untouched;
- torch.compile through `EnhanceSettings.compile` and `edvr enhance --compile`: backend 'eager'
  (dynamo's trace, no C++ build) gives the uncompiled output bit for bit; inductor (what
  --compile uses) within `COMPILE_MAX_CODE_DIFF` codes and `COMPILE_MIN_PSNR_DB`; a compile that
  fails falls back with a note and writes exactly the uncompiled output.

The CUDA halves of these (pinned upload on a GPU, channels_last there) are in tests/test_cuda.py.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from edvr_cli.commands.enhance import command
from edvr_cli.enhance import EncoderSettings, EnhanceSettings, enhance
from edvr_cli.enhance.inference import ModelRunner, frames_channels_last
from edvr_cli.enhance.planes import build_runner
from edvr_cli.model_choice import LoadedModel
from edvr_cli.video import FrameConverter
from edvr_cli.video import convert as convert_module
from edvr_cli.video.convert import to_device, upload
from edvr_cli.video.frame import FrameFormat
from edvr_cli.video.pixel_format import PlaneLayout
from models import EDVR, save_model
from tests.clips import FFMPEG, make_clip

CHANNELS_LAST_ATOL = 1e-5  # float output of a tiny random EDVR; measured: ~1.2e-7
COMPILE_MAX_CODE_DIFF = 1  # 8-bit codes, inductor against eager PyTorch; measured: 0 on this clip
COMPILE_MIN_PSNR_DB = 50.0


def tiny_random_edvr(scale: int = 4, seed: int = 3) -> EDVR:
    """A real tiny EDVR with random weights everywhere (offset convs too: real deformable sampling)."""
    torch.manual_seed(seed)
    model = EDVR(num_feat=8, deformable_groups=1, num_extract_block=1, num_reconstruct_block=1,
                 hr_in=scale == 1, scale=scale, num_frame=3, num_hr_feat=8, with_tsa=True).eval()
    with torch.no_grad():
        for param in model.parameters():
            param.copy_(torch.randn_like(param) * 0.1)
    return model


def random_windows(n: int = 2, height: int = 24, width: int = 32) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (n, 3, height, width, 3), dtype=np.uint8)


@pytest.fixture
def no_pinning(monkeypatch):
    """Fail the test if anything pins host memory (the CPU path must not)."""
    def refuse(self, *args, **kwargs):
        raise AssertionError("pin_memory called on the CPU path")

    monkeypatch.setattr(torch.Tensor, "pin_memory", refuse)


# ------------------------------------------------------------------------------ upload


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_cpu_upload_gives_the_same_codes_as_before_and_pins_nothing(dtype, no_pinning):
    rng = np.random.default_rng(1)
    high = 256 if dtype == np.uint8 else 65536
    plane = rng.integers(0, high, (17, 23), dtype=np.int64).astype(dtype)
    plane[0, :3] = [0, 1, high - 1]
    codes = upload(plane, torch.device("cpu"))
    assert codes.dtype == torch.float32 and codes.device.type == "cpu"
    assert np.array_equal(codes.numpy(), plane.astype(np.float32))
    # what upload did before the pinned path: the same bits
    if dtype == np.uint8:
        before = torch.from_numpy(plane).to("cpu", non_blocking=True).to(torch.float32)
    else:
        bits = torch.from_numpy(plane.view(np.int16)).to("cpu", non_blocking=True)
        before = (bits.to(torch.int32) & 0xFFFF).to(torch.float32)
    assert torch.equal(codes, before)


def test_to_device_on_the_cpu_is_the_tensor_itself(no_pinning):
    host = torch.arange(12, dtype=torch.uint8).reshape(3, 4)
    assert to_device(host, "cpu") is host
    assert to_device(host, torch.device("cpu")) is host


@pytest.mark.parametrize("layout", [PlaneLayout("yuv", 8, 2, 2), PlaneLayout("yuv", 10, 2, 2),
                                    PlaneLayout("rgb", 16), PlaneLayout("gray", 8)], ids=str)
def test_frame_converter_upload_on_the_cpu_goes_through_to_device(layout, monkeypatch, no_pinning):
    fmt = FrameFormat(layout, 15, 9, "bt709", False)
    rng = np.random.default_rng(2)
    planes = tuple(rng.integers(0, 2 ** layout.depth, shape).astype(layout.dtype)
                   for shape in layout.plane_shapes(15, 9))
    seen = []
    original = convert_module.to_device
    monkeypatch.setattr(convert_module, "to_device", lambda host, device: seen.append(device) or original(host, device))
    converter = FrameConverter(fmt, "cpu")
    codes = converter.upload(planes)
    assert len(seen) == len(planes) and all(torch.device(device).type == "cpu" for device in seen)
    assert all(np.array_equal(c.numpy(), p.astype(np.float32)) for c, p in zip(codes, planes))
    assert torch.equal(converter.to_rgb(planes), converter.codes_to_rgb(codes))


# ----------------------------------------------------------------------------- channels_last


def test_frames_channels_last_keeps_values_and_makes_the_first_reshape_nhwc():
    frames = torch.rand(2, 3, 3, 8, 12)
    nhwc = frames_channels_last(frames)
    assert torch.equal(nhwc, frames)
    assert nhwc.reshape(6, 3, 8, 12).is_contiguous(memory_format=torch.channels_last)
    assert frames_channels_last(nhwc).data_ptr() == nhwc.data_ptr()  # already so: no copy


@pytest.mark.parametrize("scale", [1, 4])
@pytest.mark.parametrize("options", [{}, {"tile": 16, "tile_overlap": 8}, {"ensemble": True}],
                         ids=["whole", "tiled", "ensemble"])
def test_channels_last_equals_the_default_layout(scale, options, record_property):
    model = tiny_random_edvr(scale)
    frames = torch.rand(2, 3, 3, 24, 32, generator=torch.Generator().manual_seed(5))
    plain = ModelRunner(model, "cpu", **options).restore(frames)
    runner = ModelRunner(model, "cpu", channels_last=True, **options)
    fast = runner.restore(frames)
    worst = float((fast - plain).abs().max())
    record_property("channels_last_max_abs_diff", worst)
    assert fast.shape == plain.shape and worst <= CHANNELS_LAST_ATOL
    # the runner's copy is NHWC; the caller's network keeps its layout
    assert runner.model is not model
    assert runner.model.conv_first.weight.is_contiguous(memory_format=torch.channels_last)
    assert model.conv_first.weight.is_contiguous()
    windows = random_windows()
    codes = np.abs(runner(windows).astype(int) - ModelRunner(model, "cpu", **options)(windows))
    assert codes.max() <= 1


def test_channels_last_off_by_default_leaves_the_network_as_given():
    model = tiny_random_edvr()
    runner = ModelRunner(model, "cpu")
    assert runner.model is model and not runner.channels_last
    assert runner._network(model) is model


def test_channels_last_with_compile_eager():
    model = tiny_random_edvr()
    windows = random_windows()
    notes = []
    runner = ModelRunner(model, "cpu", channels_last=True, compile="eager", notify=notes.append)
    out = runner(windows)
    assert notes == [] and runner.compiled is not None
    assert np.abs(out.astype(int) - ModelRunner(model, "cpu")(windows)).max() <= 1


# ------------------------------------------------------------------------------ compile


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fast_paths")
    clip = make_clip(folder / "clip.mkv", width=48, height=32, num_frames=5, pix_fmt="yuv420p")
    checkpoint = folder / "tiny_x4.pth"
    save_model(tiny_random_edvr(4), checkpoint)
    return {"folder": folder, "clip": clip, "x4": checkpoint}


def raw_planes(path: Path) -> np.ndarray:
    """The decoded planes of a video, bytes as uint8 (its own pixel format)."""
    done = subprocess.run([FFMPEG, "-v", "error", "-i", str(path), "-f", "rawvideo", "-"],
                          capture_output=True, check=True)
    return np.frombuffer(done.stdout, np.uint8)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255 ** 2 / mse)


def run_cli(*args) -> object:
    return CliRunner().invoke(command, [str(arg) for arg in args])


@pytest.fixture(scope="module")
def uncompiled(media):
    output = media["folder"] / "plain.mkv"
    result = run_cli(media["clip"], "-o", output, "--model", media["x4"], "--device", "cpu", "--codec", "ffv1",
                     "--quiet", "--segment-frames", "0")
    assert result.exit_code == 0, result.output
    return raw_planes(output)


def test_enhance_settings_compile_defaults_off():
    assert EnhanceSettings().compile is False


def test_enhance_with_compile_eager_is_the_uncompiled_output_bit_for_bit(media, uncompiled, tmp_path):
    output = tmp_path / "eager.mkv"
    notes = []

    class Notes:
        def start(self, num_frames): pass
        def advance(self): pass
        def note(self, message): notes.append(message)
        def close(self): pass

    from edvr_cli.model_choice import load_enhance_model

    loaded = load_enhance_model(str(media["x4"]))
    enhance(media["clip"], output, loaded, EnhanceSettings(device="cpu", compile="eager"),
            EncoderSettings(codec="ffv1"), reporter=Notes())
    assert not any("compile" in note for note in notes), notes
    assert np.array_equal(raw_planes(output), uncompiled)


def test_cli_compile_matches_the_uncompiled_output(media, uncompiled, tmp_path, record_property):
    """The real --compile: inductor on the CPU (builds C++ kernels; about half a minute here)."""
    output = tmp_path / "compiled.mkv"
    result = run_cli(media["clip"], "-o", output, "--model", media["x4"], "--device", "cpu", "--codec", "ffv1",
                     "--compile", "--json", "--segment-frames", "0")
    assert result.exit_code == 0, result.output
    compiled = raw_planes(output)
    if "torch.compile failed" in result.output or "torch.compile is not available" in result.output:
        pytest.skip("inductor cannot compile here (the fallback ran): " + result.output[-300:])
    assert compiled.shape == uncompiled.shape
    worst = int(np.abs(compiled.astype(int) - uncompiled).max())
    value = psnr(compiled, uncompiled)
    record_property("compile_max_code_diff", worst)
    record_property("compile_psnr_db", value)
    assert worst <= COMPILE_MAX_CODE_DIFF and value >= COMPILE_MIN_PSNR_DB


def failing_compile(calls: list, message: str):
    """A stand-in for torch.compile whose compiled function records each input shape, then fails."""
    def broken_compile(model, **kwargs):
        def compiled(x):
            calls.append(tuple(x.shape))
            raise RuntimeError(f"{message}\nmore lines")
        return compiled
    return broken_compile


def test_cli_compile_failure_falls_back_with_a_note(media, uncompiled, tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(torch, "compile", failing_compile(calls, "InductorError: CppCompileError: C++ compile error"))
    output = tmp_path / "fallback.mkv"
    result = run_cli(media["clip"], "-o", output, "--model", media["x4"], "--device", "cpu", "--codec", "ffv1",
                     "--compile", "--segment-frames", "0")
    assert result.exit_code == 0, result.output
    assert ("note: torch.compile failed (RuntimeError: InductorError: CppCompileError: C++ compile error); "
            "running the network uncompiled") in result.output
    assert result.output.count("torch.compile failed") == 1 and len(calls) == 1
    assert np.array_equal(raw_planes(output), uncompiled)


def test_compile_reaches_the_runner_through_the_job(media, tmp_path):
    """EnhanceSettings.compile -> enhance(build_runner=...) -> ModelRunner(compile=...)."""
    seen = []

    def recording_build_runner(network, settings, **options):
        runner = build_runner(network, settings, **options)
        seen.append((settings.compile, runner.compiled is not None))
        return runner

    loaded = LoadedModel(tiny_random_edvr(4), "tiny", str(media["x4"]))
    for value in (False, "eager"):
        enhance(media["clip"], tmp_path / f"{value}.mkv", loaded, EnhanceSettings(device="cpu", compile=value),
                EncoderSettings(codec="ffv1"), build_runner=recording_build_runner)
    assert seen == [(False, False), ("eager", True)]
