"""Named EDVR configurations: plain dicts of `EDVR` constructor arguments."""

from __future__ import annotations

PRESETS: dict[str, dict] = {
    # BasicSR / MMEditing x4 video super-resolution (REDS, Vimeo90K).
    "edvr-m": dict(num_feat=64, num_frame=5, num_extract_block=5, num_reconstruct_block=10,
                   with_tsa=True, hr_in=False, with_predeblur=False, scale=4),
    "edvr-l": dict(num_feat=128, num_frame=5, num_extract_block=5, num_reconstruct_block=40,
                   with_tsa=True, hr_in=False, with_predeblur=False, scale=4),
    # The seed's compressed-video (LDV, HEVC QP37) runs: scale 1, high-res input, predeblur.
    "small": dict(num_feat=64, num_frame=5, num_extract_block=5, num_reconstruct_block=10,
                  with_tsa=True, hr_in=True, with_predeblur=True, scale=1),
    "large": dict(num_feat=128, num_frame=5, num_extract_block=5, num_reconstruct_block=40,
                  with_tsa=True, hr_in=True, with_predeblur=True, scale=1),
}


def preset_config(name: str, **overrides) -> dict:
    """A copy of preset `name` with `overrides` applied (None values are ignored)."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    config = dict(PRESETS[name])
    config.update({key: value for key, value in overrides.items() if value is not None})
    return config
