"""Every default of `edvr enhance`, in one place: the library's `EnhanceSettings` holds them and
the command's options show them (`DEFAULTS`)."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

from edvr_cli.enhance.errors import EnhanceError, SettingError
from edvr_cli.enhance.tiling import DEFAULT_TILE_OVERLAP
from edvr_cli.windows import DEFAULT_PADDING, WINDOW_SIZES

DEFAULT_SEGMENT_FRAMES = 1000  # about 40 s of video: little lost to an interruption, few files
DEFAULT_FOLDER_FPS = Fraction(25)  # a folder of images has no rate of its own


@dataclass(frozen=True)
class EnhanceSettings:
    """How to run the network.

    Args:
        window: frames per window; None = the model's num_frame (any other count is an error).
        padding: temporal padding at the clip ends (windows.PADDING_MODES).
        tile, tile_overlap: spatial tiles in input pixels (0 = whole frame), see edvr_cli.enhance.tiling.
        batch: windows per forward pass.
        device: 'auto', 'cpu', 'cuda' or 'cuda:N'.
        precision: 'fp32', 'fp16' (CUDA only) or 'bf16'.
        ensemble: x8 flip/transpose self-ensemble.
        strength: how much of the network's change to apply, 0 to 1 (1 = all, 0 = none; any
            other value raises SettingError): at scale 1 it scales the change added to the
            input's planes; at x4, `models.EDVR.scale_residual`.
        folder_fps: frame rate of image-folder input.
        deinterlace: deinterlace interlaced video first (ffmpeg's bwdif, one frame per frame).
        segment_frames: output frames per resumable segment (0 = one pass, no work folder); a
            video of at most this many frames is restored in one pass.
        compile: run the network through torch.compile (True = inductor, or a backend name);
            the first windows of each new size are slow while it compiles; falls back to the
            plain network, with a note, if compiling fails (see ModelRunner).
        start, duration: restore only the frames whose time (seconds from the first frame) is in
            [start, start + duration) (`frame_range`); None = from the first / to the last frame.
            Their windows read the real frames around the range, and the output starts at 0
            with the other streams cut to the range.
    """

    window: int | None = None
    padding: str = DEFAULT_PADDING
    tile: int = 0
    tile_overlap: int = DEFAULT_TILE_OVERLAP
    batch: int = 1
    device: str = "auto"
    precision: str = "fp32"
    ensemble: bool = False
    strength: float = 1.0
    folder_fps: Fraction = DEFAULT_FOLDER_FPS
    deinterlace: bool = False
    segment_frames: int = DEFAULT_SEGMENT_FRAMES
    compile: bool | str = False
    start: Fraction | None = None
    duration: Fraction | None = None

    def __post_init__(self):
        if not 0 <= self.strength <= 1:
            raise SettingError("--strength", f"{self.strength} is not in the range 0<=x<=1.")


DEFAULTS = EnhanceSettings()


def checked_window(asked: int | None, num_frame: int) -> int:
    """The window size (--frames): the model's own; asking for another is an error."""
    window = num_frame if asked is None else asked
    if window != num_frame:
        raise EnhanceError(f"--frames {window} does not fit the model, which takes {num_frame} frames "
                           f"per window (its fusion layer is built for that count); omit --frames")
    if window not in WINDOW_SIZES:
        raise EnhanceError(f"the model takes {window} frames per window; supported: "
                           f"{', '.join(map(str, WINDOW_SIZES))}")
    return window

__all__ = ["EnhanceSettings", "DEFAULTS", "checked_window", "DEFAULT_SEGMENT_FRAMES", "DEFAULT_FOLDER_FPS"]
