"""`edvr compare` as a library: a comparison video, a PNG grid of zoomed crops, or an HTML page.

Each output is written as `edvr enhance` writes its own: an exclusive claim on the output
(`output_files.claim_output`), a hidden staging file beside it, renamed onto the output only when
complete; an existing output is replaced only with `overwrite`.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from edvr_cli.compare.inputs import CompareError, Input, check_inputs, open_input, rate_of, read_frames
from edvr_cli.compare.panels import (LAYOUTS, UPSCALES, compose, crops_grid, most_different_box, output_size,
                                     upscale)
from edvr_cli.output_files import OutputExistsError, claim_output, output_exists

VIDEO_SUFFIXES = (".mp4", ".mkv", ".mov", ".webm", ".avi", ".nut", ".m4v")
RGB_CODECS = ("ffv1", "ffvhuff", "huffyuv", "utvideo", "png", "qtrle", "libx264rgb")  # keep RGB as it is


class Reporter:
    """Progress and notes; this default says nothing (the command passes a progress bar)."""

    def start(self, num_frames: int | None) -> None:
        pass

    def advance(self) -> None:
        pass

    def note(self, message: str) -> None:
        pass

    def close(self) -> None:
        pass


@dataclass
class CompareResult:
    """What `edvr compare` wrote (the `--json` summary)."""

    output: str
    kind: str  # "video", "crops" or "html"
    inputs: list[str]
    labels: list[str]
    frames: int  # frames written (video) or shown (crops, html)
    width: int  # the output picture's size (video, crops) or one panel's (html)
    height: int
    seconds: float
    layout: str | None = None
    upscale: str = "nearest"
    scales: list[int] = field(default_factory=list)  # each input's upscale factor to the panel size
    video_fps: str | None = None
    encoder: dict | None = None
    at: list[float] = field(default_factory=list)  # seconds of the frames shown (crops, html)
    frame_indices: list[int] = field(default_factory=list)
    box: list[int] | None = None  # x, y, w, h of the crops, in panel pixels
    scores: list[dict] | None = None  # html with gt: per frame and input, psnr and ssim
    notes: list[str] = field(default_factory=list)


def open_inputs(paths: Sequence[str | os.PathLike], labels: Sequence[str] | None = None) -> list[Input]:
    if len(paths) < 2:
        raise CompareError("give at least two inputs to compare")
    if labels is not None and len(labels) != len(paths):
        raise CompareError(f"{len(labels)} labels for {len(paths)} inputs; give one per input")
    return [open_input(path, labels[index] if labels else None) for index, path in enumerate(paths)]


def frame_at(seconds: Fraction, fps: Fraction, num_frames: int) -> int:
    """The frame shown at `seconds` (counted from the first frame)."""
    index = math.floor(Fraction(seconds) * fps)
    if index >= num_frames or seconds < 0:
        raise CompareError(f"{float(seconds):g} s is past the end ({num_frames} frames, "
                           f"{float(num_frames / fps):g} s)")
    return index


def _check_output(output: Path, inputs: list[Input], overwrite: bool, suffixes: tuple[str, ...], what: str) -> None:
    if output.suffix.lower() not in suffixes:
        raise CompareError(f"{output}: {what} is written to a {' or '.join(suffixes)} file; name one")
    for item in inputs:
        if item.path.exists() and output.resolve() == item.path.resolve():
            raise CompareError(f"{output}: the output would replace an input; choose another name")
    if output_exists(output):
        if not overwrite:
            raise OutputExistsError(f"{output}: already exists; pass --overwrite to replace it")
        if output.is_dir():
            raise CompareError(f"{output}: exists and is a folder; remove it or choose another name")
    output.resolve().parent.mkdir(parents=True, exist_ok=True)


def _write_atomically(output: Path, overwrite: bool, write: Callable[[Path], None]) -> None:
    """`write(staging)` under this run's claim on `output`, then the rename onto it."""
    claim = claim_output(output, overwrite)
    try:
        staging = claim.staging_path()
        write(staging)
        claim.commit(staging, overwrite)
    finally:
        claim.release()


def _panels(frames: list[np.ndarray], factors: list[int], mode: str) -> list[np.ndarray]:
    return [upscale(frame, factor, mode) for frame, factor in zip(frames, factors)]


# ------------------------------------------------------------------------------------------ video


def compare_video(paths: Sequence[str | os.PathLike], output: str | os.PathLike, layout: str = "side",
                  labels: Sequence[str] | None = None, upscale_mode: str = "nearest", split_at: float = 0.5,
                  codec: str | None = None, crf: float | None = None, preset: str | None = None,
                  pix_fmt: str | None = None, folder_fps: Fraction = Fraction(25), overwrite: bool = False,
                  reporter: Reporter | None = None, show_labels: bool = True) -> CompareResult:
    """Write a video of the inputs' frames side by side, stacked, or split (two inputs), each
    panel labelled, smaller inputs scaled up to the largest; audio, subtitles and chapters from the
    first input (when it is a video), each frame at the first input's frame time."""
    from edvr_cli.video import EncoderSettings, FrameFormat, FrameWriter, PlaneLayout

    reporter = reporter or Reporter()
    started = time.perf_counter()
    inputs = _open_for_layout(paths, labels, layout, upscale_mode, split_at)
    output = Path(output)
    _check_output(output, inputs, overwrite, VIDEO_SUFFIXES, "a comparison video")
    width, height, factors = check_inputs(inputs)
    fps = rate_of(inputs, folder_fps)
    out_w, out_h = output_size(width, height, len(inputs), layout)
    encoder = _comparison_encoder(EncoderSettings(codec=codec, crf=crf, preset=preset, pix_fmt=pix_fmt), output,
                                  out_w, out_h)
    fmt = FrameFormat(PlaneLayout("rgb", 8), out_w, out_h, full_range=True)
    first = inputs[0].video
    notes: list[str] = []

    def note(message: str) -> None:
        if "frames converted from gbrp" in message or message in notes:
            return  # the RGB panels are converted to the codec's format on purpose
        notes.append(message)
        reporter.note(message)

    shown = [item.label if show_labels else "" for item in inputs]
    if first is not None and first.is_vfr:
        note(f"{inputs[0].path}: variable frame rate; the comparison is written at its average rate, {fps} fps")

    def write(staging: Path) -> None:
        with FrameWriter(staging, fmt, 1 / fps, encoder, source=first, deinterlaced=True, notify=note,
                         start_offset=first.start_offset if first is not None else Fraction(0)) as writer:
            from edvr_cli.video import Frame

            for index, frames in read_frames(inputs):
                picture = compose(_panels(frames, factors, upscale_mode), shown, layout, split_at)
                rgb = np.ascontiguousarray(picture)
                writer.write(Frame([rgb[:, :, 1].copy(), rgb[:, :, 2].copy(), rgb[:, :, 0].copy()], index))
                reporter.advance()
            result.encoder = {"codec": writer.encoder.codec, "crf": writer.encoder.crf,
                              "preset": writer.encoder.preset, "pix_fmt": writer.pix_fmt}

    result = CompareResult(os.fspath(output), "video", [os.fspath(item.path) for item in inputs],
                           [item.label for item in inputs], inputs[0].num_frames, out_w, out_h, 0.0, layout,
                           upscale_mode, factors, str(fps), notes=notes)
    reporter.start(inputs[0].num_frames)
    try:
        _write_atomically(output, overwrite, write)
    finally:
        reporter.close()
    result.seconds = round(time.perf_counter() - started, 3)
    return result


def _open_for_layout(paths, labels, layout: str, upscale_mode: str, split_at: float) -> list:
    """The opened inputs, once the layout options are known to fit them."""
    _check_choice(layout, LAYOUTS, "--layout")
    _check_choice(upscale_mode, UPSCALES, "--upscale")
    inputs = open_inputs(paths, labels)
    if layout == "split" and len(inputs) != 2:
        raise CompareError(f"--layout split shows two inputs, got {len(inputs)}; use side or stack for more")
    if not 0 < split_at < 1:
        raise CompareError(f"--split-at must be between 0 and 1, got {split_at}")
    return inputs


def _comparison_encoder(asked, output: Path, width: int, height: int):
    """The container's defaults for what `asked` leaves unset; a pixel format players expect."""
    from edvr_cli.video import EncoderSettings, resolve_encoder

    encoder = resolve_encoder(asked, output)
    if encoder.pix_fmt is None and encoder.codec not in RGB_CODECS:
        # players expect 4:2:0; odd sizes cannot hold it
        encoder = EncoderSettings(encoder.codec, encoder.crf, encoder.preset,
                                  "yuv420p" if width % 2 == 0 and height % 2 == 0 else "yuv444p", encoder.extra_args)
    return encoder


def _check_choice(value: str, choices: tuple[str, ...], option: str) -> None:
    if value not in choices:
        raise CompareError(f"{option} {value}: choose one of {', '.join(choices)}")


# ------------------------------------------------------------------------------------------ crops


def _chosen_frames(inputs: list[Input], at: Sequence[Fraction] | None, fps: Fraction) -> list[int]:
    count = inputs[0].num_frames
    if not at:
        return [count // 2]
    return [frame_at(Fraction(seconds), fps, count) for seconds in at]


def compare_crops(paths: Sequence[str | os.PathLike], output: str | os.PathLike, at: Sequence[Fraction] | None = None,
                  box: tuple[int, int, int, int] | None = None, zoom: int = 4, labels: Sequence[str] | None = None,
                  upscale_mode: str = "nearest", folder_fps: Fraction = Fraction(25), overwrite: bool = False,
                  reporter: Reporter | None = None) -> CompareResult:
    """Write a PNG grid of the same region of each input (columns) at each time of `at` (rows;
    default: the middle frame), each crop `zoom` times larger. `box` (x, y, w, h) is in the
    panels' pixels (the largest input's); without it a region a quarter of the frame across and
    down is placed where the first two inputs differ most over the chosen frames."""
    from edvr_cli.image_io import write_png

    reporter = reporter or Reporter()
    started = time.perf_counter()
    _check_choice(upscale_mode, UPSCALES, "--upscale")
    if zoom < 1:
        raise CompareError(f"--zoom must be 1 or more, got {zoom}")
    inputs = open_inputs(paths, labels)
    output = Path(output)
    _check_output(output, inputs, overwrite, (".png",), "a grid of crops")
    width, height, factors = check_inputs(inputs)
    fps = rate_of(inputs, folder_fps)
    indices = _chosen_frames(inputs, at, fps)
    if box is not None:
        x, y, box_w, box_h = box
        if box_w < 1 or box_h < 1 or x < 0 or y < 0 or x + box_w > width or y + box_h > height:
            raise CompareError(f"--box {x},{y},{box_w},{box_h} is not inside the {width}x{height} frames")
    reporter.start(len(indices))
    panels: dict[int, list[np.ndarray]] = {}
    try:
        for index, frames in read_frames(inputs, set(indices)):
            panels[index] = _panels(frames, factors, upscale_mode)
            reporter.advance()
    finally:
        reporter.close()
    if box is None:
        box_w, box_h = max(1, width // 4), max(1, height // 4)
        x, y = most_different_box([(panels[i][0], panels[i][1]) for i in indices], box_w, box_h)
    rows = [[panel[y:y + box_h, x:x + box_w] for panel in panels[index]] for index in indices]
    grid = crops_grid(rows, [item.label for item in inputs], [_time_label(index, fps) for index in indices], zoom)
    _write_atomically(output, overwrite, lambda staging: write_png(staging, grid))
    return CompareResult(os.fspath(output), "crops", [os.fspath(item.path) for item in inputs],
                         [item.label for item in inputs], len(indices), grid.shape[1], grid.shape[0],
                         round(time.perf_counter() - started, 3), upscale=upscale_mode, scales=factors,
                         video_fps=str(fps), at=[float(index / fps) for index in indices], frame_indices=indices,
                         box=[int(x), int(y), int(box_w), int(box_h)])


def _time_label(index: int, fps: Fraction) -> str:
    return f"{float(index / fps):.2f} s"


# ------------------------------------------------------------------------------------------ html


def compare_html(paths: Sequence[str | os.PathLike], output: str | os.PathLike, at: Sequence[Fraction] | None = None,
                 gt: str | os.PathLike | None = None, labels: Sequence[str] | None = None,
                 upscale_mode: str = "nearest", folder_fps: Fraction = Fraction(25), overwrite: bool = False,
                 reporter: Reporter | None = None) -> CompareResult:
    """Write one self-contained HTML page: per chosen frame, a before/after slider between the
    first input and each other one (images embedded as PNG), with each input's PSNR/SSIM against
    `gt` (computed as `edvr eval` does, RGB, for inputs of the ground truth's size)."""
    from edvr_cli.compare.page import html_page
    from edvr_cli.evaluate.metrics import frame_metrics

    reporter = reporter or Reporter()
    started = time.perf_counter()
    _check_choice(upscale_mode, UPSCALES, "--upscale")
    inputs = open_inputs(paths, labels)
    output = Path(output)
    _check_output(output, inputs, overwrite, (".html", ".htm"), "a comparison page")
    width, height, factors = check_inputs(inputs)
    truth = None
    if gt is not None:
        truth = open_input(gt, "ground truth")
        if truth.num_frames != inputs[0].num_frames:
            raise CompareError(f"--gt {gt} has {truth.num_frames} frames but {inputs[0].path} has "
                               f"{inputs[0].num_frames}")
    fps = rate_of(inputs, folder_fps)
    indices = _chosen_frames(inputs, at, fps)
    everything = inputs + ([truth] if truth is not None else [])
    shown, scores = [], []
    reporter.start(len(indices))
    try:
        for index, frames in read_frames(everything, set(indices)):
            panels = _panels(frames[:len(inputs)], factors, upscale_mode)
            row = {"frame": index, "seconds": float(index / fps), "inputs": []}
            if truth is not None:
                for item, frame in zip(inputs, frames):
                    if frame.shape != frames[-1].shape:
                        row["inputs"].append({"label": item.label, "psnr": None, "ssim": None})
                        continue
                    metrics = frame_metrics(frames[-1], frame, crop_border=0, channel="rgb")
                    row["inputs"].append({"label": item.label, "ssim": metrics.ssim,
                                          "psnr": metrics.psnr if math.isfinite(metrics.psnr) else "inf"})
                scores.append(row)
            shown.append((index, panels, row))
            reporter.advance()
    finally:
        reporter.close()
    page = html_page([item.label for item in inputs], shown, fps, gt is not None)
    _write_atomically(output, overwrite, lambda staging: staging.write_text(page, encoding="utf-8"))
    return CompareResult(os.fspath(output), "html", [os.fspath(item.path) for item in inputs],
                         [item.label for item in inputs], len(indices), width, height,
                         round(time.perf_counter() - started, 3), upscale=upscale_mode, scales=factors,
                         video_fps=str(fps), at=[float(index / fps) for index in indices], frame_indices=indices,
                         scores=scores if truth is not None else None)


__all__ = ["CompareResult", "Reporter", "compare_video", "compare_crops", "compare_html", "frame_at",
           "VIDEO_SUFFIXES"]
