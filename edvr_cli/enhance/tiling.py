"""Split frames into overlapping tiles, run a network on each, and stitch the outputs.

A tile is a *core* box plus a *margin* of `overlap` input pixels on every side (clipped at the
frame border). The cores partition the frame; the network sees core + margin, and only the
core's part of its output is kept. Nothing is blended, so there is no seam as long as the margin
covers the network's receptive field: then every kept output pixel saw exactly the input it sees
on the whole frame, and the stitched frame equals the untiled one up to float rounding.
(EDVR's receptive field is large: tens of input pixels for x4 models, about a hundred with
`hr_in`; a margin smaller than that gives near-identical, not identical, pixels at tile edges.)

Each margin starts on a multiple of `align` (the network's size multiple): strided convolutions
then sample the same pixel grid in a tile as on the whole frame.

Shapes: frames (n, t, c, h, w) in, (n, c_out, h * scale, w * scale) out, torch tensors.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

# Input pixels of context around each tile; they cover the network's receptive field, so no seam shows.
DEFAULT_TILE_OVERLAP = 32


@dataclass(frozen=True)
class Tile:
    """One tile in input pixels; boxes are half-open (y0, y1, x0, x1)."""

    core: tuple[int, int, int, int]  # the output pixels this tile provides
    padded: tuple[int, int, int, int]  # the input the network sees: core + margin


def _split(length: int, num_parts: int) -> list[tuple[int, int]]:
    """`num_parts` near-equal consecutive spans covering [0, length)."""
    bounds = [round(i * length / num_parts) for i in range(num_parts + 1)]
    return list(zip(bounds[:-1], bounds[1:]))


def _axis_tiles(length: int, tile_size: int, overlap: int, align: int) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """(core span, padded span) along one axis."""
    if tile_size <= 0 or tile_size >= length:
        return [((0, length), (0, length))]
    spans = []
    for start, end in _split(length, -(-length // tile_size)):
        padded_start = max(0, start - overlap) // align * align
        spans.append(((start, end), (padded_start, min(length, end + overlap))))
    return spans


def tile_grid(height: int, width: int, tile_size: int, overlap: int, align: int = 1) -> list[Tile]:
    """Tiles covering a `height` x `width` frame, row by row.

    Args:
        tile_size: largest core side in input pixels; 0 (or >= the frame) = one tile, the frame.
            Cores are split evenly, so none is a thin sliver at the border.
        overlap: margin in input pixels on each side of a core, where the frame allows.
        align: margins start on multiples of this (rounded down, so margins only grow).
    """
    if height <= 0 or width <= 0:
        raise ValueError(f"frame size must be positive, got {width}x{height}")
    if tile_size < 0 or overlap < 0 or align < 1:
        raise ValueError(f"tile size and overlap must be >= 0 and align >= 1, "
                         f"got {tile_size}, {overlap}, {align}")
    rows = _axis_tiles(height, tile_size, overlap, align)
    columns = _axis_tiles(width, tile_size, overlap, align)
    return [Tile(core=(cy0, cy1, cx0, cx1), padded=(py0, py1, px0, px1))
            for (cy0, cy1), (py0, py1) in rows for (cx0, cx1), (px0, px1) in columns]


def run_tiled(forward: Callable[..., torch.Tensor], frames: torch.Tensor, scale: int,
              tile_size: int, overlap: int, align: int = 1, with_tile: bool = False) -> torch.Tensor:
    """Apply `forward` tile by tile and stitch the cores of its outputs.

    Args:
        forward: the network: (n, t, c, th, tw) -> (n, c_out, th * scale, tw * scale); with
            `with_tile`, called as forward(tile_frames, tile.padded), the box they were cut from.
        frames: (n, t, c, h, w) windows.
        scale: output size / input size.
        tile_size, overlap, align: see `tile_grid`.

    Returns:
        (n, c_out, h * scale, w * scale), in `forward`'s output dtype.
    """
    n, _, _, height, width = frames.shape
    stitched = None
    for tile in tile_grid(height, width, tile_size, overlap, align):
        py0, py1, px0, px1 = tile.padded
        cy0, cy1, cx0, cx1 = tile.core
        tile_frames = frames[..., py0:py1, px0:px1]
        out = forward(tile_frames, tile.padded) if with_tile else forward(tile_frames)
        expected = (n, (py1 - py0) * scale, (px1 - px0) * scale)
        if out.dim() != 4 or (out.shape[0], *out.shape[2:]) != expected:
            raise ValueError(f"the network returned shape {tuple(out.shape)} for a "
                             f"{px1 - px0}x{py1 - py0} tile; expected (n, c, h*{scale}, w*{scale}) "
                             f"= ({n}, c, {expected[1]}, {expected[2]})")
        if stitched is None:
            stitched = out.new_empty((n, out.shape[1], height * scale, width * scale))
        stitched[:, :, cy0 * scale:cy1 * scale, cx0 * scale:cx1 * scale] = out[
            :, :, (cy0 - py0) * scale:(cy1 - py0) * scale, (cx0 - px0) * scale:(cx1 - px0) * scale]
    return stitched
