"""Grow a checkpoint into a larger EDVR that computes the same (edvr_cli.train.grow), to start a
longer training run with more frames or reconstruction blocks (`edvr train --init OUT`).

    python benchmarks/grow_checkpoint.py runs/sr4-c2/best.pth grown.pth --frames 5 --blocks 10

Checks the claim before writing: the grown network's output on random frames equals the old
one's on the centre frames.
"""

from __future__ import annotations

import argparse

import torch

from edvr_cli.train.grow import grow
from models import load_model, save_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint")
    parser.add_argument("out")
    parser.add_argument("--frames", type=int, help="input frames of the grown network")
    parser.add_argument("--blocks", type=int, help="reconstruction blocks of the grown network")
    args = parser.parse_args()
    old = load_model(args.checkpoint).float().eval()
    new = grow(old, args.frames, args.blocks).eval()
    frames = torch.rand(1, new.num_frame, 3, 32, 48, generator=torch.Generator().manual_seed(0))
    first = (new.num_frame - old.num_frame) // 2
    with torch.no_grad():
        difference = (old(frames[:, first:first + old.num_frame]) - new(frames)).abs().max().item()
    print(f"{sum(p.numel() for p in old.parameters()):,} -> {sum(p.numel() for p in new.parameters()):,} "
          f"parameters; largest output difference {difference:.1e}")
    if difference > 1e-5:
        raise SystemExit("the grown network does not compute what the old one does; nothing written")
    save_model(new, args.out)


if __name__ == "__main__":
    main()
