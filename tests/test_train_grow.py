"""Growing a trained EDVR (edvr_cli.train.grow): the grown network computes exactly what the old
one does, trains from there, and growths that would change the output are refused."""

import pytest
import torch

from edvr_cli.train.grow import GrowError, grow
from models import EDVR


def _trained_looking(**overrides) -> EDVR:
    """A small EDVR with every parameter random (so that zeros in a growth are not hidden by zeros
    already there)."""
    config = dict(num_feat=8, num_frame=3, deformable_groups=2, num_extract_block=1, num_reconstruct_block=2,
                  with_tsa=False, scale=4)
    config.update(overrides)
    model = EDVR(**config)
    generator = torch.Generator().manual_seed(21)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.1)
    return model.eval()


@pytest.mark.parametrize("frames,blocks", [(5, None), (None, 4), (7, 5)])
def test_a_grown_network_computes_what_the_old_one_did_on_the_centre_frames(frames, blocks):
    old = _trained_looking()
    new = grow(old, frames, blocks).eval()
    assert new.num_frame == (frames or 3) and len(new.reconstruction) == (blocks or 2)
    window = torch.rand(2, new.num_frame, 3, 16, 20, generator=torch.Generator().manual_seed(22))
    first = (new.num_frame - 3) // 2
    with torch.no_grad():
        assert torch.equal(old(window[:, first:first + 3]), new(window))
    # and it is a network that trains: the added weights get gradients
    new.train()
    new(window).square().mean().backward()
    assert new.fusion.weight.grad[:, :first * 8].abs().sum() > 0 if first else True
    if blocks:
        assert new.reconstruction[blocks - 1].conv2.weight.grad.abs().sum() > 0


def test_growths_that_would_change_the_output_are_refused():
    with pytest.raises(GrowError, match="no-TSA"):
        grow(_trained_looking(num_frame=5, with_tsa=True), num_frame=7)
    with pytest.raises(GrowError, match="non-local attention"):
        grow(_trained_looking(nonlocal_attn=True), num_frame=5)
    with pytest.raises(GrowError, match="two at a time"):
        grow(_trained_looking(), num_frame=4)
    with pytest.raises(GrowError, match="only grow"):
        grow(_trained_looking(), num_reconstruct_block=1)
    with pytest.raises(GrowError, match="channel attention"):
        grow(_trained_looking(car=True), num_reconstruct_block=3)
