"""Grow a trained EDVR without changing what it computes, so a longer run can start from it with
more capacity: more input frames, more reconstruction blocks.

- Frames (no-TSA networks without non-local attention): PCD alignment's weights are shared by all frames, so only the 1x1
  fusion convolution sees the frame count; the old frames keep their weights at the centre of
  the new window and the added outer frames get zero weights.
- Reconstruction blocks (plain residual blocks): the added blocks come after the old ones with
  their second convolution at zero, so each starts as the identity.
Training then moves the zeros where the data asks.
"""

from __future__ import annotations

import torch

from models import EDVR
from models.checkpoint import model_config
from models.errors import EdvrError


class GrowError(EdvrError, ValueError):
    """A growth this network cannot take without changing its output."""


def grow(model: EDVR, num_frame: int | None = None, num_reconstruct_block: int | None = None,
         seed: int = 0) -> EDVR:
    """A new EDVR with `num_frame` frames and `num_reconstruct_block` reconstruction blocks (None:
    unchanged) that computes what `model` computes on the centre frames of its window. `seed`
    draws the added blocks' first convolutions (which the zeros after them keep from the output)."""
    config = model_config(model)
    old_frames, old_blocks = config["num_frame"], config["num_reconstruct_block"]
    num_frame = old_frames if num_frame is None else num_frame
    num_reconstruct_block = old_blocks if num_reconstruct_block is None else num_reconstruct_block
    if num_frame < old_frames or num_reconstruct_block < old_blocks:
        raise GrowError("a network can only grow: fewer frames or blocks would drop trained weights")
    if num_frame != old_frames and (config["with_tsa"] or config["nonlocal_attn"]
                                    or (num_frame - old_frames) % 2
                                    or config.get("center_frame_idx", old_frames // 2) != old_frames // 2):
        raise GrowError("frames can be added to a no-TSA network without non-local attention, with a "
                        "centred window, two at a time")
    if num_reconstruct_block != old_blocks and config["car"]:
        raise GrowError("reconstruction blocks with channel attention (car) cannot start as the identity")

    config.update(num_frame=num_frame, num_reconstruct_block=num_reconstruct_block)
    config.pop("center_frame_idx", None)  # the new window's centre
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        grown = EDVR(**config)
    state = grown.state_dict()
    feat = config["num_feat"]
    for key, value in model.state_dict().items():
        if key == "fusion.weight" and num_frame != old_frames:
            first = (num_frame - old_frames) // 2 * feat
            state[key] = torch.zeros_like(state[key])
            state[key][:, first:first + old_frames * feat] = value
        else:
            state[key] = value.clone()
    for index in range(old_blocks, num_reconstruct_block):
        state[f"reconstruction.{index}.conv2.weight"].zero_()
        state[f"reconstruction.{index}.conv2.bias"].zero_()
    grown.load_state_dict(state)
    return grown
