import numpy as np

from edvr_cli.image_io import list_image_files, read_image, write_png


def test_png_round_trip_in_natural_order(tmp_path):
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (7, 5, 3), dtype=np.uint8) for _ in range(11)]
    for idx, frame in enumerate(frames):
        write_png(tmp_path / f"f{idx}.png", frame)
    files = list_image_files(tmp_path)
    assert [f.name for f in files] == [f"f{i}.png" for i in range(11)]
    for frame, path in zip(frames, files):
        np.testing.assert_array_equal(read_image(path), frame)
