"""Make training pairs from ground truth once, into a cache: x265 compression or x4 bicubic.

Each clip is processed once per (source, degradation) and kept as two memory-mapped arrays,
`gt.u8` and `lq.u8` (raw uint8, (t, h, w, 3) RGB, shapes in `meta.json`), so training reads
random frames without decoding video. A second run with the same source and degradation finds
the entry and does nothing (the key hashes the source's path, size and mtime, and the settings).

Degradations:
- compress:  x265 at a fixed QP (default 37) with no B-frames, an x265 stand-in for LDV tracks
  1/2 (those used HM 16.20 low-delay P at QP 37: same codec family and QP, not bit-exact).
- compress3: x265 two-pass at a fixed bitrate (default 200 kbps), LDV track 3's command.
- bicubic4:  x4 bicubic downsampling with antialiasing (Keys a = -0.5, kernel stretched x4, as
  MATLAB's imresize that made REDS' inputs; borders and rounding differ slightly).
- none:      paired data given as videos: decoded only.

For the x265 paths both sides go through YUV 4:2:0 the same way, as LDV's raw footage is 4:2:0:
the source is first written losslessly as yuv420p (FFV1), then ground truth = that intermediate
decoded, input = its x265 encoding decoded, with the same colour tags and the same decoder. So the
pair differs by compression only (a lossless x265 encoding gives identical arrays; tested).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from edvr_cli.clip_layout import clip_frames
from edvr_cli.image_io import ImageFolderError, list_image_files, read_image
from edvr_cli.video import VideoError, ffmpeg_exe, summarize_stderr
from models.errors import EdvrError

# 2: videos decoded natively and converted to RGB by video.convert (as enhance and eval read them)
CACHE_VERSION = 2
FOLDER_FPS = 25  # frame folders have no rate; x265's rate control needs one (compress3)


class DegradeError(EdvrError, ValueError):
    """A clip that cannot be decoded, encoded or cached; the message names the clip."""


@dataclass(frozen=True)
class Degradation:
    """What turns ground truth into network input.

    Args:
        kind: "compress", "compress3", "bicubic4" or "none".
        qp: x265 quantiser for "compress".
        bitrate_kbps: x265 target bitrate for "compress3".
        x265_params: extra x265 parameters (tests use "lossless=1").
    """

    kind: str
    qp: int = 37
    bitrate_kbps: int = 200
    x265_params: str = ""

    def describe(self) -> str:
        return {"compress": f"x265 QP {self.qp}", "compress3": f"x265 {self.bitrate_kbps} kbps two-pass",
                "bicubic4": "x4 bicubic downsampling", "none": "as given"}[self.kind]

    @property
    def scale(self) -> int:
        return 4 if self.kind == "bicubic4" else 1


@dataclass(frozen=True)
class CachedClip:
    """One clip in the cache: ground truth and input frames, memory-mapped on first use."""

    name: str
    folder: Path
    num_frames: int
    gt_shape: tuple[int, int, int, int]  # (t, h, w, 3)
    lq_shape: tuple[int, int, int, int]

    def gt(self) -> np.ndarray:
        return np.memmap(self.folder / "gt.u8", dtype=np.uint8, mode="r", shape=self.gt_shape)

    def lq(self) -> np.ndarray:
        return np.memmap(self.folder / "lq.u8", dtype=np.uint8, mode="r", shape=self.lq_shape)


# --- frames in ---------------------------------------------------------------------------------

def _fingerprint(path: Path) -> dict:
    """What identifies a source's content cheaply: path, sizes and modification times."""
    files = list_image_files(path) if path.is_dir() else [path]
    digest = hashlib.sha256()
    for file in files:
        stat = file.stat()
        digest.update(f"{file.name}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return {"path": str(path.resolve()), "files": len(files), "stat": digest.hexdigest()}


def cache_key(path: Path, degradation: Degradation, lq_path: Path | None = None) -> str:
    """Hex key of (source, degradation or given input, cache format)."""
    blob = json.dumps({"source": _fingerprint(path), "degradation": asdict(degradation),
                       "input": _fingerprint(lq_path) if lq_path is not None else None,
                       "version": CACHE_VERSION}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


# --- ffmpeg ------------------------------------------------------------------------------------

def _run_ffmpeg(args: list[str], what: str, total: int | None, show_progress: bool) -> None:
    """Run ffmpeg with a frame progress bar (from `-progress`); raise DegradeError on failure."""
    command = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-v", "error", "-nostats", "-progress", "pipe:1", "-y",
               *args]
    with tempfile.TemporaryFile() as stderr_file, tqdm(total=total, desc=what, unit="frame", leave=False,
                                                       disable=None if show_progress else True) as bar:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=stderr_file, text=True)
        done = 0
        for line in process.stdout:
            if line.startswith("frame="):
                frame = int(line.split("=", 1)[1] or 0)
                bar.update(frame - done)
                done = frame
        returncode = process.wait()
        if returncode:
            stderr_file.seek(0)
            stderr = stderr_file.read().decode(errors="replace")
            raise DegradeError(f"{what}: ffmpeg failed ({summarize_stderr(stderr) or f'exit {returncode}'})")


def _pipe_frames_to_ffmpeg(frames: Iterable[np.ndarray], width: int, height: int, output_args: list[str],
                           what: str) -> None:
    """Feed RGB frames to ffmpeg's stdin (for frame folders, which ffmpeg cannot list naturally)."""
    command = [ffmpeg_exe(), "-hide_banner", "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24",
               "-s", f"{width}x{height}", "-r", str(FOLDER_FPS), "-i", "-", *output_args]
    with tempfile.TemporaryFile() as stderr_file:
        process = subprocess.Popen(command, stdin=subprocess.PIPE, stderr=stderr_file)
        try:
            for frame in frames:
                if frame.shape[:2] != (height, width):
                    raise DegradeError(f"{what}: frames change size ({frame.shape[1]}x{frame.shape[0]} "
                                       f"after {width}x{height})")
                process.stdin.write(np.ascontiguousarray(frame).tobytes())
            process.stdin.close()
        except BrokenPipeError:
            pass
        finally:
            if process.poll() is None and not process.stdin.closed:
                process.stdin.close()
        returncode = process.wait()
        if returncode:
            stderr_file.seek(0)
            stderr = stderr_file.read().decode(errors="replace")
            raise DegradeError(f"{what}: ffmpeg failed ({summarize_stderr(stderr) or f'exit {returncode}'})")


def _even_crop(width: int, height: int) -> tuple[int, int]:
    return width - width % 2, height - height % 2


def _write_lossless_yuv420(source: Path, destination: Path, what: str, show_progress: bool) -> None:
    """The source as yuv420p FFV1: what the encoder sees, and the ground truth (even size)."""
    codec = ["-map", "0:v:0", "-fps_mode", "passthrough", "-an", "-sn", "-c:v", "ffv1", "-pix_fmt", "yuv420p"]
    if source.is_dir():
        files = list_image_files(source)
        if not files:
            raise DegradeError(f"{what}: {source} holds no image frames")
        height, width = read_image(files[0]).shape[:2]
        crop_w, crop_h = _even_crop(width, height)
        frames = (frame[:crop_h, :crop_w] for frame in clip_frames(source))
        # RGB frames: convert and tag with one matrix, so every decoder reads them back alike.
        tags = ["-vf", "scale=out_color_matrix=bt709:out_range=tv", "-colorspace", "bt709",
                "-color_primaries", "bt709", "-color_trc", "bt709", "-color_range", "tv"]
        _pipe_frames_to_ffmpeg(frames, crop_w, crop_h, [*codec, *tags, str(destination)], what)
        return
    crop = ["-vf", "crop=trunc(iw/2)*2:trunc(ih/2)*2:0:0"]  # 4:2:0 needs even sizes
    _run_ffmpeg(["-i", str(source), *codec, *crop, str(destination)], what, None, show_progress)


def _encode_x265(intermediate: Path, destination: Path, degradation: Degradation, work: Path, what: str,
                 show_progress: bool) -> None:
    extra = f":{degradation.x265_params}" if degradation.x265_params else ""
    common = ["-i", str(intermediate), "-map", "0:v:0", "-fps_mode", "passthrough", "-c:v", "libx265"]
    if degradation.kind == "compress":
        params = f"qp={degradation.qp}:bframes=0:log-level=error{extra}"
        _run_ffmpeg([*common, "-x265-params", params, str(destination)], what, None, show_progress)
        return
    # compress3: LDV track 3's two-pass rate control at a fixed bitrate.
    bitrate = ["-b:v", f"{degradation.bitrate_kbps}k"]
    stats = work / "x265_2pass.log"
    for pass_idx in (1, 2):
        params = f"pass={pass_idx}:stats={stats}:log-level=error{extra}"
        output = ["-f", "null", "-"] if pass_idx == 1 else [str(destination)]
        _run_ffmpeg([*common, *bitrate, "-x265-params", params, *output], f"{what} (pass {pass_idx})", None,
                    show_progress)


# --- frames out --------------------------------------------------------------------------------

def _write_frames(frames: Iterable[np.ndarray], path: Path, what: str, show_progress: bool) -> tuple[int, ...]:
    """Append frames to a raw uint8 file; returns its (t, h, w, 3) shape."""
    num_frames, size = 0, None
    with open(path, "wb") as handle:
        for frame in tqdm(frames, desc=what, unit="frame", leave=False,
                          disable=None if show_progress else True):
            if size is None:
                size = frame.shape
            elif frame.shape != size:
                raise DegradeError(f"{what}: frame {num_frames} is {frame.shape[1]}x{frame.shape[0]}, "
                                   f"earlier frames {size[1]}x{size[0]}")
            handle.write(np.ascontiguousarray(frame, dtype=np.uint8).tobytes())
            num_frames += 1
    if size is None:
        raise DegradeError(f"{what}: no frames decoded")
    return (num_frames, *size)


def bicubic_downsample(frame: np.ndarray, factor: int = 4) -> np.ndarray:
    """(h, w, 3) uint8 -> (h / factor, w / factor, 3) uint8, antialiased bicubic (a = -0.5)."""
    x = torch.from_numpy(np.array(frame, dtype=np.uint8)).permute(2, 0, 1)[None].double()
    y = F.interpolate(x, scale_factor=1 / factor, mode="bicubic", antialias=True, align_corners=False)
    return y[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).numpy()


def _crop_multiple(frames: Iterable[np.ndarray], multiple: int) -> Iterator[np.ndarray]:
    for frame in frames:
        height, width = frame.shape[:2]
        yield frame[: height - height % multiple, : width - width % multiple]


# --- the cache ---------------------------------------------------------------------------------

def _read_entry(folder: Path, name: str) -> CachedClip | None:
    try:
        meta = json.loads((folder / "meta.json").read_text())
    except (OSError, ValueError):
        return None
    return CachedClip(name, folder, meta["num_frames"], tuple(meta["gt_shape"]), tuple(meta["lq_shape"]))


def prepare_clip(name: str, source: Path, degradation: Degradation, cache_root: Path,
                 show_progress: bool = True, lq_source: Path | None = None) -> CachedClip:
    """The cached (ground truth, input) arrays of one clip, made now if not cached yet.

    Args:
        name: clip name (for messages and the entry's folder name).
        source: ground truth, a video file or a folder of frames.
        degradation: how to make the input; kind "none" needs `lq_source`.
        cache_root: folder of cache entries (created).
        lq_source: the given input clip, for kind "none".
    """
    key = cache_key(source, degradation, lq_source)
    safe_name = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:60]
    folder = cache_root / f"{safe_name}-{key}"
    cached = _read_entry(folder, name)
    if cached is not None:
        return cached

    cache_root.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{safe_name}-", suffix=".partial", dir=cache_root))
    try:
        gt_shape, lq_shape = _write_pair(name, source, degradation, work, show_progress, lq_source)
        if gt_shape[0] != lq_shape[0]:
            raise DegradeError(f"{name}: ground truth has {gt_shape[0]} frames but the input has {lq_shape[0]}")
        meta = {"name": name, "source": str(source), "degradation": asdict(degradation),
                "num_frames": gt_shape[0], "gt_shape": gt_shape, "lq_shape": lq_shape}
        _publish_entry(work, folder, name, meta)
    except (VideoError, ImageFolderError) as error:
        shutil.rmtree(work, ignore_errors=True)
        raise DegradeError(f"{name}: {error}") from None
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return _read_entry(folder, name)


def _write_pair(name: str, source: Path, degradation: Degradation, work: Path, show_progress: bool,
                lq_source: Path | None) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Write gt.u8 and lq.u8 into `work` the way `degradation` says; returns their shapes."""
    if degradation.kind in ("compress", "compress3"):
        intermediate, encoded = work / "source_yuv420p.mkv", work / "x265.mkv"
        _write_lossless_yuv420(source, intermediate, f"{name}: lossless yuv420p", show_progress)
        _encode_x265(intermediate, encoded, degradation, work, f"{name}: {degradation.describe()}",
                     show_progress)
        gt_shape = _write_frames(clip_frames(intermediate), work / "gt.u8", f"{name}: ground truth",
                                 show_progress)
        lq_shape = _write_frames(clip_frames(encoded), work / "lq.u8", f"{name}: input", show_progress)
        intermediate.unlink()
        encoded.unlink()
    elif degradation.kind == "bicubic4":
        gt_shape = _write_frames(_crop_multiple(clip_frames(source), 4), work / "gt.u8",
                                 f"{name}: ground truth", show_progress)
        gt = np.memmap(work / "gt.u8", dtype=np.uint8, mode="r", shape=gt_shape)
        lq_shape = _write_frames((bicubic_downsample(frame) for frame in gt), work / "lq.u8",
                                 f"{name}: x4 bicubic", show_progress)
        del gt
    else:
        if lq_source is None:
            raise DegradeError(f"{name}: no input given and no degradation chosen")
        gt_shape = _write_frames(clip_frames(source), work / "gt.u8", f"{name}: ground truth", show_progress)
        lq_shape = _write_frames(clip_frames(lq_source), work / "lq.u8", f"{name}: input", show_progress)
    return gt_shape, lq_shape


def _publish_entry(work: Path, folder: Path, name: str, meta: dict) -> None:
    """Write meta.json and rename the work folder into place, so readers see whole entries only."""
    (work / "meta.json").write_text(json.dumps(meta, indent=1))
    try:
        os.replace(work, folder)  # a complete entry appears at once, or not at all
    except OSError:
        if _read_entry(folder, name) is None:  # not a concurrent writer finishing first
            raise
        shutil.rmtree(work, ignore_errors=True)
