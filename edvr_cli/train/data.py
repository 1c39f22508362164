"""Training data: clips found on disk, random patches drawn from them, and validation clips.

A clip pairs ground-truth frames with input frames of the same count, the input `scale` times
smaller. Three kinds:
- cached: made once by `degrade.prepare_clip` (any --degrade, or paired videos), memory-mapped;
- paired folders (--lq and --gt of frame folders, REDS/LDV layout): images read on demand;
- packed (--gt of a training pack, `packed.py`): both sides decoded into memory.

Sampling is keyed, not sequential: sample number k of rank r draws everything (clip, frames,
stride, crop, flips) from `np.random.default_rng((seed, r, k))`. So a batch depends only on its
position in the run -- not on worker count or timing -- and resuming at sample k continues the
exact sequence (the checkpoint stores k).

Frames are (h, w, 3) uint8 RGB arrays; a sample is (lq (t, 3, h, w), gt (3, H, W)) uint8 tensors,
converted to float on the device (a quarter of the bytes through the DataLoader).
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from edvr_cli import clip_layout
from edvr_cli.clip_layout import ClipLayoutError
from edvr_cli.image_io import ImageFolderError, list_image_files, read_image
from edvr_cli.train.clips import Clips, DataError
from edvr_cli.train.config import ConfigError, TrainConfig
from edvr_cli.train.degrade import CachedClip, Degradation, DegradeError, prepare_clip
from edvr_cli.windows import DEFAULT_PADDING, window_indices

# --- finding clips -----------------------------------------------------------------------------

def find_clips(root: str | Path, option: str = "--gt") -> dict[str, Path]:
    """Clip name -> path (a video file or a folder of frames), laid out as `clip_layout` says
    (the layout `edvr eval` reads); a single image is refused: one frame is not a clip to train on.
    """
    try:
        layout = clip_layout.find_clips(root, option)
    except ClipLayoutError as error:
        raise DataError(str(error)) from None
    if not layout.is_collection and clip_layout.is_image_file(layout.path):
        raise DataError(f"{option}: {layout.path} is one image; give a clip folder or a video")
    return layout.clips


# --- clips -------------------------------------------------------------------------------------

class ArrayClip:
    """A cached clip; its arrays are memory-mapped lazily (once per worker process)."""

    def __init__(self, cached: CachedClip):
        self.name = cached.name
        self.num_frames = cached.num_frames
        self.gt_size = cached.gt_shape[1:3]  # (h, w)
        self.lq_size = cached.lq_shape[1:3]
        self._cached = cached
        self._arrays = None

    def _open(self):
        if self._arrays is None:
            self._arrays = (self._cached.gt(), self._cached.lq())
        return self._arrays

    def gt_frame(self, idx: int) -> np.ndarray:
        return self._open()[0][idx]

    def lq_frame(self, idx: int) -> np.ndarray:
        return self._open()[1][idx]

    def __getstate__(self):  # memmaps are reopened in each worker, not pickled
        return {**self.__dict__, "_arrays": None}


class FolderPairClip:
    """A clip given as two folders of frames (REDS/LDV layout), read on demand."""

    def __init__(self, name: str, gt_folder: Path, lq_folder: Path):
        self.name = name
        self.gt_files = list_image_files(gt_folder)
        self.lq_files = list_image_files(lq_folder)
        if len(self.gt_files) != len(self.lq_files):
            raise DataError(f"clip {name!r}: --gt has {len(self.gt_files)} frames, --lq has {len(self.lq_files)}")
        self.num_frames = len(self.gt_files)
        self.gt_size = read_image(self.gt_files[0]).shape[:2]
        self.lq_size = read_image(self.lq_files[0]).shape[:2]

    def gt_frame(self, idx: int) -> np.ndarray:
        return read_image(self.gt_files[idx])

    def lq_frame(self, idx: int) -> np.ndarray:
        return read_image(self.lq_files[idx])


def load_clips(config: TrainConfig, cache_root: Path, show_progress: bool = True) -> Clips:
    """Find, pair or degrade (once, cached) every clip, and split off the validation clips."""
    if not config.gt:
        raise ConfigError("give the ground truth with --gt (clip folders, videos, or a folder of them)")
    from edvr_cli.train.packed import is_pack, load_pack_clips
    if is_pack(config.gt):  # a training pack: pairs made elsewhere, decoded into memory
        return load_pack_clips(config, show_progress)
    if config.lq and config.degrade:
        raise ConfigError("give either --lq (paired data) or --degrade (input made from --gt), not both")
    gt_clips = find_clips(config.gt, "--gt")
    clips = []
    try:
        if config.lq:
            lq_clips = find_clips(config.lq, "--lq")
            if len(gt_clips) == 1 and len(lq_clips) == 1:
                lq_clips = {next(iter(gt_clips)): next(iter(lq_clips.values()))}
            missing = sorted(set(gt_clips) ^ set(lq_clips))
            if missing:
                raise DataError(f"clip {missing[0]!r} is in only one of --gt and --lq")
            description = "paired input (--lq)"
            for name, gt_path in gt_clips.items():
                lq_path = lq_clips[name]
                if gt_path.is_dir() and lq_path.is_dir():
                    clips.append(FolderPairClip(name, gt_path, lq_path))
                else:
                    cached = prepare_clip(name, gt_path, Degradation("none"), cache_root, show_progress, lq_path)
                    clips.append(ArrayClip(cached))
        else:
            if not config.degrade:
                raise ConfigError("no input: give --lq (paired data) or --degrade compress|compress3|bicubic4")
            degradation = Degradation(config.degrade, qp=config.qp, bitrate_kbps=config.bitrate_kbps)
            description = degradation.describe()
            for name, gt_path in gt_clips.items():
                clips.append(ArrayClip(prepare_clip(name, gt_path, degradation, cache_root, show_progress)))
    except ImageFolderError as error:
        raise DataError(str(error)) from None

    for clip in clips:
        gt_h, gt_w = clip.gt_size
        lq_h, lq_w = clip.lq_size
        if (lq_h * config.scale, lq_w * config.scale) != (gt_h, gt_w):
            raise DataError(f"clip {clip.name!r}: input {lq_w}x{lq_h} x {config.scale} is not the ground "
                            f"truth's {gt_w}x{gt_h}")
    unknown = [name for name in config.val_clips if name not in gt_clips]
    if unknown:
        raise DataError(f"--val-clips: no clip named {unknown[0]!r}; clips: {', '.join(gt_clips)}")
    train = [clip for clip in clips if clip.name not in config.val_clips]
    val = [clip for clip in clips if clip.name in config.val_clips]
    if not train:
        raise DataError("every clip is a validation clip: nothing left to train on")
    for clip in train:
        gt_h, gt_w = clip.gt_size
        if gt_h < config.patch or gt_w < config.patch:
            raise DataError(f"clip {clip.name!r}: frames {gt_w}x{gt_h} are smaller than --patch {config.patch}")
    return Clips(train, val, description)


# --- random patches ----------------------------------------------------------------------------

def sample_frame_indices(rng: np.random.Generator, num_frames: int, window: int,
                         intervals: tuple[int, ...]) -> list[int]:
    """A window of `window` frames at a random stride from `intervals`, inside the clip.

    Clips too short for the stride use stride 1; clips shorter than the window pad its ends as
    validation does (reflection_circle).
    """
    interval = int(intervals[rng.integers(len(intervals))])
    radius = window // 2
    if num_frames <= 2 * radius * interval:
        interval = 1
    if num_frames > 2 * radius * interval:
        center = int(rng.integers(radius * interval, num_frames - radius * interval))
        return [center + k * interval for k in range(-radius, radius + 1)]
    return window_indices(int(rng.integers(num_frames)), num_frames, window, DEFAULT_PADDING)


class PatchDataset(Dataset):
    """Sample number k -> one random (input window, ground-truth patch) pair.

    Args:
        clips: training clips (ArrayClip / FolderPairClip).
        num_frame: frames per window.
        patch: ground-truth patch side; the input patch is patch // scale.
        scale: network scale.
        intervals: temporal strides to draw from.
        augment: random flips and 90-degree rotations (BasicSR's `augment`).
        seed, rank: key of the sample generator (each rank draws its own samples).
    """

    def __init__(self, clips: list, num_frame: int, patch: int, scale: int, intervals: tuple[int, ...],
                 augment: bool, seed: int, rank: int = 0):
        self.clips = clips
        self.num_frame, self.patch, self.scale = num_frame, patch, scale
        self.intervals, self.augment = tuple(intervals), augment
        self.seed, self.rank = seed, rank
        counts = np.array([clip.num_frames for clip in clips], dtype=np.float64)
        self.clip_weights = counts / counts.sum()  # every frame equally likely

    def __getitem__(self, sample_idx: int) -> tuple[torch.Tensor, torch.Tensor]:
        rng = np.random.default_rng((self.seed, self.rank, int(sample_idx)))
        clip = self.clips[int(rng.choice(len(self.clips), p=self.clip_weights))]
        frame_indices = sample_frame_indices(rng, clip.num_frames, self.num_frame, self.intervals)
        center_idx = frame_indices[self.num_frame // 2]

        lq_patch = self.patch // self.scale
        lq_h, lq_w = clip.lq_size
        top, left = int(rng.integers(lq_h - lq_patch + 1)), int(rng.integers(lq_w - lq_patch + 1))
        lq = np.stack([clip.lq_frame(i)[top:top + lq_patch, left:left + lq_patch] for i in frame_indices])
        gt_top, gt_left = top * self.scale, left * self.scale
        gt = clip.gt_frame(center_idx)[gt_top:gt_top + self.patch, gt_left:gt_left + self.patch][None]
        if self.augment:  # the same flips/rotation for every frame and the target
            hflip, vflip, rot90 = rng.random(3) < 0.5
            lq, gt = (augment_frames(x, hflip, vflip, rot90) for x in (lq, gt))
        # np.array copies: memory-mapped frames are read-only, and a copy frees the mapping.
        lq = torch.from_numpy(np.array(lq)).permute(0, 3, 1, 2)  # (t, 3, h, w) uint8
        gt = torch.from_numpy(np.array(gt[0])).permute(2, 0, 1)  # (3, H, W) uint8
        return lq, gt


def augment_frames(frames: np.ndarray, hflip: bool, vflip: bool, rot90: bool) -> np.ndarray:
    """(t, h, w, c) frames flipped left-right, up-down, and transposed (h <-> w), as BasicSR does."""
    if hflip:
        frames = frames[:, :, ::-1]
    if vflip:
        frames = frames[:, ::-1]
    if rot90:
        frames = frames.transpose(0, 2, 1, 3)
    return frames


class CountingSampler(Sampler):
    """Sample numbers start, start + 1, ... forever (the run, not an epoch, decides the end)."""

    def __init__(self, start: int = 0):
        self.start = start

    def __iter__(self) -> Iterator[int]:
        idx = self.start
        while True:
            yield idx
            idx += 1


def _ignore_stop_signals(worker_id: int) -> None:
    # Ctrl-C and SIGTERM reach the whole process group; the main process finishes the step and
    # saves a checkpoint (loop.StopRequest), which needs its workers alive until it shuts them down.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def make_loader(dataset: PatchDataset, batch: int, num_workers: int, start_sample: int,
                pin_memory: bool) -> DataLoader:
    """Batches of `batch` samples from sample number `start_sample` on."""
    return DataLoader(dataset, batch_size=batch, sampler=CountingSampler(start_sample), num_workers=num_workers,
                      pin_memory=pin_memory, drop_last=True, persistent_workers=False,
                      prefetch_factor=2 if num_workers else None,
                      worker_init_fn=_ignore_stop_signals if num_workers else None)


__all__ = ["DataError", "DegradeError", "find_clips", "load_clips", "PatchDataset", "make_loader",
           "sample_frame_indices", "augment_frames", "ArrayClip", "FolderPairClip", "Clips"]
