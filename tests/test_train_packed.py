"""Training packs (edvr_cli/train/packed.py), the pack builder's rules (benchmarks/pack_train_qe.py)
and the prepared GPU run (benchmarks/gpu_train_qe.py / .sh) in its CPU smoke mode."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from edvr_cli.image_io import write_png
from edvr_cli.train.config import ConfigError, resolve_config
from edvr_cli.train.data import ArrayClip, DataError, PatchDataset, load_clips
from edvr_cli.train.degrade import Degradation, prepare_clip
from edvr_cli.train.packed import (ClipSource, PackError, decode_frames, load_pack, pack_clip, pack_i420,
                                   read_manifest, unpack_i420, write_manifest)
from tests.clips import make_clip

REPO = Path(__file__).resolve().parents[1]
QP37 = Degradation("compress", qp=37)


def _load_script(name):
    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def _moving_folder(folder, frames=7, height=40, width=56, seed=3):
    """A textured picture panning 1 px right per frame, as PNG frames (an RGB source)."""
    rng = np.random.default_rng(seed)
    canvas = rng.integers(0, 256, (height, width + frames, 3)).astype(np.float64)
    canvas = (canvas + np.roll(canvas, 1, 0) + np.roll(canvas, 1, 1)) / 3  # some spatial correlation
    folder.mkdir(parents=True)
    for k in range(frames):
        write_png(folder / f"{k:08d}.png", np.round(canvas[:, k:k + width]).astype(np.uint8))
    return folder


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    root = tmp_path_factory.mktemp("sources")
    video = make_clip(root / "clip.mp4", 64, 48, 8, codec_args=("-c:v", "libx264", "-qp", "0"), pix_fmt="yuv420p")
    return {"video": video, "pan": _moving_folder(root / "pan")}


def _build(folder, sources, degradation, codec, cache):
    entries = [pack_clip(ClipSource("video", sources["video"], "train", "video", "testsrc2", "generated"),
                         degradation, folder, codec, cache),
               pack_clip(ClipSource("pan", sources["pan"], "selection", "photo", "noise pan", "generated"),
                         degradation, folder, codec, cache)]
    write_manifest(folder, entries, degradation, codec)
    return folder


@pytest.fixture(scope="module")
def pack(tmp_path_factory, sources):
    root = tmp_path_factory.mktemp("pack")
    return _build(root / "pack", sources, QP37, "h264", root / "cache"), root / "cache"


@pytest.fixture(scope="module")
def lossless_pack(tmp_path_factory, sources):
    root = tmp_path_factory.mktemp("lossless")
    return _build(root / "pack", sources, Degradation("compress", x265_params="lossless=1"), "xz", None)


def test_i420_packing_round_trip():
    rng = np.random.default_rng(0)
    y, u, v = (rng.integers(0, 256, shape, dtype=np.uint8) for shape in ((6, 8), (3, 4), (3, 4)))
    packed = pack_i420((y, u, v))
    assert packed.shape == (9, 8)
    assert np.array_equal(packed[:6], y) and np.array_equal(packed[6:, :4], u) and np.array_equal(packed[6:, 4:], v)
    assert all(np.array_equal(a, b) for a, b in zip(unpack_i420(packed, 6, 8), (y, u, v)))
    with pytest.raises(PackError, match="4:2:0"):
        pack_i420((y, u[:, :3], v))
    with pytest.raises(PackError):
        unpack_i420(packed, 6, 6)


def test_pack_equals_the_trainer_cache_bit_for_bit(pack, sources):
    folder, cache = pack
    manifest = read_manifest(folder)
    assert manifest["codec"] == "h264" and manifest["describe"] == "x265 QP 37" and manifest["cache_version"] == 2
    assert [(e["name"], e["split"], e["group"], e["frames"]) for e in manifest["clips"]] == [
        ("video", "train", "video", 8), ("pan", "selection", "photo", 7)]
    assert all(entry["cache_checked"] for entry in manifest["clips"])
    loaded = load_pack(folder, threads=1)
    assert loaded.warnings == []
    for clip in loaded.clips:
        cached = prepare_clip(clip.name, sources[clip.name], QP37, cache, False)  # found in the cache
        assert clip.gt.shape == cached.gt_shape and clip.lq.shape == cached.lq_shape
        assert np.array_equal(clip.gt, cached.gt()) and np.array_equal(clip.lq, cached.lq())
    video = loaded.split("train")[0]
    assert video.gt.shape == (8, 48, 64, 3) and video.gt_size == video.lq_size == (48, 64)
    assert 20 < np.mean([np.mean((video.gt_frame(i).astype(float) - video.lq_frame(i)) ** 2) for i in range(8)])


def test_h264_streams_decode_alike_with_ffmpeg_and_opencv(pack):
    folder, _ = pack
    entry = read_manifest(folder)["clips"][0]["gt"]
    shape = (entry["frames"], entry["format"]["height"] * 3 // 2, entry["format"]["width"])
    frames = decode_frames(folder / entry["file"], "h264", *shape, decoder="ffmpeg")
    assert frames.shape == shape
    from edvr_cli.train.packed import sha256
    assert sha256(frames) == entry["planes_sha256"]
    with pytest.raises(PackError, match="manifest says"):
        decode_frames(folder / entry["file"], "h264", shape[0] + 1, *shape[1:], decoder="ffmpeg")
    pytest.importorskip("cv2")
    assert np.array_equal(decode_frames(folder / entry["file"], "h264", *shape, decoder="cv2"), frames)


def test_lossless_pack_aligns_ground_truth_and_input_through_the_sampler(lossless_pack):
    loaded = load_pack(lossless_pack, threads=1)
    assert read_manifest(lossless_pack)["codec"] == "xz"
    for clip in loaded.clips:  # x265 lossless: the pair differs by nothing
        assert np.array_equal(clip.gt, clip.lq)
    dataset = PatchDataset(loaded.clips, num_frame=3, patch=16, scale=1, intervals=(1,), augment=True, seed=5)
    for k in range(24):  # crops, strides and flips keep the centre input frame on its ground truth
        lq, gt = dataset[k]
        assert lq.shape == (3, 3, 16, 16) and gt.shape == (3, 16, 16) and lq.dtype == gt.dtype == torch.uint8
        assert torch.equal(lq[1], gt)


def test_patch_sampling_from_a_pack_is_seeded_and_matches_the_cache(pack, sources):
    folder, cache = pack
    train = load_pack(folder, splits=["train"], threads=1).clips
    assert [clip.name for clip in train] == ["video"]
    first = PatchDataset(train, 3, 32, 1, (1, 2), True, seed=7)
    again = PatchDataset(train, 3, 32, 1, (1, 2), True, seed=7)
    other = PatchDataset(train, 3, 32, 1, (1, 2), True, seed=8)
    cached = PatchDataset([ArrayClip(prepare_clip("video", sources["video"], QP37, cache, False))], 3, 32, 1,
                          (1, 2), True, seed=7)
    for k in (0, 1, 17):
        lq, gt = first[k]
        assert lq.shape == (3, 3, 32, 32) and gt.shape == (3, 32, 32)
        assert all(torch.equal(a, b) for a, b in zip(first[k], again[k]))
        assert all(torch.equal(a, b) for a, b in zip(first[k], cached[k]))
    assert not all(torch.equal(a, b) for k in range(4) for a, b in zip(first[k], other[k]))


def test_edvr_train_reads_a_pack(pack, tmp_path):
    folder, _ = pack
    config = resolve_config("tiny", {"gt": str(folder)})
    clips = load_clips(config, tmp_path)
    assert [c.name for c in clips.train] == ["video"] and [c.name for c in clips.val] == ["pan"]
    assert clips.degradation.startswith("x265 QP 37 (pack")
    named = load_clips(resolve_config("tiny", {"gt": str(folder), "val_clips": ("pan",)}), tmp_path)
    assert [c.name for c in named.train] == ["video"] and [c.name for c in named.val] == ["pan"]
    with pytest.raises(DataError, match="no training clips"):
        load_clips(resolve_config("tiny", {"gt": str(folder), "val_clips": ("video",)}), tmp_path)
    with pytest.raises(ConfigError, match="QP 37"):
        load_clips(resolve_config("tiny", {"gt": str(folder), "qp": 30}), tmp_path)


def test_a_damaged_pack_is_refused(pack, tmp_path):
    folder, _ = pack
    copy = tmp_path / "copy"
    subprocess.run(["cp", "-r", str(folder), str(copy)], check=True)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["clips"][0]["lq"]["planes_sha256"] = "0" * 64
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(PackError, match="other planes"):
        load_pack(copy, threads=1)
    manifest["version"] = 99
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(PackError, match="version"):
        read_manifest(copy)


def test_pack_builder_keeps_held_out_footage_out():
    builder = _load_script("pack_train_qe")
    for name in ("cityCC0.mpg", "/usr/share/doc/opencv-doc/examples/data/Megamind.avi", "Megamind_bugy.avi",
                 "cup.mp4", "carphone_distorted.mp4"):
        with pytest.raises(SystemExit, match="held-out"):
            builder.refuse_held_out(name)
    sources = [*builder.VIDEOS, *builder.PHOTOS]
    for source in sources:
        builder.refuse_held_out(source.name, source.file)  # none of the sources is refused
    names = [source.name for source in sources]
    assert len(names) == len(set(names))
    selection = {s.file for s in sources if s.split == "selection"}
    training = {s.file for s in sources if s.split == "train"}
    assert selection and not selection & training
    assert {s.name for s in builder.PHOTOS if s.split == "selection"} == {
        f"pan-{n}" for n in ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field",
                             "immunohistochemistry", "retina")}


def test_photo_pan_moves_by_exact_pixels():
    builder = _load_script("pack_train_qe")
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (192, 256, 3), dtype=np.uint8)
    motion = {"kind": "pan", "vx": 2.0, "vy": 0.0, "zoom": 1.0, "omega": 0.0, "jitter": 0.0, "parallax": 0.0,
              "seed": 0}
    frames, notes = builder.render_motion(image, motion, 6, 80, 64)
    assert len(frames) == 6 and frames[0].shape == (64, 80, 3) and notes["width"] == 80
    for a, b in zip(frames, frames[1:]):  # 2 source pixels a frame: 1 output pixel after area x2
        assert np.array_equal(a[:, 1:], b[:, :-1])
    for index, name in enumerate(("a", "b", "c", "d", "e")):
        moving = builder.render_motion(image, builder.motion_for(name, index), 8, 80, 64)[0]
        assert len(moving) == 8 and not np.array_equal(moving[0], moving[-1])


@pytest.fixture(scope="module")
def smoke_pack(tmp_path_factory):
    return _load_script("gpu_train_qe").make_smoke_pack(tmp_path_factory.mktemp("smoke") / "pack", frames=8)


def _gpu_run(out, *args, env=None):
    command = [sys.executable, str(REPO / "benchmarks" / "gpu_train_qe.py"), "--smoke", "--threads", "1",
               "--out", str(out), "--val-seconds", "1000", "--val-frames", "2", *args]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


def test_gpu_run_smoke_stops_checkpoints_and_resumes_exactly(smoke_pack, tmp_path):
    pack = ["--pack", str(smoke_pack)]
    straight = _gpu_run(tmp_path / "straight", *pack, "--iters", "6")
    assert "session ended at iteration 6 of 6" in straight and "selection input PSNR" in straight
    files = sorted(p.name for p in (tmp_path / "straight").iterdir())
    assert files == ["best.pth", "ema.pth", "last.pth", "log.jsonl", "snapshots.pth", "summary.json"]
    events = [json.loads(line)["event"] for line in (tmp_path / "straight" / "log.jsonl").read_text().splitlines()]
    assert {"baseline", "train", "val"} <= set(events)

    first = _gpu_run(tmp_path / "first", *pack, "--iters", "6", "--stop-at", "3")
    assert "session ended at iteration 3 of 6" in first
    second = _gpu_run(tmp_path / "second", *pack, "--resume", str(tmp_path / "first"))
    assert "resumed from" in second and "session ended at iteration 6 of 6" in second
    a = torch.load(tmp_path / "straight" / "last.pth", weights_only=True)
    b = torch.load(tmp_path / "second" / "last.pth", weights_only=True)
    assert all(torch.equal(a["params"][k], b["params"][k]) for k in a["params"])
    assert all(torch.equal(a["train_state"]["ema"][k], b["train_state"]["ema"][k]) for k in a["params"])
    snapshots = torch.load(tmp_path / "second" / "snapshots.pth", weights_only=True)["snapshots"]
    assert sorted(snapshots) == ["iter000003-ema", "iter000003-raw", "iter000006-ema", "iter000006-raw"]
    summary = json.loads((tmp_path / "second" / "summary.json").read_text())
    assert summary["iteration"] == 6 and len(summary["run"]["sessions"]) == 2

    from models import load_model
    assert load_model(tmp_path / "second" / "best.pth") is not None  # what `edvr enhance --model` reads


def test_gpu_run_time_limit_and_shell_wrapper(smoke_pack, tmp_path):
    env = {**os.environ, "PYTHON": sys.executable, "OUT": str(tmp_path)}
    result = subprocess.run(["bash", str(REPO / "benchmarks" / "gpu_train_qe.sh"), "--smoke", "--threads", "1",
                             "--pack", str(smoke_pack), "--iters", "100000", "--max-seconds", "20",
                             "--val-frames", "2", "--amp", "bf16"],
                            capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "(time (--max-seconds 20))" in result.stdout and "amp torch.bfloat16" in result.stdout
    summary = json.loads((tmp_path / "qe15-smoke" / "summary.json").read_text())
    assert 0 < summary["iteration"] < 100000 and summary["elapsed"] < 20
    assert (tmp_path / "gpu_train_qe.log").read_text() == result.stdout
