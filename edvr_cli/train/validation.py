"""Validation on whole frames, scored as `edvr eval` scores (BasicSR PSNR/SSIM, RGB, no crop).

Every output frame i of a clip takes the input frames `window_indices(i, n, num_frame, padding)`,
as `enhance` does at clip ends; a clip's score is its frames' mean, the overall score the mean
of the clip means. The input's own score (upsampled bicubically when scale > 1) is the baseline.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from edvr_cli.evaluate.metrics import frame_metrics
from edvr_cli.windows import window_indices


@dataclass
class Scores:
    psnr: float
    ssim: float
    clips: dict  # name -> {"psnr": ..., "ssim": ...}


def _to_uint8(frame: torch.Tensor) -> np.ndarray:
    """(3, h, w) float in [0, 1] -> (h, w, 3) uint8."""
    return (frame.float().clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()


def _frame_count(clip, max_frames: int) -> int:
    return min(max_frames, clip.num_frames) if max_frames else clip.num_frames


def _summarise(per_clip: dict) -> Scores:
    clips = {name: {"psnr": float(np.mean(p)), "ssim": float(np.mean(s))} for name, (p, s) in per_clip.items()}
    return Scores(psnr=float(np.mean([c["psnr"] for c in clips.values()])),
                  ssim=float(np.mean([c["ssim"] for c in clips.values()])), clips=clips)


@torch.no_grad()
def validate(model: torch.nn.Module, clips: list, num_frame: int, padding: str, device: torch.device,
             amp_dtype: torch.dtype | None, max_frames: int = 0) -> Scores:
    """Score `model` on the first `max_frames` (0: all) frames of each clip; restores train mode."""
    was_training = model.training
    model.eval()
    per_clip = {}
    for clip in clips:
        psnrs, ssims = [], []
        for frame_idx in range(_frame_count(clip, max_frames)):
            indices = window_indices(frame_idx, clip.num_frames, num_frame, padding)
            window = np.stack([clip.lq_frame(i) for i in indices])  # (t, h, w, 3) uint8
            lq = torch.from_numpy(window).to(device).permute(0, 3, 1, 2).float().div_(255)[None]
            with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
                out = model(lq)  # (1, 3, H, W)
            scores = frame_metrics(clip.gt_frame(frame_idx), _to_uint8(out[0]))
            psnrs.append(scores.psnr)
            ssims.append(scores.ssim)
        per_clip[clip.name] = (psnrs, ssims)
    model.train(was_training)
    return _summarise(per_clip)


def input_scores(clips: list, scale: int, max_frames: int = 0) -> Scores:
    """The degraded input's own scores against ground truth: the number to beat."""
    per_clip = {}
    for clip in clips:
        psnrs, ssims = [], []
        for frame_idx in range(_frame_count(clip, max_frames)):
            lq = clip.lq_frame(frame_idx)
            if scale > 1:
                x = torch.from_numpy(np.array(lq)).permute(2, 0, 1)[None].float() / 255
                lq = _to_uint8(F.interpolate(x, scale_factor=scale, mode="bicubic", align_corners=False)[0])
            scores = frame_metrics(clip.gt_frame(frame_idx), lq)
            psnrs.append(scores.psnr)
            ssims.append(scores.ssim)
        per_clip[clip.name] = (psnrs, ssims)
    return _summarise(per_clip)
