"""Pictures made of frames: upscaled panels, labels, side-by-side / split / stacked layouts, and
the grid of zoomed crops. Frames are (h, w, 3) uint8 RGB arrays throughout."""

from __future__ import annotations

from functools import lru_cache

import numpy as np

LAYOUTS = ("side", "split", "stack")
UPSCALES = ("nearest", "bicubic")
GAP = 4  # pixels between the crops of the grid
HEADER = 20  # pixels of the grid's label row
SPLIT_LINE = (255, 255, 255)


def upscale(frame: np.ndarray, factor: int, mode: str = "nearest") -> np.ndarray:
    """`frame` `factor` times larger: each pixel repeated (nearest), or bicubic (as PyTorch's,
    align_corners False), rounded to 8 bits."""
    if factor == 1:
        return frame
    if mode == "nearest":
        return np.repeat(np.repeat(frame, factor, axis=0), factor, axis=1)
    import torch
    import torch.nn.functional as F

    tensor = torch.from_numpy(np.ascontiguousarray(frame)).permute(2, 0, 1)[None].double()
    scaled = F.interpolate(tensor, scale_factor=factor, mode="bicubic", align_corners=False)
    return scaled[0].permute(1, 2, 0).clamp(0, 255).round().to(torch.uint8).numpy()


@lru_cache(maxsize=8)
def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # an old Pillow without scalable default font
        return ImageFont.load_default()


def font_size(height: int) -> int:
    """Label text height for a panel `height` pixels tall: 1/18 of it, 10 to 28 px."""
    return max(10, min(28, height // 18))


def draw_label(frame: np.ndarray, text: str, where: str = "left", size: int | None = None) -> np.ndarray:
    """A copy of `frame` with `text` in white on a dark box at its top left (or top right)."""
    from PIL import Image, ImageDraw

    if not text:
        return frame
    image = Image.fromarray(frame)
    draw = ImageDraw.Draw(image)
    font = _font(size or font_size(frame.shape[0]))
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    pad = 3
    box_w, box_h = right - left + 2 * pad, bottom - top + 2 * pad
    x = 0 if where == "left" else max(0, frame.shape[1] - box_w)
    draw.rectangle((x, 0, x + box_w - 1, box_h - 1), fill=(0, 0, 0))
    draw.text((x + pad - left, pad - top), text, fill=(255, 255, 255), font=font)
    return np.asarray(image)


def compose(panels: list[np.ndarray], labels: list[str], layout: str, split_at: float = 0.5) -> np.ndarray:
    """One output frame from same-sized panels: side by side, stacked, or split (the left part
    from the first panel, the right from the second, a 2-pixel line between them)."""
    if layout == "side":
        return np.concatenate([draw_label(panel, label) for panel, label in zip(panels, labels)], axis=1)
    if layout == "stack":
        return np.concatenate([draw_label(panel, label) for panel, label in zip(panels, labels)], axis=0)
    first, second = panels
    x = split_column(first.shape[1], split_at)
    frame = np.concatenate([first[:, :x], second[:, x:]], axis=1)
    frame[:, max(0, x - 1):x + 1] = SPLIT_LINE
    frame = draw_label(frame, labels[0], "left")
    return draw_label(frame, labels[1], "right")


def split_column(width: int, split_at: float) -> int:
    """The first column taken from the second panel in a split layout."""
    return min(width - 1, max(1, round(width * split_at)))


def output_size(width: int, height: int, count: int, layout: str) -> tuple[int, int]:
    if layout == "side":
        return width * count, height
    if layout == "stack":
        return width, height * count
    return width, height


def most_different_box(pairs: list[tuple[np.ndarray, np.ndarray]], box_w: int, box_h: int) -> tuple[int, int]:
    """(x, y) of the box_w x box_h region where the frames of each pair differ most (the sum of
    absolute differences over the pairs); the top-left one among equals."""
    height, width = pairs[0][0].shape[:2]
    total = np.zeros((height, width), np.int64)
    for a, b in pairs:
        total += np.abs(a.astype(np.int64) - b.astype(np.int64)).sum(axis=2)
    integral = np.zeros((height + 1, width + 1), np.int64)
    integral[1:, 1:] = total.cumsum(0).cumsum(1)
    sums = (integral[box_h:, box_w:] - integral[:-box_h, box_w:] - integral[box_h:, :-box_w]
            + integral[:-box_h, :-box_w])
    y, x = np.unravel_index(int(np.argmax(sums)), sums.shape)
    return int(x), int(y)


def crops_grid(rows: list[list[np.ndarray]], labels: list[str], row_labels: list[str], zoom: int) -> np.ndarray:
    """A grid: one column per input (labelled in a header row), one row per chosen frame (its
    time on its first crop), each crop `zoom` times larger (nearest), GAP pixels apart.

    Size: columns x crop width x zoom + GAP between columns, by HEADER + rows x crop height x
    zoom + GAP between rows."""
    crop_h, crop_w = rows[0][0].shape[:2]
    cell_w, cell_h = crop_w * zoom, crop_h * zoom
    columns = len(rows[0])
    grid = np.full((HEADER + len(rows) * cell_h + (len(rows) - 1) * GAP,
                    columns * cell_w + (columns - 1) * GAP, 3), 255, np.uint8)
    for column, label in enumerate(labels):
        x = column * (cell_w + GAP)
        header = np.full((HEADER, cell_w, 3), 255, np.uint8)
        grid[:HEADER, x:x + cell_w] = _header(header, label)
    for row, (crops, row_label) in enumerate(zip(rows, row_labels)):
        y = HEADER + row * (cell_h + GAP)
        for column, crop in enumerate(crops):
            x = column * (cell_w + GAP)
            cell = upscale(crop, zoom, "nearest")
            if column == 0 and row_label:
                cell = draw_label(cell, row_label, size=12)
            grid[y:y + cell_h, x:x + cell_w] = cell
    return grid


def _header(strip: np.ndarray, text: str) -> np.ndarray:
    from PIL import Image, ImageDraw

    image = Image.fromarray(strip)
    draw = ImageDraw.Draw(image)
    font = _font(13)
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    draw.text((max(0, (strip.shape[1] - (right - left)) // 2) - left, (HEADER - (bottom - top)) // 2 - top), text,
              fill=(0, 0, 0), font=font)
    return np.asarray(image)


__all__ = ["LAYOUTS", "UPSCALES", "GAP", "HEADER", "upscale", "draw_label", "compose", "split_column",
           "output_size", "most_different_box", "crops_grid"]
