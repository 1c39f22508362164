"""Checkpoints in BasicSR, MMEditing, original-EDVR and our own layout load to the same network."""

import re

import pytest
import torch

from models import EDVR, CheckpointError, load_model, model_config, read_checkpoint, save_model


def random_model(**overrides):
    config = dict(num_feat=16, num_frame=5, deformable_groups=2, num_extract_block=2, num_reconstruct_block=3)
    config.update(overrides)
    torch.manual_seed(0)
    model = EDVR(**config).eval()
    with torch.no_grad():  # randomise all, the zero-initialised offset convs too
        for param in model.parameters():
            param.copy_(torch.randn_like(param) * 0.05)
    return model


# MMEditing's EDVRNet wraps these convs in ConvModule (adding `.conv`) and renames some modules.
MMEDIT_CONVMODULES = re.compile(
    r"^(conv_l[23]_[12]|pcd_align\.(offset_conv[123]|feat_conv)\.l\d|pcd_align\.cas_offset_conv[12]"
    r"|fusion\.(feat_fusion|spatial_attn[1-4]|spatial_attn_l[1-3]|spatial_attn_add1))\.")


def to_mmediting(state):
    converted = {}
    for key, value in state.items():
        if MMEDIT_CONVMODULES.match(key):
            key = re.sub(r"\.(weight|bias)$", r".conv.\1", key)
        key = re.sub(r"^conv_l([23])_([12])\.", r"feat_l\1_conv\2.", key)
        key = key.replace("pcd_align.", "pcd_alignment.")
        key = re.sub(r"^upconv([12])\.", r"upsample\1.upsample_conv.", key)
        converted["generator." + key] = value
    return {"meta": {"mmedit_version": "0.x"}, "state_dict": converted}


def to_original(state):
    """xinntao/EDVR names, as BasicSR's convert_models.py maps them."""
    rules = [
        (r"^predeblur\.conv_first\.", "pre_deblur.conv_first_1."),
        (r"^predeblur\.stride_conv_hr([12])\.", lambda m: f"pre_deblur.conv_first_{int(m.group(1)) + 1}."),
        (r"^predeblur\.stride_conv_l([23])\.", r"pre_deblur.deblur_L\1_conv."),
        (r"^predeblur\.resblock_l3\.", "pre_deblur.RB_L3_1."),
        (r"^predeblur\.resblock_l2_([12])\.", r"pre_deblur.RB_L2_\1."),
        (r"^predeblur\.resblock_l1\.(\d)\.", lambda m: f"pre_deblur.RB_L1_{int(m.group(1)) + 1}."),
        (r"^conv_l([23])_([12])\.", r"fea_L\1_conv\2."),
        (r"^pcd_align\.offset_conv([123])\.l([123])\.", r"pcd_align.L\2_offset_conv\1."),
        (r"^pcd_align\.dcn_pack\.l([123])\.", r"pcd_align.L\1_dcnpack."),
        (r"^pcd_align\.feat_conv\.l([12])\.", r"pcd_align.L\1_fea_conv."),
        (r"\.conv_offset\.", ".conv_offset_mask."),
        (r"^fusion\.temporal_attn1\.", "tsa_fusion.tAtt_2."),
        (r"^fusion\.temporal_attn2\.", "tsa_fusion.tAtt_1."),
        (r"^fusion\.feat_fusion\.", "tsa_fusion.fea_fusion."),
        (r"^fusion\.spatial_attn_add([12])\.", r"tsa_fusion.sAtt_add_\1."),
        (r"^fusion\.spatial_attn_l([123])\.", r"tsa_fusion.sAtt_L\1."),
        (r"^fusion\.spatial_attn([1-5])\.", r"tsa_fusion.sAtt_\1."),
        (r"^fusion\.", "tsa_fusion."),
        (r"^reconstruction\.", "recon_trunk."),
        (r"^conv_hr\.", "HRconv."),
    ]
    converted = {}
    for key, value in state.items():
        for pattern, replacement in rules:
            key = re.sub(pattern, replacement, key)
        converted[key] = value
    return converted


def outputs(model, x):
    with torch.no_grad():
        return model(x)


CONFIGS = [
    {},
    {"with_tsa": False, "num_frame": 3},
    {"hr_in": True, "with_predeblur": True},
    {"with_predeblur": True, "num_frame": 7},
]


@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("layout", ["basicsr", "mmediting", "original", "edvr"])
def test_each_layout_round_trips_to_identical_outputs(tmp_path, config, layout):
    model = random_model(**config)
    state = model.state_dict()
    path = tmp_path / "ckpt.pth"
    if layout == "basicsr":
        decoy = {key: torch.zeros_like(value) for key, value in state.items()}
        torch.save({"params": decoy, "params_ema": state}, path)  # params_ema must win
    elif layout == "mmediting":
        torch.save(to_mmediting(state), path)
    elif layout == "original":
        torch.save(to_original(state), path)
    else:
        save_model(model, path)
    found_layout, _, inferred = read_checkpoint(path)
    assert found_layout == layout
    loaded = load_model(path)
    assert not loaded.training
    expected_config = model_config(model)
    assert {k: v for k, v in inferred.items() if k != "center_frame_idx"} == \
        {k: v for k, v in expected_config.items() if k != "center_frame_idx"}
    x = torch.rand(1, model.num_frame, 3, 32, 32)
    assert torch.equal(outputs(loaded, x), outputs(model, x))


def test_own_format_keeps_config_and_half_precision_halves_the_size(tmp_path):
    model = random_model(center_frame_idx=1, car=True)
    save_model(model, tmp_path / "full.pth", extra={"note": "provenance"})
    save_model(model, tmp_path / "half.pth", half=True)
    assert load_model(tmp_path / "full.pth").center_frame_idx == 1  # not inferable from tensors
    assert load_model(tmp_path / "full.pth").config["car"]
    full_size = (tmp_path / "full.pth").stat().st_size
    assert (tmp_path / "half.pth").stat().st_size < 0.6 * full_size
    x = torch.rand(1, 5, 3, 16, 16)
    assert (outputs(load_model(tmp_path / "half.pth"), x) - outputs(model, x)).abs().max() < 1e-2
    assert torch.load(tmp_path / "full.pth", weights_only=True)["note"] == "provenance"
    assert not list(tmp_path.glob("*.partial"))


def test_mismatch_names_missing_and_unexpected_keys(tmp_path):
    state = random_model().state_dict()
    state.pop("conv_last.bias")
    state["extra_head.weight"] = torch.zeros(1)
    torch.save({"params": state}, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError) as error:
        load_model(tmp_path / "bad.pth")
    message = str(error.value)
    assert "missing keys: conv_last.bias" in message and "unexpected keys: extra_head.weight" in message
    assert "\n" not in message


def test_unreadable_inputs_give_one_line_errors(tmp_path):
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_model(tmp_path / "absent.pth")
    (tmp_path / "text.pth").write_text("hello")
    with pytest.raises(CheckpointError, match="not a loadable checkpoint"):
        load_model(tmp_path / "text.pth")
    torch.save({"params": {"something.weight": torch.zeros(2)}}, tmp_path / "other.pth")
    with pytest.raises(CheckpointError, match="not an EDVR checkpoint"):
        load_model(tmp_path / "other.pth")


def test_code_in_a_checkpoint_is_never_run(tmp_path):
    class Exploit:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"params": {"x": Exploit()}}, tmp_path / "evil.pth")
    with pytest.raises(CheckpointError, match="not a loadable checkpoint"):
        load_model(tmp_path / "evil.pth")


def test_training_checkpoints_are_read_through_the_same_safe_loader(tmp_path, capsys):
    from edvr_cli.train.checkpointing import read_training_checkpoint

    class Exploit:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"params": {}, "train_state": Exploit(), "train_config": {}}, tmp_path / "evil.pth")
    with pytest.raises(CheckpointError, match=r"evil.pth: not a loadable checkpoint \(it holds a pickled "
                                              r"Python object \(print\)"):
        read_training_checkpoint(tmp_path / "evil.pth")
    assert "pwned" not in capsys.readouterr().out
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        read_training_checkpoint(tmp_path / "absent.pth")
