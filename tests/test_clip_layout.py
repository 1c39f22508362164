"""One clip layout for `edvr eval` and `edvr train`: the same clips, in the same natural order,
the same refusals, and the same pixels from `clip_frames`."""

import re

import numpy as np
import pytest

from edvr_cli.clip_layout import ClipLayoutError, clip_frames, find_clips
from edvr_cli.evaluate.sources import FrameSourceError, open_source
from edvr_cli.image_io import list_image_files, natural_key, write_png
from edvr_cli.train.data import DataError
from edvr_cli.train.data import find_clips as find_training_clips
from edvr_cli.video.rgb_frames import RgbFrameReader
from tests.clips import make_clip


def _frames(folder, num_frames=2, level=0):
    folder.mkdir(parents=True)
    for idx in range(num_frames):
        write_png(folder / f"f{idx}.png", np.full((8, 8, 3), level + idx, np.uint8))


def _eval_names(path):
    return [clip.name for clip in open_source(path).clips]


def test_natural_order_of_clips_and_frames(tmp_path):
    for name in ("clip10", "clip9", "Clip2"):
        _frames(tmp_path / "root" / name)
    make_clip(tmp_path / "root" / "clip100.mkv", 16, 16, 2)
    (tmp_path / "root" / "notes.txt").write_text("not a clip")
    (tmp_path / "root" / ".hidden").mkdir()
    expected = ["Clip2", "clip9", "clip10", "clip100"]
    assert list(find_clips(tmp_path / "root").clips) == expected
    assert _eval_names(tmp_path / "root") == expected
    assert list(find_training_clips(tmp_path / "root")) == expected
    # frames too: f10 after f9
    _frames(tmp_path / "long", num_frames=11)
    assert [path.stem for path in list_image_files(tmp_path / "long")][-3:] == ["f8", "f9", "f10"]
    assert sorted(["a10", "a9", "B1"], key=natural_key) == ["a9", "a10", "B1"]


@pytest.mark.parametrize("layout, message", [
    ("frames_beside_clips", "holds both image frames and clip folders ('c1')"),
    ("empty_clip_folder", "clip folder {root}/c2 holds no image frames"),
    ("nothing", "holds no image frames, clip folders or video files"),
    ("same_name", "two clips named 'c1'"),
    ("missing", "no such file or folder"),
])
def test_eval_and_train_refuse_the_same_layouts(tmp_path, layout, message):
    root = tmp_path / "root"
    if layout != "missing":
        root.mkdir()
    if layout in ("frames_beside_clips", "empty_clip_folder", "same_name"):
        _frames(root / "c1")
    if layout == "frames_beside_clips":
        write_png(root / "preview.png", np.zeros((8, 8, 3), np.uint8))
    if layout == "empty_clip_folder":
        (root / "c2").mkdir()
    if layout == "same_name":
        make_clip(root / "c1.mkv", 16, 16, 2)
    message = message.format(root=root)
    for call, error in ((find_clips, ClipLayoutError), (open_source, FrameSourceError),
                        (find_training_clips, DataError)):
        with pytest.raises(error, match=f"^--gt: .*{re.escape(message)}"):
            call(root, "--gt")


def test_single_image_is_a_clip_for_eval_not_for_training(tmp_path):
    write_png(tmp_path / "one.png", np.zeros((8, 8, 3), np.uint8))
    assert _eval_names(tmp_path / "one.png") == ["one"]
    with pytest.raises(DataError, match="is one image"):
        find_training_clips(tmp_path / "one.png")


def test_clip_frames_reads_folders_images_and_videos(tmp_path):
    _frames(tmp_path / "clip", num_frames=3, level=5)
    frames = list(clip_frames(tmp_path / "clip"))
    assert [int(frame[0, 0, 0]) for frame in frames] == [5, 6, 7]
    assert frames[0].shape == (8, 8, 3) and frames[0].dtype == np.uint8
    assert np.array_equal(next(clip_frames(tmp_path / "clip" / "f1.png")), frames[1])
    video = make_clip(tmp_path / "v.mkv", 16, 16, 3)
    with RgbFrameReader(video) as reader:
        expected = list(reader)
    decoded = list(clip_frames(video))
    assert len(decoded) == 3 and all(np.array_equal(a, b) for a, b in zip(decoded, expected))
    # eval's frames are the same pixels
    clip = open_source(video).clips[0]
    assert all(np.array_equal(frame.load(), b) for frame, b in zip(clip.frames(), expected))
