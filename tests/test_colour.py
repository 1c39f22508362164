"""The colour maths of video/colour.py and video/convert.py: exact inverses, the adjoint, and
agreement with ffmpeg's own conversion."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest
import torch

from edvr_cli.video import FrameConverter, FrameFormat, PlaneLayout
from edvr_cli.video import colour
from edvr_cli.video.rgb_frames import RgbFrameReader
from tests.clips import FFMPEG, make_clip


@pytest.mark.parametrize("matrix", sorted(colour.LUMA_WEIGHTS))
def test_matrix_round_trip_float64(matrix):
    rgb = torch.rand(3, 17, 23, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    y, cb, cr = colour.rgb_to_ycbcr(rgb, matrix)
    assert torch.allclose(colour.ycbcr_to_rgb(y, cb, cr, matrix), rgb, atol=1e-6, rtol=0)
    assert -0.5 - 1e-12 <= float(cb.min()) and float(cr.max()) <= 0.5 + 1e-12
    assert float(y.min()) >= -1e-12 and float(y.max()) <= 1 + 1e-12


@pytest.mark.parametrize("depth", [8, 10, 12, 16])
@pytest.mark.parametrize("full_range", [False, True])
@pytest.mark.parametrize("chroma", [False, True])
def test_range_round_trip_float64_and_exact_codes(depth, full_range, chroma):
    codes = torch.arange(0, 2 ** depth, dtype=torch.float64)
    values = colour.normalise(codes, depth, full_range, chroma)
    assert torch.allclose(colour.to_codes_float(values, depth, full_range, chroma), codes, atol=1e-6, rtol=0)
    assert torch.equal(colour.to_codes(values, depth, full_range, chroma), codes.to(torch.int32))


def test_limited_range_anchors():
    assert colour.normalise(torch.tensor([16.0, 235.0]), 8, False, False).tolist() == [0.0, 1.0]
    assert colour.normalise(torch.tensor([64.0, 940.0]), 10, False, False).tolist() == [0.0, 1.0]
    assert colour.normalise(torch.tensor([16.0, 128.0, 240.0]), 8, False, True).tolist() == [-0.5, 0.0, 0.5]


@pytest.mark.parametrize("sub_y, sub_x", [(2, 2), (1, 2), (1, 4), (2, 1)])
@pytest.mark.parametrize("height, width", [(12, 16), (13, 17), (1, 1), (2, 3)])
def test_chroma_adjoint_property(sub_y, sub_x, height, width):
    generator = torch.Generator().manual_seed(height * 100 + width)
    small = torch.rand(-(-height // sub_y), -(-width // sub_x), dtype=torch.float64, generator=generator)
    full = torch.rand(height, width, dtype=torch.float64, generator=generator)
    up = colour.upsample_chroma(small, height, width, sub_y, sub_x)
    assert up.shape == (height, width)
    left = float((up * full).sum())
    right = float((small * colour.chroma_adjoint(full, sub_y, sub_x)).sum())
    assert left == pytest.approx(right, abs=1e-12)


def test_downsampling_keeps_constants_and_zero_and_is_a_low_pass():
    constant = torch.full((9, 14), 0.3, dtype=torch.float64)
    assert torch.allclose(colour.downsample_chroma(constant, 2, 2), torch.full((5, 7), 0.3, dtype=torch.float64))
    assert torch.equal(colour.downsample_chroma(torch.zeros(9, 14), 2, 2), torch.zeros(5, 7))
    impulse = torch.zeros(8, 8, dtype=torch.float64)
    impulse[4, 4] = 1.0
    # centred taps 1/8, 3/8, 3/8, 1/8 per axis: luma (4, 4) sits between chroma 1.5 and 2 ... it
    # feeds chroma rows/columns 1 and 2 with 1/8 and 3/8 of 1/2 (the normalisation) each
    down = colour.downsample_chroma(impulse, 2, 2)
    assert float(down.sum()) == pytest.approx(0.25)  # one of 4 luma samples per chroma sample
    assert float(down[2, 2]) == pytest.approx(0.375 * 0.375)
    assert float(down[1, 2]) == pytest.approx(0.125 * 0.375)
    assert float(down[1, 1]) == pytest.approx(0.125 * 0.125)


def test_chroma_upsampling_matches_ffmpegs_bilinear_scaler():
    rng = np.random.default_rng(0)
    width, height = 32, 24
    chroma = rng.integers(16, 240, (height // 2, width // 2)).astype(np.uint8)
    flat = np.full((height // 2, width // 2), 128, np.uint8)
    raw = np.full((height, width), 128, np.uint8).tobytes() + chroma.tobytes() + flat.tobytes()
    out = subprocess.run([FFMPEG, "-v", "error", "-f", "rawvideo", "-pix_fmt", "yuv420p", "-s", f"{width}x{height}",
                          "-i", "-", "-vf", "scale=flags=bilinear+accurate_rnd+full_chroma_int,format=yuv444p",
                          "-f", "rawvideo", "-"], input=raw, capture_output=True, check=True).stdout
    theirs = np.frombuffer(out, np.uint8)[width * height:2 * width * height].reshape(height, width)
    ours = colour.upsample_chroma(torch.from_numpy(chroma).double(), height, width, 2, 2).numpy()
    assert np.abs(ours - theirs)[1:-1, 1:-1].max() <= 1.0  # ffmpeg rounds to integers; edges differ


@pytest.mark.parametrize("pix_fmt", ["yuv444p", "yuv420p", "yuv422p10le"])
def test_our_rgb_agrees_with_ffmpeg(tmp_path, pix_fmt):
    """Our float conversion vs ffmpeg's rgb24 (swscale, accurate_rnd, its own chroma filter):
    4:4:4 agrees to a level; subsampled chroma (bilinear, centred) differs only at the borders."""
    clip = make_clip(tmp_path / "clip.mkv", 64, 48, num_frames=2, pix_fmt=pix_fmt)
    with RgbFrameReader(clip) as reader:
        ours = np.stack(list(reader)).astype(int)
    raw = subprocess.run([FFMPEG, "-v", "error", "-i", str(clip), "-sws_flags", "bilinear+accurate_rnd+full_chroma_int",
                          "-vf", "scale=in_color_matrix=bt601", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
                         check=True, capture_output=True).stdout
    theirs = np.frombuffer(raw, np.uint8).reshape(ours.shape).astype(int)
    difference = np.abs(ours - theirs)
    if pix_fmt == "yuv444p":
        assert difference.max() <= 1
    else:
        assert difference.mean() < 2.0 and np.median(difference) <= 1


def test_zero_change_leaves_planes_bit_exact_for_every_layout():
    rng = np.random.default_rng(0)
    layouts = [PlaneLayout("yuv", 8, 2, 2), PlaneLayout("yuv", 10, 2, 2), PlaneLayout("yuv", 8, 2, 1),
               PlaneLayout("yuv", 12), PlaneLayout("rgb", 16), PlaneLayout("gray", 10)]
    for layout in layouts:
        for full_range in (False, True):
            fmt = FrameFormat(layout, 15, 9, "bt709", full_range)
            planes = tuple(rng.integers(0, 2 ** layout.depth, shape).astype(layout.dtype)
                           for shape in layout.plane_shapes(15, 9))
            converter = FrameConverter(fmt)
            rgb = converter.to_rgb(planes)
            out = converter.apply_change(planes, torch.zeros_like(rgb), 1.0)
            assert all(np.array_equal(a, b) and a.dtype == b.dtype for a, b in zip(planes, out)), layout
            random_change = torch.rand(rgb.shape) - 0.5
            assert all(np.array_equal(a, b) for a, b in zip(planes, converter.apply_change(planes, random_change, 0.0)))


def test_least_squares_chroma_change_beats_the_average_and_keeps_zero():
    generator = torch.Generator().manual_seed(5)
    height, width = 24, 31
    fine = torch.randn(height, width, dtype=torch.float64, generator=generator)  # a detailed change
    assert torch.equal(colour.fit_chroma_change(torch.zeros(height, width), height, width, 2, 2),
                       torch.zeros(12, 16))
    fitted = colour.fit_chroma_change(fine, height, width, 2, 2)
    averaged = colour.downsample_chroma(fine, 2, 2)
    error = lambda c: float(((colour.upsample_chroma(c, height, width, 2, 2) - fine) ** 2).sum())  # noqa: E731
    assert error(fitted) < 0.95 * error(averaged)
    # a change the chroma grid can hold exactly comes back much closer than by averaging
    coarse = torch.randn(12, 16, dtype=torch.float64, generator=generator)
    upsampled = colour.upsample_chroma(coarse, height, width, 2, 2)
    recovered = colour.fit_chroma_change(upsampled, height, width, 2, 2)
    averaged = colour.downsample_chroma(upsampled, 2, 2)
    assert float((recovered - coarse).norm()) < 0.5 * float((averaged - coarse).norm())
