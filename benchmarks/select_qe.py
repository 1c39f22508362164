"""Choose a compressed-video checkpoint and its strength on selection clips (never on held-out ones).

    python benchmarks/select_qe.py --corpus corpus --cache-dir cache --frames 12 \
        runs/qe/snapshots/iter_*.pth runs/qe/last.pth

For each checkpoint, every selection clip (`sources.json`'s `selection_clips`, x265 QP 37 through the
trainer's cache) is restored on whole frames with `enhance`'s windows, and the gain over the input is
worked out for every strength a on a grid at once: the output at strength a is x + a*r (r = the
network's correction), so its squared error is |e|^2 - 2a<r, e> + a^2 |r|^2 per frame (e = ground
truth - x). PSNR is the per-frame mean, the clip's mean, then the mean of clips, as `edvr eval`
reports it (RGB, 8-bit rounding ignored). Rule, fixed before looking: the (checkpoint, a) with the
largest mean gain among those positive on every selection clip.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

STRENGTHS = np.round(np.arange(0.05, 1.501, 0.05), 2)


def clip_gains(model: torch.nn.Module, clip, frames: int, num_frame: int) -> np.ndarray:
    """Mean PSNR gain over the clip's first `frames` frames, for each of STRENGTHS."""
    from edvr_cli.windows import window_indices

    gt_all, lq_all = clip.gt(), clip.lq()
    gains = []
    for idx in range(min(frames, clip.num_frames)):
        window = np.stack([lq_all[i] for i in window_indices(idx, clip.num_frames, num_frame)])
        lq = torch.from_numpy(window).permute(0, 3, 1, 2).float().div(255)[None]
        with torch.no_grad():
            out = model(lq)[0].permute(1, 2, 0).double().numpy() * 255
        centre = lq_all[idx].astype(np.float64)
        r, e = out - centre, gt_all[idx].astype(np.float64) - centre
        ee, re, rr = (e * e).sum(), (r * e).sum(), (r * r).sum()
        mse = (ee - 2 * STRENGTHS * re + STRENGTHS ** 2 * rr) / e.size
        gains.append(10 * np.log10(ee / e.size) - 10 * np.log10(mse))
    return np.mean(gains, axis=0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoints", nargs="+", type=Path)
    parser.add_argument("--corpus", type=Path, required=True)
    parser.add_argument("--cache-dir", type=Path, required=True, help="the trainer's --cache-dir")
    parser.add_argument("--frames", type=int, default=12, help="first N frames of each selection clip")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    from edvr_cli.train.degrade import Degradation, prepare_clip
    from models import load_model

    names = json.loads((args.corpus / "sources.json").read_text())["selection_clips"]
    clips = [prepare_clip(name, args.corpus / f"{name}.mkv", Degradation("compress", qp=37), args.cache_dir,
                          show_progress=False) for name in names]
    results, best = {}, None
    for path in args.checkpoints:
        model = load_model(str(path)).eval()
        table = np.stack([clip_gains(model, clip, args.frames, model.num_frame) for clip in clips])  # (clips, a)
        mean, low = table.mean(0), table.min(0)
        results[str(path)] = {"strengths": STRENGTHS.tolist(), "clips": dict(zip(names, table.tolist()))}
        allowed = np.where(low > 0, mean, -np.inf)
        k = int(np.argmax(allowed))
        print(f"{path}: a=1 mean {mean[STRENGTHS.tolist().index(1.0)]:+.4f} dB; best a={STRENGTHS[k]:g} "
              f"mean {mean[k]:+.4f}, min {low[k]:+.4f} ("
              + ", ".join(f"{n} {table[c, k]:+.3f}" for c, n in enumerate(names)) + ")", flush=True)
        if np.isfinite(allowed[k]) and (best is None or allowed[k] > best[2]):
            best = (str(path), float(STRENGTHS[k]), float(allowed[k]))
    print(f"chosen: {best}")
    if args.json:
        args.json.write_text(json.dumps({"chosen": best, "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
