"""Score restored clips against ground truth: per-frame, per-clip and overall PSNR/SSIM.

Python API behind `edvr eval`:

    result = evaluate("gt/", "restored/", lq="input/", channel="rgb", crop_border=0, workers=2)
    result.psnr, result.ssim            # overall: the mean of the per-clip means
    result.clips[0].frames[3].psnr      # one frame
    write_json(result, "scores.json"); write_csv(result, "scores.csv")

Conventions (the papers'): a clip's value is the mean over its frames, and the overall value is
the mean over clips (every clip weighs the same, whatever its length). PSNR of identical frames
is `math.inf`; any mean that includes an inf is inf. In JSON, non-finite numbers are the strings
"inf" / "-inf". Gains (with `lq`) are pred minus lq at each level; a gain between two infinite
PSNRs (both identical to the ground truth) is 0.0.
"""

from __future__ import annotations

import csv
import json
import math
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from edvr_cli.evaluate.sources import ClipPair, FramePair, FrameSourceError, frame_pairs, pair_sources
from edvr_cli.evaluate.metrics import MetricError, frame_metrics
from edvr_cli.evaluate.parallel import ordered_map
from models.errors import EdvrError


class EvaluationError(EdvrError, ValueError):
    """Frames that cannot be scored, or results that cannot be written."""


def _mean(values: list[float]) -> float:
    # np.mean in float64: a single inf makes the mean inf, as documented.
    return float(np.mean(np.asarray(values, dtype=np.float64)))


def gain(pred_value: float | None, lq_value: float | None) -> float | None:
    """pred - lq; 0.0 when both are inf (nothing left to gain); None without lq."""
    if pred_value is None or lq_value is None:
        return None
    if math.isinf(pred_value) and pred_value == lq_value:
        return 0.0
    return pred_value - lq_value


class _Gains:
    """ΔPSNR and ΔSSIM of a result that has psnr/ssim and lq_psnr/lq_ssim (None without --lq)."""

    @property
    def psnr_gain(self) -> float | None:
        return gain(self.psnr, self.lq_psnr)

    @property
    def ssim_gain(self) -> float | None:
        return gain(self.ssim, self.lq_ssim)


class _MeanScores(_Gains):
    """psnr, ssim, lq_psnr and lq_ssim as means over the parts named by `_PARTS` (frames or clips)."""

    _PARTS = ""  # the field holding the parts: "frames" for a clip, "clips" for the whole result

    def _mean_of(self, score: str, optional: bool = False) -> float | None:
        """One score's mean over the parts, shared by clips and the result; optional: None without --lq."""
        parts = getattr(self, self._PARTS)
        if optional and getattr(parts[0], score) is None:
            return None
        return _mean([getattr(part, score) for part in parts])

    @property
    def psnr(self) -> float:
        return self._mean_of("psnr")

    @property
    def ssim(self) -> float:
        return self._mean_of("ssim")

    @property
    def lq_psnr(self) -> float | None:
        return self._mean_of("lq_psnr", optional=True)

    @property
    def lq_ssim(self) -> float | None:
        return self._mean_of("lq_ssim", optional=True)


@dataclass(frozen=True)
class FrameResult(_Gains):
    """Scores of one frame. PSNR in dB (inf when identical), SSIM in [-1, 1]."""

    index: int
    name: str  # ground-truth file name; "" for video frames
    psnr: float
    ssim: float
    lq_psnr: float | None = None
    lq_ssim: float | None = None

@dataclass(frozen=True)
class ClipResult(_MeanScores):
    """One clip's frames and their means."""

    _PARTS = "frames"

    name: str
    frames: tuple[FrameResult, ...]

    @property
    def num_frames(self) -> int:
        return len(self.frames)


@dataclass(frozen=True)
class EvaluationResult(_MeanScores):
    """All clips' results; overall values are the mean of the clip means."""

    _PARTS = "clips"

    clips: tuple[ClipResult, ...]
    channel: str
    crop_border: int

    @property
    def has_lq(self) -> bool:
        return self.clips[0].lq_psnr is not None

    @property
    def num_frames(self) -> int:
        return sum(clip.num_frames for clip in self.clips)

    def to_dict(self) -> dict:
        """Plain data (floats may be inf); `write_json` turns infinities into strings."""
        def scores(item) -> dict:
            values = {"psnr": item.psnr, "ssim": item.ssim}
            if self.has_lq:
                values.update(lq_psnr=item.lq_psnr, lq_ssim=item.lq_ssim,
                              psnr_gain=item.psnr_gain, ssim_gain=item.ssim_gain)
            return values

        return {
            "conventions": {
                "channel": self.channel,
                "crop_border": self.crop_border,
                "clip_value": "mean over the clip's frames",
                "overall_value": "mean of the per-clip means",
                "psnr_identical": "inf",
            },
            "overall": {"num_clips": len(self.clips), "num_frames": self.num_frames, **scores(self)},
            "clips": [
                {"name": clip.name, "num_frames": clip.num_frames, **scores(clip),
                 "frames": [{"index": frame.index, "name": frame.name, **scores(frame)}
                            for frame in clip.frames]}
                for clip in self.clips
            ],
        }


# ---------------------------------------------------------------- scoring

def _score_frame(pair_name: str, frames: FramePair, channel: str, crop_border: int) -> FrameResult:
    gt = frames.gt.load()  # (h, w, 3) uint8 RGB
    pred = frames.pred.load()
    try:
        scores = frame_metrics(gt, pred, crop_border=crop_border, channel=channel)
        lq_scores = None
        if frames.lq is not None:
            lq_scores = frame_metrics(gt, frames.lq.load(), crop_border=crop_border, channel=channel)
    except MetricError as error:
        label = f" ({frames.name})" if frames.name else ""
        raise EvaluationError(f"clip '{pair_name}', frame {frames.index}{label}: {error}") from error
    return FrameResult(frames.index, frames.name, scores.psnr, scores.ssim,
                       lq_scores.psnr if lq_scores else None, lq_scores.ssim if lq_scores else None)


def _all_frames(pairs: list[ClipPair]) -> Iterator[tuple[int, ClipPair, FramePair]]:
    for clip_idx, pair in enumerate(pairs):
        for frames in frame_pairs(pair):
            yield clip_idx, pair, frames


def evaluate(gt: str | Path, pred: str | Path, lq: str | Path | None = None, channel: str = "rgb",
             crop_border: int = 0, workers: int = 1,
             on_frame: Callable[[], None] | None = None) -> EvaluationResult:
    """Pair the sources (see `sources`) and score every frame.

    Args:
        gt: ground-truth frames: folder of frames, video, or folder of clip folders/videos.
        pred: restored frames, same layout kind as `gt`, same clip names, counts and sizes.
        lq: optional degraded input (same sizes as `gt`), scored as the baseline.
        channel: "rgb" or "y" (BT.601 luma as in BasicSR). Default "rgb".
        crop_border: pixels removed from each edge before scoring. Default 0.
        workers: frames scored in parallel threads (the filtering and decoding release the
            GIL). Default 1.
        on_frame: called once per scored frame (progress bars).

    Returns:
        An EvaluationResult with per-frame, per-clip and overall values.

    Raises:
        FrameSourceError: unreadable or mismatched sources.
        EvaluationError: a frame pair that cannot be scored (e.g. too small for SSIM).
    """
    if workers < 1:
        raise EvaluationError(f"workers must be at least 1, got {workers}")
    pairs = pair_sources(gt, pred, lq)
    results: list[list[FrameResult]] = [[] for _ in pairs]

    def collect(clip_idx: int, result: FrameResult) -> None:
        results[clip_idx].append(result)
        if on_frame is not None:
            on_frame()

    if workers == 1:
        with closing(_all_frames(pairs)) as all_frames:  # closing stops any ffmpeg still running
            for clip_idx, pair, frames in all_frames:
                collect(clip_idx, _score_frame(pair.name, frames, channel, crop_border))
    else:
        def score(item):
            clip_idx, pair, frames = item
            return clip_idx, _score_frame(pair.name, frames, channel, crop_border)

        # in order, so the first failing frame is the one reported; at most 2 * workers in flight
        with closing(_all_frames(pairs)) as all_frames, closing(ordered_map(score, all_frames, workers)) as scored:
            for clip_idx, result in scored:
                collect(clip_idx, result)
    for pair, frames in zip(pairs, results):
        if not frames:  # only a video can turn out empty
            raise FrameSourceError(f"clip '{pair.name}': --gt has no frames ({pair.gt.path})")
    clips = tuple(ClipResult(pair.name, tuple(frames)) for pair, frames in zip(pairs, results))
    return EvaluationResult(clips, channel, crop_border)


# ---------------------------------------------------------------- writers

def _format_value(value: float | None, digits: int, signed: bool = False) -> str:
    if value is None:
        return ""
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def format_table(result: EvaluationResult) -> str:
    """A terminal table: one row per clip, then the overall row (mean of clip means)."""
    header = ["clip", "frames", "PSNR", "SSIM"]
    if result.has_lq:
        header += ["LQ PSNR", "LQ SSIM", "ΔPSNR", "ΔSSIM"]

    def row(name: str, num_frames: int, item) -> list[str]:
        cells = [name, str(num_frames), _format_value(item.psnr, 4), _format_value(item.ssim, 4)]
        if result.has_lq:
            cells += [_format_value(item.lq_psnr, 4), _format_value(item.lq_ssim, 4),
                      _format_value(item.psnr_gain, 4, signed=True),
                      _format_value(item.ssim_gain, 4, signed=True)]
        return cells

    rows = [row(clip.name or "(clip)", clip.num_frames, clip) for clip in result.clips]
    overall = row("overall", result.num_frames, result)
    widths = [max(len(cells[i]) for cells in [header, overall, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "  ".join(cell.ljust(width) if i == 0 else cell.rjust(width)
                         for i, (cell, width) in enumerate(zip(cells, widths)))

    rule = "-" * len(line(header))
    channel = "Y (BT.601)" if result.channel == "y" else "RGB"
    notes = (f"PSNR (dB) / SSIM on {channel}, crop border {result.crop_border}; "
             "clip = mean over its frames, overall = mean of the clip means")
    return "\n".join([notes, line(header), rule, *map(line, rows), rule, line(overall)])


def _json_safe(value):
    """Infinities become the strings "inf" / "-inf" (JSON has no infinity)."""
    if isinstance(value, float) and not math.isfinite(value):
        return "inf" if value > 0 else ("-inf" if value < 0 else "nan")
    if isinstance(value, dict):
        return {key: _json_safe(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_json_safe(item) for item in value]
    return value


def write_json(result: EvaluationResult, path: str | Path) -> None:
    """Write per-frame, per-clip and overall values as JSON (inf as the string "inf")."""
    text = json.dumps(_json_safe(result.to_dict()), indent=2, allow_nan=False)
    Path(path).write_text(text + "\n", encoding="utf-8")


CSV_COLUMNS = ["level", "clip", "frame_index", "frame_name", "num_frames", "psnr", "ssim"]
CSV_LQ_COLUMNS = ["lq_psnr", "lq_ssim", "psnr_gain", "ssim_gain"]


def write_csv(result: EvaluationResult, path: str | Path) -> None:
    """Write one CSV: a row per frame (level "frame"), per clip ("clip"), and one "overall" row.

    Floats are written at full precision (Python's shortest round-trip form; inf as "inf").
    """
    columns = CSV_COLUMNS + (CSV_LQ_COLUMNS if result.has_lq else [])

    def values(item) -> list:
        cells = [item.psnr, item.ssim]
        if result.has_lq:
            cells += [item.lq_psnr, item.lq_ssim, item.psnr_gain, item.ssim_gain]
        return cells

    with open(path, "w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(columns)
        for clip in result.clips:
            for frame in clip.frames:
                writer.writerow(["frame", clip.name, frame.index, frame.name, 1, *values(frame)])
            writer.writerow(["clip", clip.name, "", "", clip.num_frames, *values(clip)])
        writer.writerow(["overall", "", "", "", result.num_frames, *values(result)])


def write_plot(result: EvaluationResult, path: str | Path) -> None:
    """Draw per-frame PSNR curves, one per clip (dashed: the degraded input), to an image file.

    Needs matplotlib (optional). Infinite PSNRs are left out of the curves.
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from matplotlib.ticker import MaxNLocator
    except ImportError as error:
        raise EvaluationError("--plot needs matplotlib: pip install matplotlib") from error

    def finite(values: list[float]) -> np.ndarray:
        array = np.asarray(values, dtype=np.float64)
        return np.where(np.isfinite(array), array, np.nan)

    figure = Figure(figsize=(10, 5), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    for clip in result.clips:
        indices = [frame.index for frame in clip.frames]
        line, = axes.plot(indices, finite([frame.psnr for frame in clip.frames]),
                          label=f"{clip.name or 'clip'} ({_format_value(clip.psnr, 2)} dB)")
        if result.has_lq:
            axes.plot(indices, finite([frame.lq_psnr for frame in clip.frames]), linestyle="--",
                      color=line.get_color(), alpha=0.6)
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_xlabel("frame")
    axes.set_ylabel("PSNR (dB)")
    channel = "Y" if result.channel == "y" else "RGB"
    title = f"Per-frame PSNR ({channel}); overall {_format_value(result.psnr, 4)} dB"
    if result.has_lq:
        title += " (dashed: input)"
    axes.set_title(title)
    axes.grid(True, alpha=0.3)
    if len(result.clips) <= 20:
        axes.legend(fontsize="small")
    figure.tight_layout()
    figure.savefig(str(path))
