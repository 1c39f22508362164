"""`edvr enhance` end to end on a GPU against a plain fp32 forward, every measurement in one run.

    python benchmarks/gpu_e2e.py --out-dir DIR            # the full run, on a GPU machine (< 8 min)
    python benchmarks/gpu_e2e.py --smoke --out-dir DIR    # everything tiny, on any machine (~1 min)

benchmarks/gpu_e2e.sh runs it on a GPU machine without ffmpeg or network (wheels, ffmpeg, paths). Sections,
in this order; each later one is skipped (and says so in the JSON) when the time budget
(--budget-s) would run out, and the JSON is rewritten after each:

a. tests: `pytest -m cuda tests/test_cuda.py` (GPU vs CPU, fp16/bf16 vs fp32, a real
   out-of-memory retry, the pinned upload and torch.compile), each test's outcome and the
   values it recorded.
b. e2e: `edvr_cli.enhance.enhance` (the library `edvr enhance` calls) on a generated testsrc2
   clip, 300 frames 320x180 (x264 crf 18), to 1280x720 with an EDVR-M x4 network (preset
   `edvr-m`, random weights from torch.manual_seed(0), the offset convs of the DCN packs given
   small random weights so the deformable sampling is not the zero-offset special case; or
   --weights). The checkpoint is saved once and every run and the reference load it, so all
   use the same weights. First a short warm-up run (CUDA context, kernels), then the timed runs:
   `default` = the command's defaults (fp32, batch 1, our DCN as `edvr enhance` loads a
   checkpoint, libx265 crf 8 medium into .mp4) gives `enhance_ms_per_frame` = wall time of
   `enhance()` / frames. Then the same again instrumented for the per-stage breakdown, and
   variants (torchvision DCN, batch 8, bf16, channels_last, raw video output without an encoder,
   torch.compile through `EnhanceSettings.compile`, i.e. `edvr enhance --compile`).
   Per-stage breakdown: the pipeline's callables are wrapped (a timing FramePlanes subclass,
   the reader and writer through enhance()'s open_source/open_writer hooks, convert.upload and
   convert.download) and the device is synchronised at each stage's edges, so each stage's time
   is its own; the results are unchanged, but the synchronisation makes this run slower than
   `default`, whose number stands. Stages: decode (waiting for the reader's queue), upload
   (host -> device copies of the planes), input_convert (planes -> RGB), model (windows
   stacked, ModelRunner, finiteness check), output_convert (RGB -> output planes), download
   (device -> host), encode (queueing frames for ffmpeg and waiting for it to finish), other.
c. reference: the same weights, torchvision's `deform_conv2d` (our DCN when torchvision is
   missing: says so), plain fp32 forward, batch 8 windows of 5 frames of 180x320, cuDNN at its
   defaults, model only (input already on the device), CUDA events after warm-up:
   `reference_ms_per_frame`. Model-only rows of both DCNs in fp32/bf16 are added as context.
d. hd: builtin-qe and builtin-sr4 (bundled weights) on 1920x1080 input: enhance() end to end
   (default settings; sr4 writes 7680x4320, so few frames) and model-only fps.
e. encoders: ffmpeg encoding generated 720p and 1080p frames alone (testsrc2 -> null muxer), to
   see whether the encoder bounds the end-to-end rate (libx265 crf 8 medium is the default).

Output: `<out-dir>/gpu_e2e-<gpu>-<date>.json` (smoke: `gpu_e2e-smoke-<device>-<date>.json`)
with gpu, torch, frames_in, frames_out, enhance_ms_per_frame, reference_ms_per_frame,
stages_ms_per_frame and the sections above.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import functools
import json
import math
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections import defaultdict
from dataclasses import dataclass, replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script from anywhere: the repo's packages, uninstalled
    sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from edvr_cli.enhance import EncoderSettings, EnhanceSettings, enhance  # noqa: E402
from edvr_cli.enhance import sources as sources_module  # noqa: E402
from edvr_cli.enhance.planes import FramePlanes, build_runner  # noqa: E402
from edvr_cli.enhance.inference import ModelRunner  # noqa: E402
from edvr_cli.model_choice import LoadedModel, builtin_weights_path, load_enhance_model  # noqa: E402
from edvr_cli.video import convert as convert_module  # noqa: E402
from edvr_cli.video import ffmpeg_exe, probe  # noqa: E402
from edvr_cli.video.rgb_frames import RgbFrameReader  # noqa: E402
from models import EDVR, build_model, load_model, save_model  # noqa: E402
from models.dcn import DCNv2Pack, max_offset_absmean, torchvision_available  # noqa: E402

TARGET_MS_PER_FRAME = 9.0  # the goal for EDVR-M x4 180x320 -> 720p end to end on an H200
TARGET_SPEEDUP = 2.0  # ... and at least 2x the reference
TARGET_QE_FPS_1080P = 60.0


@dataclass(frozen=True)
class Sizes:
    """How big each section runs: the full run, or the smoke run's tiny stand-ins."""

    frames: int = 300  # e2e clip length (>= 300 for a steady throughput)
    width: int = 320
    height: int = 180
    warmup_frames: int = 12
    network: str = "edvr-m"
    reference_batch: int = 8
    reference_iters: int = 10
    reference_warmup: int = 3
    psnr_frames: int = 30  # output frames decoded to compare a variant with `default`
    hd_width: int = 1920
    hd_height: int = 1080
    qe_frames: int = 120
    sr4_frames: int = 6
    hd_model_iters: int = 10
    encode_frames: int = 120
    encode_sizes: tuple = ((1280, 720), (1920, 1080))
    compile_backend: str = "inductor"


SMOKE = Sizes(frames=10, width=32, height=24, warmup_frames=5, network="tiny", reference_batch=2,
              reference_iters=2, reference_warmup=1, psnr_frames=5, hd_width=64, hd_height=48, qe_frames=4,
              sr4_frames=3, hd_model_iters=2, encode_frames=5, encode_sizes=((64, 48),), compile_backend="eager")

# e2e variants after `default`: (label, EnhanceSettings changes, encoder, DCN backend, ModelRunner
# options that EnhanceSettings has no field for). `compile=True` (EnhanceSettings.compile, what
# `edvr enhance --compile` sets) becomes Sizes.compile_backend; those variants run last, in the
# `compile` section.
VARIANTS = [
    ("torchvision_fp32_batch8", dict(batch=8), None, "torchvision", {}),
    ("torchvision_bf16_batch8", dict(batch=8, precision="bf16"), None, "torchvision", {}),
    ("pytorch_bf16_batch8", dict(batch=8, precision="bf16"), None, "pytorch", {}),
    ("pytorch_bf16_batch8_channels_last", dict(batch=8, precision="bf16"), None, "pytorch", dict(channels_last=True)),
    ("default_rawvideo_out", {}, "rawvideo", "pytorch", {}),
    ("torchvision_bf16_batch8_rawvideo_out", dict(batch=8, precision="bf16"), "rawvideo", "torchvision", {}),
    ("pytorch_bf16_batch8_compiled", dict(batch=8, precision="bf16", compile=True), None, "pytorch", {}),
]


# ------------------------------------------------------------------------------ helpers


class Budget:
    """Seconds left of the run; sections that need more than is left are skipped."""

    def __init__(self, seconds: float):
        self.started = time.perf_counter()
        self.seconds = seconds

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def left(self) -> float:
        return self.seconds - self.elapsed()

    def allows(self, need: float) -> bool:
        return self.left() >= need


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def json_safe(value):
    """JSON without NaN/Infinity (strict parsers refuse them): non-finite floats as strings."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {str(key): json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    return value


def error_text(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0][:300] if lines else ''}"


def make_clip(path: Path, width: int, height: int, num_frames: int) -> Path:
    """testsrc2, x264 crf 18 yuv420p (what a user's H.264 source looks like to the pipeline)."""
    subprocess.run([ffmpeg_exe(), "-v", "error", "-y", "-f", "lavfi", "-i", f"testsrc2=size={width}x{height}:rate=25",
                    "-frames:v", str(num_frames), "-c:v", "libx264", "-crf", "18", "-pix_fmt", "yuv420p",
                    str(path)], check=True)
    return path


def frames_in_file(path: Path) -> int | None:
    return probe(path, max_scan_seconds=120.0).num_frames


def decode_rgb(path: Path, limit: int) -> list[np.ndarray]:
    frames = []
    with RgbFrameReader(path) as reader:
        for frame in reader:
            frames.append(frame)
            if len(frames) == limit:
                break
    return frames


def psnr_db(a: list[np.ndarray], b: list[np.ndarray]) -> float | None:
    if not a or len(a) != len(b):
        return None
    mse = float(np.mean([np.mean((x.astype(np.float64) - y.astype(np.float64)) ** 2) for x, y in zip(a, b)]))
    return math.inf if mse == 0 else 10 * math.log10(255 ** 2 / mse)


def gpu_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


def slug(name: str) -> str:
    name = re.sub(r"^nvidia\s+", "", name.strip(), flags=re.IGNORECASE)
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "unknown"


def environment(device: torch.device) -> dict:
    try:
        from machine import cpu_name  # benchmarks/machine.py
        cpu = cpu_name()
    except ImportError:
        cpu = platform.processor()
    try:
        import torchvision
        tv = torchvision.__version__
    except Exception:  # noqa: BLE001
        tv = None
    try:
        ffmpeg = subprocess.run([ffmpeg_exe(), "-hide_banner", "-version"], capture_output=True, text=True,
                                check=False).stdout.splitlines()[0]
    except Exception as error:  # noqa: BLE001
        ffmpeg = error_text(error)
    env = {"gpu": gpu_name(device), "device": str(device), "torch": torch.__version__, "torchvision": tv,
           "python": platform.python_version(), "cpu": cpu, "cpu_count": os.cpu_count(), "ffmpeg": ffmpeg,
           "ffmpeg_path": ffmpeg_exe(),
           "date": datetime.date.today().isoformat()}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        env.update(cuda=torch.version.cuda, cudnn=torch.backends.cudnn.version(),
                   gpu_memory_gib=round(props.total_memory / 2**30, 1), multiprocessors=props.multi_processor_count,
                   bf16_supported=torch.cuda.is_bf16_supported())
        try:
            env["driver"] = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                           capture_output=True, text=True, timeout=20).stdout.strip()
        except Exception:  # noqa: BLE001
            env["driver"] = None
    env["backends"] = {"cudnn.benchmark": torch.backends.cudnn.benchmark,
                       "cudnn.allow_tf32": torch.backends.cudnn.allow_tf32,
                       "matmul.allow_tf32": torch.backends.cuda.matmul.allow_tf32}
    return env


# ------------------------------------------------------------------------------ (a) tests


def run_tests(timeout: float, work: Path) -> dict:
    """`pytest -m cuda tests/test_cuda.py` in a child process; outcomes and recorded values."""
    xml_path = work / "cuda_tests.xml"
    command = [sys.executable, "-m", "pytest", "-v", "-m", "cuda", "-p", "no:cacheprovider",
               "-o", "junit_family=xunit1", f"--junitxml={xml_path}", "tests/test_cuda.py"]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    started = time.perf_counter()
    try:
        done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as error:  # no junit file: the outcomes pytest -v printed so far
        output = error.stdout.decode("utf-8", "replace") if isinstance(error.stdout, bytes) else (error.stdout or "")
        cases = [{"name": match[0], "outcome": match[1].lower()} for match in
                 re.findall(r"::(\S+) (PASSED|FAILED|SKIPPED|ERROR)", output)]
        return {"command": "python " + " ".join(command[1:]), "timed_out": f"after {timeout:.0f} s",
                "cases": cases, **{outcome: sum(case["outcome"] == outcome for case in cases)
                                   for outcome in ("passed", "failed", "error", "skipped")},
                "output_tail": output[-3000:]}
    result = {"command": "python " + " ".join(command[1:]), "returncode": done.returncode,
              "seconds": round(time.perf_counter() - started, 1),
              "summary": (done.stdout.strip().splitlines() or [""])[-1].strip("= ")}
    cases = []
    if xml_path.is_file():
        for case in ET.parse(xml_path).getroot().iter("testcase"):
            outcome, message = "passed", None
            for child in case:
                if child.tag in ("failure", "error", "skipped"):
                    outcome = {"failure": "failed", "error": "error", "skipped": "skipped"}[child.tag]
                    message = (child.get("message") or "")[:500]
            properties = {prop.get("name"): _number(prop.get("value")) for prop in case.iter("property")}
            cases.append({"name": case.get("name"), "outcome": outcome, "seconds": float(case.get("time") or 0),
                          **({"properties": properties} if properties else {}),
                          **({"message": message} if message else {})})
    result["cases"] = cases
    for outcome in ("passed", "failed", "error", "skipped"):
        result[outcome] = sum(case["outcome"] == outcome for case in cases)
    if done.returncode not in (0, 5) or not cases:  # 5: nothing collected
        result["output_tail"] = (done.stdout + done.stderr)[-4000:]
    return result


def _number(text):
    try:
        value = float(text)
    except (TypeError, ValueError):
        return text
    return int(value) if value.is_integer() and "." not in str(text) and "e" not in str(text).lower() else value


# ------------------------------------------------------------------------------ networks


def tiny_edvr_x4() -> EDVR:
    """The smoke run's stand-in for EDVR-M: the same structure (PCD, TSA, x4), tiny widths."""
    return EDVR(num_feat=8, num_frame=5, deformable_groups=2, num_extract_block=1, num_reconstruct_block=1,
                with_tsa=True, hr_in=False, with_predeblur=False, scale=4)


def random_network(name: str, device: torch.device, offset_px: float = 1.0) -> EDVR:
    """Random weights (seed 0). An untrained DCN pack predicts zero offsets (a plain conv, the
    deformable sampling's easiest case), so each pack's offset conv gets random weights scaled
    until its mean |offset| on image-like input is about `offset_px` pixels."""
    torch.manual_seed(0)
    model = tiny_edvr_x4() if name == "tiny" else build_model(name)
    model = model.eval().to(device)
    packs = [module for module in model.modules() if isinstance(module, DCNv2Pack)]
    frames = smooth_frames(1, model.num_frame, 64, 64, seed=1).to(device)
    with torch.no_grad():
        for pack in packs:
            pack.conv_offset.weight.normal_(0.0, 0.01)
        for _ in range(3):  # later packs see earlier packs' offsets: settle in a few rounds
            model(frames)
            for pack in packs:
                absmean = float(pack.last_offset_absmean)
                if absmean > 0:
                    pack.conv_offset.weight.mul_(offset_px / absmean)
        model(frames)
    return model.cpu()


def dcn_backend_of(model) -> str | None:
    return next((module.backend for module in model.modules() if isinstance(module, DCNv2Pack)), None)


def load_checkpoint(path: Path, backend: str) -> EDVR:
    return load_model(path, dcn_backend=backend).eval()


def smooth_frames(n: int, t: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    """Image-like input (upsampled noise), as benchmarks/gpu_check.py uses."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n * t, 3, max(1, h // 8), max(1, w // 8), generator=generator)
    return F.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=False).clamp(0, 1).view(n, t, 3, h, w)


def time_forward(model, frames: torch.Tensor, device: torch.device, iters: int, warmup: int,
                 dtype: torch.dtype | None = None) -> float:
    """ms per output frame of `model(frames)`, after `warmup` calls (CUDA events on a GPU)."""
    autocast = (torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext())
    with torch.no_grad(), autocast:
        for _ in range(warmup):
            model(frames)
        sync(device)
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(iters):
                model(frames)
            end.record()
            torch.cuda.synchronize(device)
            total_ms = start.elapsed_time(end)
        else:
            started = time.perf_counter()
            for _ in range(iters):
                model(frames)
            total_ms = (time.perf_counter() - started) * 1000
    return total_ms / iters / frames.shape[0]


def release(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()


# ------------------------------------------------------------------------------ stage timing


class StageClock:
    """Seconds per stage; the device is synchronised at both edges of each timed call."""

    def __init__(self, device: torch.device):
        self.device = device
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)

    @contextlib.contextmanager
    def stage(self, name: str):
        sync(self.device)
        started = time.perf_counter()
        try:
            yield
        finally:
            sync(self.device)
            self.seconds[name] += time.perf_counter() - started
            self.calls[name] += 1

    def wrap(self, name: str, function):
        def timed(*args, **kwargs):
            with self.stage(name):
                return function(*args, **kwargs)
        return timed


class TimedReader:
    """A source's reader whose every next() counts as decode time; all else passes through."""

    def __init__(self, reader, clock: StageClock):
        self._reader, self._clock = reader, clock

    def __iter__(self):
        iterator = iter(self._reader)
        while True:
            started = time.perf_counter()
            try:
                frame = next(iterator)
            except StopIteration:
                return
            finally:
                self._clock.seconds["decode"] += time.perf_counter() - started
                self._clock.calls["decode"] += 1
            yield frame

    def __getattr__(self, name):
        return getattr(self._reader, name)


class TimedWriter:
    """A writer whose write() and closing (ffmpeg finishing the file) count as encode time."""

    def __init__(self, writer, clock: StageClock):
        self._writer, self._clock = writer, clock

    def write(self, frame) -> None:
        started = time.perf_counter()
        try:
            self._writer.write(frame)
        finally:
            self._clock.seconds["encode"] += time.perf_counter() - started
            self._clock.calls["encode"] += 1

    def __enter__(self):
        self._writer.__enter__()
        return self

    def __exit__(self, *exc_info):
        started = time.perf_counter()
        try:
            return self._writer.__exit__(*exc_info)
        finally:
            self._clock.seconds["encode"] += time.perf_counter() - started
            self._clock.calls["encode"] += 1

    def __getattr__(self, name):
        return getattr(self._writer, name)


@contextlib.contextmanager
def patched(owner, name: str, value):
    """`owner.name = value` for the duration (a class's method or a module's function)."""
    saved = getattr(owner, name)
    setattr(owner, name, value)
    try:
        yield
    finally:
        setattr(owner, name, saved)


@contextlib.contextmanager
def instrumented(clock: StageClock):
    """enhance()'s hooks and the pipeline's callables wrapped for the clock; restored after.

    The classes' methods are wrapped (not the names some module imported), so this holds
    whichever module of edvr_cli.enhance builds the FramePlanes."""
    def stage_method(name: str, method):
        def timed(self, *args, **kwargs):
            with clock.stage(name):
                return method(self, *args, **kwargs)
        return timed

    def open_source(*args, **kwargs):
        source = sources_module.open_source(*args, **kwargs)
        source.reader = TimedReader(source.reader, clock)
        return source

    def open_writer(*args, **kwargs):
        return TimedWriter(sources_module.open_writer(*args, **kwargs), clock)

    with contextlib.ExitStack() as stack:
        for method, stage in (("prepare", "prepare"), ("restore", "model"), ("finish", "finish")):
            stack.enter_context(patched(FramePlanes, method, stage_method(stage, getattr(FramePlanes, method))))
        for function in ("upload", "download"):
            stack.enter_context(patched(convert_module, function,
                                        clock.wrap(function, getattr(convert_module, function))))
        yield {"open_source": open_source, "open_writer": open_writer}


def stage_breakdown(clock: StageClock, total_seconds: float, frames: int) -> dict:
    """ms per frame of each stage; a stage whose callable was never called (the pipeline has
    changed under this script) is None rather than a misleading 0."""
    s, calls = clock.seconds, clock.calls
    timed = lambda *names: all(calls[name] for name in names)  # noqa: E731
    stages = {"decode": s["decode"] if timed("decode") else None,
              "upload": s["upload"] if timed("upload") else None,
              "input_convert": s["prepare"] - s["upload"] if timed("prepare", "upload") else None,
              "model": s["model"] if timed("model") else None,
              "output_convert": s["finish"] - s["download"] if timed("finish", "download") else None,
              "download": s["download"] if timed("download") else None,
              "encode": s["encode"] if timed("encode") else None}
    stages["other"] = total_seconds - sum(value for value in stages.values() if value is not None)
    stages["total"] = total_seconds
    return {name: None if value is None else round(1000 * value / frames, 3) for name, value in stages.items()}


# ------------------------------------------------------------------------------ (b) e2e


def run_enhance(clip: Path, output: Path, loaded: LoadedModel, settings: EnhanceSettings,
                encoder: EncoderSettings, device: torch.device, clock: StageClock | None = None,
                options: dict | None = None) -> dict:
    """One timed enhance() call."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    with contextlib.ExitStack() as stack:
        hooks = stack.enter_context(instrumented(clock)) if clock is not None else {}
        if options:  # ModelRunner's optional fast paths that EnhanceSettings has no field for
            hooks["build_runner"] = functools.partial(build_runner, **options)
        sync(device)
        started = time.perf_counter()
        result = enhance(clip, output, loaded, settings, encoder=encoder, overwrite=True, **hooks)
        sync(device)
        seconds = time.perf_counter() - started
    row = {"frames": result.frames, "seconds": round(seconds, 3),
           "ms_per_frame": round(1000 * seconds / result.frames, 3), "fps": round(result.frames / seconds, 2),
           "output": f"{result.width}x{result.height}", "precision": result.precision, "batch": settings.batch,
           "tile": result.tile, "encoder": result.encoder, "notes": result.notes}
    if device.type == "cuda":
        row["peak_gpu_memory_mib"] = round(torch.cuda.max_memory_allocated(device) / 2**20)
    if clock is not None:
        row["stages_ms_per_frame"] = stage_breakdown(clock, seconds, result.frames)
    return row


def e2e(sizes: Sizes, device: torch.device, work: Path, budget: Budget, report: dict, save,
        weights: Path | None) -> None:
    """The default run (`enhance_ms_per_frame`) and the instrumented one (the stages)."""
    section = report.setdefault("e2e", {})
    clip = make_clip(work / "in.mp4", sizes.width, sizes.height, sizes.frames)
    warm_clip = make_clip(work / "warm.mp4", sizes.width, sizes.height, sizes.warmup_frames)
    if weights is None:
        checkpoint = work / "edvr_m_random.pth"
        network = random_network(sizes.network, device)
        save_model(network, checkpoint)
        section["weights"] = (f"random: {'preset ' + sizes.network if sizes.network != 'tiny' else 'tiny EDVR x4'}, "
                              f"torch.manual_seed(0); DCN offset convs scaled to a mean |offset| of about 1 px "
                              f"on image-like input (an untrained pack predicts zero offsets)")
        section["calibration_offset_absmean_px"] = [
            round(float(module.last_offset_absmean), 3) for module in network.modules()
            if isinstance(module, DCNv2Pack) and module.last_offset_absmean is not None]
        del network
    else:
        checkpoint = weights
        section["weights"] = f"checkpoint {weights}"
    report["checkpoint"] = str(checkpoint)
    frames_in = frames_in_file(clip)
    section.update(input=f"testsrc2 {sizes.width}x{sizes.height}, x264 crf 18 yuv420p", frames_in=frames_in)
    report["frames_in"] = frames_in
    base = EnhanceSettings(device=str(device))
    loaded = load_enhance_model(str(checkpoint))  # as `edvr enhance --model CHECKPOINT` loads it
    section["network_parameters"] = sum(p.numel() for p in loaded.network.parameters())
    section["dcn_backend_default"] = dcn_backend_of(loaded.network)

    started = time.perf_counter()
    section["warmup"] = run_enhance(warm_clip, work / "warm_out.mp4", loaded, base, EncoderSettings(), device)
    section["warmup"]["wall_seconds"] = round(time.perf_counter() - started, 3)
    default_out = work / "default_out.mp4"
    row = run_enhance(clip, default_out, loaded, base, EncoderSettings(), device)
    row["frames_out"] = frames_in_file(default_out)
    section["default"] = row
    report.update(frames_out=row["frames_out"], enhance_ms_per_frame=row["ms_per_frame"],
                  enhance_best_ms_per_frame=row["ms_per_frame"], enhance_best_variant="default",
                  enhance_settings="edvr enhance defaults: fp32, batch 1, our DCN, libx265 crf 8 medium (.mp4)")
    save()

    if budget.allows(60):
        clock = StageClock(device)
        timed_out = work / "timed_out.mp4"
        row = run_enhance(clip, timed_out, loaded, base, EncoderSettings(), device, clock=clock)
        # the wrappers only time: the frames written are the default run's, bit for bit
        # (compared decoded, first psnr_frames frames; the encoder is deterministic)
        first, second = decode_rgb(default_out, sizes.psnr_frames), decode_rgb(timed_out, sizes.psnr_frames)
        row["same_frames_as_default"] = len(first) == len(second) > 0 and all(
            np.array_equal(a, b) for a, b in zip(first, second))
        section["instrumented"] = row
        report["stages_ms_per_frame"] = row["stages_ms_per_frame"]
        report["stages_note"] = ("a separate run of the default settings with the device synchronised at each "
                                 "stage's edges; the stages run one after another in this pipeline")
        save()
    else:
        section["instrumented"] = {"skipped": "time budget"}
    del loaded
    release(device)


def variants(sizes: Sizes, device: torch.device, work: Path, budget: Budget, report: dict, save,
             compiled: bool) -> None:
    """The e2e run again with other settings (VARIANTS; the torch.compile ones when `compiled`)."""
    section = report["e2e"]
    clip, warm_clip, default_out = work / "in.mp4", work / "warm.mp4", work / "default_out.mp4"
    checkpoint = Path(report["checkpoint"])
    base = EnhanceSettings(device=str(device))
    loaded = load_enhance_model(str(checkpoint))
    default_frames = decode_rgb(default_out, sizes.psnr_frames)
    variants = section.setdefault("variants", {})
    for label, changes, codec, backend, options in VARIANTS:
        use_compile = bool(changes.get("compile"))
        if use_compile != compiled:
            continue
        need = 180 if use_compile else 45
        if not budget.allows(need):
            variants[label] = {"skipped": f"time budget ({budget.left():.0f} s left, {need} s wanted)"}
            continue
        if backend == "torchvision" and not torchvision_available():
            variants[label] = {"skipped": "torchvision not installed"}
            continue
        if changes.get("precision") == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
            variants[label] = {"skipped": "no bf16 on this GPU"}
            continue
        try:
            network = loaded.network if backend == "pytorch" else load_checkpoint(checkpoint, backend)
            variant = LoadedModel(network, f"{label}", str(checkpoint))
            settings = replace(base, **changes)
            if use_compile:  # EnhanceSettings.compile: True = inductor; smoke: 'eager' (no C++ build)
                settings = replace(settings, compile=sizes.compile_backend)
            suffix = ".nut" if codec == "rawvideo" else ".mp4"
            encoder = EncoderSettings(codec=codec) if codec else EncoderSettings()
            output = work / f"{label}{suffix}"
            if use_compile:  # compiling happens on the first windows: a warm-up run first, timed apart
                started = time.perf_counter()
                warm = run_enhance(warm_clip, work / f"{label}_warm{suffix}", variant, settings, encoder, device,
                                   options=options)
                warm["wall_seconds"] = round(time.perf_counter() - started, 3)
            row = run_enhance(clip, output, variant, settings, encoder, device, options=options)
            if use_compile:
                row["compile_warmup"] = warm
            row.update(dcn_backend=backend, codec=codec or "default", compiled=use_compile,
                       compile_backend=settings.compile or None, channels_last=bool(options.get("channels_last")))
            row["frames_out"] = frames_in_file(output)
            row["psnr_vs_default_db"] = psnr_db(decode_rgb(output, sizes.psnr_frames), default_frames)
            variants[label] = row
            output.unlink(missing_ok=True)  # raw 720p video is large
        except Exception as error:  # noqa: BLE001 - a failing variant is a result, not the end of the run
            variants[label] = {"error": error_text(error)}
        release(device)
        save()
    timed = [(row["ms_per_frame"], label) for label, row in [("default", section["default"]), *variants.items()]
             if "ms_per_frame" in row and not (isinstance(row.get("codec"), str) and row["codec"] == "rawvideo")]
    if timed:
        best = min(timed)
        report["enhance_best_ms_per_frame"] = best[0]
        report["enhance_best_variant"] = best[1]
    del loaded
    release(device)


# ------------------------------------------------------------------------------ (c) reference


def reference(sizes: Sizes, device: torch.device, report: dict, save, budget: Budget) -> None:
    checkpoint = Path(report["checkpoint"])
    section = report.setdefault("reference", {})
    backend = "torchvision" if torchvision_available() else "pytorch"
    model = load_checkpoint(checkpoint, backend).to(device)
    frames = smooth_frames(sizes.reference_batch, model.num_frame, sizes.height, sizes.width).to(device)
    ms = time_forward(model, frames, device, sizes.reference_iters, sizes.reference_warmup)
    section.update(dcn_backend=backend, precision="fp32 (no autocast)", batch=sizes.reference_batch,
                   input=f"{sizes.height}x{sizes.width}", iters=sizes.reference_iters, warmup=sizes.reference_warmup,
                   ms_per_frame=round(ms, 3), offset_absmean_px=max_offset_absmean(model),
                   cudnn="defaults (benchmark off, TF32 convolutions on, as torch ships)",
                   note=None if backend == "torchvision" else "torchvision not installed: our DCN instead")
    report["reference_ms_per_frame"] = round(ms, 3)
    save()
    rows = section.setdefault("model_only", [])
    for dcn in ("pytorch", "torchvision"):
        for precision, dtype in (("fp32", None), ("bf16", torch.bfloat16)):
            if not budget.allows(30):
                rows.append({"dcn_backend": dcn, "precision": precision, "skipped": "time budget"})
                continue
            if dcn == "torchvision" and not torchvision_available():
                continue
            try:
                net = model if dcn == backend else load_checkpoint(checkpoint, dcn).to(device)
                value = time_forward(net, frames, device, sizes.reference_iters, sizes.reference_warmup, dtype)
                rows.append({"dcn_backend": dcn, "precision": precision, "batch": sizes.reference_batch,
                             "ms_per_frame": round(value, 3)})
            except Exception as error:  # noqa: BLE001
                rows.append({"dcn_backend": dcn, "precision": precision, "error": error_text(error)})
    del model, frames
    release(device)
    save()


# ------------------------------------------------------------------------------ (d) 1080p


def hd(sizes: Sizes, device: torch.device, work: Path, budget: Budget, report: dict, save) -> None:
    section = report.setdefault("hd", {"input": f"{sizes.hd_width}x{sizes.hd_height}"})
    frames = max(sizes.qe_frames, sizes.sr4_frames)
    clip = make_clip(work / "hd.mp4", sizes.hd_width, sizes.hd_height, frames)
    short = make_clip(work / "hd_short.mp4", sizes.hd_width, sizes.hd_height, sizes.sr4_frames)
    base = EnhanceSettings(device=str(device))
    for name, source, need in (("builtin-qe", clip, 40), ("builtin-sr4", short, 60)):
        row = section.setdefault(name, {})
        if not builtin_weights_path(name).is_file():
            row["skipped"] = "not bundled"
            continue
        if not budget.allows(need):
            row["skipped"] = "time budget"
            continue
        try:
            loaded = load_enhance_model(name)
            model = loaded.network
            windows = smooth_frames(1, model.num_frame, sizes.hd_height, sizes.hd_width).to(device)
            runner = ModelRunner(model, device)
            ms = time_forward(runner.restore, windows, device, sizes.hd_model_iters, 2)
            row["model_only"] = {"ms_per_frame": round(ms, 3), "fps": round(1000 / ms, 2), "batch": 1,
                                 "precision": "fp32", "dcn_backend": dcn_backend_of(model)}
            del windows, runner
            release(device)
            output = work / f"{name}_hd.mp4"
            result = run_enhance(source, output, loaded, base, EncoderSettings(), device)
            result["frames_out"] = frames_in_file(output)
            row["enhance"] = result
            output.unlink(missing_ok=True)
        except Exception as error:  # noqa: BLE001
            row["error"] = error_text(error)
        release(device)
        save()
    qe = section.get("builtin-qe", {}).get("enhance", {})
    if "fps" in qe:
        report["builtin_qe_fps_1080p"] = qe["fps"]
    sr4 = section.get("builtin-sr4", {}).get("enhance", {})
    if "fps" in sr4:
        report["builtin_sr4_fps_1080p"] = sr4["fps"]


# ------------------------------------------------------------------------------ (e) encoders


ENCODERS = [
    ("libx265 crf 8 medium (default)", ["-c:v", "libx265", "-crf", "8", "-preset", "medium", "-x265-params", "log-level=error"]),
    ("libx265 crf 8 ultrafast", ["-c:v", "libx265", "-crf", "8", "-preset", "ultrafast", "-x265-params", "log-level=error"]),
    ("libx264 crf 17 medium", ["-c:v", "libx264", "-crf", "17", "-preset", "medium"]),
    ("ffv1", ["-c:v", "ffv1"]),
    ("hevc_nvenc p4", ["-c:v", "hevc_nvenc", "-preset", "p4"]),
    ("h264_nvenc p4", ["-c:v", "h264_nvenc", "-preset", "p4"]),
]


def encoders(sizes: Sizes, budget: Budget, report: dict, save) -> None:
    """Each encoder alone on generated yuv420p frames into the null muxer; the seconds include
    ffmpeg's start and generating testsrc2 (fast next to these encoders)."""
    rows = report.setdefault("encoders", [])
    for width, height in sizes.encode_sizes:
        for label, args in ENCODERS:
            if not budget.allows(25):
                rows.append({"encoder": label, "size": f"{width}x{height}", "skipped": "time budget"})
                continue
            command = [ffmpeg_exe(), "-v", "error", "-f", "lavfi", "-i",
                       f"testsrc2=size={width}x{height}:rate=25", "-frames:v", str(sizes.encode_frames),
                       "-pix_fmt", "yuv420p", *args, "-f", "null", "-"]
            started = time.perf_counter()
            try:
                done = subprocess.run(command, capture_output=True, text=True, timeout=max(5.0, budget.left() - 10))
                seconds = time.perf_counter() - started
                row = {"encoder": label, "size": f"{width}x{height}", "frames": sizes.encode_frames}
                if done.returncode == 0:
                    row.update(seconds=round(seconds, 3), fps=round(sizes.encode_frames / seconds, 2))
                else:
                    lines = [line.strip() for line in done.stderr.strip().splitlines() if line.strip()]
                    row["error"] = " | ".join(lines[:3])[:400] or f"exit status {done.returncode}"
            except subprocess.TimeoutExpired:
                row = {"encoder": label, "size": f"{width}x{height}", "error": "timed out"}
            rows.append(row)
        save()


# ------------------------------------------------------------------------------ main


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="everything tiny (any machine, about a minute)")
    parser.add_argument("--out-dir", type=Path, default=REPO / "benchmarks" / "results",
                        help="where the JSON goes (default benchmarks/results)")
    parser.add_argument("--device", default="auto", help="auto (CUDA when there is one), cpu, cuda, cuda:N")
    parser.add_argument("--budget-s", type=float, default=None,
                        help="seconds for the whole run; later sections are skipped to fit (default 450, smoke 300)")
    parser.add_argument("--frames", type=int, default=None, help="e2e clip length (default 300; smoke 10)")
    parser.add_argument("--weights", type=Path, default=None, help="an EDVR x4 checkpoint instead of random weights")
    parser.add_argument("--skip", default="", help="comma-separated sections to leave out: tests,e2e,reference,"
                                                   "hd,variants,encoders,compile")
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temporary one)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: torch's; smoke: 1, as the tests run)")
    args = parser.parse_args(argv)

    sizes = SMOKE if args.smoke else Sizes()
    if args.frames:
        sizes = replace(sizes, frames=args.frames)
    if args.threads or args.smoke:
        torch.set_num_threads(args.threads or 1)
    skip = {name.strip() for name in args.skip.split(",") if name.strip()}
    budget = Budget(args.budget_s if args.budget_s is not None else (300 if args.smoke else 450))
    from edvr_cli.enhance.inference import choose_device
    device = choose_device(args.device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    report: dict = {"smoke": args.smoke, **environment(device)}
    report["sizes"] = {key: value for key, value in vars(sizes).items()}
    report["targets"] = {"enhance_ms_per_frame_max": TARGET_MS_PER_FRAME, "speedup_vs_reference_min": TARGET_SPEEDUP,
                         "builtin_qe_fps_1080p_min": TARGET_QE_FPS_1080P}
    name = (f"gpu_e2e-smoke-{slug(report['gpu'])}-{report['date']}.json" if args.smoke
            else f"gpu_e2e-{slug(report['gpu'])}-{report['date']}.json")
    args.out_dir.mkdir(parents=True, exist_ok=True)
    out_path = args.out_dir / name
    report["json"] = str(out_path)
    if not args.smoke and device.type != "cuda":
        report["warning"] = "no CUDA device: these are CPU numbers"

    def save() -> None:
        report["seconds"] = round(budget.elapsed(), 1)
        out_path.write_text(json.dumps(json_safe(report), indent=1) + "\n")

    def section(name: str, function, *fargs) -> None:
        if name in skip:
            report.setdefault("skipped_sections", []).append(name)
            return
        started = time.perf_counter()
        print(f"[{budget.elapsed():6.1f} s] {name} ...", flush=True)
        try:
            function(*fargs)
        except Exception as error:  # noqa: BLE001 - the JSON says what failed; later sections still run
            report.setdefault("errors", {})[name] = error_text(error)
            print(f"  {name} failed: {error_text(error)}", flush=True)
        report.setdefault("section_seconds", {})[name] = round(time.perf_counter() - started, 1)
        save()

    save()
    print(f"gpu_e2e: {report['gpu']}, torch {report['torch']}, {report['ffmpeg']}; writing {out_path}", flush=True)
    with contextlib.ExitStack() as stack:
        work = args.work or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="gpu_e2e-")))
        work.mkdir(parents=True, exist_ok=True)
        section("tests", lambda: report.__setitem__(
            "tests", run_tests(max(30.0, min(240.0, budget.left() - 200)), work)))
        section("e2e", e2e, sizes, device, work, budget, report, save, args.weights)
        have_e2e = "default" in report.get("e2e", {})
        if "checkpoint" in report:
            section("reference", reference, sizes, device, report, save, budget)
        section("hd", hd, sizes, device, work, budget, report, save)
        if have_e2e:
            section("variants", variants, sizes, device, work, budget, report, save, False)
        section("encoders", encoders, sizes, budget, report, save)
        if have_e2e:
            section("compile", variants, sizes, device, work, budget, report, save, True)
    enhance_ms, reference_ms = report.get("enhance_ms_per_frame"), report.get("reference_ms_per_frame")
    if enhance_ms and reference_ms:
        report["speedup_vs_reference"] = round(reference_ms / enhance_ms, 3)
        best = report.get("enhance_best_ms_per_frame")
        report["targets"].update(
            enhance_ms_per_frame_met=enhance_ms <= TARGET_MS_PER_FRAME,
            speedup_met=reference_ms / enhance_ms >= TARGET_SPEEDUP,
            best_variant_speedup_vs_reference=round(reference_ms / best, 3) if best else None)
    if "builtin_qe_fps_1080p" in report:
        report["targets"]["builtin_qe_fps_1080p_met"] = report["builtin_qe_fps_1080p"] >= TARGET_QE_FPS_1080P
    save()
    summary = {key: report.get(key) for key in ("gpu", "frames_in", "frames_out", "enhance_ms_per_frame",
                                                  "reference_ms_per_frame", "speedup_vs_reference",
                                                  "enhance_best_ms_per_frame", "enhance_best_variant",
                                                  "builtin_qe_fps_1080p", "builtin_sr4_fps_1080p", "seconds")}
    print(json.dumps(json_safe({**summary, "stages_ms_per_frame": report.get("stages_ms_per_frame"),
                                "tests": {k: report.get("tests", {}).get(k) for k in ("passed", "failed", "error",
                                                                                      "skipped")},
                                "errors": report.get("errors")}), indent=1), flush=True)
    print(f"wrote {out_path}", flush=True)
    return report


if __name__ == "__main__":
    main()
