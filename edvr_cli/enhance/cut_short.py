"""An input that decodes to fewer frames than its container announced (a file cut short, as a
partial download is): the segments are planned again for the frames that do decode, so a
segmented run (plain or on Ray) restores what a single pass restores.

`plan_for_decoded(job, decoded)` changes the plan of a `job.Job` whose work folder exists;
`decodable_frames(job, ended)` says how many frames that is when the pass that ended early could
not tell (a Ray task decodes only its own part).
"""

from __future__ import annotations

from edvr_cli.enhance.segments import InputEndedEarly, Segment, plan_segments, same_windows
from edvr_cli.video.probe import count_frames


def plan_for_decoded(job, decoded: int) -> list[Segment]:
    """The plan for the `decoded` frames the input really holds (a range ends there at the
    latest); finished segments it leaves unchanged are kept, the others removed. Returns the
    segments to restore."""
    settings = job.settings
    stop = min(job.first_frame + job.frames_wanted, decoded)
    plan = plan_segments(decoded, settings.segment_frames, job.window, settings.padding, job.first_frame, stop)
    for segment in job.segments:
        unchanged = (segment.index < len(plan) and plan[segment.index] == segment
                     and same_windows(segment, decoded, job.source.num_frames, job.window, settings.padding))
        if not unchanged or not job.work.is_done(segment.index, segment.num_frames):
            job.work.discard(segment.index)
    job.segments = plan
    return [segment for segment in plan if not job.work.is_done(segment.index, segment.num_frames)]


def decodable_frames(job, ended: InputEndedEarly) -> int:
    """How many frames the input decodes to: what the ended pass counted, else a full decode
    (ffmpeg, no network). Raises `ended` unless that is fewer than announced and more than the
    frames before a range's start."""
    decoded = ended.decoded
    info = job.source.video_info
    if decoded is None and info is not None:
        decoded = count_frames(info.path, info.video_index)
    if decoded is None or decoded <= job.first_frame or decoded >= job.source.num_frames:
        raise ended
    return decoded


__all__ = ["plan_for_decoded", "decodable_frames"]
