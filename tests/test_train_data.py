"""edvr train data: the x265 / bicubic degradation cache, clip discovery and pairing, keyed sampling."""

import json
import subprocess

import numpy as np
import pytest
import torch

from edvr_cli.image_io import write_png
from edvr_cli.evaluate.metrics import psnr
from edvr_cli.train.config import resolve_config
from edvr_cli.train.data import (DataError, FolderPairClip, PatchDataset, augment_frames, find_clips, load_clips,
                                 make_loader, sample_frame_indices)
from edvr_cli.clip_layout import clip_frames
from edvr_cli.train.degrade import Degradation, bicubic_downsample, cache_key, prepare_clip
from tests.clips import make_clip


@pytest.fixture(scope="module")
def clip_path(tmp_path_factory):
    # 4:2:0 source, as most footage: the cached ground truth then equals the decoded source exactly.
    return make_clip(tmp_path_factory.mktemp("src") / "clip.mp4", 64, 48, 6,
                     codec_args=("-c:v", "libx264", "-qp", "0"), pix_fmt="yuv420p")


def test_lossless_x265_round_trip_is_exact(clip_path, tmp_path):
    """GT and input go through the same yuv420p path and decoder: only the codec differs."""
    cached = prepare_clip("clip", clip_path, Degradation("compress", x265_params="lossless=1"), tmp_path, False)
    assert cached.gt_shape == cached.lq_shape == (6, 48, 64, 3)
    assert np.array_equal(cached.gt(), cached.lq())
    assert np.array_equal(cached.gt(), np.stack(list(clip_frames(clip_path))))


def test_compress_is_cached_and_reused(clip_path, tmp_path, monkeypatch):
    cached = prepare_clip("clip", clip_path, Degradation("compress", qp=37), tmp_path, False)
    scores = [psnr(gt, lq) for gt, lq in zip(cached.gt(), cached.lq())]
    assert 20 < np.mean(scores) < 40  # QP 37 is visibly lossy, not destroyed
    meta = json.loads((cached.folder / "meta.json").read_text())
    assert meta["degradation"]["qp"] == 37 and meta["num_frames"] == 6
    assert cached.folder.name == f"clip-{cache_key(clip_path, Degradation('compress', qp=37))}"

    def no_ffmpeg(*args, **kwargs):
        raise AssertionError("ffmpeg ran again for a cached clip")

    monkeypatch.setattr(subprocess, "Popen", no_ffmpeg)
    again = prepare_clip("clip", clip_path, Degradation("compress", qp=37), tmp_path, False)
    assert again == cached
    monkeypatch.undo()
    other = prepare_clip("clip", clip_path, Degradation("compress", qp=45), tmp_path, False)
    assert other.folder != cached.folder  # another QP is another entry
    assert np.mean([psnr(g, l) for g, l in zip(other.gt(), other.lq())]) < np.mean(scores)


def test_compress3_two_pass_bitrate(clip_path, tmp_path):
    cached = prepare_clip("clip", clip_path, Degradation("compress3", bitrate_kbps=20), tmp_path, False)
    assert cached.lq_shape == (6, 48, 64, 3)
    assert 15 < np.mean([psnr(g, l) for g, l in zip(cached.gt(), cached.lq())]) < 45


def test_bicubic4_downsampling(clip_path, tmp_path):
    flat = np.full((40, 24, 3), 77, np.uint8)
    assert np.array_equal(bicubic_downsample(flat), np.full((10, 6, 3), 77, np.uint8))
    cached = prepare_clip("clip", clip_path, Degradation("bicubic4"), tmp_path, False)
    assert cached.gt_shape == (6, 48, 64, 3) and cached.lq_shape == (6, 12, 16, 3)
    expected = torch.nn.functional.interpolate(torch.from_numpy(np.array(cached.gt()[2])).permute(2, 0, 1)[None].double(),
                                               scale_factor=0.25, mode="bicubic", antialias=True)
    assert np.array_equal(cached.lq()[2], expected[0].permute(1, 2, 0).round().clamp(0, 255).byte().numpy())


def _frame_folder(folder, frames):
    folder.mkdir(parents=True)
    for idx, frame in enumerate(frames):
        write_png(folder / f"{idx:08d}.png", frame)


def test_find_clips_layouts(clip_path, tmp_path):
    assert find_clips(clip_path) == {"clip": clip_path}
    frames = [np.full((8, 8, 3), i, np.uint8) for i in range(3)]
    _frame_folder(tmp_path / "root" / "000", frames)
    _frame_folder(tmp_path / "root" / "011", frames)
    (tmp_path / "root" / "notes.txt").write_text("not a clip")
    assert list(find_clips(tmp_path / "root")) == ["000", "011"]
    assert find_clips(tmp_path / "root" / "000") == {"000": tmp_path / "root" / "000"}
    with pytest.raises(DataError, match="clip folder .*root holds no image frames"):  # as edvr eval
        find_clips(tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="holds no image frames, clip folders or video files"):
        find_clips(tmp_path / "empty")


def _paired_root(tmp_path, num_clips=2, num_frames=5, size=(24, 32)):
    """GT frames with distinct values per (clip, frame, pixel); input = GT (scale 1)."""
    rng = np.random.default_rng(0)
    for clip_idx in range(num_clips):
        frames = [rng.integers(0, 256, (*size, 3), dtype=np.uint8) for _ in range(num_frames)]
        _frame_folder(tmp_path / "gt" / f"c{clip_idx}", frames)
        _frame_folder(tmp_path / "lq" / f"c{clip_idx}", frames)
    return tmp_path / "gt", tmp_path / "lq"


def test_paired_folders_split_and_errors(tmp_path):
    gt, lq = _paired_root(tmp_path)
    config = resolve_config("tiny", {"gt": str(gt), "lq": str(lq), "val_clips": ("c1",), "patch": 16})
    clips = load_clips(config, tmp_path / "cache")
    assert [c.name for c in clips.train] == ["c0"] and [c.name for c in clips.val] == ["c1"]
    assert isinstance(clips.train[0], FolderPairClip) and clips.degradation == "paired input (--lq)"
    with pytest.raises(DataError, match="no clip named 'c9'"):
        load_clips(resolve_config("tiny", {"gt": str(gt), "lq": str(lq), "val_clips": ("c9",)}), tmp_path)
    with pytest.raises(DataError, match="frames 32x24 are smaller than --patch 28"):
        load_clips(resolve_config("tiny", {"gt": str(gt), "lq": str(lq), "patch": 28}), tmp_path)


def test_frame_windows_and_strides():
    rng = np.random.default_rng(1)
    for _ in range(50):
        indices = sample_frame_indices(rng, 20, 5, (1, 2))
        assert np.diff(indices).tolist() in ([1] * 4, [2] * 4) and 0 <= indices[0] and indices[-1] < 20
    # too short for stride 2 -> stride 1; shorter than the window -> padded like validation
    assert np.diff(sample_frame_indices(np.random.default_rng(0), 6, 5, (2,))).tolist() == [1] * 4
    assert all(0 <= i < 3 for i in sample_frame_indices(np.random.default_rng(0), 3, 5, (1,)))


def test_augment_flips_and_transposes():
    frames = np.arange(2 * 2 * 3 * 1).reshape(2, 2, 3, 1)
    assert np.array_equal(augment_frames(frames, True, False, False), frames[:, :, ::-1])
    assert np.array_equal(augment_frames(frames, False, True, False), frames[:, ::-1])
    assert augment_frames(frames, False, False, True).shape == (2, 3, 2, 1)


def test_samples_are_keyed_aligned_and_resumable(tmp_path):
    gt, lq = _paired_root(tmp_path, num_clips=2, num_frames=7)
    config = resolve_config("tiny", {"gt": str(gt), "lq": str(lq), "patch": 16, "intervals": (1, 2)})
    clips = load_clips(config, tmp_path / "cache")
    dataset = PatchDataset(clips.train, 3, 16, 1, (1, 2), True, seed=5, rank=0)
    lq_window, gt_patch = dataset[11]
    assert lq_window.shape == (3, 3, 16, 16) and gt_patch.shape == (3, 16, 16) and lq_window.dtype == torch.uint8
    assert torch.equal(lq_window[1], gt_patch)  # input = GT here: the centre frame is the target, same crop/flip
    assert torch.equal(dataset[11][0], lq_window)  # keyed: the same sample number gives the same sample
    other_rank = PatchDataset(clips.train, 3, 16, 1, (1, 2), True, seed=5, rank=1)
    assert not torch.equal(other_rank[11][0], lq_window)
    # a loader started at sample 8 yields what a loader from 0 yields as its third batch of 4
    from_start = iter(make_loader(dataset, 4, 0, 0, False))
    third = [next(from_start) for _ in range(3)][2]
    resumed = next(iter(make_loader(dataset, 4, 0, 8, False)))
    assert torch.equal(third[0], resumed[0]) and torch.equal(third[1], resumed[1])
    with_workers = next(iter(make_loader(dataset, 4, 2, 8, False)))
    assert torch.equal(with_workers[0], resumed[0])
