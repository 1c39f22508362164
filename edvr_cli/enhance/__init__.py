"""`edvr enhance` as a library (the Click command is edvr_cli/commands/enhance.py).

- settings.py: every default (`EnhanceSettings`).
- pipeline.py: `enhance()` and its result; job.py: the steps it is made of (start, plan: one
  pass or segments, restore, finish), which many.py reuses.
- loop.py: the restore loop every run goes through: decode -> window -> restore -> convert
  back -> write, one segment after another (a single pass is one segment).
- sources.py: the opened input, the output's frame format and timing, the writer.
- planes.py: the network (inference.py's ModelRunner: device, precision, tiles from tiling.py)
  and the conversions of frames to its RGB on the device and of its outputs back to planes.
- segments.py: the segment plan and each frame's temporal window; workfolder.py (finished
  segments kept for resume, checked by segment_check.py): long videos in resumable segments,
  joined by video/join.py.
- many.py: several inputs into a folder; ray_pool.py: segments on a Ray cluster's workers;
  ray_local.py (and ray_watchdog.py): a Ray instance of the run's own, and its end.
- cut_short.py: an input that decodes to fewer frames than announced is planned again.
- errors.py: `EnhanceError`; frame_range.py: --start/--duration; output_*.py: output checks.
"""

from edvr_cli.enhance.errors import EnhanceError, SettingError
from edvr_cli.enhance.loop import SegmentOutput, restore_segments
from edvr_cli.enhance.pipeline import EnhanceResult, Reporter, enhance
from edvr_cli.enhance.segments import ONE_PASS, Segment, segment_windows
from edvr_cli.enhance.settings import DEFAULT_FOLDER_FPS, EnhanceSettings
from edvr_cli.enhance.sources import Source, Timing, open_source, open_writer, output_format
from edvr_cli.video import EncoderSettings

__all__ = ["EnhanceResult", "EnhanceSettings", "Reporter", "enhance", "DEFAULT_FOLDER_FPS", "Source", "Timing",
           "open_source", "open_writer", "output_format", "EnhanceError", "SettingError", "restore_segments",
           "SegmentOutput", "Segment", "ONE_PASS", "segment_windows", "EncoderSettings"]
