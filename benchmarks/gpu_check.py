"""GPU correctness and speed of the network code, in one short run on any CUDA machine.

    python benchmarks/gpu_check.py --out gpu_check.json

Needs only torch (+ torchvision for its DCN backend, + scikit-image for the photograph); no ffmpeg,
so it runs where the rest of the tool's dependencies are not installed.

Correctness (printed and stored as JSON):
1. EDVR-M x4 with random weights: CUDA fp32 (TF32 off) against the CPU, our pure-PyTorch DCN
   against torchvision's on CUDA, and bf16/fp16 autocast against CUDA fp32 (PSNR of the outputs).
2. The bundled builtin-sr4 weights on a real photograph (scikit-image's astronaut, a 192x256
   crop, x4 bicubic-downsampled and repeated as 3 frames): PSNR against the crop on the CPU and
   on CUDA in fp32/bf16/fp16 through `edvr_cli.enhance.inference.ModelRunner`, the path `enhance` uses.
Speed: ms per output frame of EDVR-M x4 (180x320 input) and the `small` preset (544x960),
random weights, for each DCN backend and precision, after warm-up (CUDA events).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from edvr_cli.enhance.inference import ModelRunner
from models import build_model, load_model

REPO = Path(__file__).resolve().parents[1]


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR of two [0, 1] tensors (inf when equal)."""
    mse = float(((a.float() - b.float()) ** 2).mean())
    return math.inf if mse == 0 else 10 * math.log10(1 / mse)


def random_edvr_m(backend: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model("edvr-m", dcn_backend=backend).eval()


def smooth_frames(n: int, t: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    """Image-like input: upsampled noise (random weights on white noise give meaningless offsets)."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n * t, 3, h // 8, w // 8, generator=generator)
    return F.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=False).clamp(0, 1).view(n, t, 3, h, w)


def correctness_random(device: torch.device) -> dict:
    frames = smooth_frames(1, 5, 64, 96)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    with torch.no_grad():
        cpu = random_edvr_m("pytorch")(frames)
        results = {}
        for backend in ("pytorch", "torchvision"):
            try:  # a failing backend is a result to report, not the end of the check
                model = random_edvr_m(backend).to(device)
                fp32 = model(frames.to(device)).float().cpu()
                results[f"{backend} cuda fp32 vs cpu: max abs diff"] = float((fp32 - cpu).abs().max())
                for name, dtype in (("bf16", torch.bfloat16), ("fp16", torch.float16)):
                    with torch.autocast("cuda", dtype=dtype):
                        low = model(frames.to(device)).float().cpu()
                    results[f"{backend} cuda {name} vs fp32: PSNR dB"] = psnr(low.clamp(0, 1), fp32.clamp(0, 1))
                    results[f"{backend} cuda {name}: finite"] = bool(torch.isfinite(low).all())
            except Exception as error:  # noqa: BLE001
                results[f"{backend}: failed"] = f"{type(error).__name__}: {str(error).splitlines()[0]}"
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    return results


def correctness_bundled(device: torch.device) -> dict:
    from skimage import data
    photo = torch.from_numpy(data.astronaut()[40:232, 128:384].copy()).permute(2, 0, 1).float().div(255)
    low = F.interpolate(photo[None], scale_factor=0.25, mode="bicubic", antialias=True, align_corners=False)
    low = (low.clamp(0, 1) * 255).round() / 255
    windows = (low.permute(0, 2, 3, 1).mul(255).round().byte().numpy()[:, None].repeat(3, axis=1))  # (1, 3, h, w, 3)
    target = photo.permute(1, 2, 0).mul(255).round().byte()
    results = {}
    bicubic = F.interpolate(low, scale_factor=4, mode="bicubic", align_corners=False).clamp(0, 1)[0]
    results["bicubic x4 PSNR dB"] = psnr((bicubic * 255).round() / 255, target.permute(2, 0, 1).float() / 255)
    for where, precision in (("cpu", "fp32"), ("cuda", "fp32"), ("cuda", "bf16"), ("cuda", "fp16")):
        if where == "cuda" and device.type != "cuda":
            continue
        key = f"builtin-sr4 {where} {precision} PSNR dB"
        try:
            model = load_model(REPO / "models" / "weights" / "builtin-sr4.pth",
                               dcn_backend="auto" if where == "cuda" else "pytorch")
            out = ModelRunner(model, device=where, precision=precision)(windows)[0]
            results[key] = psnr(torch.from_numpy(out).float() / 255, target.float() / 255)
        except Exception as error:  # noqa: BLE001
            results[key] = float("nan")
            print(f"  {key}: {type(error).__name__}: {error}", flush=True)
    return results


def time_model(model: torch.nn.Module, frames: torch.Tensor, precision: str, repeats: int) -> float:
    """ms per output frame, after two warm-up calls."""
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    with torch.no_grad(), torch.autocast("cuda", dtype=dtype or torch.float32, enabled=dtype is not None):
        for _ in range(2):
            model(frames)
        torch.cuda.synchronize()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(repeats):
            model(frames)
        end.record()
        torch.cuda.synchronize()
    return start.elapsed_time(end) / repeats / frames.shape[0]


def speed(device: torch.device, repeats: int) -> list[dict]:
    rows = []
    cases = (("edvr-m", 180, 320, 4), ("small", 544, 960, 2))
    for preset, h, w, batch in cases:
        for backend in ("pytorch", "torchvision"):
            torch.manual_seed(0)
            try:
                model = build_model(preset, dcn_backend=backend).eval().to(device)
                frames = smooth_frames(batch, model.num_frame, h, w).to(device)
                for precision in ("fp32", "bf16", "fp16"):
                    ms = time_model(model, frames, precision, repeats)
                    rows.append({"network": preset, "input": f"{h}x{w}", "batch": batch, "backend": backend,
                                 "precision": precision, "ms_per_frame": round(ms, 2)})
                    print(f"  {preset:7s} {h}x{w} batch {batch} {backend:11s} {precision}: {ms:7.2f} ms/frame",
                          flush=True)
            except Exception as error:  # noqa: BLE001
                rows.append({"network": preset, "backend": backend, "error": f"{type(error).__name__}: {error}"[:300]})
                print(f"  {preset} {backend}: {rows[-1]['error']}", flush=True)
            model = frames = None
            torch.cuda.empty_cache()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    report = {"torch": torch.__version__, "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu"}
    print(f"torch {report['torch']} on {report['device']}", flush=True)
    started = time.perf_counter()
    if device.type == "cuda":
        report["random_edvr_m"] = correctness_random(device)
        for key, value in report["random_edvr_m"].items():
            print(f"  {key}: {value}", flush=True)
    report["bundled_sr4"] = correctness_bundled(device)
    for key, value in report["bundled_sr4"].items():
        print(f"  {key}: {value:.4f}", flush=True)
    if device.type == "cuda":
        report["speed"] = speed(device, args.repeats)
    report["seconds"] = round(time.perf_counter() - started, 1)
    if args.out:
        args.out.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
