"""Measure the bundled weights on held-out clips with `edvr enhance` + `edvr eval --lq`.

For each held-out clip (never used in training) the same degradation the trainer uses makes the
input (`edvr_cli.train.degrade.prepare_clip`): x265 QP 37 for `builtin-qe`, x4 bicubic
downsampling for `builtin-sr4`. Ground truth, input and baseline are written as PNG folders, the
model runs through the real command line, and `edvr eval` scores it:
- builtin-qe:  --lq = the QP 37 frames themselves (the gain is over the compressed input);
- builtin-sr4: --lq = bicubic x4 upsampling of the low-resolution input (the gain is over bicubic).

    python benchmarks/bundled_weights.py --footage FOLDER --clips cityCC0,Megamind,cup --work /tmp/bw
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from edvr_cli.image_io import write_png
from edvr_cli.train.degrade import Degradation, prepare_clip

TASKS = {
    "builtin-qe": Degradation("compress", qp=37),
    "builtin-sr4": Degradation("bicubic4"),
}


def bundled_models() -> list[str]:
    from edvr_cli.model_choice import bundled_models
    return [name for name in TASKS if name in bundled_models()]


def bicubic_upsample(frame: np.ndarray, factor: int = 4) -> np.ndarray:
    """(h, w, 3) uint8 -> (h * factor, w * factor, 3) uint8, bicubic (a = -0.75, PyTorch's)."""
    x = torch.from_numpy(np.array(frame)).permute(2, 0, 1)[None].double()
    y = F.interpolate(x, scale_factor=factor, mode="bicubic", align_corners=False)
    return y.round().clamp(0, 255).byte()[0].permute(1, 2, 0).numpy()


def write_folder(frames, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for idx, frame in enumerate(frames, start=1):
        write_png(folder / f"{idx:06d}.png", np.asarray(frame))


def edvr(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "edvr_cli", *args], check=True)


def measure(model: str, sources: dict[str, Path], work: Path, num_frames: int, extra: list[str]) -> dict:
    degradation = TASKS[model]
    root = work / model
    for name, source in sources.items():
        clip = prepare_clip(name, source, degradation, work / "cache", show_progress=False)
        gt, lq = clip.gt()[:num_frames], clip.lq()[:num_frames]
        write_folder(gt, root / "gt" / name)
        write_folder(lq, root / "input" / name)
        if degradation.scale == 4:
            write_folder((bicubic_upsample(frame) for frame in lq), root / "baseline" / name)
        edvr("enhance", str(root / "input" / name), "-o", str(root / "restored" / name),
             "--model", model, "--quiet", "--overwrite", *extra)
    baseline = root / ("baseline" if degradation.scale == 4 else "input")
    edvr("eval", "--gt", str(root / "gt"), "--pred", str(root / "restored"), "--lq", str(baseline),
         "--channel", "rgb", "--json", str(root / "scores.json"))
    return json.loads((root / "scores.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--footage", type=Path, required=True, help="folder holding the clips")
    parser.add_argument("--clips", required=True, help="held-out clip names (file stems), comma-separated")
    parser.add_argument("--work", type=Path, default=Path("/tmp/edvr-bundled"))
    parser.add_argument("--frames", type=int, default=30, help="frames per clip")
    parser.add_argument("--models", default=",".join(bundled_models()),
                        help="models to measure (default: the bundled ones)")
    parser.add_argument("--enhance-arg", action="append", default=[], help="extra `edvr enhance` argument")
    args = parser.parse_args()
    sources = {}
    for name in args.clips.split(","):
        matches = sorted(args.footage.glob(f"{name}.*")) or [args.footage / name]
        sources[name] = matches[0]
    for model in args.models.split(","):
        measure(model, sources, args.work, args.frames, args.enhance_arg)


if __name__ == "__main__":
    main()
