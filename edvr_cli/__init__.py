"""edvr: restore and upscale real video with EDVR."""

__version__ = "0.1.0"
