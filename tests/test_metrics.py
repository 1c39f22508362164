"""PSNR / SSIM / Y conversion against closed forms, skimage and BasicSR's formula."""

import math

import numpy as np
import pytest
from skimage.metrics import structural_similarity

from edvr_cli.evaluate.metrics import MetricError, frame_metrics, psnr, ssim, to_y

Y_WEIGHTS = np.array([65.481, 128.553, 24.966])


def textured_pair(height, width, seed=0, noise=25):
    """A smooth-ish image and a noisy copy, both (h, w, 3) uint8."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    base = np.stack([(xx * 7 + yy * 3) % 256, (yy * 5) % 256, 128 + 100 * np.sin(xx / 3.0)], axis=2)
    base = np.clip(base + rng.integers(-10, 11, base.shape), 0, 255).astype(np.uint8)
    noisy = np.clip(base.astype(int) + rng.integers(-noise, noise + 1, base.shape), 0, 255)
    return base, noisy.astype(np.uint8)


def skimage_ssim(a, b):
    return structural_similarity(a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                 data_range=255)


def basicsr_y_float64(img):
    """BasicSR's to_y_channel steps, in float64: scale to [0, 1], Y = [0,1]-RGB . weights + 16
    (on the [0, 255] scale), back to [0, 1] (/255), then * 255."""
    scaled = img.astype(np.float64) / 255.0
    y = np.dot(scaled, Y_WEIGHTS) + 16.0
    return (y / 255.0) * 255.0


def basicsr_y_float32(img):
    """The same with BasicSR's float32 intermediates."""
    scaled = img.astype(np.float32) / np.float32(255.0)
    y = np.dot(scaled, Y_WEIGHTS) + 16.0
    return (y / 255.0).astype(np.float32) * np.float32(255.0)


# ---------------------------------------------------------------- PSNR

@pytest.mark.parametrize("num_changed,delta", [(1, 1), (7, 3), (500, 20), (1440, 1)])
def test_psnr_equals_closed_form_for_a_known_mse(num_changed, delta):
    gt = np.full((16, 30, 3), 100, np.uint8)  # 1440 values
    pred = gt.copy().reshape(-1)
    pred[:num_changed] += delta
    pred = pred.reshape(gt.shape)
    mse = num_changed * delta**2 / gt.size
    assert psnr(gt, pred) == 10 * math.log10(255.0**2 / mse)
    assert psnr(pred, gt) == psnr(gt, pred)


def test_psnr_of_unit_mse_is_48_13_db():
    gt = np.full((12, 12, 3), 50, np.uint8)
    assert psnr(gt, gt + 1) == pytest.approx(48.130803608679102, abs=1e-12)


def test_identical_images_give_inf_psnr_and_ssim_one():
    gt, _ = textured_pair(20, 24)
    assert psnr(gt, gt) == math.inf
    assert psnr(gt, gt, channel="y") == math.inf
    scores = frame_metrics(gt, gt.copy())
    assert scores.psnr == math.inf
    assert scores.ssim == 1.0


def test_float_input_on_the_8bit_scale_scores_like_uint8():
    gt, pred = textured_pair(24, 28)
    assert psnr(gt.astype(np.float32), pred.astype(np.float64)) == psnr(gt, pred)
    assert ssim(gt.astype(np.float32), pred.astype(np.float32)) == pytest.approx(ssim(gt, pred), abs=1e-15)


def test_crop_border_ignores_the_border():
    gt, _ = textured_pair(20, 24)
    pred = gt.copy()
    pred[:2] = 0  # damage only the top two rows
    pred[-1, 5] = 255 - pred[-1, 5]  # and one pixel in the bottom row
    assert math.isfinite(psnr(gt, pred, crop_border=1))
    assert psnr(gt, pred, crop_border=2) == math.inf
    changed = pred.copy()
    changed[10, 10] = 255 - changed[10, 10]
    cropped = (gt[3:-3, 3:-3], changed[3:-3, 3:-3])
    assert psnr(gt, changed, crop_border=3) == psnr(*cropped)
    assert ssim(gt, changed, crop_border=3) == ssim(*cropped)


def test_y_channel_psnr_is_psnr_of_the_luma_planes():
    gt, pred = textured_pair(20, 24, seed=3)
    assert psnr(gt, pred, channel="y") == psnr(to_y(gt), to_y(pred))
    # A grey offset d in R, G and B moves Y by exactly d * 219 / 255.
    flat = np.full((16, 16, 3), 80, np.uint8)
    expected = 10 * math.log10(255.0**2 / (5 * 219 / 255) ** 2)
    assert psnr(flat, flat + 5, channel="y") == pytest.approx(expected, abs=1e-10)


# ---------------------------------------------------------------- Y conversion

def test_to_y_matches_basicsr_formula():
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, (33, 17, 3), dtype=np.uint8)
    y = to_y(img)
    assert y.shape == (33, 17) and y.dtype == np.float64
    np.testing.assert_allclose(y, basicsr_y_float64(img), rtol=0, atol=1e-6)
    # BasicSR's own float32 path differs by float32 rounding only (documented bound 3e-5).
    np.testing.assert_allclose(y, basicsr_y_float32(img), rtol=0, atol=3e-5)
    np.testing.assert_allclose(to_y(img.astype(np.float64)), y, rtol=0, atol=1e-12)


def test_to_y_range_is_16_to_235_and_not_rounded():
    assert to_y(np.zeros((1, 1, 3), np.uint8))[0, 0] == pytest.approx(16.0, abs=1e-12)
    assert to_y(np.full((1, 1, 3), 255, np.uint8))[0, 0] == pytest.approx(235.0, abs=1e-12)
    red = to_y(np.array([[[1, 0, 0]]], np.uint8))[0, 0]
    assert red == pytest.approx(16 + 65.481 / 255, abs=1e-12)


# ---------------------------------------------------------------- SSIM

@pytest.mark.parametrize("height,width,seed", [(11, 11, 0), (24, 31, 1), (48, 40, 2)])
def test_ssim_matches_skimage_per_channel(height, width, seed):
    gt, pred = textured_pair(height, width, seed=seed)
    per_channel = []
    for channel_idx in range(3):
        expected = skimage_ssim(gt[:, :, channel_idx], pred[:, :, channel_idx])
        ours = ssim(gt[:, :, channel_idx], pred[:, :, channel_idx])
        assert ours == pytest.approx(expected, abs=1e-6)
        per_channel.append(expected)
    assert ssim(gt, pred) == pytest.approx(np.mean(per_channel), abs=1e-6)
    assert frame_metrics(gt, pred).ssim == ssim(gt, pred)


def test_ssim_on_y_and_with_crop_matches_skimage():
    gt, pred = textured_pair(40, 36, seed=5, noise=40)
    assert ssim(gt, pred, channel="y") == pytest.approx(skimage_ssim(to_y(gt), to_y(pred)), abs=1e-6)
    expected = np.mean([skimage_ssim(gt[4:-4, 4:-4, c], pred[4:-4, 4:-4, c]) for c in range(3)])
    assert ssim(gt, pred, crop_border=4) == pytest.approx(expected, abs=1e-6)


def test_ssim_uses_the_valid_region_only():
    # A change in the corner pixel is seen by windows centred within 5 pixels of it; it moves
    # SSIM, and no border padding value matters: flipping the padding mode cannot be observed,
    # so check against an explicit valid-region computation with a 2-D window.
    gt, pred = textured_pair(23, 25, seed=7)
    taps = np.exp(-((np.arange(11) - 5) ** 2) / (2 * 1.5**2))
    window = np.outer(taps, taps) / taps.sum() ** 2
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    values = []
    for c in range(3):
        x, y = gt[:, :, c].astype(np.float64), pred[:, :, c].astype(np.float64)
        patches = lambda a: np.lib.stride_tricks.sliding_window_view(a, (11, 11))  # noqa: E731
        weighted = lambda a: np.einsum("ijkl,kl->ij", patches(a), window)  # noqa: E731
        mu_x, mu_y = weighted(x), weighted(y)
        var_x, var_y = weighted(x * x) - mu_x**2, weighted(y * y) - mu_y**2
        cov = weighted(x * y) - mu_x * mu_y
        ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
        assert ssim_map.shape == (13, 15)
        values.append(ssim_map.mean())
    assert ssim(gt, pred) == pytest.approx(np.mean(values), abs=1e-12)


# ---------------------------------------------------------------- input errors

def test_bad_inputs_raise_metric_errors():
    gt, pred = textured_pair(20, 24)
    with pytest.raises(MetricError, match="shapes differ"):
        psnr(gt, pred[:10])
    with pytest.raises(MetricError, match="channel"):
        psnr(gt, pred, channel="ycbcr")
    with pytest.raises(MetricError, match="crop_border"):
        psnr(gt, pred, crop_border=-1)
    with pytest.raises(MetricError, match="leaves nothing"):
        psnr(gt, pred, crop_border=10)
    with pytest.raises(MetricError, match="at least 11x11"):
        ssim(gt, pred, crop_border=5)
    with pytest.raises(MetricError, match="RGB"):
        psnr(gt[:, :, 0], pred[:, :, 0], channel="y")
    with pytest.raises(MetricError, match="uint8 or float"):
        psnr(gt.astype(np.int32), pred.astype(np.int32))
    assert issubclass(MetricError, ValueError)
