"""ONNX Runtime vs PyTorch on the CPU: seconds per restored frame of the bundled models.

    python benchmarks/onnx_speed.py                          # builtin-qe and builtin-sr4 at 480p
    python benchmarks/onnx_speed.py --models builtin-sr4 --sizes 214x120 --calls 5 --threads 1

Each model is exported once with `edvr export`'s code (fp32, opset 16) and both runtimes get the
same windows: real frames of the cityCC0 test clip, resized to the asked size, one window
(batch 1) per call, the same number of threads (`--threads`: torch.set_num_threads and ONNX
Runtime's intra-op threads). After one warm-up call each, `--calls` calls are timed and the
median is reported; the two outputs are compared too, so both ran the same network. Only the
network is timed (no decoding or encoding: those are the same for both, see enhance_speed.py).
Add `--json out.json` to keep the raw numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from edvr_cli.model_choice import load_enhance_model  # noqa: E402
from edvr_cli.onnx.export import export_onnx  # noqa: E402
from edvr_cli.video.rgb_frames import RgbFrameReader  # noqa: E402
from machine import cpu_name  # noqa: E402  (benchmarks/machine.py)


def real_window(num_frame: int, width: int, height: int) -> torch.Tensor:
    """(1, num_frame, 3, height, width) float in [0, 1]: cityCC0 frames resized bilinearly."""
    with RgbFrameReader(ROOT / "tests" / "data" / "city_gt.mkv") as reader:
        frames = np.stack(list(reader))[:num_frame]
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float().div(255)
    x = F.interpolate(x, size=(height, width), mode="bilinear", align_corners=False).clamp(0, 1)
    return x[None].contiguous()


def timed(call, calls: int) -> tuple[float, object]:
    out = call()  # warm-up: allocation, ONNX Runtime's first-run planning
    seconds = []
    for _ in range(calls):
        started = time.perf_counter()
        out = call()
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["builtin-qe", "builtin-sr4"])
    parser.add_argument("--sizes", nargs="+", default=["854x480"], help="input WxH, one or more")
    parser.add_argument("--calls", type=int, default=3, help="timed calls per runtime (after a warm-up)")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    import onnxruntime as ort

    torch.set_num_threads(args.threads)
    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    options.log_severity_level = 3
    rows = []
    with tempfile.TemporaryDirectory() as work:
        for name in args.models:
            network = load_enhance_model(name).network
            path = Path(work) / f"{name}.onnx"
            export_onnx(network, path, verify=False)
            session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            for size in args.sizes:
                width, height = (int(v) for v in size.lower().split("x"))
                x = real_window(network.num_frame, width, height)
                with torch.no_grad():
                    torch_s, torch_out = timed(lambda: network(x), args.calls)
                ort_s, ort_out = timed(lambda: session.run(None, {"frames": x.numpy()})[0], args.calls)
                row = dict(model=name, input=f"{width}x{height}",
                           output=f"{width * network.scale}x{height * network.scale}",
                           torch_s=round(torch_s, 3), onnxruntime_s=round(ort_s, 3),
                           speedup=round(torch_s / ort_s, 2),
                           max_abs_diff=float(np.abs(torch_out.numpy() - ort_out).max()))
                rows.append(row)
                print(f"| `{name}` | {row['input']} -> {row['output']} | {args.threads} | "
                      f"{row['torch_s']:.2f} | {row['onnxruntime_s']:.2f} | {row['speedup']:.2f}x | "
                      f"{row['max_abs_diff']:.1e} |", flush=True)
    machine = dict(cpu=cpu_name(), cpus=os.cpu_count(), threads=args.threads, torch=torch.__version__,
                   onnxruntime=ort.__version__, python=platform.python_version(),
                   load_average=os.getloadavg(), calls=args.calls)
    print(json.dumps(machine))
    if args.json:
        args.json.write_text(json.dumps({"machine": machine, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
