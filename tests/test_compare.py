"""`edvr compare`: comparison videos (side, split, stack), the crops grid and the HTML page.

Inputs are lossless (ffv1) clips of 12 frames at 25 fps; the comparison videos checked pixel for
pixel are written with --codec ffv1 (RGB) and decoded as `edvr eval` decodes them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from edvr_cli.commands.compare import command
from edvr_cli.compare.page import display_zoom
from edvr_cli.compare.panels import GAP, HEADER, most_different_box
from edvr_cli.video import probe
from edvr_cli.video.rgb_frames import RgbFrameReader
from tests.clips import FFMPEG, make_clip

CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    """a: 64x48 with audio; b: a's negative; small: a at 16x12 (a x4 model's input); short: 10 frames."""
    folder = tmp_path_factory.mktemp("compare")
    a = make_clip(folder / "a.mkv", num_frames=12, audio=True)
    paths = {"a": a}
    for name, args in (("b", ["-vf", "negate"]), ("small", ["-vf", "scale=16:12:flags=area"]),
                       ("odd", ["-vf", "scale=48:48"]), ("short", ["-frames:v", "10"])):
        paths[name] = folder / f"{name}.mkv"
        subprocess.run([FFMPEG, "-v", "error", "-i", str(a), "-map", "0:v", *args, "-c:v", "ffv1",
                        str(paths[name])], check=True)
    return paths


def decode(path: Path) -> list[np.ndarray]:
    with RgbFrameReader(path) as reader:
        return list(reader)


def run(*args):
    return CliRunner().invoke(command, [str(arg) for arg in args])


def audio_seconds(path: Path) -> float:
    result = subprocess.run([FFMPEG, "-v", "error", "-i", str(path), "-map", "0:a:0", "-ac", "1", "-ar", "48000",
                             "-f", "s16le", "-"], capture_output=True, check=True)
    return len(result.stdout) / 2 / 48000


def test_side_by_side_is_2w_by_h_with_as_frames_on_the_left_and_the_first_inputs_audio(clips, tmp_path):
    output = tmp_path / "side.mkv"
    result = run(clips["a"], clips["b"], "-o", output, "--codec", "ffv1", "--no-labels", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert (summary["frames"], summary["width"], summary["height"], summary["layout"]) == (12, 128, 48, "side")
    frames, a, b = decode(output), decode(clips["a"]), decode(clips["b"])
    assert len(frames) == 12 and frames[0].shape == (48, 128, 3)
    assert all(np.array_equal(frame[:, :64], left) and np.array_equal(frame[:, 64:], right)
               for frame, left, right in zip(frames, a, b))
    assert [stream.kind for stream in probe(output).streams] == ["video", "audio"]
    assert audio_seconds(output) == pytest.approx(audio_seconds(clips["a"]), abs=1024 / 48000)


def test_labels_cover_only_the_top_left_corner_of_each_panel(clips, tmp_path):
    output = tmp_path / "labelled.mkv"
    assert run(clips["a"], clips["b"], "-o", output, "--codec", "ffv1", "--label", "restored", "--label",
               "input").exit_code == 0
    frame, a = decode(output)[0], decode(clips["a"])[0]
    assert not np.array_equal(frame[:16, :32], a[:16, :32])  # the label box
    assert np.array_equal(frame[20:, :64], a[20:])  # below it, A's pixels


def test_split_takes_the_left_part_from_a_and_the_right_from_b(clips, tmp_path):
    output = tmp_path / "split.mkv"
    result = run(clips["a"], clips["b"], "-o", output, "--layout", "split", "--codec", "ffv1", "--no-labels")
    assert result.exit_code == 0, result.output
    frames, a, b = decode(output), decode(clips["a"]), decode(clips["b"])
    assert len(frames) == 12 and frames[0].shape == (48, 64, 3)
    for frame, left, right in zip(frames, a, b):
        assert np.array_equal(frame[:, :31], left[:, :31]) and np.array_equal(frame[:, 33:], right[:, 33:])
        assert (frame[:, 31:33] == 255).all()  # the line: columns 31 and 32


def test_a_low_resolution_input_is_scaled_up_by_nearest_neighbour_in_a_stack(clips, tmp_path):
    output = tmp_path / "stack.mkv"
    result = run(clips["a"], clips["small"], "-o", output, "--layout", "stack", "--codec", "ffv1", "--no-labels",
                 "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["scales"] == [1, 4]
    frames, small = decode(output), decode(clips["small"])
    assert frames[0].shape == (96, 64, 3)
    assert all(np.array_equal(frame[48:], np.repeat(np.repeat(low, 4, axis=0), 4, axis=1))
               for frame, low in zip(frames, small))


def test_the_crops_grid_has_the_asked_size_and_the_inputs_pixels(clips, tmp_path):
    output = tmp_path / "crops.png"
    result = run(clips["a"], clips["b"], clips["small"], "-o", output, "--crops", "--at", "0.1,0.3",
                 "--box", "8,4,16,12", "--zoom", "3", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["frame_indices"] == [2, 7] and summary["box"] == [8, 4, 16, 12]
    grid = np.asarray(Image.open(output).convert("RGB"))
    # 3 columns of 16 x 3 px with 2 gaps; a header, then 2 rows of 12 x 3 px with 1 gap
    assert grid.shape == (HEADER + 2 * 36 + GAP, 3 * 48 + 2 * GAP, 3) == (96, 152, 3)
    b = decode(clips["b"])[7]
    cell = grid[HEADER + 36 + GAP:, 48 + GAP:96 + GAP]  # row 2 (frame 7), column 2 (b)
    assert np.array_equal(cell, np.repeat(np.repeat(b[4:16, 8:24], 3, axis=0), 3, axis=1))


def test_without_a_box_the_crop_is_where_a_and_b_differ_most():
    a = np.zeros((40, 60, 3), np.uint8)
    b = a.copy()
    b[22:30, 35:45] = 200
    assert most_different_box([(a, b)], 10, 8) == (35, 22)


def test_the_html_page_has_a_slider_per_other_input_and_scores_against_ground_truth(clips, tmp_path):
    output = tmp_path / "page.html"
    result = run(clips["a"], clips["b"], clips["small"], "-o", output, "--html", "--at", "0.2", "--gt", clips["a"],
                 "--json")
    assert result.exit_code == 0, result.output
    scores = json.loads(result.stdout)["scores"]
    assert [row["frame"] for row in scores] == [5]
    assert [item["psnr"] for item in scores[0]["inputs"]][0::2] == ["inf", None]  # a is the truth; small differs
    assert 0 < scores[0]["inputs"][1]["psnr"] < 20
    page = output.read_text()
    assert page.count('type="range"') == 2 and page.count("data:image/png;base64,") == 4
    assert "http" not in re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", page)  # self-contained


@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"no browser: {CHROMIUM} is not installed "
                                                        "(apt-get install chromium to run this test)")
def test_the_html_page_loads_in_a_real_browser_and_shows_both_images(clips, tmp_path):
    output = tmp_path / "page.html"
    assert run(clips["a"], clips["b"], "-o", output, "--html", "--no-labels").exit_code == 0
    shot = tmp_path / "shot.png"
    subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    f"--user-data-dir={tmp_path / 'profile'}", "--window-size=700,600", "--hide-scrollbars",
                    "--force-device-scale-factor=1", f"--screenshot={shot}", output.as_uri()],
                   check=True, capture_output=True, timeout=120)
    picture = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    zoom = display_zoom(64)  # 8: the 64x48 panels are shown 512x384, each pixel an 8x8 square
    a, b = (np.repeat(np.repeat(decode(clips[name])[6], zoom, axis=0), zoom, axis=1) for name in "ab")

    def shows(patch: np.ndarray) -> bool:  # this part of a frame, within 2 levels, somewhere on the page
        patch = patch.astype(int)
        h, w = patch.shape[:2]
        ys, xs = np.nonzero((np.abs(picture - patch[0, 0]) <= 2).all(axis=2))
        return any((np.abs(picture[y:y + h, x:x + w] - patch) <= 2).all()
                   for y, x in zip(ys, xs) if y + h <= picture.shape[0] and x + w <= picture.shape[1])

    assert shows(a[240:300, 16:96]) and shows(b[240:300, 416:496])  # A left of the line, B right of it
    assert not shows(b[240:300, 16:96])  # the slider starts in the middle: B's left part is hidden


@pytest.mark.parametrize("names, extra, message", [
    (["a", "short"], [], "has 10 frames but"),
    (["a", "odd"], [], "neither the same size nor a whole scale of each other"),
    (["a", "b", "small"], ["--layout", "split"], "--layout split shows two inputs"),
    (["a", "missing"], [], "missing.mkv"),
])
def test_inputs_that_cannot_be_compared_are_one_line(clips, tmp_path, names, extra, message):
    paths = [clips.get(name, tmp_path / f"{name}.mkv") for name in names]
    result = run(*paths, "-o", tmp_path / "out.mkv", *extra)
    assert result.exit_code == 1 and message in result.output and result.output.startswith("Error: ")
    assert len(result.output.strip().splitlines()) == 1 and not (tmp_path / "out.mkv").exists()


def test_an_existing_output_needs_overwrite_and_nothing_is_left_beside_it(clips, tmp_path):
    output = tmp_path / "crops.png"
    output.write_bytes(b"old")
    result = run(clips["a"], clips["b"], "-o", output, "--crops")
    assert result.exit_code == 1 and "pass --overwrite" in result.output and output.read_bytes() == b"old"
    assert run(clips["a"], clips["b"], "-o", output, "--crops", "--overwrite").exit_code == 0
    assert Image.open(output).size == (2 * 64 + GAP, HEADER + 48)  # a quarter box (16x12) at zoom 4
    assert sorted(path.name for path in tmp_path.iterdir()) == ["crops.png"]
