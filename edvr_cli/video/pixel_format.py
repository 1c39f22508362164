"""Planar pixel layouts the pipe carries, and which one a source's pixel format is read as.

A frame travels as planes (numpy, uint8 for 8 bits, little-endian uint16 above), in ffmpeg's
order for the layout: Y, Cb, Cr for YUV; G, B, R for RGB (ffmpeg's gbrp); one plane for gray.
Every depth from 8 to 16 bits is carried as it is, so a 10-bit source stays 10-bit codes.

`native_layout(pix_fmt)` names the layout a source is decoded into: its own when it is planar
(nothing is converted), or the planar layout holding the same samples (nv12 -> yuv420p,
p010le -> yuv420p10le, rgb24 -> gbrp: lossless repacking). What cannot be held exactly
(alpha, palettes, Bayer mosaics, float samples, 4:4:0 or 4:1:0 chroma) is converted with a
note saying what was lost.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from edvr_cli.video.probe import bit_depth_of

FAMILIES = ("yuv", "rgb", "gray")
# chroma subsampling (x, y) -> the tag digits ffmpeg's raw formats use
_YUV_NAMES = {(2, 2): "420", (2, 1): "422", (1, 1): "444", (4, 1): "411"}
_YUV8_FOURCC = {(2, 2): b"I420", (2, 1): b"Y42B", (1, 1): b"444P", (4, 1): b"Y41B"}
_YUV_TAG_CODE = {(2, 2): 11, (2, 1): 10, (1, 1): 0}


@dataclass(frozen=True)
class PlaneLayout:
    """A planar layout: family ("yuv", "rgb", "gray"), bits per sample, chroma subsampling."""

    family: str
    depth: int
    sub_x: int = 1
    sub_y: int = 1

    @property
    def pix_fmt(self) -> str:
        """ffmpeg's name: yuv420p, yuv422p10le, gbrp12le, gray16le, ..."""
        suffix = "" if self.depth == 8 else f"{self.depth}le"
        if self.family == "gray":
            return f"gray{suffix}"
        if self.family == "rgb":
            return f"gbrp{suffix}"
        return f"yuv{_YUV_NAMES[(self.sub_x, self.sub_y)]}p{suffix}"

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(np.uint8) if self.depth == 8 else np.dtype("<u2")

    @property
    def num_planes(self) -> int:
        return 1 if self.family == "gray" else 3

    def plane_shapes(self, width: int, height: int) -> list[tuple[int, int]]:
        """(rows, columns) of each plane for a width x height frame."""
        if self.family != "yuv":
            return [(height, width)] * self.num_planes
        chroma = (-(-height // self.sub_y), -(-width // self.sub_x))
        return [(height, width), chroma, chroma]

    def frame_bytes(self, width: int, height: int) -> int:
        return sum(rows * cols for rows, cols in self.plane_shapes(width, height)) * self.dtype.itemsize

    def split(self, buffer, width: int, height: int) -> tuple[np.ndarray, ...]:
        """One frame's raw bytes -> its planes (views of `buffer`)."""
        data = np.frombuffer(buffer, self.dtype)
        planes, start = [], 0
        for rows, cols in self.plane_shapes(width, height):
            planes.append(data[start:start + rows * cols].reshape(rows, cols))
            start += rows * cols
        return tuple(planes)

    def fits(self, width: int, height: int) -> bool:
        """Whether the frame size is a multiple of the chroma subsampling (encoders need it)."""
        return width % self.sub_x == 0 and height % self.sub_y == 0

    @property
    def fourcc(self) -> bytes:
        """The raw-video tag ffmpeg's rawvideo decoder maps back to this layout (IVF pipe)."""
        if self.family == "gray":
            return b"Y800" if self.depth == 8 else bytes([ord("Y"), ord("1"), 0, self.depth])
        if self.family == "rgb":
            return bytes([ord("G"), ord("3"), 0, self.depth])
        if self.depth == 8:
            return _YUV8_FOURCC[(self.sub_x, self.sub_y)]
        return bytes([ord("Y"), ord("3"), _YUV_TAG_CODE[(self.sub_x, self.sub_y)], self.depth])


def subsampling_of(pix_fmt: str) -> tuple[int, int]:
    """(horizontal, vertical) chroma subsampling of an ffmpeg pixel format: yuv420p -> (2, 2)."""
    if match := re.match(r"^yuva?j?(4\d\d)p", pix_fmt):
        return {"420": (2, 2), "422": (2, 1), "440": (1, 2), "411": (4, 1),
                "410": (4, 4)}.get(match.group(1), (1, 1))
    if re.match(r"^(nv12|nv21|p01\d)", pix_fmt):
        return 2, 2
    if re.match(r"^(nv16|nv20|p21\d|y21\d|yuyv|uyvy|yvyu)", pix_fmt):
        return 2, 1
    return 1, 1


def family_of(pix_fmt: str) -> str:
    """"yuv", "rgb" or "gray" for an ffmpeg pixel format name."""
    name = pix_fmt.lower()
    if name.startswith(("gray", "ya8", "ya16", "y400", "monow", "monob")):
        return "gray"
    if re.match(r"^(yuv|yuvj|nv|p0|p2|p4|y2|xv|v30|uyv|yuyv|yvyu|ayuv|vuy|uyyvyy)", name):
        return "yuv"
    return "rgb"


def is_full_range_pix_fmt(pix_fmt: str) -> bool:
    """yuvj* formats are full-range YUV by definition."""
    return pix_fmt.startswith("yuvj")


def native_layout(pix_fmt: str) -> tuple[PlaneLayout, str | None]:
    """The layout a source of `pix_fmt` is decoded into, and a note when samples are lost."""
    name = pix_fmt.lower()
    family = family_of(name)
    depth = bit_depth_of(name)
    lost = None
    if "f32" in name or "f16" in name:
        depth, lost = 16, "float samples are stored as 16-bit integers"
    depth = min(max(depth, 8), 16)
    sub_x, sub_y = subsampling_of(name) if family == "yuv" else (1, 1)
    if name.startswith("pal8"):
        family, lost = "rgb", None  # a palette of 8-bit RGB colours: gbrp holds it exactly
    elif name.startswith("bayer"):
        family, lost = "rgb", "the Bayer mosaic is demosaiced by ffmpeg"
    elif re.search(r"(yuva|rgba|bgra|argb|abgr|gbrap|ya8|ya16)", name):
        lost = "its alpha channel is dropped"
    elif name.startswith(("monow", "monob")):
        lost = None  # 1-bit: gray 8-bit holds it exactly
    if family == "yuv" and (sub_x, sub_y) not in _YUV_TAG_CODE and (depth != 8 or (sub_x, sub_y) not in _YUV8_FOURCC):
        lost = f"its {sub_x}x{sub_y} chroma subsampling is upsampled to 4:4:4"
        sub_x, sub_y = 1, 1
    layout = PlaneLayout(family, depth, sub_x, sub_y)
    return layout, (f"pixel format {pix_fmt} is read as {layout.pix_fmt}: {lost}" if lost else None)
