"""The GPU path: `pytest -m cuda tests/test_cuda.py` on a machine with a CUDA GPU.

Tests marked `cuda` skip where `torch.cuda.is_available()` is False, so the CPU suite passes
without a GPU; `benchmarks/gpu_e2e.py` runs them first on a lent GPU and stores each test's
outcome and measured values (pytest's `record_property`) in its JSON. Thresholds, and why:

- GPU against CPU, fp32: >= 45 dB PSNR on 8-bit outputs (`CPU_GPU_DB`). cuDNN runs fp32
  convolutions in TF32 by default (10-bit mantissa), so some codes round the other way; every
  pixel one code off would be 48.1 dB. A wrong colour conversion, a shifted tile or a swapped
  frame scores far below 30 dB.
- fp16 / bf16 against fp32 on the GPU: >= 40 dB PSNR of the outputs (`LOW_PRECISION_DB`;
  bf16 keeps 8 mantissa bits, 3 significant digits), and their PSNR against the ground truth of
  a real clip within 0.05 dB of fp32's (`GT_DELTA_DB`, the bar for a bf16 default).
- Out of memory: a real `torch.cuda.OutOfMemoryError` (the process's share of GPU memory capped
  below what whole frames need, restored afterwards) is retried with smaller tiles, and the
  frames written are exactly the frames in (a model that returns its centre frame).

- Fast paths on the GPU: the planes' pinned, non-blocking upload (`FrameConverter.upload`)
  gives exactly the CPU's codes, also when the caller overwrites its array right after the
  call, and falls back to a plain copy when pinning fails; ModelRunner's pinned window upload,
  torch.compile (inductor) and channels_last each within 1 code of the plain GPU path (TF32
  off, so only the kernels' rounding differs).

The unmarked tests at the end check the CPU side of the optional fast paths in
`edvr_cli.enhance.inference` (torch.compile and its fallback); they run everywhere (more in
tests/test_fast_paths.py).
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from edvr_cli.enhance import EncoderSettings, EnhanceSettings, enhance
from edvr_cli.image_io import list_image_files, read_image, write_png
from edvr_cli.enhance.inference import ModelRunner
from edvr_cli.video import FrameConverter
from edvr_cli.video.frame import FrameFormat
from edvr_cli.video.pixel_format import PlaneLayout
from edvr_cli.model_choice import load_enhance_model
from models import EDVR
from tests.clips import make_clip
from tests.test_enhance import decode, identity_edvr, psnr, restore_frames

DATA = Path(__file__).parent / "data"
CPU_GPU_DB = 45.0
LOW_PRECISION_DB = 40.0
GT_DELTA_DB = 0.05

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.fixture
def all_cpu_threads():
    """The CPU reference runs at full width (conftest sets 1 thread; it restores the count)."""
    import os

    torch.set_num_threads(min(16, os.cpu_count() or 1))


def run_enhance(source: Path, output: str, model: str, device: str, precision: str = "fp32") -> list[np.ndarray]:
    """`enhance()` with a bundled model; the output's RGB frames (a PNG folder when `output`
    ends in '/', else lossless ffv1)."""
    folder = output.endswith("/")
    enhance(source, output, load_enhance_model(model), EnhanceSettings(device=device, precision=precision),
            encoder=EncoderSettings() if folder else EncoderSettings(codec="ffv1"), overwrite=True)
    if folder:
        return [read_image(path) for path in list_image_files(output)]
    return decode(output)


def min_psnr(frames_a, frames_b) -> float:
    assert len(frames_a) == len(frames_b) > 0
    return min(psnr(a, b) for a, b in zip(frames_a, frames_b))


def mean_psnr(frames_a, frames_b) -> float:
    assert len(frames_a) == len(frames_b) > 0
    return float(np.mean([psnr(a, b) for a, b in zip(frames_a, frames_b)]))


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """The real clips of tests/data, a bicubic x4 downscale of the real ground truth (for x4),
    and a generated testsrc2 clip."""
    from edvr_cli.train.degrade import bicubic_downsample

    folder = tmp_path_factory.mktemp("cuda")
    gt = decode(DATA / "city_gt.mkv")  # 7 frames, 160x112
    low = folder / "city_low"
    low.mkdir()
    for idx, frame in enumerate(gt):
        write_png(low / f"{idx:03d}.png", bicubic_downsample(frame))  # 40x28
    generated = make_clip(folder / "testsrc2.mkv", width=64, height=48, num_frames=5, pix_fmt="yuv420p")
    return {"folder": folder, "gt": gt, "qp37": DATA / "city_qp37.mkv", "low": low, "generated": generated}


# ----------------------------------------------------------------------------- GPU vs CPU


@pytest.mark.parametrize("model, clip", [("builtin-qe", "qp37"), ("builtin-sr4", "generated")])
@pytest.mark.cuda
@needs_cuda
def test_enhance_on_the_gpu_matches_the_cpu(model, clip, clips, all_cpu_threads, record_property):
    """A real clip (builtin-qe: scale 1, the residual path) and a generated one (builtin-sr4:
    x4, planes from RGB) through the whole pipeline, once on each device, written losslessly."""
    folder = clips["folder"]
    on_cpu = run_enhance(clips[clip], f"{folder}/{model}_cpu.mkv", model, "cpu")
    on_gpu = run_enhance(clips[clip], f"{folder}/{model}_gpu.mkv", model, "cuda")
    assert len(on_gpu) == len(on_cpu) == len(decode(clips[clip]))
    assert on_gpu[0].shape == on_cpu[0].shape
    worst = min_psnr(on_gpu, on_cpu)
    record_property("min_psnr_gpu_vs_cpu_db", round(worst, 3))
    record_property("max_abs_code_diff", int(max(np.abs(a.astype(int) - b).max() for a, b in zip(on_gpu, on_cpu))))
    assert worst >= CPU_GPU_DB


# ------------------------------------------------------------------- fp16 / bf16 vs fp32


@pytest.fixture(scope="module")
def fp32_outputs(clips):
    """fp32 GPU outputs of both bundled models on the real clip (computed once)."""
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    folder = clips["folder"]
    return {"builtin-qe": run_enhance(clips["qp37"], f"{folder}/qe_fp32/", "builtin-qe", "cuda"),
            "builtin-sr4": run_enhance(clips["low"], f"{folder}/sr4_fp32/", "builtin-sr4", "cuda")}


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
@pytest.mark.parametrize("model", ["builtin-qe", "builtin-sr4"])
@pytest.mark.cuda
@needs_cuda
def test_low_precision_stays_within_psnr_of_fp32(model, precision, clips, fp32_outputs, record_property):
    """Real footage: builtin-qe on the x265 QP 37 clip, builtin-sr4 on its bicubic x4 downscale;
    both scored against the clip's ground truth (PNG output: no encoder in between)."""
    if precision == "bf16" and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bf16")
    source = clips["qp37"] if model == "builtin-qe" else clips["low"]
    low = run_enhance(source, f"{clips['folder']}/{model}_{precision}/", model, "cuda", precision)
    fp32 = fp32_outputs[model]
    gt = clips["gt"]
    assert len(low) == len(fp32) == len(gt)
    worst = min_psnr(low, fp32)
    delta = mean_psnr(gt, low) - mean_psnr(gt, fp32)
    record_property("min_psnr_vs_fp32_db", round(worst, 3))
    record_property("gt_psnr_fp32_db", round(mean_psnr(gt, fp32), 4))
    record_property("gt_psnr_delta_db", round(delta, 4))
    assert worst >= LOW_PRECISION_DB
    assert abs(delta) <= GT_DELTA_DB


# ------------------------------------------------------------------- a real out-of-memory


def _peak_bytes(runner: ModelRunner, windows: np.ndarray) -> int:
    """Peak GPU memory one `runner(windows)` call allocates above what was allocated before."""
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    runner(windows)
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() - base


@pytest.mark.cuda
@needs_cuda
def test_a_real_out_of_memory_is_retried_with_smaller_tiles(record_property):
    """As tests/test_enhance.py's RefusesLargeInputs test, with CUDA's own allocator refusing:
    the process's memory is capped between what 256 px tiles and whole frames need."""
    height, width = 1536, 2048
    frames = [np.random.default_rng(idx).integers(0, 256, (height, width, 3), dtype=np.uint8)
              for idx in range(7)]
    model = identity_edvr(3)
    probe = np.stack([np.stack(frames[:3])] * 2)  # one batch of 2 windows, as the restore loop makes
    whole = _peak_bytes(ModelRunner(model, "cuda"), probe)
    tiled = _peak_bytes(ModelRunner(model, "cuda", tile=256, tile_overlap=8), probe)
    record_property("peak_whole_frames_mib", round(whole / 2**20))
    record_property("peak_256px_tiles_mib", round(tiled / 2**20))
    assert tiled < 0.7 * whole, "tiles should need far less memory than whole frames"

    total = torch.cuda.get_device_properties(0).total_memory
    torch.cuda.empty_cache()
    cap = torch.cuda.memory_reserved() + (whole + tiled) // 2
    notes = []
    runner = ModelRunner(model, "cuda", tile_overlap=8, notify=notes.append)
    torch.cuda.set_per_process_memory_fraction(min(1.0, cap / total))
    try:
        written = restore_frames(iter(frames), runner, 3, batch=2)
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0)
        torch.cuda.empty_cache()
    record_property("cap_mib", round(cap / 2**20))
    record_property("tile_after_retry", runner.tile)
    record_property("note", notes[0] if notes else "")
    assert len(written) == 7
    assert all(np.array_equal(out, frame) for out, frame in zip(written, frames))
    assert len(notes) == 1 and "ran out of memory with whole frames" in notes[0]
    assert 0 < runner.tile < max(height, width)


# ------------------------------------------------------------------- optional fast paths


def tiny_random_edvr(scale: int = 4) -> EDVR:
    """A real tiny EDVR with random weights everywhere (offset convs too)."""
    torch.manual_seed(3)
    model = EDVR(num_feat=8, deformable_groups=1, num_extract_block=1, num_reconstruct_block=1,
                 hr_in=False, scale=scale, num_frame=3, num_hr_feat=8, with_tsa=True).eval()
    with torch.no_grad():
        for param in model.parameters():
            param.copy_(torch.randn_like(param) * 0.1)
    return model


@contextlib.contextmanager
def tf32_off():
    """cuDNN without TF32 inside, so GPU results differ from fp32 only by the paths compared."""
    before = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32 = before


def random_windows(n: int = 2, height: int = 24, width: int = 32) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (n, 3, height, width, 3), dtype=np.uint8)


@pytest.mark.cuda
@needs_cuda
def test_pinned_upload_and_compile_on_the_gpu_match_the_plain_path(record_property):
    """ModelRunner's uint8 upload (pinned, non-blocking on CUDA) and torch.compile (inductor)
    give the plain path's output; TF32 off so only the fusion's rounding differs."""
    windows = random_windows(2, 64, 96)
    with tf32_off():
        model = tiny_random_edvr()
        cpu = ModelRunner(model, "cpu")(windows)
        plain = ModelRunner(model, "cuda")(windows)
        notes = []
        compiled_runner = ModelRunner(model, "cuda", compile=True, notify=notes.append)
        compiled = compiled_runner(windows)
    record_property("compile_notes", " | ".join(notes))
    assert np.abs(plain.astype(int) - cpu).max() <= 1
    assert np.abs(compiled.astype(int) - plain).max() <= 1
    assert notes == [] and compiled_runner.compiled is not None, notes


@pytest.mark.cuda
@needs_cuda
def test_channels_last_on_the_gpu_matches_the_default_layout(record_property):
    windows = random_windows(2, 64, 96)
    with tf32_off():
        model = tiny_random_edvr()
        plain = ModelRunner(model, "cuda")(windows)
        runner = ModelRunner(model, "cuda", channels_last=True)
        fast = runner(windows)
        bf16 = ModelRunner(model, "cuda", precision="bf16", channels_last=True)(windows) \
            if torch.cuda.is_bf16_supported() else None
    record_property("channels_last_max_code_diff", int(np.abs(fast.astype(int) - plain).max()))
    assert runner.model.conv_first.weight.is_contiguous(memory_format=torch.channels_last)
    assert np.abs(fast.astype(int) - plain).max() <= 1
    if bf16 is not None:
        record_property("bf16_channels_last_psnr_vs_fp32_db", round(psnr(bf16, plain), 3))
        assert psnr(bf16, plain) >= LOW_PRECISION_DB


def _planes(layout: PlaneLayout, width: int = 1280, height: int = 720, seed: int = 0):
    rng = np.random.default_rng(seed)
    return tuple(rng.integers(0, 2 ** layout.depth, shape).astype(layout.dtype)
                 for shape in layout.plane_shapes(width, height))


@pytest.mark.parametrize("layout", [PlaneLayout("yuv", 8, 2, 2), PlaneLayout("yuv", 10, 2, 2),
                                    PlaneLayout("rgb", 16)], ids=str)
@pytest.mark.cuda
@needs_cuda
def test_pinned_plane_upload_gives_the_cpu_codes(layout):
    fmt = FrameFormat(layout, 1280, 720, "bt709", False)
    planes = _planes(layout)
    expected = [torch.from_numpy(plane.astype(np.float32)) for plane in planes]
    converter = FrameConverter(fmt, "cuda")
    mutable = tuple(plane.copy() for plane in planes)
    codes = converter.upload(mutable)
    for plane in mutable:  # reused by the caller at once: the copy already holds the values
        plane[...] = 0
    torch.cuda.synchronize()
    assert all(c.device.type == "cuda" and c.dtype == torch.float32 for c in codes)
    assert all(torch.equal(c.cpu(), e) for c, e in zip(codes, expected))
    rgb_gpu = converter.to_rgb(planes).cpu()
    rgb_cpu = FrameConverter(fmt, "cpu").to_rgb(planes)
    assert float((rgb_gpu - rgb_cpu).abs().max()) <= 1e-4  # einsum and resize kernels of each device


@pytest.mark.cuda
@needs_cuda
def test_plane_upload_falls_back_to_a_plain_copy_when_pinning_fails(monkeypatch):
    def no_pinned_memory(self, *args, **kwargs):
        raise RuntimeError("CUDA error: out of memory (cudaHostAlloc)")

    monkeypatch.setattr(torch.Tensor, "pin_memory", no_pinned_memory)
    layout = PlaneLayout("yuv", 8, 2, 2)
    planes = _planes(layout, 64, 48)
    codes = FrameConverter(FrameFormat(layout, 64, 48, "bt709", False), "cuda").upload(planes)
    assert all(torch.equal(c.cpu(), torch.from_numpy(p.astype(np.float32))) for c, p in zip(codes, planes))


def test_compile_on_the_cpu_matches_the_plain_runner():
    """torch.compile traces the EDVR (backend 'eager': dynamo only, no C++ build in the test).
    Within one code, not equal: the traced DCN multiplies its samples by the weight with the
    matmul, the plain runner with oneDNN (models/pointwise.py)."""
    model = tiny_random_edvr()
    windows = random_windows()
    notes = []
    runner = ModelRunner(model, "cpu", compile="eager", notify=notes.append)
    assert np.abs(runner(windows).astype(int) - ModelRunner(model, "cpu")(windows)).max() <= 1
    assert notes == [] and runner.compiled is not None


class CentreFrame(nn.Module):
    """(n, t, 3, h, w) -> the centre frame: a model whose output is known exactly."""

    scale, num_frame = 1, 3

    def __init__(self):
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(()))

    def forward(self, x):
        return x[:, 1] + self.anchor


def test_a_failing_compile_falls_back_once_and_says_so(monkeypatch):
    from tests.test_fast_paths import failing_compile

    calls = []
    monkeypatch.setattr(torch, "compile", failing_compile(calls, "InductorError: no working C++ compiler"))
    notes = []
    runner = ModelRunner(CentreFrame(), "cpu", compile=True, notify=notes.append)
    windows = random_windows()
    for _ in range(2):
        assert np.array_equal(runner(windows), windows[:, 1])
    assert len(calls) == 1 and runner.compiled is None
    assert notes == ["torch.compile failed (RuntimeError: InductorError: no working C++ compiler); "
                     "running the network uncompiled"]


def test_compile_that_cannot_start_leaves_the_plain_network(monkeypatch):
    def unavailable(model, **kwargs):
        raise RuntimeError("Dynamo is not supported on Python 3.14+")

    monkeypatch.setattr(torch, "compile", unavailable)
    notes = []
    runner = ModelRunner(CentreFrame(), "cpu", compile=True, notify=notes.append)
    assert runner.compiled is None and len(notes) == 1 and "not available" in notes[0]
    windows = random_windows()
    assert np.array_equal(runner(windows), windows[:, 1])


def test_out_of_memory_in_the_compiled_network_is_retried_with_tiles_not_uncompiled(monkeypatch):
    def refusing_compile(model, **kwargs):
        def compiled(x):
            if max(x.shape[-2:]) > 20:
                raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 1 GiB")
            return model(x)
        return compiled

    monkeypatch.setattr(torch, "compile", refusing_compile)
    notes = []
    runner = ModelRunner(CentreFrame(), "cpu", compile=True, tile_overlap=2, min_tile=8, notify=notes.append)
    windows = random_windows()
    assert np.array_equal(runner(windows), windows[:, 1])
    assert runner.compiled is not None and runner.tile == 16
    assert len(notes) == 1 and "ran out of memory" in notes[0]
