"""What an output path names: a folder of PNG frames, or a video file in a container ffmpeg writes.

A path ending in a slash, or without an extension, is a folder of PNG frames; any other path must
name a video container (`VIDEO_CONTAINER_SUFFIXES`). Single images and image sequences other than
a PNG folder (`out.png`, `frame%04d.png`, `out.gif`) are refused, and so is a suffix ffmpeg
writes no video into (`out.pth`), before any work starts.
"""

from __future__ import annotations

import os
from pathlib import Path

from models.errors import EdvrError

# Single images and image-sequence muxers: a video output needs a container, frames need a folder.
IMAGE_OUTPUT_SUFFIXES = (".png", ".apng", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif",
                         ".ppm", ".pgm", ".pbm", ".pam", ".tga", ".dpx", ".exr", ".jp2", ".j2k", ".jxl",
                         ".avif", ".heic", ".qoi", ".sgi", ".pcx", ".xwd", ".xbm")
# Containers ffmpeg writes a video output into (its muxer is picked by the suffix); some hold only
# some codecs (`video.encoders.CONTAINER_CODECS`).
VIDEO_CONTAINER_SUFFIXES = (".mkv", ".mp4", ".mov", ".m4v", ".webm", ".avi", ".nut", ".ogv", ".ts", ".m2ts",
                            ".mts", ".mpg", ".mpeg", ".vob", ".flv", ".f4v", ".wmv", ".asf", ".3gp", ".3g2",
                            ".mxf", ".y4m")


class OutputPathError(EdvrError, ValueError):
    """An input or output path that cannot or must not be used; the message is one line."""


def is_folder_output(path: str | os.PathLike) -> bool:
    """An output path ending in a slash (or without a file extension) means a folder of PNGs.

    Pass the path as the user typed it: `Path("clip.mp4/")` has already lost its slash.
    """
    text = os.fspath(path)
    return text.endswith(("/", os.sep)) or Path(text).suffix == ""


def check_output_name(output_path: str | os.PathLike, folder_output: bool) -> None:
    """OutputPathError unless `output_path` (as typed) can be a PNG folder or a video file."""
    text = os.fspath(output_path)
    target = Path(text)
    if folder_output:
        if target.name in ("", ".", "..") or Path(os.path.abspath(text)).name == "":
            raise OutputPathError(f"{text}: cannot be a folder of PNG frames; name the folder, e.g. "
                                  f"-o restored/")
        return
    suffix = target.suffix.lower()
    if "%" in target.name and suffix in IMAGE_OUTPUT_SUFFIXES:
        raise OutputPathError(f"{text}: image-sequence patterns are not an output here; for PNG frames "
                              f"name a folder (-o {target.parent / target.name.split('%')[0].rstrip('_-.')}/), "
                              f"for a video a file such as .mkv or .mp4")
    if suffix in IMAGE_OUTPUT_SUFFIXES:
        kind = "an animated GIF" if suffix == ".gif" else f"a single {suffix} image"
        raise OutputPathError(f"{text}: {kind} is not an output here; for PNG frames name a folder "
                              f"(-o {target.with_suffix('')}/), for a video a file such as .mkv or .mp4")
    if suffix not in VIDEO_CONTAINER_SUFFIXES:
        raise OutputPathError(f"{text}: ffmpeg cannot write a video into a {suffix} file; name a video file "
                              f"such as .mkv, .mp4, .mov, .webm or .avi, or a folder (-o {target.with_suffix('')}/) "
                              f"for PNG frames")


__all__ = ["OutputPathError", "IMAGE_OUTPUT_SUFFIXES", "VIDEO_CONTAINER_SUFFIXES", "is_folder_output",
           "check_output_name"]
