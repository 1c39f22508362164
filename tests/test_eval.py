"""`edvr eval` end to end: layouts, pairing errors, exact values in JSON/CSV, --lq, videos, --plot."""

import csv
import dataclasses
import json
import math
import subprocess
import sys
import threading
import time

import imageio.v3 as iio
import numpy as np
import pytest
from click.testing import CliRunner
from skimage.metrics import structural_similarity

from edvr_cli.cli import main
from edvr_cli.evaluate.parallel import ordered_map
from edvr_cli.evaluate.scoring import evaluate
from edvr_cli.video.rgb_frames import RgbFrameReader
from edvr_cli.evaluate.sources import ClipPair, FrameSourceError, frame_pairs, open_source
from edvr_cli.image_io import write_png
from edvr_cli.evaluate.metrics import frame_metrics
from tests.clips import FFMPEG, make_clip

HEIGHT, WIDTH = 24, 32
NUM_VALUES = HEIGHT * WIDTH * 3


def flat_frame(level):
    return np.full((HEIGHT, WIDTH, 3), level, np.uint8)


def damaged(frame, num_changed, delta):
    """`frame` with its first `num_changed` values (C order) raised by `delta`: MSE is known."""
    out = frame.copy().reshape(-1)
    out[:num_changed] += delta
    return out.reshape(frame.shape)


def closed_form_psnr(num_changed, delta):
    return 10 * math.log10(255.0**2 / (num_changed * delta**2 / NUM_VALUES))


def skimage_ssim(a, b):
    return np.mean([structural_similarity(a[..., c], b[..., c], gaussian_weights=True, sigma=1.5,
                                          use_sample_covariance=False, data_range=255)
                    for c in range(3)])


def write_frames(folder, frames):
    folder.mkdir(parents=True, exist_ok=True)
    for index, frame in enumerate(frames):
        write_png(folder / f"{index:08d}.png", frame)
    return folder


def run_eval(*args):
    return CliRunner().invoke(main, ["eval", *map(str, args)])


def assert_one_line_error(result, message):
    assert result.exit_code != 0
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert result.output.strip().splitlines() == [f"Error: {message}"]


# Damage per frame (num_changed, delta): distinct MSEs so every value is checkable.
CLIP_000 = [(1, 2), (10, 3)]
CLIP_011 = [(100, 1), (5, 7), (50, 2)]
LQ_DAMAGE = (400, 6)


@pytest.fixture
def reds_layout(tmp_path):
    """gt/, pred/, lq/ each with clip folders 000 (2 frames) and 011 (3 frames)."""
    for clip, damage in (("000", CLIP_000), ("011", CLIP_011)):
        gts = [flat_frame(40 + 30 * i) for i in range(len(damage))]
        write_frames(tmp_path / "gt" / clip, gts)
        write_frames(tmp_path / "pred" / clip, [damaged(g, *d) for g, d in zip(gts, damage)])
        write_frames(tmp_path / "lq" / clip, [damaged(g, *LQ_DAMAGE) for g in gts])
    return tmp_path


# ---------------------------------------------------------------- values

def test_flat_folders_give_exact_per_frame_values_in_json(tmp_path):
    rng = np.random.default_rng(0)
    gts = [np.clip(flat_frame(90) + rng.integers(-30, 31, (HEIGHT, WIDTH, 3)), 0, 255).astype(np.uint8)
           for _ in range(3)]
    damage = [(3, 4), (30, 2), (300, 1)]
    write_frames(tmp_path / "gt", gts)
    write_frames(tmp_path / "restored", [damaged(g, *d) for g, d in zip(gts, damage)])
    result = run_eval("--gt", tmp_path / "gt", "--pred", tmp_path / "restored",
                      "--json", tmp_path / "s.json", "--workers", 1)
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "s.json").read_text())
    frames = data["clips"][0]["frames"]
    assert [f["name"] for f in frames] == ["00000000.png", "00000001.png", "00000002.png"]
    expected_psnr = [closed_form_psnr(*d) for d in damage]
    assert [f["psnr"] for f in frames] == expected_psnr
    for frame, gt, d in zip(frames, gts, damage):
        assert frame["ssim"] == pytest.approx(skimage_ssim(gt, damaged(gt, *d)), abs=1e-6)
    assert data["clips"][0]["name"] == "gt"
    assert data["clips"][0]["psnr"] == float(np.mean(expected_psnr))
    assert data["overall"]["psnr"] == data["clips"][0]["psnr"]
    assert data["overall"]["num_frames"] == 3
    assert data["conventions"]["overall_value"] == "mean of the per-clip means"
    assert f"{np.mean(expected_psnr):.4f}" in result.output


def test_clip_folders_overall_is_the_mean_of_clip_means_in_csv(reds_layout):
    result = run_eval("--gt", reds_layout / "gt", "--pred", reds_layout / "pred",
                      "--csv", reds_layout / "s.csv")
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader((reds_layout / "s.csv").open()))
    assert [(r["level"], r["clip"], r["frame_index"]) for r in rows] == [
        ("frame", "000", "0"), ("frame", "000", "1"), ("clip", "000", ""),
        ("frame", "011", "0"), ("frame", "011", "1"), ("frame", "011", "2"), ("clip", "011", ""),
        ("overall", "", "")]
    psnr_000 = [closed_form_psnr(*d) for d in CLIP_000]
    psnr_011 = [closed_form_psnr(*d) for d in CLIP_011]
    assert [float(r["psnr"]) for r in rows if r["level"] == "frame"] == psnr_000 + psnr_011
    clip_means = [float(np.mean(psnr_000)), float(np.mean(psnr_011))]
    assert [float(r["psnr"]) for r in rows if r["level"] == "clip"] == clip_means
    overall = rows[-1]
    assert float(overall["psnr"]) == float(np.mean(clip_means))
    assert float(overall["psnr"]) != pytest.approx(np.mean(psnr_000 + psnr_011), abs=1e-3)
    assert overall["num_frames"] == "5"
    assert "lq_psnr" not in overall
    assert "overall = mean of the clip means" in result.output


def test_lq_reports_baseline_and_gain(reds_layout):
    result = run_eval("--gt", reds_layout / "gt", "--pred", reds_layout / "pred",
                      "--lq", reds_layout / "lq", "--json", reds_layout / "s.json",
                      "--csv", reds_layout / "s.csv")
    assert result.exit_code == 0, result.output
    data = json.loads((reds_layout / "s.json").read_text())
    lq_psnr = closed_form_psnr(*LQ_DAMAGE)
    for clip in data["clips"]:
        for frame in clip["frames"]:
            assert frame["lq_psnr"] == lq_psnr
            assert frame["psnr_gain"] == frame["psnr"] - lq_psnr
            assert frame["ssim_gain"] == frame["ssim"] - frame["lq_ssim"]
            assert frame["ssim_gain"] > 0
        assert clip["psnr_gain"] == clip["psnr"] - clip["lq_psnr"]
    overall = data["overall"]
    assert overall["lq_psnr"] == pytest.approx(lq_psnr, abs=1e-12)
    assert overall["psnr_gain"] == overall["psnr"] - overall["lq_psnr"]
    assert "ΔPSNR" in result.output and "ΔSSIM" in result.output
    assert f"+{overall['psnr_gain']:.4f}" in result.output
    rows = list(csv.DictReader((reds_layout / "s.csv").open()))
    assert float(rows[-1]["psnr_gain"]) == overall["psnr_gain"]
    assert float(rows[0]["lq_psnr"]) == lq_psnr


def test_crop_border_and_infinite_psnr_as_documented(tmp_path):
    gts = [flat_frame(70), flat_frame(90)]
    border_only = [g.copy() for g in gts]
    border_only[0][0, :] = 0  # top row damaged
    border_only[1][:, -1] = 255  # right column damaged
    write_frames(tmp_path / "gt", gts)
    write_frames(tmp_path / "pred", border_only)
    write_frames(tmp_path / "lq", gts)  # the input is already perfect
    uncropped = run_eval("--gt", tmp_path / "gt", "--pred", tmp_path / "pred", "--json", tmp_path / "a.json")
    assert uncropped.exit_code == 0, uncropped.output
    assert all(math.isfinite(f["psnr"]) for f in json.loads((tmp_path / "a.json").read_text())["clips"][0]["frames"])

    result = run_eval("--gt", tmp_path / "gt", "--pred", tmp_path / "pred", "--lq", tmp_path / "lq",
                      "--crop-border", 1, "--json", tmp_path / "b.json", "--csv", tmp_path / "b.csv")
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "b.json").read_text())
    assert [f["psnr"] for f in data["clips"][0]["frames"]] == ["inf", "inf"]
    assert data["clips"][0]["psnr"] == "inf" and data["overall"]["psnr"] == "inf"
    assert data["overall"]["ssim"] == 1.0
    assert data["overall"]["psnr_gain"] == 0.0  # inf - inf is defined as no gain
    assert data["conventions"]["crop_border"] == 1
    rows = list(csv.DictReader((tmp_path / "b.csv").open()))
    assert {r["psnr"] for r in rows} == {"inf"}
    assert "inf" in result.output


def test_a_single_identical_frame_makes_the_clip_mean_inf(tmp_path):
    gts = [flat_frame(70), flat_frame(90)]
    write_frames(tmp_path / "gt", gts)
    write_frames(tmp_path / "pred", [gts[0], damaged(gts[1], 5, 5)])
    result = evaluate(tmp_path / "gt", tmp_path / "pred")
    assert [f.psnr for f in result.clips[0].frames] == [math.inf, closed_form_psnr(5, 5)]
    assert result.clips[0].psnr == math.inf and result.psnr == math.inf


def test_y_channel_through_the_cli(tmp_path):
    write_frames(tmp_path / "gt", [flat_frame(80)])
    write_frames(tmp_path / "pred", [flat_frame(85)])
    result = run_eval("--gt", tmp_path / "gt", "--pred", tmp_path / "pred", "--channel", "y",
                      "--json", tmp_path / "s.json")
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "s.json").read_text())
    # A grey offset of 5 moves Y by 5 * 219 / 255.
    assert data["overall"]["psnr"] == pytest.approx(10 * math.log10(255.0**2 / (5 * 219 / 255) ** 2), abs=1e-10)
    assert data["conventions"]["channel"] == "y"
    assert "Y (BT.601)" in result.output


def test_parallel_workers_give_identical_results(reds_layout):
    serial = evaluate(reds_layout / "gt", reds_layout / "pred", lq=reds_layout / "lq", workers=1)
    parallel = evaluate(reds_layout / "gt", reds_layout / "pred", lq=reds_layout / "lq", workers=3)
    assert parallel == serial
    assert [c.name for c in serial.clips] == ["000", "011"]


# ---------------------------------------------------------------- videos

def decode_rgb(path):
    """Frames as `edvr enhance` reads them (native planes, our RGB conversion), (h, w, 3) uint8.
    (tests/test_colour.py checks that conversion against ffmpeg's own.)"""
    with RgbFrameReader(path) as reader:
        return list(reader)


def test_video_files_pair_by_frame_order_with_exact_values(tmp_path):
    gt = make_clip(tmp_path / "gt.mkv", num_frames=4)
    pred = make_clip(tmp_path / "restored.mp4", num_frames=4,
                     codec_args=("-c:v", "mpeg4", "-q:v", "12"), pix_fmt="yuv420p")
    result = run_eval("--gt", gt, "--pred", pred, "--json", tmp_path / "s.json")
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "s.json").read_text())
    expected = [frame_metrics(g, p) for g, p in zip(decode_rgb(gt), decode_rgb(pred))]
    frames = data["clips"][0]["frames"]
    assert [f["index"] for f in frames] == [0, 1, 2, 3]
    assert [f["psnr"] for f in frames] == [e.psnr for e in expected]
    assert [f["ssim"] for f in frames] == [e.ssim for e in expected]
    assert all(20 < e.psnr < 60 for e in expected)
    assert data["clips"][0]["name"] == "gt"


def test_lossless_video_decodes_to_the_exact_source_frames(tmp_path):
    # libx264rgb at qp 0 in rgb24 is lossless: ffmpeg's own PNG frames of the same source match.
    video = make_clip(tmp_path / "clip.mkv", num_frames=3, codec_args=("-c:v", "libx264rgb", "-qp", "0"),
                      pix_fmt="rgb24")
    (tmp_path / "png").mkdir()
    subprocess.run([FFMPEG, "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=64x48:rate=25",
                    "-frames:v", "3", str(tmp_path / "png" / "%04d.png")], check=True)
    result = run_eval("--gt", tmp_path / "png", "--pred", video, "--json", tmp_path / "s.json")
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "s.json").read_text())
    assert [f["psnr"] for f in data["clips"][0]["frames"]] == ["inf"] * 3
    assert data["overall"]["ssim"] == 1.0


def test_folder_of_videos_pairs_with_folder_of_clip_folders_by_name(tmp_path):
    (tmp_path / "videos").mkdir()
    for name, frames in (("a", 2), ("b", 3)):
        video = make_clip(tmp_path / "videos" / f"{name}.mkv", num_frames=frames)
        write_frames(tmp_path / "frames" / name, decode_rgb(video))
    (tmp_path / "videos" / "notes.txt").write_text("not a clip")
    result = run_eval("--gt", tmp_path / "frames", "--pred", tmp_path / "videos", "--csv", tmp_path / "s.csv")
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader((tmp_path / "s.csv").open()))
    assert [(r["level"], r["clip"], r["psnr"]) for r in rows if r["level"] != "frame"] == [
        ("clip", "a", "inf"), ("clip", "b", "inf"), ("overall", "", "inf")]
    assert rows[-1]["num_frames"] == "5"


def test_video_frame_count_and_size_mismatches(tmp_path):
    ten = make_clip(tmp_path / "ten.mkv", num_frames=10)
    eight = make_clip(tmp_path / "eight.mkv", num_frames=8)
    small = make_clip(tmp_path / "small.mkv", width=48, height=32, num_frames=10)
    assert_one_line_error(run_eval("--gt", ten, "--pred", eight),
                          "clip 'ten': --gt has 10 frames but --pred has 8")
    assert_one_line_error(run_eval("--gt", eight, "--pred", ten),
                          "clip 'eight': --gt has 8 frames but --pred has 10")
    assert_one_line_error(run_eval("--gt", ten, "--pred", small),
                          "clip 'ten', frame 0 (#0): --gt is 64x48 but --pred is 48x32")
    not_video = tmp_path / "broken.mp4"
    not_video.write_bytes(b"not a video at all")
    result = run_eval("--gt", not_video, "--pred", ten)
    assert result.exit_code != 0
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"Error: --gt: {not_video}: not a video file")


def test_video_count_unknown_to_the_probe_is_checked_while_decoding(tmp_path):
    ten = make_clip(tmp_path / "ten.mkv", num_frames=10)
    eight = make_clip(tmp_path / "eight.mkv", num_frames=8)
    gt, pred = (open_source(path).clips[0] for path in (ten, eight))
    unknown = [dataclasses.replace(c, video=dataclasses.replace(c.video, num_frames=None)) for c in (gt, pred)]
    pair = ClipPair("ten", *unknown)
    with pytest.raises(FrameSourceError, match=r"^clip 'ten': --gt has 10 frames but --pred has 8$"):
        list(frame_pairs(pair))
    assert [frames.index for frames in frame_pairs(ClipPair("ten", unknown[0], unknown[0]))] == list(range(10))


# ---------------------------------------------------------------- pairing errors

def test_mismatched_clip_names(reds_layout):
    (reds_layout / "pred" / "011").rename(reds_layout / "pred" / "015")
    assert_one_line_error(
        run_eval("--gt", reds_layout / "gt", "--pred", reds_layout / "pred"),
        f"clip names differ: '011' is in --gt ({reds_layout / 'gt'}) but not in --pred ({reds_layout / 'pred'})")


def test_mismatched_frame_counts(reds_layout):
    (reds_layout / "pred" / "011" / "00000002.png").unlink()
    assert_one_line_error(run_eval("--gt", reds_layout / "gt", "--pred", reds_layout / "pred"),
                          "clip '011': --gt has 3 frames but --pred has 2")


def test_mismatched_frame_sizes_name_the_first_frame(reds_layout):
    for index in (1, 2):
        write_png(reds_layout / "pred" / "011" / f"{index:08d}.png", np.zeros((96, 128, 3), np.uint8))
    assert_one_line_error(run_eval("--gt", reds_layout / "gt", "--pred", reds_layout / "pred"),
                          "clip '011', frame 1 (00000001.png): --gt is 32x24 but --pred is 128x96")


def test_lq_of_another_size_is_an_error(reds_layout):
    write_png(reds_layout / "lq" / "000" / "00000000.png", np.zeros((6, 8, 3), np.uint8))
    assert_one_line_error(
        run_eval("--gt", reds_layout / "gt", "--pred", reds_layout / "pred", "--lq", reds_layout / "lq"),
        "clip '000', frame 0 (00000000.png): --gt is 32x24 but --lq is 8x6")


def test_empty_folders_and_missing_paths(reds_layout, tmp_path):
    (tmp_path / "empty").mkdir()
    assert_one_line_error(run_eval("--gt", tmp_path / "empty", "--pred", reds_layout / "pred"),
                          f"--gt: {tmp_path / 'empty'} holds no image frames, clip folders or video files")
    (reds_layout / "pred" / "020").mkdir()
    assert_one_line_error(run_eval("--gt", reds_layout / "gt", "--pred", reds_layout / "pred"),
                          f"--pred: clip folder {reds_layout / 'pred' / '020'} holds no image frames")
    assert_one_line_error(run_eval("--gt", reds_layout / "gt", "--pred", tmp_path / "nowhere"),
                          f"--pred: no such file or folder: {tmp_path / 'nowhere'}")
    assert_one_line_error(
        run_eval("--gt", reds_layout / "gt", "--pred", reds_layout / "pred" / "000"),
        f"--gt holds 2 clips ({reds_layout / 'gt'}) but --pred is a single clip "
        f"({reds_layout / 'pred' / '000'}): give both as clips or both as folders of clips")


def test_frames_beside_clip_folders_are_ambiguous(reds_layout):
    write_png(reds_layout / "gt" / "preview.png", flat_frame(0))
    assert_one_line_error(run_eval("--gt", reds_layout / "gt", "--pred", reds_layout / "pred"),
                          f"--gt: {reds_layout / 'gt'} holds both image frames and clip folders ('000'); "
                          "give a single clip or a folder of clips")


def test_single_image_files_compare_as_one_frame_clips(tmp_path):
    write_png(tmp_path / "a.png", flat_frame(10))
    write_png(tmp_path / "b.png", damaged(flat_frame(10), 9, 3))
    result = evaluate(tmp_path / "a.png", tmp_path / "b.png")
    assert [(c.name, c.num_frames) for c in result.clips] == [("a", 1)]
    assert result.psnr == closed_form_psnr(9, 3)


def test_too_small_for_ssim_and_unwritable_output(tmp_path):
    write_frames(tmp_path / "gt", [np.zeros((8, 8, 3), np.uint8)])
    assert_one_line_error(run_eval("--gt", tmp_path / "gt", "--pred", tmp_path / "gt"),
                          "clip 'gt', frame 0 (00000000.png): SSIM needs at least 11x11 pixels "
                          "after cropping, got 8x8")
    write_frames(tmp_path / "ok", [flat_frame(10)])
    result = run_eval("--gt", tmp_path / "ok", "--pred", tmp_path / "ok", "--json", tmp_path / "no" / "s.json")
    assert result.exit_code != 0
    assert result.output.strip().splitlines()[-1].startswith("Error: ")
    assert "Traceback" not in result.output


# ---------------------------------------------------------------- help and plot

def test_help_states_the_conventions():
    result = run_eval("--help")
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    assert "MEAN OF THE CLIP MEANS" in text
    assert 'PSNR inf' in text and 'string "inf"' in text
    assert "65.481" in text


def test_plot_without_matplotlib_is_one_line(reds_layout, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now fails
    assert_one_line_error(
        run_eval("--gt", reds_layout / "gt", "--pred", reds_layout / "pred", "--plot", reds_layout / "p.png"),
        "--plot needs matplotlib: pip install matplotlib")
    assert not (reds_layout / "p.png").exists()


def test_plot_draws_a_png(reds_layout):
    pytest.importorskip("matplotlib")
    result = run_eval("--gt", reds_layout / "gt", "--pred", reds_layout / "pred", "--lq", reds_layout / "lq",
                      "--plot", reds_layout / "p.png")
    assert result.exit_code == 0, result.output
    image = iio.imread(reds_layout / "p.png")
    assert image.shape[:2] == (500, 1000)
    assert image.std() > 0


# ------------------------------------------------------------------ frames scored in threads

def _slow_square(item: int) -> int:
    time.sleep(0.02 * ((7 * item) % 5))  # items finish out of order
    if item in (6, 9):
        raise ValueError(f"item {item}")
    return item * item


def test_ordered_map_keeps_the_order_and_raises_the_first_failure_at_its_turn():
    assert list(ordered_map(_slow_square, range(6), 3)) == [0, 1, 4, 9, 16, 25]
    results = []
    with pytest.raises(ValueError, match="item 6"):  # 9 may fail first; 6 comes first
        for result in ordered_map(_slow_square, range(12), 3):
            results.append(result)
    assert results == [0, 1, 4, 9, 16, 25]


def test_ordered_map_has_at_most_twice_the_workers_in_flight_and_stops_when_closed():
    pulled, started = [], []

    def items():
        for item in range(100):
            pulled.append(item)
            yield item

    def work(item):
        started.append(item)
        return item

    scored = ordered_map(work, items(), 2)
    for result in scored:
        assert len(pulled) - result <= 4  # the items taken from the input but not yet given back
        if result == 10:
            break
    scored.close()
    time.sleep(0.2)
    assert len(started) < 20
    assert not any(thread.name.startswith("ordered-map-") for thread in threading.enumerate())
