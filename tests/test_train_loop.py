"""edvr train loop: overfits a tiny clip, resumes exactly, skips non-finite steps, TSA warm-up from a
no-TSA checkpoint, checkpoints that `enhance --model` loads."""

import math
import os
import signal

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import edvr_cli.train.losses as losses
from edvr_cli.cli import main
from edvr_cli.image_io import write_png
from edvr_cli.train.checkpointing import load_init_weights, read_training_checkpoint
from edvr_cli.train.config import resolve_config, resume_config
from edvr_cli.clip_layout import clip_frames
from edvr_cli.train.losses import charbonnier_loss, pixel_loss, with_input_colour
from edvr_cli.train.loop import TrainingError, resolve_amp, start_at_identity, train
from edvr_cli.train.runlog import read_log
from models import CheckpointError, build_model, load_model, save_model
from tests.clips import make_clip


@pytest.fixture(scope="module")
def dark_clip(tmp_path_factory):
    """A 32x32, 4-frame testsrc2 clip as ground truth; input = the frames at 60% brightness."""
    root = tmp_path_factory.mktemp("dark")
    frames = list(clip_frames(make_clip(root / "clip.mkv", 32, 32, 4)))
    for side, scale in (("gt", 1.0), ("lq", 0.6)):
        (root / side / "clip").mkdir(parents=True)
        for idx, frame in enumerate(frames):
            write_png(root / side / "clip" / f"{idx:03d}.png", np.round(frame * scale).astype(np.uint8))
    return root


def tiny(dark_clip, tmp_path, **overrides):
    values = dict(gt=str(dark_clip / "gt"), lq=str(dark_clip / "lq"), out=str(tmp_path / "run"),
                  cache_dir=str(tmp_path / "cache"), cpu_threads=1, val_every=1000, save_every=1000)
    values.update(overrides)
    return resolve_config("tiny", values)


def quiet(config, **kwargs):
    return train(config, show_progress=False, echo=lambda line: None, **kwargs)


def test_cli_overfits_a_tiny_clip(dark_clip, tmp_path):
    result = CliRunner().invoke(main, [
        "train", "--preset", "tiny", "--gt", str(dark_clip / "gt"), "--lq", str(dark_clip / "lq"),
        "--val-clips", "clip", "--no-augment", "--threads", "1", "--out", str(tmp_path / "run"), "--no-progress"])
    # the only clip is also the validation clip: that is refused, then allowed once there is another
    assert result.exit_code == 1 and "nothing left to train on" in result.output
    result = CliRunner().invoke(main, [
        "train", "--preset", "tiny", "--gt", str(dark_clip / "gt"), "--lq", str(dark_clip / "lq"),
        "--no-augment", "--threads", "1", "--out", str(tmp_path / "run"), "--no-progress"])
    assert result.exit_code == 0, result.output
    log = read_log(tmp_path / "run" / "log.jsonl")
    losses = [r["loss"] for r in log if r["event"] == "train"]
    iters = [r["iter"] for r in log if r["event"] == "train"]
    assert iters[0] == 1 and iters[-1] == 200
    assert np.mean(losses[-3:]) < 0.5 * losses[0], losses  # (last three: patches differ per step)
    assert all(r["lr"] > 0 and r["it_per_s"] > 0 for r in log if r["event"] == "train")
    assert "done: 200 iterations" in result.output
    # the checkpoint is what `enhance --model` loads
    model = load_model(tmp_path / "run" / "last.pth")
    assert model.config["num_feat"] == 8 and model.config["num_frame"] == 3


def test_resume_continues_exactly(dark_clip, tmp_path):
    straight = quiet(tiny(dark_clip, tmp_path / "a", iters=6, periods=(4, 2)))
    first = quiet(tiny(dark_clip, tmp_path / "b", iters=6, periods=(4, 2), stop_at=3))
    assert first.iteration == 3
    params, stored, state = read_training_checkpoint(tmp_path / "b" / "run" / "last.pth")
    assert (state["iteration"], state["samples_per_rank"]) == (3, 12)
    assert set(state["rng"]) == {"python", "numpy", "torch", "cuda"}
    resumed = quiet(resume_config(stored, {"resume": str(tmp_path / "b" / "run" / "last.pth"), "stop_at": 6}))
    assert resumed.iteration == 6
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[key], b[key]) for key in a)
    assert not all(torch.equal(a[key], params[key]) for key in a)  # it did train after the resume
    state_a = read_training_checkpoint(tmp_path / "a" / "run" / "last.pth")[2]["optimizer"]["state"]
    state_b = read_training_checkpoint(tmp_path / "b" / "run" / "last.pth")[2]["optimizer"]["state"]
    assert all(torch.equal(state_a[k]["exp_avg_sq"], state_b[k]["exp_avg_sq"]) for k in state_a)


def test_non_finite_losses_are_skipped_then_stop(dark_clip, tmp_path, monkeypatch):
    calls = []

    def sometimes_nan(pred, target, eps, reduction):
        calls.append(1)
        loss = charbonnier_loss(pred, target, eps, reduction)
        return loss * math.nan if len(calls) == 2 else loss

    monkeypatch.setattr(losses, "charbonnier_loss", sometimes_nan)
    result = quiet(tiny(dark_clip, tmp_path / "a", iters=4, log_every=1))
    assert result.iteration == 4
    skips = [r for r in read_log(tmp_path / "a" / "run" / "log.jsonl") if r["event"] == "skip"]
    assert [(r["iter"], r["loss"], r["bad_steps"]) for r in skips] == [(2, "nan", 1)]

    monkeypatch.setattr(losses, "charbonnier_loss", lambda *args: torch.tensor(math.inf, requires_grad=True))
    with pytest.raises(TrainingError, match="stopped at iteration 3: 3 non-finite losses in a row"):
        quiet(tiny(dark_clip, tmp_path / "b", iters=10, max_bad_steps=3))
    torch.manual_seed(10)  # no step was taken: the saved weights are the initial ones
    initial = build_model(tiny(dark_clip, tmp_path).model_kwargs()).state_dict()
    saved = read_training_checkpoint(tmp_path / "b" / "run" / "last.pth")[0]
    assert all(torch.equal(initial[key], saved[key]) for key in initial)


def test_sigterm_finishes_the_step_saves_and_stops(dark_clip, tmp_path, monkeypatch):
    calls = []

    def terminate_on_second_step(*args):
        calls.append(1)
        if len(calls) == 2:
            os.kill(os.getpid(), signal.SIGTERM)  # what a cluster scheduler sends on preemption
        return charbonnier_loss(*args)

    monkeypatch.setattr(losses, "charbonnier_loss", terminate_on_second_step)
    before = signal.getsignal(signal.SIGTERM)
    notes = []
    result = train(tiny(dark_clip, tmp_path, iters=10), show_progress=False, echo=notes.append)
    assert result.iteration == 2 and len(calls) == 2
    assert read_training_checkpoint(tmp_path / "run" / "last.pth")[2]["iteration"] == 2
    assert notes[-1].startswith("stopped on request at iteration 2; continue with --resume")
    assert signal.getsignal(signal.SIGTERM) is before


def test_tsa_warmup_trains_only_fusion_from_a_no_tsa_checkpoint(dark_clip, tmp_path):
    no_tsa = build_model(tiny(dark_clip, tmp_path).model_kwargs())
    save_model(no_tsa, tmp_path / "no_tsa.pth")
    config = tiny(dark_clip, tmp_path, with_tsa=True, init=str(tmp_path / "no_tsa.pth"), tsa_warmup=2,
                  iters=3, periods=(3,), stop_at=2)
    notes = []
    result = train(config, show_progress=False, echo=notes.append)
    assert any("loaded 62 of 88 tensors; 26 TSA fusion tensors start fresh (no-TSA checkpoint), its 1x1 "
               "fusion conv (2 tensors) is not used" in line for line in notes), notes
    warm = {key: value.clone() for key, value in result.model.state_dict().items()}
    start = no_tsa.state_dict()
    torch.manual_seed(10)  # the loop's seed: the TSA network it built before loading --init
    fresh_fusion = build_model(config.model_kwargs()).state_dict()
    for key, value in warm.items():
        if key.startswith("fusion."):
            assert not torch.equal(value, fresh_fusion[key]), f"{key} did not train during the warm-up"
        else:
            assert torch.equal(value, start[key]), f"{key} changed during the fusion-only warm-up"
    # after the warm-up (iteration 3, resumed across the switch) the whole network trains
    resumed = quiet(resume_config(read_training_checkpoint(tmp_path / "run" / "last.pth")[1],
                                  {"resume": str(tmp_path / "run" / "last.pth"), "stop_at": 3}))
    after = resumed.model.state_dict()
    assert not torch.equal(after["conv_first.weight"], start["conv_first.weight"])


def test_init_that_does_not_fit_is_one_clear_error(dark_clip, tmp_path):
    other = build_model(dict(tiny(dark_clip, tmp_path).model_kwargs(), num_feat=16))
    save_model(other, tmp_path / "other.pth")
    model = build_model(tiny(dark_clip, tmp_path).model_kwargs())
    with pytest.raises(CheckpointError, match=r"does not fit the network: wrong shapes: conv_first.weight"):
        load_init_weights(model, tmp_path / "other.pth")
    save_model(model, tmp_path / "same.pth")
    assert load_init_weights(model, tmp_path / "same.pth").endswith("(edvr layout): loaded 64 of 64 tensors")


def test_amp_is_fp32_on_cpu():
    assert resolve_amp("auto", torch.device("cpu")) is None
    with pytest.raises(ValueError, match="needs a GPU"):
        resolve_amp("bf16", torch.device("cpu"))


def test_charbonnier_sum_and_mean():
    pred, target = torch.zeros(1, 3, 2, 2), torch.full((1, 3, 2, 2), 0.5)
    assert charbonnier_loss(pred, target, 1e-12, "sum").item() == pytest.approx(6.0)
    assert charbonnier_loss(pred, target, 1e-12, "mean").item() == pytest.approx(0.5)


def test_l2_criterion_is_squared_error(dark_clip, tmp_path):
    pred, target = torch.zeros(1, 3, 2, 2), torch.full((1, 3, 2, 2), 0.5)
    assert pixel_loss(pred, target, tiny(dark_clip, tmp_path, criterion="l2")).item() == 3.0
    assert pixel_loss(pred, target, tiny(dark_clip, tmp_path, criterion="l2", loss_reduction="mean")).item() == 0.25
    assert pixel_loss(pred, target, tiny(dark_clip, tmp_path)).item() == pytest.approx(6.0)  # charbonnier
    with pytest.raises(Exception, match="--criterion must be one of charbonnier, l2"):
        tiny(dark_clip, tmp_path, criterion="l1")


@pytest.mark.parametrize("hr_in, scale", [(False, 1), (True, 1), (False, 4)])
def test_identity_start_returns_the_centre_frame(hr_in, scale):
    torch.manual_seed(0)
    model = build_model(dict(num_feat=8, num_frame=3, num_extract_block=1, num_reconstruct_block=1,
                             deformable_groups=1, with_tsa=False, hr_in=hr_in, scale=scale)).eval()
    frames = torch.rand(1, 3, 3, 16, 16)
    centre = frames[:, 1] if scale == 1 else torch.nn.functional.interpolate(
        frames[:, 1], scale_factor=4, mode="bilinear", align_corners=False)
    with torch.no_grad():
        assert (model(frames) - centre).abs().max() > 1e-3  # a random residual before
        start_at_identity(model)
        assert torch.equal(model(frames), centre)


def test_cli_identity_start_zeroes_the_last_conv_and_refuses_init(dark_clip, tmp_path):
    def one_step(out, *flags):
        result = CliRunner().invoke(main, [
            "train", "--preset", "tiny", "--gt", str(dark_clip / "gt"), "--lq", str(dark_clip / "lq"),
            "--criterion", "l2", "--iters", "1", "--lr", "1e-4", "--threads", "1",
            "--out", str(tmp_path / out), "--no-progress", *flags])
        assert result.exit_code == 0, result.output
        return result

    assert "identity start" in one_step("run", "--identity-start").output
    params, config, _ = read_training_checkpoint(tmp_path / "run" / "last.pth")
    assert config["criterion"] == "l2" and config["identity_start"] is True
    # one Adam step moves a weight by at most lr: from zero, conv_last stays within 1e-4
    assert 0 < params["conv_last.weight"].abs().max() <= 1e-4 * (1 + 1e-5)
    one_step("random")
    assert read_training_checkpoint(tmp_path / "random" / "last.pth")[0]["conv_last.weight"].abs().max() > 1e-2  # the default init
    # zeroing the last conv would throw away part of --init's weights: refused
    result = CliRunner().invoke(main, [
        "train", "--preset", "tiny", "--gt", str(dark_clip / "gt"), "--lq", str(dark_clip / "lq"),
        "--identity-start", "--init", str(tmp_path / "run" / "last.pth"), "--out", str(tmp_path / "run2")])
    assert result.exit_code == 1
    assert "Error: --identity-start zeroes the last conv of an untrained network; it does not go with --init" in result.output
    assert not (tmp_path / "run2").exists()


def test_with_input_colour_moves_the_target_to_the_centre_frames_mean():
    gt = torch.tensor([[[[0.0, 0.2], [0.4, 0.6]], [[0.5, 0.5], [0.5, 0.5]], [[1.0, 0.0], [1.0, 0.0]]]])  # (1, 3, 2, 2)
    lq = torch.zeros(1, 3, 3, 2, 2)
    lq[0, 1] = torch.tensor([0.1, 0.4, 0.3])[:, None, None]  # centre frame: flat, means 0.1 / 0.4 / 0.3
    lq[0, 0] = lq[0, 2] = 0.9  # the neighbours do not count
    target = with_input_colour(gt, lq)
    expected = torch.tensor([[[[-0.2, 0.0], [0.2, 0.4]], [[0.4, 0.4], [0.4, 0.4]], [[0.8, -0.2], [0.8, -0.2]]]])
    assert torch.allclose(target, expected, atol=1e-7)
    assert torch.allclose(target.mean(dim=(-2, -1)), torch.tensor([[0.1, 0.4, 0.3]]))


def test_cli_keep_colour_and_snapshots(dark_clip, tmp_path):
    def run(out, *flags):
        result = CliRunner().invoke(main, [
            "train", "--preset", "tiny", "--gt", str(dark_clip / "gt"), "--lq", str(dark_clip / "lq"),
            "--iters", "4", "--save-every", "4", "--threads", "1", "--out", str(tmp_path / out), "--no-progress", *flags])
        assert result.exit_code == 0, result.output

    run("kept", "--keep-colour", "--snapshot-every", "2")
    params, config, _ = read_training_checkpoint(tmp_path / "kept" / "last.pth")
    assert config["keep_input_colour"] is True and config["snapshot_every"] == 2
    snapshots = sorted(path.name for path in (tmp_path / "kept" / "snapshots").iterdir())
    assert snapshots == ["iter_2.pth", "iter_4.pth"]
    last_snapshot = load_model(tmp_path / "kept" / "snapshots" / "iter_4.pth").state_dict()
    assert all(torch.equal(last_snapshot[key], value) for key, value in params.items())
    # The input is the ground truth at 60% brightness: with --keep-colour the target has the input's
    # (darker) mean, so the same seed and batches train different weights.
    run("plain")
    plain = read_training_checkpoint(tmp_path / "plain" / "last.pth")[0]
    assert not (tmp_path / "plain" / "snapshots").exists()
    assert not torch.equal(plain["conv_last.weight"], params["conv_last.weight"])
