"""The self-contained HTML page of `edvr compare --html`: a before/after slider per frame."""

from __future__ import annotations

import base64
import html
import io
from fractions import Fraction

import numpy as np

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 16px; background: #f4f4f4; color: #111; }
h2 { font-size: 15px; margin: 18px 0 6px; }
.slider { position: relative; display: inline-block; line-height: 0; margin: 0 8px 8px 0; }
.slider img { image-rendering: pixelated; display: block; }
.slider .after { position: absolute; top: 0; left: 0; width: 100%; height: 100%;
  clip-path: inset(0 50% 0 0); }
.slider .line { position: absolute; top: 0; bottom: 0; left: 50%; width: 2px; margin-left: -1px;
  background: #fff; box-shadow: 0 0 2px #000; pointer-events: none; }
.slider input { position: absolute; inset: 0; width: 100%; height: 100%; margin: 0; opacity: 0;
  cursor: ew-resize; }
.tag { position: absolute; top: 4px; padding: 2px 5px; background: rgba(0,0,0,.7); color: #fff;
  font-size: 12px; line-height: 16px; }
.tag.left { left: 4px; } .tag.right { right: 4px; }
table { border-collapse: collapse; margin: 6px 0 0; font-size: 13px; }
td, th { border: 1px solid #bbb; padding: 2px 8px; text-align: right; }
"""

_SCRIPT = """
for (const input of document.querySelectorAll('.slider input')) {
  const box = input.parentElement;
  const move = () => {
    const v = input.value;
    box.querySelector('.after').style.clipPath = 'inset(0 ' + (100 - v) + '% 0 0)';
    box.querySelector('.line').style.left = v + '%';
  };
  input.addEventListener('input', move);
  move();
}
"""


def png_data_uri(frame: np.ndarray) -> str:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(frame).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def display_zoom(width: int) -> int:
    """How many times larger a panel `width` pixels wide is shown (whole, crisp pixels): small
    frames are enlarged to about 512 pixels across, at most 8 times."""
    return max(1, min(8, 512 // max(1, width)))


def _slider(before: str, after: str, before_label: str, after_label: str, width: int) -> str:
    """`after` on the left of the line, `before` on the right; the range input moves the line."""
    return (f'<div class="slider" style="width: {width}px"><img src="{before}" alt="{html.escape(before_label)}"'
            f' style="width: {width}px">'
            f'<img class="after" src="{after}" alt="{html.escape(after_label)}"><div class="line"></div>'
            f'<span class="tag left">{html.escape(after_label)}</span>'
            f'<span class="tag right">{html.escape(before_label)}</span>'
            f'<input type="range" min="0" max="100" value="50" step="0.1" aria-label="before/after"></div>')


def _number(value, digits: int) -> str:
    if value is None:
        return "size differs"
    if value == "inf":
        return "inf"
    return f"{value:.{digits}f}"


def _scores_table(row: dict) -> str:
    lines = ['<table><tr><th>input</th><th>PSNR (dB)</th><th>SSIM</th></tr>']
    for item in row["inputs"]:
        lines.append(f'<tr><td>{html.escape(item["label"])}</td><td>{_number(item["psnr"], 4)}</td>'
                     f'<td>{_number(item["ssim"], 4)}</td></tr>')
    return "".join(lines) + "</table>"


def html_page(labels: list[str], shown: list[tuple[int, list[np.ndarray], dict]], fps: Fraction,
              with_scores: bool) -> str:
    """The page: for each (frame index, panels, scores) a heading, one slider per input after the
    first (the first input on the left of the line), and the scores against ground truth."""
    parts = ['<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">',
             f'<title>edvr compare: {html.escape(" vs ".join(labels))}</title>',
             f'<style>{_STYLE}</style></head><body>']
    for index, panels, row in shown:
        uris = [png_data_uri(panel) for panel in panels]
        width = panels[0].shape[1] * display_zoom(panels[0].shape[1])
        parts.append(f'<section><h2>frame {index} ({float(index / fps):.3f} s)</h2>')
        for other in range(1, len(panels)):
            parts.append(_slider(uris[other], uris[0], labels[other], labels[0], width))
        if with_scores:
            parts.append(_scores_table(row))
        parts.append('</section>')
    parts.append(f'<script>{_SCRIPT}</script></body></html>')
    return "\n".join(parts) + "\n"
