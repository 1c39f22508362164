"""`edvr enhance` as a library (the Click command is edvr_cli/commands/enhance.py).

- settings.py: every default (`EnhanceSettings`).
- pipeline.py: `enhance()` and its result; job.py: the steps it is made of (start,
  single pass or segments, finish), which many.py reuses.
- sources.py: the opened input, the output's frame format and timing, the writer.
- planes.py: the network (inference.py's ModelRunner: device, precision, tiles from tiling.py)
  and the conversions of frames to its RGB on the device and of its outputs back to planes.
- stream.py: temporal windows over the frame stream and the in-order restore loop.
- segments.py (the plan), segment_worker.py (restores segments), workfolder.py (finished
  segments kept for resume): long videos in resumable segments, joined by video/join.py.
- many.py: several inputs into a folder; ray_pool.py: segments on a Ray cluster's workers;
  ray_local.py (and ray_watchdog.py): a Ray instance of the run's own, and its end.
- cut_short.py: an input that decodes to fewer frames than announced is planned again.
"""

from edvr_cli.enhance.pipeline import EnhanceResult, Reporter, enhance
from edvr_cli.enhance.settings import DEFAULT_FOLDER_FPS, EnhanceSettings
from edvr_cli.enhance.sources import Source, Timing, open_source, open_writer, output_format
from edvr_cli.enhance.stream import EnhanceError, SlidingWindows, iter_windows, restore_stream
from edvr_cli.video import EncoderSettings

__all__ = ["EnhanceResult", "EnhanceSettings", "Reporter", "enhance", "DEFAULT_FOLDER_FPS", "Source", "Timing",
           "open_source", "open_writer", "output_format", "EnhanceError", "SlidingWindows", "iter_windows",
           "restore_stream", "EncoderSettings"]
