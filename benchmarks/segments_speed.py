"""What segments, resume and Ray workers cost and give, measured through the CLI.

    python benchmarks/segments_speed.py --out benchmarks/results/segments-cpu2-<date>.json

1. Per-segment cost: one clip restored with --segment-frames 0 and with small segments (tiny
   EDVR, so the fixed costs show): (seconds - single-pass seconds) / extra segments.
2. Resume: a run SIGKILLed after about half its segments, then rerun: the rerun's seconds
   against an uninterrupted run's.
3. Ray workers: the same job with --ray local --workers 1 and 2 (builtin-qe), frames per second.
4. Peak RSS of each Ray worker process against a plain run's (builtin-qe, 320x180).
Each CLI run's peak RSS is recorded too.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from benchmarks.machine import cpu_name  # noqa: E402
from models import EDVR, save_model  # noqa: E402
from edvr_cli.video import EncoderSettings  # noqa: E402
from tests.clips import make_clip  # noqa: E402


def cli(*args: str) -> list[str]:
    return [sys.executable, "-c", "from edvr_cli.cli import main; main()", "enhance", *args, "--quiet"]


def timed(args: list[str]) -> tuple[float, int]:
    """(seconds, peak RSS in MiB) of one CLI run."""
    started = time.perf_counter()
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"failed: {' '.join(args)}\n{process.stderr.read().decode()[-2000:]}")
    return round(seconds, 2), round(usage.ru_maxrss / 1024)


def tiny_model(folder: Path) -> Path:
    torch.manual_seed(0)
    network = EDVR(num_feat=8, deformable_groups=1, num_extract_block=1, num_reconstruct_block=1, hr_in=True,
                   with_predeblur=False, scale=1, num_frame=5, num_hr_feat=8)
    path = folder / "tiny.pth"
    save_model(network, path)
    return path


def segment_cost(folder: Path, model: Path) -> dict:
    clip = make_clip(folder / "seg.mkv", width=128, height=96, num_frames=400, audio=True, pix_fmt="yuv420p")
    base = [str(clip), "--model", str(model), "--overwrite"]
    rows = {}
    for frames in (0, 100, 20):
        rows[frames] = timed(cli(*base, "-o", str(folder / f"seg{frames}.mkv"), "--segment-frames", str(frames)))
    single = rows[0][0]
    per_segment = {frames: round((rows[frames][0] - single) / (400 // frames - 1), 3) for frames in (100, 20)}
    return {"clip": "testsrc2 128x96, 400 frames, x265 crf 8 output", "model": "tiny EDVR (8 features)",
            "seconds": {str(k): v[0] for k, v in rows.items()}, "peak_rss_mib": {str(k): v[1] for k, v in rows.items()},
            "seconds_per_extra_segment": per_segment}


def default_size(folder: Path, model: Path) -> dict:
    """One pass against the default segment size on a clip of 2500 frames (3 segments)."""
    from edvr_cli.enhance.settings import DEFAULT_SEGMENT_FRAMES

    clip = make_clip(folder / "default.mkv", width=64, height=48, num_frames=2500, audio=True, pix_fmt="yuv420p")
    base = [str(clip), "--model", str(model), "--overwrite"]
    single, _ = timed(cli(*base, "-o", str(folder / "default0.mkv"), "--segment-frames", "0"))
    segmented, _ = timed(cli(*base, "-o", str(folder / "default1.mkv")))
    return {"clip": "testsrc2 64x48, 2500 frames, x265 crf 8 output", "model": "tiny EDVR",
            "segment_frames": DEFAULT_SEGMENT_FRAMES, "single_pass_seconds": single, "segmented_seconds": segmented,
            "overhead_percent": round(100 * (segmented - single) / single, 2)}


def resume(folder: Path, model: Path) -> dict:
    clip = make_clip(folder / "res.mkv", width=128, height=96, num_frames=400, pix_fmt="yuv420p")
    output = folder / "res_out.mkv"
    args = cli(str(clip), "-o", str(output), "--model", str(model), "--segment-frames", "40", "--overwrite")
    full, _ = timed(args)
    output.unlink()
    work = folder / ".res_out.mkv.edvr-work"
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while not (work.is_dir() and sum(name.startswith("seg-") and ".partial" not in name
                                     for name in os.listdir(work)) >= 5):
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    reused = sum(name.startswith("seg-") and ".partial" not in name for name in os.listdir(work))
    rerun, _ = timed(args)
    return {"clip": "testsrc2 128x96, 400 frames, 10 segments of 40", "model": "tiny EDVR",
            "uninterrupted_seconds": full, "segments_done_before_kill": reused, "rerun_seconds": rerun}


def ray_workers(folder: Path) -> dict:
    clip = make_clip(folder / "ray.mkv", width=160, height=96, num_frames=96, pix_fmt="yuv420p")
    rows = {}
    for workers in (1, 2):
        seconds, rss = timed(cli(str(clip), "-o", str(folder / f"ray{workers}.mkv"), "--segment-frames", "16",
                                 "--ray", "local", "--workers", str(workers), "--overwrite"))
        rows[workers] = {"seconds": seconds, "fps": round(96 / seconds, 2), "driver_peak_rss_mib": rss}
    seconds, rss = timed(cli(str(clip), "-o", str(folder / "plain.mkv"), "--segment-frames", "16", "--overwrite"))
    rows["plain"] = {"seconds": seconds, "fps": round(96 / seconds, 2), "peak_rss_mib": rss}
    return {"clip": "testsrc2 160x96, 96 frames, 6 segments of 16", "model": "builtin-qe",
            "note": "seconds include starting Ray (about 5 s) and each actor's torch import", "runs": rows}


def _peak_rss_mib(_actor) -> float:
    """The calling Ray worker process's peak resident memory."""
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def ray_worker_memory(folder: Path) -> dict:
    """Peak RSS of each Ray worker after restoring a 320x180 clip (builtin-qe), against a plain
    in-process run of the same clip."""
    import resource

    import ray

    from edvr_cli.enhance import EnhanceSettings, Reporter, enhance
    from edvr_cli.enhance.many import enhance_on_pool
    from edvr_cli.enhance.ray_pool import RayPool
    from edvr_cli.model_choice import load_enhance_model

    clip = make_clip(folder / "hd.mkv", width=320, height=180, num_frames=24, pix_fmt="yuv420p")
    settings = EnhanceSettings(segment_frames=6)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    enhance(clip, folder / "hd_plain.mkv", load_enhance_model("builtin-qe"), settings)
    plain = round(max(before, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) / 1024)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        pool = RayPool("local", 2, load_enhance_model("builtin-qe").network)
        enhance_on_pool(clip, folder / "hd_ray.mkv", load_enhance_model("builtin-qe"), settings,
                        EncoderSettings(), False, Reporter(), pool)
        workers = ray.get([actor.__ray_call__.remote(_peak_rss_mib) for actor in pool.actors])
        pool.close()
    finally:
        ray.shutdown()
    return {"clip": "testsrc2 320x180, 24 frames, 4 segments of 6", "model": "builtin-qe",
            "plain_process_peak_rss_mib": plain, "ray_worker_peak_rss_mib": workers}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="edvr-segments-bench-"))
    try:
        model = tiny_model(folder)
        results = {"machine": f"{cpu_name()}, {os.cpu_count()} cores, torch {torch.__version__}",
                   "segment_cost": segment_cost(folder, model),
                   "default_size": default_size(folder, model),
                   "resume": resume(folder, model), "ray_workers": ray_workers(folder),
                   "ray_worker_memory": ray_worker_memory(folder)}
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
