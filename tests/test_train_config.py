"""edvr train configuration: preset values (seed and BasicSR), the loss-weight rule, the lr schedule,
overrides, --print-config and one-line errors."""

import math

import pytest
from click.testing import CliRunner

from edvr_cli.cli import main
from edvr_cli.train.config import (PRESETS, ConfigError, TrainConfig, resolve_config, resume_config,
                                   scale_periods, seed_loss_weight)
from edvr_cli.train.schedule import get_lr
from models import PRESETS as MODEL_PRESETS


def test_seed_presets_match_the_seed_runs():
    for name, num_feat, blocks in (("small", 64, 10), ("large", 128, 40)):
        config = resolve_config(name)
        assert (config.scale, config.hr_in, config.with_predeblur, config.num_frame) == (1, True, True, 5)
        assert (config.patch, config.batch, config.lr) == (256, 4, 2e-4)
        assert (config.num_feat, config.num_reconstruct_block) == (num_feat, blocks)
        assert config.periods == (50_000, 50_000, 50_000, 100_000)
        assert config.effective_loss_weight() == 1.0
        assert config.degrade == "compress" and config.qp == 37
        # the network matches the architecture preset of the same name in models/
        assert {k: v for k, v in config.model_kwargs().items() if k in MODEL_PRESETS[name]} == MODEL_PRESETS[name]


def test_one_table_of_networks_and_of_preset_names():
    from edvr_cli.commands.train import PRESET_NAMES

    assert PRESET_NAMES == tuple(PRESETS)
    for name, network in MODEL_PRESETS.items():  # the training presets start from models.PRESETS
        assert {k: v for k, v in PRESETS[name].items() if k in network} == network
    assert {k: PRESETS["edvr-m-wotsa"][k] for k in MODEL_PRESETS["edvr-m"]} == \
        dict(MODEL_PRESETS["edvr-m"], with_tsa=False)


def test_basicsr_presets_match_the_published_options():
    m, l = resolve_config("edvr-m-wotsa"), resolve_config("edvr-l-wotsa")
    assert m.periods == l.periods == (150_000,) * 4
    assert m.restart_weights == (1.0,) * 4 and l.restart_weights == (1.0, 0.5, 0.5, 0.5)
    for name in ("edvr-m", "edvr-l", "edvr-m-wotsa", "edvr-l-wotsa"):
        config = resolve_config(name)
        assert (config.scale, config.hr_in, config.patch, config.batch, config.lr) == (4, False, 256, 4, 4e-4)
        assert (config.eta_min, config.iters, config.betas, config.dcn_lr_mul) == (1e-7, 600_000, (0.9, 0.99), 1.0)
        assert config.degrade == "bicubic4" and config.loss_reduction == "sum"
    assert resolve_config("edvr-l").restart_weights == (1.0, 0.5, 0.5, 0.5, 0.5)
    assert resolve_config("edvr-m").periods == (50_000, 100_000, 150_000, 150_000, 150_000)
    # BasicSR's tsa_iter 50000 applies to the second stage, which starts from a no-TSA run
    assert PRESETS["edvr-m"]["tsa_warmup"] == 50_000
    assert resolve_config("edvr-m").tsa_warmup == 0
    assert resolve_config("edvr-m", {"init": "stage1.pth"}).tsa_warmup == 50_000
    assert resolve_config("edvr-m", {"init": "stage1.pth", "with_tsa": False}).tsa_warmup == 0


def test_loss_weight_rule_scales_inversely_with_pixels_per_gpu():
    assert seed_loss_weight(256, 4) == 1.0
    assert seed_loss_weight(128, 4) == 4.0  # a quarter of the pixels -> 4x the weight
    assert seed_loss_weight(256, 2) == 2.0
    assert seed_loss_weight(512, 4) == 0.25
    assert seed_loss_weight(64, 2, "mean") == 1.0
    assert resolve_config("small", {"patch": 128}).effective_loss_weight() == 4.0
    assert resolve_config("small", {"patch": 128, "loss_weight": 0.5}).effective_loss_weight() == 0.5


def test_get_lr_matches_basicsr_cosine_restarts():
    periods, weights = (10, 20), (1.0, 0.5)
    lr = lambda it: get_lr(it, 1.0, periods, weights, 0.0)  # noqa: E731
    assert lr(0) == 1.0
    assert lr(5) == pytest.approx(0.5)
    assert lr(10) == pytest.approx(0.0)  # the cycle's end reaches eta_min
    assert lr(11) == pytest.approx(0.5 * 0.5 * (1 + math.cos(math.pi / 20)))  # restart at half weight
    assert lr(20) == pytest.approx(0.25)
    assert lr(30) == pytest.approx(0.0)
    assert get_lr(31, 1.0, periods, weights, 1e-7) == 1e-7  # past the last cycle: eta_min
    assert get_lr(0, 2e-4, (150_000,) * 4, (1.0,) * 4, 1e-7) == 2e-4


def test_periods_scale_with_iters_unless_given():
    assert scale_periods((50_000, 50_000, 50_000, 100_000), 1000) == (200, 200, 200, 400)
    assert sum(scale_periods((3, 3, 3), 10)) == 10
    assert resolve_config("small", {"iters": 2500}).periods == (500, 500, 500, 1000)
    config = resolve_config("small", {"iters": 2500, "periods": (1000, 1500)})
    assert config.periods == (1000, 1500) and config.restart_weights == (1.0, 1.0)


def test_bad_values_raise_config_errors():
    with pytest.raises(ConfigError, match="multiple of 16"):
        resolve_config("small", {"patch": 100})
    with pytest.raises(ConfigError, match="odd"):
        resolve_config("tiny", {"num_frame": 4})
    with pytest.raises(ConfigError, match="--init"):
        resolve_config("edvr-m", {"tsa_warmup": 10})
    with pytest.raises(ConfigError, match="restart weights"):
        resolve_config("small", {"periods": (10, 10), "restart_weights": (1.0,)})
    with pytest.raises(ConfigError, match="x4 network"):
        resolve_config("small", {"degrade": "bicubic4"})
    with pytest.raises(ConfigError, match="unknown preset"):
        resolve_config("huge")


def test_resume_keeps_the_stored_configuration():
    stored = resolve_config("tiny", {"gt": "clips"}).to_dict()
    config = resume_config(stored, {"iters": 400, "resume": "run/last.pth", "lr": 3e-3})
    assert isinstance(config, TrainConfig) and config.iters == 400 and config.resume == "run/last.pth"
    with pytest.raises(ConfigError, match="cannot change: lr, patch"):
        resume_config(stored, {"lr": 1e-4, "patch": 32})


def test_print_config_shows_resolved_values_and_the_rule():
    result = CliRunner().invoke(main, ["train", "--preset", "small", "--patch", "128", "--batch", "2",
                                       "--frames", "7", "--no-tsa", "--num-feat", "32", "--iters", "1000",
                                       "--lr", "1e-4", "--print-config"])
    assert result.exit_code == 0, result.output
    lines = {line.split("=")[0].strip(): line.split("=", 1)[1].split("#")[0].strip()
             for line in result.output.splitlines() if not line.startswith("#")}
    assert (lines["patch"], lines["batch"], lines["num_frame"], lines["with_tsa"]) == ("128", "2", "7", "False")
    assert (lines["num_feat"], lines["iters"], lines["lr"]) == ("32", "1000", "0.0001")
    assert lines["periods"] == "(200, 200, 200, 400)"
    assert "# loss weight 8 = (256*256*4) / (128^2 * 2)" in result.output


def test_cli_errors_are_one_line():
    runner = CliRunner()
    result = runner.invoke(main, ["train", "--preset", "small", "--patch", "100"])
    assert result.exit_code == 1 and result.output.strip().splitlines() == [
        "Error: --patch 100 must be a positive multiple of 16 for this network (scale 1, hr_in=True)"]
    result = runner.invoke(main, ["train", "--preset", "tiny", "--gt", "/nonexistent/clips"])
    assert result.exit_code == 1 and result.output.strip() == "Error: --gt: no such file or folder: /nonexistent/clips"
    result = runner.invoke(main, ["train", "--resume", "/nonexistent/last.pth"])
    assert result.exit_code == 1 and "no such checkpoint file" in result.output and "Traceback" not in result.output
