"""Peak memory and speed of FrameReader -> FrameWriter (identity) as the video gets longer.

Memory must not grow with the number of frames: the reader and the writer hold at most
`queue_size` frames each. For each N a fresh child process streams a generated 320x180 clip
of N frames through both and reports its own peak RSS (`getrusage(RUSAGE_SELF).ru_maxrss`)
and that of its largest ffmpeg (`RUSAGE_CHILDREN`, the ffmpeg processes it waited for).

    python benchmarks/pipeline_rss.py                 # N = 100 and 2000, default writer settings
    python benchmarks/pipeline_rss.py --frames 100 500 --preset ultrafast
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WIDTH, HEIGHT = 320, 180


def stream_clip(clip: str, output: str, preset: str) -> dict:
    """Child side: decode `clip`, encode every frame unchanged into `output`; report numbers."""
    from edvr_cli.video import EncoderSettings, FrameReader, FrameWriter, probe

    info = probe(clip)
    start = time.perf_counter()
    with FrameReader(clip, info) as reader, \
            FrameWriter(output, reader.format, 1 / info.fps, EncoderSettings("libx264", 17, preset),
                        source=info) as writer:
        for index, frame in enumerate(reader):
            frame.pts = index
            writer.write(frame)
    seconds = time.perf_counter() - start
    num_frames_out = probe(output).num_frames
    return {"frames_in": reader.num_frames_read, "frames_out": num_frames_out,
            "seconds": seconds, "fps": reader.num_frames_read / seconds,
            "python_peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "ffmpeg_peak_rss_mib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}


def make_clip(path: Path, num_frames: int) -> None:
    from edvr_cli.video import ffmpeg_exe

    subprocess.run([ffmpeg_exe(), "-v", "error", "-y", "-f", "lavfi",
                    "-i", f"testsrc2=size={WIDTH}x{HEIGHT}:rate=25", "-frames:v", str(num_frames),
                    "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(path)],
                   check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, nargs="+", default=[100, 2000])
    parser.add_argument("--preset", default="medium", help="x264 preset of the writer")
    parser.add_argument("--child", nargs=2, metavar=("CLIP", "OUTPUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(stream_clip(*args.child, preset=args.preset)))
        return
    print("| frames | frames out | python peak RSS (MiB) | ffmpeg peak RSS (MiB) | fps |")
    print("|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as folder:
        for num_frames in args.frames:
            clip, output = Path(folder) / f"in{num_frames}.mp4", Path(folder) / f"out{num_frames}.mp4"
            make_clip(clip, num_frames)
            child = subprocess.run([sys.executable, __file__, "--preset", args.preset,
                                    "--child", str(clip), str(output)],
                                   check=True, capture_output=True, text=True)
            result = json.loads(child.stdout.strip().splitlines()[-1])
            print(f"| {num_frames} | {result['frames_out']} | {result['python_peak_rss_mib']:.1f} | "
                  f"{result['ffmpeg_peak_rss_mib']:.1f} | {result['fps']:.0f} |", flush=True)


if __name__ == "__main__":
    main()
