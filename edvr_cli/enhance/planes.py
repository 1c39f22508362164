"""The network and the plane conversions around it, as one object: `FramePlanes`, which the
local worker and the Ray actors use alike.

    decoded Frame -> `FramePlanes.prepare` -> DecodedFrame (planes + RGB on the device, once)
    windows of DecodedFrames -> `FramePlanes.run` -> RGB outputs (n, 3, sH, sW)
    (centre DecodedFrame, RGB output) -> `FramePlanes.finish` -> output planes

At scale 1 with the source's own layout out, `finish` is the residual reconstruction: input
planes + strength x the network's change (exact at strength 0). Otherwise the output planes are
made from the network's RGB.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from edvr_cli.enhance.errors import EnhanceError
from edvr_cli.enhance.inference import ModelRunner, Restored, choose_device
from edvr_cli.video import Frame, FrameConverter, FrameFormat


class NonFiniteOutputError(EnhanceError):
    """The network returned NaN or infinite values (broken weights, or fp16 overflow)."""


@dataclass
class DecodedFrame:
    """A decoded frame and the network's view of it."""

    frame: Frame
    codes: list[torch.Tensor]  # its planes' codes, float32 on the model's device
    rgb: torch.Tensor  # (3, h, w) float in [0, 1] on the model's device: what the network sees


def build_runner(network: torch.nn.Module, settings, notify=None, **options) -> ModelRunner:
    """The network on `settings.device` with the precision, tiles, ensemble and compile asked for;
    `options` are ModelRunner's other arguments, which no setting has (e.g. channels_last=True)."""
    return ModelRunner(network, choose_device(settings.device), settings.precision, settings.tile,
                       settings.tile_overlap, settings.ensemble, notify=notify, compile=settings.compile, **options)


class FramePlanes:
    """Converts frames of `source_format` for `runner` and its outputs into `output_format`;
    `final_tile` is the tile size the last batch ran with (smaller after an out-of-memory retry).

    Args:
        runner: runs the network on the device.
        source_format, output_format: the decoded planes and the planes written.
        strength: the fraction of the network's change applied, when `residual`.
    """

    def __init__(self, runner: ModelRunner, source_format: FrameFormat, output_format: FrameFormat,
                 strength: float = 1.0):
        self.runner = runner
        self.strength = strength
        self._in = FrameConverter(source_format, runner.device)
        self._out = FrameConverter(output_format, runner.device)
        # scale 1: the output is the input's planes plus the change, in the input's own space
        self.residual = runner.scale == 1
        self._output_is_source = output_format == source_format
        self.final_tile = runner.tile

    def prepare(self, frame: Frame) -> DecodedFrame:
        codes = self._in.upload(frame.planes)
        rgb = self._in.codes_to_rgb(codes).clamp_(0, 1)
        return DecodedFrame(frame, codes, rgb.to(self.runner.dtype))

    def restore(self, windows: list[list[DecodedFrame]]) -> Restored:
        """A batch of windows -> (n, 3, h*s, w*s) float restored centre frames (unclamped), and
        the tile size they were run with."""
        frames = torch.stack([torch.stack([item.rgb for item in window]) for window in windows])
        restored = self.runner.run(frames)
        if not bool(torch.isfinite(restored.frames).all()):  # one reduction per batch; what is written must be numbers
            raise NonFiniteOutputError("the network's output holds NaN or infinite values")
        return restored

    def run(self, windows: list[list[DecodedFrame]]) -> torch.Tensor:
        """`restore`'s frames, keeping the tile size they ran with in `final_tile`."""
        restored = self.restore(windows)
        self.final_tile = restored.tile
        return restored.frames

    def finish(self, centre: DecodedFrame, output: torch.Tensor) -> tuple[np.ndarray, ...]:
        """The output planes for one restored frame."""
        if not self.residual:
            return self._out.from_rgb(output)
        change = output.float() - centre.rgb.float()
        if self._output_is_source:
            return self._in.apply_change(centre.codes, change, self.strength)
        # e.g. PNG frames of a YUV source: RGB of the planes a video would hold, without a round
        # trip through host memory
        codes = self._in.changed_codes(centre.codes, change, self.strength)
        return self._out.from_rgb(self._in.codes_to_rgb([plane.to(torch.float32) for plane in codes]))
