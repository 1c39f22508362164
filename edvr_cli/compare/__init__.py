"""`edvr compare`: see restorations next to their inputs (video, zoomed crops, HTML page)."""

from edvr_cli.compare.inputs import CompareError
from edvr_cli.compare.make import CompareResult, Reporter, compare_crops, compare_html, compare_video

__all__ = ["CompareError", "CompareResult", "Reporter", "compare_crops", "compare_html", "compare_video"]
