"""EDVR network code shared by `edvr enhance`, `edvr eval` and the trainer."""

from models.checkpoint import CheckpointError, load_model, model_config, read_checkpoint, save_model
from models.dcn import DCNv2Pack, modulated_deform_conv2d
from models.edvr import EDVR, PCDAlignment, PredeblurModule, TSAFusion
from models.errors import EdvrError
from models.download import ChecksumError, DownloadError, default_cache_dir, resolve_checkpoint
from models.presets import PRESETS, preset_config
from models.zoo import MODEL_ZOO, PublishedScore, UnknownModelError, ZooEntry, find_model


def build_model(preset_or_config: str | dict, **overrides) -> EDVR:
    """An untrained EDVR from a preset name or a dict of constructor arguments, plus overrides."""
    if isinstance(preset_or_config, str):
        config = preset_config(preset_or_config, **overrides)
    else:
        config = dict(preset_or_config)
        config.update({key: value for key, value in overrides.items() if value is not None})
    return EDVR(**config)


__all__ = [
    "EDVR", "PCDAlignment", "TSAFusion", "PredeblurModule", "DCNv2Pack", "modulated_deform_conv2d",
    "PRESETS", "preset_config", "build_model", "load_model", "save_model", "read_checkpoint",
    "model_config", "CheckpointError", "MODEL_ZOO", "ZooEntry", "PublishedScore", "find_model",
    "UnknownModelError", "EdvrError", "resolve_checkpoint", "DownloadError", "ChecksumError", "default_cache_dir",
]
