"""ModelRunner's per-frame feature reuse gives the plain forward's output: a frame's features are
computed once and taken from the cache for the other windows it is in, also with tiles, with the
self-ensemble, with batches, and at the clip ends where padding repeats frames.

The per-frame layers then run on another number of frames at a time than in the plain forward,
and oneDNN may pick a different kernel for another batch size, so features can differ in the
last float bit (1e-7 here); a restored value can then round to the neighbouring 8-bit code."""

import imageio_ffmpeg
import numpy as np
import pytest
import torch

from edvr_cli.enhance.frame_cache import FrameFeatureCache
from edvr_cli.enhance.inference import ModelRunner
from edvr_cli.windows import PADDING_MODES, window_indices
from models import EDVR, load_model

CITY_CLIP = "tests/data/city_qp37.mkv"


def _city_frames(num_frames, crop):
    """The first `num_frames` frames of the bundled QP 37 clip, cropped: (t, h, w, 3) uint8."""
    reader = imageio_ffmpeg.read_frames(CITY_CLIP, pix_fmt="rgb24")
    width, height = next(reader)["size"]
    frames = []
    for raw in reader:
        frames.append(np.frombuffer(raw, np.uint8).reshape(height, width, 3)[:crop[0], :crop[1]])
        if len(frames) == num_frames:
            break
    reader.close()
    return np.stack(frames)


def _tsa_x4_edvr():
    """A tiny random EDVR with TSA and x4 upsampling whose DCNs move their samples (an untrained
    pack predicts zero offsets)."""
    torch.manual_seed(0)
    model = EDVR(num_feat=8, num_frame=5, deformable_groups=2, num_extract_block=1, num_reconstruct_block=1,
                 num_hr_feat=8)
    with torch.no_grad():
        for module in model.modules():
            if hasattr(module, "conv_offset"):
                module.conv_offset.weight.normal_(0, 0.05)
                module.conv_offset.bias.normal_(0, 0.5)
    return model.eval()


def _restore_clip(runner, frames, padding, batch=1):
    """Every frame's window (fresh arrays, as the enhance loop stacks them) through `runner`:
    (t, h * s, w * s, 3) uint8."""
    num_frames = len(frames)
    windows = [frames[window_indices(idx, num_frames, runner.num_frame, padding)] for idx in range(num_frames)]
    outputs = [runner(np.stack(windows[start:start + batch])) for start in range(0, num_frames, batch)]
    return np.concatenate(outputs)


@pytest.mark.parametrize("padding", PADDING_MODES)
@pytest.mark.parametrize("tile", [0, 24])
def test_builtin_qe_reusing_features_equals_the_plain_forward(padding, tile):
    model = load_model("models/weights/builtin-qe.pth")
    frames = _city_frames(6, (40, 56))
    plain = ModelRunner(model, tile=tile, tile_overlap=8, reuse_features=False)
    reusing = ModelRunner(model, tile=tile, tile_overlap=8)
    got, expected = _restore_clip(reusing, frames, padding), _restore_clip(plain, frames, padding)
    assert np.abs(got.astype(int) - expected.astype(int)).max() <= 1
    num_tiles = 1 if tile == 0 else 6  # 40x56 in 24 px tiles: 2 rows x 3 columns
    # each distinct frame once per tile; every other use of a frame came from the cache
    assert reusing.feature_cache.num_computed == len(frames) * num_tiles
    assert reusing.feature_cache.num_reused == len(frames) * num_tiles * (model.num_frame - 1)


@pytest.mark.parametrize("tile,batch,ensemble", [(0, 1, False), (20, 1, False), (0, 3, False), (0, 1, True)])
def test_tsa_x4_edvr_reusing_features_matches_the_plain_forward(tile, batch, ensemble):
    model = _tsa_x4_edvr()
    frames = _city_frames(7, (24, 32))
    plain = ModelRunner(model, tile=tile, tile_overlap=8, ensemble=ensemble, reuse_features=False)
    reusing = ModelRunner(model, tile=tile, tile_overlap=8, ensemble=ensemble)
    expected = _restore_clip(plain, frames, "reflection_circle", batch)
    got = _restore_clip(reusing, frames, "reflection_circle", batch)
    assert got.shape == (7, 96, 128, 3)
    assert np.abs(got.astype(int) - expected.astype(int)).max() <= 1
    assert reusing.feature_cache.num_reused > 0


def test_float_outputs_of_the_two_paths_agree_to_float_rounding():
    model = _tsa_x4_edvr()
    clip = torch.from_numpy(_city_frames(5, (20, 28))).permute(0, 3, 1, 2).float() / 255
    plain = ModelRunner(model, reuse_features=False)
    reusing = ModelRunner(model)
    for idx in range(len(clip)):
        window = clip[window_indices(idx, len(clip), 5, "replicate")][None]
        assert (reusing.restore(window.clone()) - plain.restore(window)).abs().max().item() <= 1e-5


def test_frames_are_recognised_by_value_and_only_the_latest_are_kept():
    cache = FrameFeatureCache(num_frames_kept=2)
    a, b, c = (torch.full((3, 4, 4), value) for value in (0.1, 0.2, 0.3))
    windows = torch.stack([torch.stack([a, b, a]), torch.stack([b, a, c])])
    assert cache.frame_ids(windows) == [[0, 1, 0], [1, 0, 2]]
    buffer = a.clone()
    assert cache.frame_ids(buffer[None, None]) == [[0]]  # same values, another tensor
    buffer.copy_(c)  # a caller that reuses its buffer: the cache compared copies, not the buffer
    assert cache.frame_ids(buffer[None, None]) == [[2]]
    computed = []

    def compute(batch):
        computed.append(len(batch))
        return [batch * 2]

    cache.pyramids([[0, 2]], "context", torch.stack([a, c])[None], compute)
    cache.pyramids([[2, 0]], "context", torch.stack([c, a])[None], compute)
    assert computed == [2]  # the second call found both frames
    cache.release()  # keeps the 2 frames used last (c, a): b is forgotten
    assert cache.frame_ids(torch.stack([b])[None]) == [[3]]


def test_a_network_whose_centre_is_not_the_middle_frame_gets_the_same_output_reusing_features():
    # The network adds its centre frame to what it computes; the runner must take the centre
    # the network names, not the middle of the window.
    torch.manual_seed(1)
    model = EDVR(num_feat=8, num_frame=5, deformable_groups=2, num_extract_block=1, num_reconstruct_block=1,
                 center_frame_idx=1, with_tsa=False, hr_in=True).eval()
    clip = torch.from_numpy(_city_frames(5, (32, 48))).permute(0, 3, 1, 2).float() / 255
    window = clip[None]
    plain = ModelRunner(model, reuse_features=False).restore(window)
    reusing = ModelRunner(model).restore(window.clone())
    assert (reusing - plain).abs().max().item() <= 1e-5
    # and the plain forward's output really follows frame 1, not frame 2
    assert (plain - window[:, 1]).abs().mean() < (plain - window[:, 2]).abs().mean()
