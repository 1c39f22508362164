"""Training losses: the pixel criteria (Charbonnier, squared error) and the colour-kept target."""

from __future__ import annotations

import torch

from edvr_cli.train.config import TrainConfig


def _reduce(per_pixel: torch.Tensor, reduction: str) -> torch.Tensor:
    return per_pixel.sum() if reduction == "sum" else per_pixel.mean()


def charbonnier_loss(pred: torch.Tensor, target: torch.Tensor, eps: float = 1e-12,
                     reduction: str = "sum") -> torch.Tensor:
    """sqrt((pred - target)^2 + eps), summed (BasicSR's EDVR configs) or averaged; computed in fp32."""
    return _reduce(torch.sqrt((pred.float() - target.float()) ** 2 + eps), reduction)


def pixel_loss(pred: torch.Tensor, target: torch.Tensor, config: TrainConfig) -> torch.Tensor:
    """The configured criterion: Charbonnier (the seed's) or squared error, in fp32."""
    if config.criterion == "l2":
        return _reduce((pred.float() - target.float()) ** 2, config.loss_reduction)
    return charbonnier_loss(pred, target, config.charbonnier_eps, config.loss_reduction)


def with_input_colour(gt: torch.Tensor, lq: torch.Tensor) -> torch.Tensor:
    """Ground truth (b, 3, H, W) moved to the mean colour of the centre input frame (lq: b, t, 3, h, w),
    per sample and channel. Training towards it teaches artefact removal without colour casts: the
    casts x265 gives a handful of training clips are not the ones it gives other footage."""
    centre = lq[:, lq.shape[1] // 2]
    return gt - gt.mean(dim=(-2, -1), keepdim=True) + centre.mean(dim=(-2, -1), keepdim=True)
