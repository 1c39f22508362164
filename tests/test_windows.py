import pytest

from edvr_cli.windows import PADDING_MODES, max_reach, window_indices


@pytest.mark.parametrize("padding,start,end", [
    # 10 frames, window 5: windows of the first and the last frame (BasicSR's conventions)
    ("replicate", [0, 0, 0, 1, 2], [7, 8, 9, 9, 9]),
    ("reflection", [2, 1, 0, 1, 2], [7, 8, 9, 8, 7]),
    ("reflection_circle", [4, 3, 0, 1, 2], [7, 8, 9, 6, 5]),
    ("circle", [3, 4, 0, 1, 2], [7, 8, 9, 5, 6]),
])
def test_end_windows(padding, start, end):
    assert window_indices(0, 10, 5, padding) == start
    assert window_indices(9, 10, 5, padding) == end
    assert window_indices(4, 10, 5, padding) == [2, 3, 4, 5, 6]


@pytest.mark.parametrize("padding", PADDING_MODES)
@pytest.mark.parametrize("num_frames", [1, 2, 3, 4, 12])
@pytest.mark.parametrize("window", [3, 5, 7, 9])
def test_every_window_is_valid_and_centred(padding, num_frames, window):
    for frame_idx in range(num_frames):
        indices = window_indices(frame_idx, num_frames, window, padding)
        assert len(indices) == window
        assert indices[window // 2] == frame_idx
        assert all(0 <= idx < num_frames for idx in indices)
        assert all(abs(idx - frame_idx) <= max_reach(window) for idx in indices)


def test_bad_arguments():
    with pytest.raises(ValueError, match="padding"):
        window_indices(0, 5, 5, "mirror")
    with pytest.raises(ValueError, match="odd"):
        window_indices(0, 5, 4)
