import numpy as np
import pytest
import torch
from torch import nn

from edvr_cli.enhance.tiling import run_tiled, tile_grid
from models import EDVR


class LocalConvNet(nn.Module):
    """Three 3x3 convs over the stacked window (receptive radius 3 input pixels), then x`scale`
    by pixel shuffle. Shapes: (n, t, c, h, w) -> (n, c, h*scale, w*scale)."""

    def __init__(self, num_frame=3, scale=1, channels=3):
        super().__init__()
        self.scale, self.num_frame = scale, num_frame
        self.body = nn.Sequential(
            nn.Conv2d(num_frame * channels, 8, 3, padding=1), nn.LeakyReLU(0.1),
            nn.Conv2d(8, 8, 3, padding=1), nn.LeakyReLU(0.1),
            nn.Conv2d(8, channels * scale * scale, 3, padding=1), nn.PixelShuffle(scale))

    def forward(self, x):
        n, t, c, h, w = x.shape
        return self.body(x.reshape(n, t * c, h, w))


@pytest.mark.parametrize("height,width,tile,overlap,align", [
    (48, 64, 16, 4, 1), (143, 175, 40, 16, 16), (143, 175, 64, 0, 4), (7, 5, 2, 3, 4), (30, 30, 29, 8, 2),
])
def test_cores_partition_the_frame_and_margins_cover_the_overlap(height, width, tile, overlap, align):
    tiles = tile_grid(height, width, tile, overlap, align)
    coverage = np.zeros((height, width), int)
    for t in tiles:
        cy0, cy1, cx0, cx1 = t.core
        py0, py1, px0, px1 = t.padded
        coverage[cy0:cy1, cx0:cx1] += 1
        assert 0 < cy1 - cy0 <= tile and 0 < cx1 - cx0 <= tile
        assert py0 % align == 0 and px0 % align == 0
        assert py0 <= max(0, cy0 - overlap) and px0 <= max(0, cx0 - overlap)
        assert py1 == min(height, cy1 + overlap) and px1 == min(width, cx1 + overlap)
    assert (coverage == 1).all()


def test_even_split_leaves_no_sliver():
    # 100 px in tiles of at most 48: three cores of 33/34, not 48 + 48 + 4
    cores = sorted({(t.core[2], t.core[3]) for t in tile_grid(10, 100, 48, 0)})
    assert cores == [(0, 33), (33, 67), (67, 100)]


@pytest.mark.parametrize("tile", [0, 64, 500])
def test_no_tiling_is_one_tile_the_whole_frame(tile):
    assert [(t.core, t.padded) for t in tile_grid(48, 64, tile, 16, 16)] == [((0, 48, 0, 64), (0, 48, 0, 64))]


def test_bad_arguments_raise_value_error():
    with pytest.raises(ValueError):
        tile_grid(48, 64, -1, 0)
    with pytest.raises(ValueError):
        tile_grid(48, 64, 16, -2)
    with pytest.raises(ValueError):
        tile_grid(0, 64, 16, 2)


@pytest.mark.parametrize("scale", [1, 2])
def test_tiles_equal_whole_frame_when_margin_covers_receptive_field(scale):
    torch.manual_seed(0)
    model = LocalConvNet(scale=scale).double().eval()
    frames = torch.rand(2, 3, 3, 37, 45, dtype=torch.float64)
    with torch.no_grad():
        whole = model(frames)
        tiled = run_tiled(model, frames, scale, tile_size=10, overlap=3)
        too_thin = run_tiled(model, frames, scale, tile_size=10, overlap=2)
    assert tiled.shape == (2, 3, 37 * scale, 45 * scale)
    assert (tiled - whole).abs().max().item() < 1e-12
    # The margin is what makes it exact: one pixel too few shows at the seams.
    assert (too_thin - whole).abs().max().item() > 1e-4


def test_tiny_edvr_tiled_matches_untiled():
    # A random tiny x1 EDVR (no hr_in) reaches about 27 input pixels; a 32 px margin covers it.
    torch.manual_seed(1)
    model = EDVR(num_feat=8, deformable_groups=1, num_extract_block=1, num_reconstruct_block=1,
                 hr_in=False, scale=1, num_frame=3, num_hr_feat=8).eval()
    frames = torch.rand(1, 3, 3, 90, 130)
    with torch.no_grad():
        whole = model(frames)
        tiled = run_tiled(model, frames, 1, tile_size=40, overlap=32, align=model.size_multiple)
        unaligned = run_tiled(model, frames, 1, tile_size=40, overlap=32, align=1)
    assert len(tile_grid(90, 130, 40, 32, 4)) == 12
    assert (tiled - whole).abs().max().item() <= 1e-5
    # Margins off the network's stride grid sample other pixels in the strided convs.
    assert (unaligned - whole).abs().max().item() > 1e-4


def test_wrong_output_shape_is_reported():
    with pytest.raises(ValueError, match="expected"):
        run_tiled(lambda x: x[:, 0, :, :-1], torch.rand(1, 3, 3, 20, 20), 1, tile_size=8, overlap=2)
