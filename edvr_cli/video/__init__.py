"""Video I/O: ffmpeg processes, probing, native-plane reading and writing, colour conversion.

- `probe(path)` -> `VideoInfo` (probe.py); errors are `VideoError` (ffmpeg.py).
- `FrameReader` (reader.py) yields `Frame`s: the source's own planes and presentation times.
- `FrameWriter` (writer.py) encodes `Frame`s, each at its own time, copying audio/subtitles
  (streams.py); `EncoderSettings` / `resolve_encoder` (encoders.py) say how.
- `FrameConverter` (convert.py) turns planes into the network's RGB and back on a device, with
  the maths in colour.py; `PlaneLayout` (pixel_format.py) and `FrameFormat` (frame.py) describe
  the planes.
- `FolderFrameReader` / `PngFolderWriter` (folders.py): the same for folders of 8/16-bit PNGs.
"""

from edvr_cli.video.convert import FrameConverter
from edvr_cli.video.ffmpeg import VideoError, ffmpeg_exe, ffmpeg_path, summarize_stderr
from edvr_cli.video.folders import FolderFrameReader, PngFolderWriter
from edvr_cli.video.frame import Frame, FrameFormat, source_format, untagged_matrix
from edvr_cli.video.pixel_format import PlaneLayout, native_layout
from edvr_cli.video.probe import StreamInfo, VideoInfo, bit_depth_of, count_frames, probe
from edvr_cli.video.reader import FrameReader
from edvr_cli.video.encoders import EncoderSettings, choose_pix_fmt, resolve_encoder
from edvr_cli.video.writer import FrameWriter

__all__ = ["FrameConverter", "VideoError", "ffmpeg_exe", "ffmpeg_path", "summarize_stderr",
           "FolderFrameReader", "PngFolderWriter", "Frame", "FrameFormat", "source_format",
           "untagged_matrix", "PlaneLayout", "native_layout", "StreamInfo", "VideoInfo", "bit_depth_of",
           "count_frames", "probe", "FrameReader", "EncoderSettings", "FrameWriter", "choose_pix_fmt",
           "resolve_encoder"]
