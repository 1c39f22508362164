"""CPU speed of this checkout against an older commit, measured side by side in one run.

    python benchmarks/cpu_speed.py                      # against 21eab59, 2 threads for inference
    python benchmarks/cpu_speed.py --base HEAD~3 --repeats 5 --frames 8

What it measures (old and new interleaved, median of --repeats; the old code is `git archive`d
into a temporary folder and imported from there, or run from there as a subprocess):
(a) `edvr enhance` with builtin-qe on a generated 854x480 x265 QP 37 clip, end to end through
    the CLI (process start, decode, network, encode to lossless ffv1): seconds per frame, and
    the largest difference between the two outputs' decoded planes (yuv420p), in 8-bit codes,
    and between their frames converted to RGB;
(b) the network's forward alone: builtin-qe at 854x480 (3 frames) and EDVR-M x4 (random
    weights, small non-zero DCN offsets as trained ones have) at 180x320 (5 frames); against
    BasicSR's EDVR with torchvision's DCN when both are importable, else against the old commit;
    and EDVR-M per window of a clip: the baseline's forward on each window against this
    checkout's ModelRunner, which runs each frame's per-frame layers once for all its windows;
(c) training steps of the builtin-qe recipe (16 ch full resolution, batch 8, 3 frames, patch 32,
    squared error, Adam) on one thread: iterations per second (the network's step; `edvr train`
    adds data loading and logging around it).
(b) and (c) run in this process, with glibc's malloc keeping freed memory (`--malloc keep`, what
`edvr enhance` and `edvr train` set on the CPU, here for old and new code alike) or as it comes
(`--malloc default`).
Writes benchmarks/results/cpu_speed-<host tag>-<date>.json.

BasicSR is detected by `import basicsr.archs.edvr_arch`: put its source tree on PYTHONPATH
(its package __init__ imports its whole training stack; an import shim that adds the tree's
folders to `basicsr.__path__` without running those __init__ files is enough).
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from machine import cpu_name  # benchmarks/machine.py (scripts run from benchmarks/)

REPO = Path(__file__).resolve().parent.parent
QE_WEIGHTS = REPO / "models" / "weights" / "builtin-qe.pth"


def export_commit(rev: str, folder: Path) -> Path:
    """The tree of commit `rev` extracted into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(["git", "-C", str(REPO), "archive", rev], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    return folder


def import_models(root: Path):
    """The `models` package of the tree at `root` (any earlier import of it is forgotten)."""
    for name in [name for name in sys.modules if name == "models" or name.startswith("models.")]:
        del sys.modules[name]
    sys.path.insert(0, str(root))
    try:
        return importlib.import_module("models")
    finally:
        sys.path.pop(0)


def median_times(runs: dict, repeats: int) -> dict:
    """Each callable of `runs` timed `repeats` times, interleaved; the median seconds of each."""
    times = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def make_clip(path: Path, frames: int) -> Path:
    from edvr_cli.video import ffmpeg_exe
    subprocess.run([ffmpeg_exe(), "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=854x480:rate=25",
                    "-frames:v", str(frames), "-c:v", "libx265", "-x265-params", "qp=37:log-level=error",
                    "-pix_fmt", "yuv420p", str(path)], check=True, capture_output=True)
    return path


def decoded_frames(path: Path, pix_fmt: str = "rgb24") -> np.ndarray:
    """Every frame of `path` as raw bytes in `pix_fmt`: (frames, bytes per frame) uint8."""
    import imageio_ffmpeg
    bits = {"rgb24": 24, "yuv420p": 12}[pix_fmt]
    reader = imageio_ffmpeg.read_frames(str(path), pix_fmt=pix_fmt, bits_per_pixel=bits)
    next(reader)
    return np.stack([np.frombuffer(raw, np.uint8) for raw in reader])


def enhance_cli(root: Path, clip: Path, output: Path, threads: int, precision: str = "fp32") -> None:
    env = dict(os.environ, PYTHONPATH=str(root), OMP_NUM_THREADS=str(threads))
    # Both versions run this checkout's builtin-qe file: the same weights, so the outputs compare.
    subprocess.run([sys.executable, "-m", "edvr_cli", "enhance", str(clip), "-o", str(output), "--overwrite",
                    "--model", str(QE_WEIGHTS), "--codec", "ffv1", "--quiet", "--device", "cpu",
                    "--precision", precision],
                   check=True, env=env, cwd=root)


def measure_enhance(old_root: Path, work: Path, frames: int, threads: int, repeats: int) -> dict:
    clip = make_clip(work / "clip480.mkv", frames)
    outputs = {"old": work / "old.mkv", "new": work / "new.mkv"}
    seconds = median_times({name: (lambda name=name: enhance_cli(old_root if name == "old" else REPO, clip,
                                                                 outputs[name], threads))
                            for name in outputs}, repeats)
    # the planes written (yuv420p, as the input) and the RGB a player shows; one code in a plane
    # can become two in RGB, whose conversion scales chroma by up to 1.8
    diffs = {pix_fmt: np.abs(decoded_frames(outputs["old"], pix_fmt).astype(np.int16)
                             - decoded_frames(outputs["new"], pix_fmt).astype(np.int16))
             for pix_fmt in ("yuv420p", "rgb24")}
    return {"clip": "testsrc2 854x480, x265 QP 37", "frames": frames, "threads": threads,
            "old_s_per_frame": seconds["old"] / frames, "new_s_per_frame": seconds["new"] / frames,
            "speedup": seconds["old"] / seconds["new"], "max_abs_diff_codes": int(diffs["yuv420p"].max()),
            "share_of_values_differing": float((diffs["yuv420p"] > 0).mean()),
            "max_abs_diff_rgb_codes": int(diffs["rgb24"].max()), "frames_compared": len(diffs["yuv420p"])}


def _edvr_m_pair(old_models, new_models):
    torch.manual_seed(0)
    old = old_models.build_model("edvr-m").eval()
    with torch.no_grad():  # untrained packs predict no offsets; trained ones move samples a little
        for module in old.modules():
            if hasattr(module, "conv_offset"):
                module.conv_offset.weight.normal_(0, 0.003)
                module.conv_offset.bias.normal_(0, 0.3)
    new = new_models.build_model("edvr-m").eval()
    new.load_state_dict(old.state_dict())
    return old, new


def basicsr_available() -> bool:
    try:
        import basicsr.archs.edvr_arch  # noqa: F401
        import torchvision.ops  # noqa: F401
    except Exception:
        return False
    return True


def measure_forward(old_models, new_models, threads: int, repeats: int, clip_frames: int = 6) -> list[dict]:
    torch.set_num_threads(threads)
    rows = []
    qe = {"old": old_models.load_model(QE_WEIGHTS), "new": new_models.load_model(QE_WEIGHTS)}
    edvr_m_old, edvr_m_new = _edvr_m_pair(old_models, new_models)
    baseline = "BasicSR + torchvision" if basicsr_available() else "old commit"
    if basicsr_available():
        from basicsr.archs.edvr_arch import EDVR as BasicSREDVR
        edvr_m_old = BasicSREDVR(num_feat=64, num_frame=5, num_extract_block=5, num_reconstruct_block=10,
                                 with_tsa=True, hr_in=False, with_predeblur=False).eval()
        edvr_m_old.load_state_dict(edvr_m_new.state_dict())
    for name, nets, frames, note in (
            ("builtin-qe forward 854x480", qe, torch.rand(1, 3, 3, 480, 854), "old commit"),
            ("EDVR-M x4 forward 180x320", {"old": edvr_m_old, "new": edvr_m_new}, torch.rand(1, 5, 3, 180, 320),
             baseline)):
        with torch.no_grad():
            outputs = {key: net(frames) for key, net in nets.items()}
            seconds = median_times({key: (lambda net=net: net(frames)) for key, net in nets.items()}, repeats)
        rows.append({"what": name, "baseline": note, "threads": threads, "old_s": seconds["old"],
                     "new_s": seconds["new"], "speedup": seconds["old"] / seconds["new"],
                     "max_abs_diff": float((outputs["old"] - outputs["new"]).abs().max())})
    rows.append(measure_sliding(edvr_m_old, edvr_m_new, clip_frames, repeats, baseline, threads))
    return rows


def measure_sliding(old_net, new_net, num_frames: int, repeats: int, baseline: str, threads: int) -> dict:
    """EDVR-M x4 over every window of a clip of `num_frames` 180x320 frames: the baseline's
    forward per window against this checkout's ModelRunner (each frame's per-frame layers run
    once; a fresh runner per repeat, so its first windows compute their frames too)."""
    from edvr_cli.enhance.inference import ModelRunner
    from edvr_cli.windows import window_indices

    clip = torch.rand(num_frames, 3, 180, 320, generator=torch.Generator().manual_seed(1))
    windows = [clip[window_indices(idx, num_frames, 5, "reflection_circle")][None] for idx in range(num_frames)]
    outputs = {"old": [], "new": []}

    def run_old():
        outputs["old"] = [old_net(window) for window in windows]

    def run_new():
        runner = ModelRunner(new_net, "cpu")
        outputs["new"] = [runner.restore(window) for window in windows]

    with torch.no_grad():
        run_old(), run_new()  # warm-up, as the single forwards above have
        seconds = median_times({"old": run_old, "new": run_new}, repeats)
    diff = max(float((a - b).abs().max()) for a, b in zip(outputs["old"], outputs["new"]))
    return {"what": f"EDVR-M x4 per window, {num_frames} frames of 180x320, frame features reused",
            "baseline": baseline, "threads": threads, "old_s": seconds["old"] / num_frames,
            "new_s": seconds["new"] / num_frames, "speedup": seconds["old"] / seconds["new"],
            "max_abs_diff": diff}


def set_malloc(mode: str) -> None:
    """'keep': glibc's malloc keeps freed memory (edvr_cli.host_memory, as `edvr enhance` and
    `edvr train` set it on the CPU); 'default': it stays as the process started, also when
    ModelRunner is built."""
    import edvr_cli.enhance.inference as inference
    from edvr_cli.host_memory import keep_freed_memory
    if mode == "keep":
        if not keep_freed_memory():
            raise SystemExit("--malloc keep: this system's malloc cannot be set (not glibc)")
    else:
        inference.keep_freed_memory = lambda: False


def measure_training(old_models, new_models, repeats: int, steps: int = 4) -> dict:
    torch.set_num_threads(1)
    generator = torch.Generator().manual_seed(0)
    batches = [(torch.rand(8, 3, 3, 32, 32, generator=generator), torch.rand(8, 3, 32, 32, generator=generator))
               for _ in range(steps)]
    runs = {}
    for key, package in (("old", old_models), ("new", new_models)):
        net = package.load_model(QE_WEIGHTS).train()
        optimizer = torch.optim.Adam(net.parameters(), lr=1e-4)

        def run(net=net, optimizer=optimizer):
            for lq, gt in batches:
                optimizer.zero_grad(set_to_none=True)
                ((net(lq) - gt) ** 2).mean().backward()
                optimizer.step()
        runs[key] = run
    seconds = median_times(runs, repeats)
    return {"recipe": "builtin-qe: 16 ch, 3 frames, batch 8, patch 32, l2, Adam", "threads": 1,
            "old_it_per_s": steps / seconds["old"], "new_it_per_s": steps / seconds["new"],
            "speedup": seconds["old"] / seconds["new"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", default="21eab59", help="the commit to compare against")
    parser.add_argument("--threads", type=int, default=2, help="torch threads for (a) and (b)")
    parser.add_argument("--frames", type=int, default=6, help="frames of the 480p clip in (a)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip", nargs="*", default=[], choices=["enhance", "forward", "training"])
    parser.add_argument("--malloc", choices=["keep", "default"], default="keep",
                        help="glibc malloc for (b) and (c), old and new code alike (see the docstring)")
    parser.add_argument("--clip-frames", type=int, default=6, help="frames of the EDVR-M clip in (b)")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = parser.parse_args()

    result = {"machine": {"cpu": cpu_name(), "logical_cpus": os.cpu_count(), "torch": torch.__version__,
                          "load_average_start": os.getloadavg()},
              "base_commit": args.base, "repeats": args.repeats, "malloc_forward_training": args.malloc,
              "torchvision_basicsr": "installed" if basicsr_available() else "not installed"}
    with tempfile.TemporaryDirectory() as temp:
        old_root = export_commit(args.base, Path(temp) / "old")
        if "enhance" not in args.skip:
            work = Path(temp) / "work"
            work.mkdir()
            result["enhance"] = measure_enhance(old_root, work, args.frames, args.threads, args.repeats)
            print(json.dumps(result["enhance"]), flush=True)
        old_models, new_models = import_models(old_root), import_models(REPO)
        set_malloc(args.malloc)
        if "forward" not in args.skip:
            result["forward"] = measure_forward(old_models, new_models, args.threads, args.repeats,
                                                args.clip_frames)
            print(json.dumps(result["forward"]), flush=True)
        if "training" not in args.skip:
            result["training"] = measure_training(old_models, new_models, args.repeats)
            print(json.dumps(result["training"]), flush=True)
    result["machine"]["load_average_end"] = os.getloadavg()
    args.out.mkdir(parents=True, exist_ok=True)
    tag = "" if args.malloc == "keep" else "-malloc-default"
    path = args.out / (f"cpu_speed-cpu{os.cpu_count()}-threads{args.threads}{tag}-"
                       f"{datetime.date.today().isoformat()}.json")
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
