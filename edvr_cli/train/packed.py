"""Training pairs packed to travel: the trainer's own (ground truth, x265 input) pairs, bit for bit,
in a few MB per clip, readable on a machine without ffmpeg.

Why: a training machine may have no ffmpeg, and the trainer's cache (`degrade.prepare_clip`)
holds raw RGB arrays (hundreds of MB), too large to copy around. A pack keeps what the cache is made
of instead: the decoded YUV 4:2:0 planes of both sides (ground truth = the lossless yuv420p
intermediate, input = its x265 encoding), and turns them into RGB with the same conversion the
cache uses (`video.convert.FrameConverter`, as `video.rgb_frames` does). So a pack's clips equal
the cache's arrays exactly; `pack_clip` checks that against `prepare_clip` itself, and the manifest
keeps SHA-256 digests of planes and RGB so the reading machine can check it too.

Layout of a pack folder:
    manifest.json            format, version, degradation, codec, clips (sizes, colour format,
                             digests, split, group, source and licence of each)
    clips/NAME.gt.mkv        ground truth planes   } codec "h264": lossless H.264 (x264 -qp 0) of
    clips/NAME.lq.mkv        input planes          } gray frames, read with OpenCV (cv2) or ffmpeg
                                                     codec "xz": raw planes, lzma (numpy only)
Each stored frame is one gray image of the I420 layout: the Y plane on top, the U and V planes side
by side below it ((3h/2, w) for an (h, w) frame). A lossless gray video decodes exactly with
OpenCV's default BGR conversion (the three channels are the gray value; checked here with
opencv-python-headless 4.11 and 5.0) and with ffmpeg.

Splits: "train" clips are trained on; "selection" clips are for choosing checkpoints and
`scale_residual` factors. Held-out clips (the ones results are reported on) never go into a pack.

`edvr train --gt PACK_FOLDER` trains on a pack (`data.load_clips` hands it to `load_pack_clips`):
the train split is the training set, the selection split the validation set unless --val-clips
names other clips.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from edvr_cli.train.pack_codec import CODECS, SUFFIX, PackError, decode_frames, encode_frames, opencv_available

PACK_FORMAT = "edvr-train-pack"
PACK_VERSION = 1
MANIFEST = "manifest.json"
SPLITS = ("train", "selection")
_SUFFIX = SUFFIX


# --- planes <-> one gray image ------------------------------------------------------------------

def pack_i420(planes: tuple[np.ndarray, ...]) -> np.ndarray:
    """(Y (h, w), U (h/2, w/2), V (h/2, w/2)) uint8 -> one (3h/2, w) gray image: Y over [U | V]."""
    if len(planes) != 3:
        raise PackError(f"expected 3 planes (Y, U, V), got {len(planes)}")
    y, u, v = planes
    height, width = y.shape
    if height % 2 or width % 2 or u.shape != (height // 2, width // 2) or v.shape != u.shape:
        raise PackError(f"not 4:2:0 planes of an even size: Y {y.shape}, U {u.shape}, V {v.shape}")
    if y.dtype != np.uint8 or u.dtype != np.uint8 or v.dtype != np.uint8:
        raise PackError("only 8-bit planes can be packed")
    return np.concatenate([y, np.concatenate([u, v], axis=1)], axis=0)


def unpack_i420(image: np.ndarray, height: int, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The inverse of `pack_i420` (contiguous copies)."""
    if image.shape != (height * 3 // 2, width):
        raise PackError(f"packed frame is {image.shape}, expected {(height * 3 // 2, width)}")
    chroma = image[height:]
    return (np.ascontiguousarray(image[:height]), np.ascontiguousarray(chroma[:, : width // 2]),
            np.ascontiguousarray(chroma[:, width // 2:]))


def sha256(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


# --- colour format ------------------------------------------------------------------------------

def format_to_dict(fmt) -> dict:
    """A `video.frame.FrameFormat` as JSON values."""
    return {"pix_fmt": fmt.layout.pix_fmt, "width": fmt.width, "height": fmt.height, "matrix": fmt.matrix,
            "full_range": fmt.full_range, "color_primaries": fmt.color_primaries,
            "color_transfer": fmt.color_transfer}


def format_from_dict(values: dict):
    from edvr_cli.video.frame import FrameFormat
    from edvr_cli.video.pixel_format import native_layout

    layout, _ = native_layout(values["pix_fmt"])
    return FrameFormat(layout, values["width"], values["height"], values["matrix"], values["full_range"],
                       values.get("color_primaries"), values.get("color_transfer"))


def planes_to_rgb(frames: np.ndarray, fmt) -> np.ndarray:
    """(t, 3h/2, w) packed I420 frames -> (t, h, w, 3) uint8 RGB, exactly as the trainer's cache
    converts decoded video (`video.rgb_frames.RgbFrameReader`)."""
    from edvr_cli.video import colour
    from edvr_cli.video.convert import FrameConverter

    converter = FrameConverter(fmt)
    out = np.empty((len(frames), fmt.height, fmt.width, 3), np.uint8)
    for idx, frame in enumerate(frames):
        rgb = converter.to_rgb(unpack_i420(frame, fmt.height, fmt.width))
        out[idx] = colour.to_codes(rgb.clamp(0, 1), 8, True, False).permute(1, 2, 0).numpy().astype(np.uint8)
    return out


# --- writing a pack -----------------------------------------------------------------------------

@dataclass
class ClipSource:
    """One ground-truth clip for a pack and what is known about where it came from.

    path: a video file or a folder of frames (anything `degrade.prepare_clip` takes).
    split: "train" or "selection"; group: a free label to choose clips by ("video", "photo").
    """

    name: str
    path: Path
    split: str
    group: str
    source: str
    licence: str
    notes: dict = field(default_factory=dict)


def _decode_side(path: Path):
    """(packed (t, 3h/2, w) frames, FrameFormat) of a decoded yuv420p video, natively."""
    from edvr_cli.video.reader import FrameReader

    reader = FrameReader(path)
    try:
        fmt = reader.format
        if fmt.layout.pix_fmt != "yuv420p":
            raise PackError(f"{path.name}: decoded as {fmt.layout.pix_fmt}, a pack holds yuv420p only")
        frames = np.stack([pack_i420(frame.planes) for frame in reader])
    finally:
        reader.close()
    return frames, fmt


def pack_clip(clip: ClipSource, degradation, folder: Path, codec: str = "h264", cache_root: Path | None = None,
              decoder: str = "auto") -> dict:
    """Degrade one clip the trainer's way and write both sides into `folder`/clips; returns its
    manifest entry.

    The ground truth and input are made by `degrade`'s own steps (the source as lossless yuv420p,
    then x265 of that). With `cache_root`, `degrade.prepare_clip` also fills its cache for the clip
    and the pack's RGB must equal the cache's arrays (else PackError): the proof that a pack trains
    on exactly what `edvr train --gt CLIP --degrade ...` would. Each written file is read back
    (`decoder`) and checked against the planes it was made of."""
    from edvr_cli.train import degrade

    if clip.split not in SPLITS:
        raise PackError(f"{clip.name}: split must be one of {', '.join(SPLITS)}, got {clip.split!r}")
    if not all(c.isalnum() or c in "-_." for c in clip.name):
        raise PackError(f"{clip.name!r}: clip names in a pack are letters, digits, '-', '_' and '.'")
    (folder / "clips").mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{clip.name}-", dir=folder))
    try:
        source = Path(clip.path)
        degrade._write_lossless_yuv420(source, work / "gt.mkv", f"{clip.name}: lossless yuv420p", False)
        degrade._encode_x265(work / "gt.mkv", work / "lq.mkv", degradation, work,
                             f"{clip.name}: {degradation.describe()}", False)
        entry = {"name": clip.name, "split": clip.split, "group": clip.group, "source": clip.source,
                 "licence": clip.licence, **({"notes": clip.notes} if clip.notes else {})}
        digests = {}
        for side in ("gt", "lq"):
            frames, fmt = _decode_side(work / f"{side}.mkv")
            rgb = planes_to_rgb(frames, fmt)
            file = f"clips/{clip.name}.{side}{_SUFFIX[codec]}"
            size = encode_frames(frames, folder / file, codec)
            back = decode_frames(folder / file, codec, *frames.shape, decoder=decoder)
            if not np.array_equal(back, frames):
                raise PackError(f"{file}: does not decode to the planes it was written from")
            digests[side] = sha256(rgb)
            entry[side] = {"file": file, "frames": int(frames.shape[0]), "format": format_to_dict(fmt),
                           "planes_sha256": sha256(frames), "rgb_sha256": digests[side], "bytes": size}
        if entry["gt"]["frames"] != entry["lq"]["frames"]:
            raise PackError(f"{clip.name}: {entry['gt']['frames']} ground-truth frames, "
                            f"{entry['lq']['frames']} input frames")
        entry["frames"] = entry["gt"]["frames"]
        if cache_root is not None:
            cached = degrade.prepare_clip(clip.name, source, degradation, Path(cache_root), False)
            if sha256(cached.gt()) != digests["gt"] or sha256(cached.lq()) != digests["lq"]:
                raise PackError(f"{clip.name}: the packed pair differs from the trainer's cache "
                                f"({cached.folder}); x265 or the decoder did not repeat itself")
            entry["cache_checked"] = True
        return entry
    finally:
        shutil.rmtree(work, ignore_errors=True)


def write_manifest(folder: Path, clips: list[dict], degradation, codec: str, extra: dict | None = None) -> dict:
    """Write manifest.json atomically; returns it."""
    from edvr_cli.train.degrade import CACHE_VERSION

    names = [clip["name"] for clip in clips]
    if len(set(names)) != len(names):
        raise PackError("clip names in a pack must be unique")
    manifest = {"format": PACK_FORMAT, "version": PACK_VERSION, "codec": codec,
                "degradation": asdict(degradation), "describe": degradation.describe(),
                "cache_version": CACHE_VERSION, "clips": clips,
                "bytes": sum(clip[side]["bytes"] for clip in clips for side in ("gt", "lq")),
                **(extra or {})}
    partial = Path(folder) / (MANIFEST + ".partial")
    partial.write_text(json.dumps(manifest, indent=1) + "\n")
    os.replace(partial, Path(folder) / MANIFEST)
    return manifest


# --- reading a pack -----------------------------------------------------------------------------

def is_pack(path: str | Path | None) -> bool:
    return path is not None and (Path(path) / MANIFEST).is_file()


def read_manifest(folder: str | Path) -> dict:
    path = Path(folder) / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise PackError(f"{path}: not a readable pack manifest ({error})") from None
    if manifest.get("format") != PACK_FORMAT or manifest.get("version") != PACK_VERSION:
        raise PackError(f"{path}: format {manifest.get('format')!r} version {manifest.get('version')!r}; "
                        f"this reader takes {PACK_FORMAT!r} version {PACK_VERSION}")
    return manifest


class PackedClip:
    """A pack's clip in memory: what `data.PatchDataset` and `validation.validate` read
    (`name`, `num_frames`, `gt_size`, `lq_size`, `gt_frame(i)`, `lq_frame(i)`)."""

    def __init__(self, name: str, gt: np.ndarray, lq: np.ndarray, split: str = "train", group: str = "",
                 meta: dict | None = None):
        if gt.shape[0] != lq.shape[0]:
            raise PackError(f"{name}: {gt.shape[0]} ground-truth frames, {lq.shape[0]} input frames")
        self.name, self.split, self.group = name, split, group
        self.gt, self.lq = gt, lq
        self.num_frames = int(gt.shape[0])
        self.gt_size = tuple(gt.shape[1:3])
        self.lq_size = tuple(lq.shape[1:3])
        self.meta = meta or {}

    def gt_frame(self, idx: int) -> np.ndarray:
        return self.gt[idx]

    def lq_frame(self, idx: int) -> np.ndarray:
        return self.lq[idx]


@dataclass
class Pack:
    folder: Path
    manifest: dict
    clips: list  # PackedClip, in manifest order
    warnings: list

    def split(self, name: str) -> list:
        return [clip for clip in self.clips if clip.split == name]

    @property
    def describe(self) -> str:
        return f"{self.manifest['describe']} (pack {self.folder})"


def select_entries(manifest: dict, splits: Iterable[str] | None = None, groups: Iterable[str] | None = None,
                   names: Iterable[str] | None = None) -> list[dict]:
    """Manifest entries in the given splits and groups (None: all), or named."""
    splits = set(splits) if splits is not None else None
    groups = set(groups) if groups is not None else None
    names = set(names) if names is not None else None
    known = {entry["name"] for entry in manifest["clips"]}
    if names is not None and names - known:
        raise PackError(f"no clip named {sorted(names - known)[0]!r} in the pack; clips: {', '.join(sorted(known))}")
    return [entry for entry in manifest["clips"]
            if (splits is None or entry["split"] in splits) and (groups is None or entry["group"] in groups)
            and (names is None or entry["name"] in names)]


def _load_entry(folder: Path, entry: dict, codec: str, decoder: str, verify: bool) -> tuple[PackedClip, list[str]]:
    sides, warnings = {}, []
    for side in ("gt", "lq"):
        info = entry[side]
        fmt = format_from_dict(info["format"])
        frames = decode_frames(folder / info["file"], codec, info["frames"], fmt.height * 3 // 2, fmt.width,
                               decoder)
        if verify and sha256(frames) != info["planes_sha256"]:
            raise PackError(f"{entry['name']}: {info['file']} decodes to other planes than were packed "
                            "(a damaged file or an inexact decoder)")
        rgb = planes_to_rgb(frames, fmt)
        if verify and sha256(rgb) != info["rgb_sha256"]:
            # The planes are exact, so this is the float YUV->RGB conversion rounding differently on
            # this machine: a code or so on a few pixels. Worth a warning, not a stop.
            warnings.append(f"{entry['name']} {side}: RGB differs from the packing machine's conversion")
        sides[side] = rgb
    return PackedClip(entry["name"], sides["gt"], sides["lq"], entry["split"], entry["group"], entry), warnings


def load_pack(folder: str | Path, splits: Iterable[str] | None = None, groups: Iterable[str] | None = None,
              names: Iterable[str] | None = None, decoder: str = "auto", verify: bool = True, threads: int = 4,
              echo: Callable[[str], None] | None = None) -> Pack:
    """Decode the chosen clips of a pack into memory (RGB uint8), checking the digests.

    A plane digest that does not match raises PackError; an RGB digest that does not match (the
    planes were exact) is a warning in `Pack.warnings` and echoed."""
    folder = Path(folder)
    manifest = read_manifest(folder)
    entries = select_entries(manifest, splits, groups, names)
    if not entries:
        raise PackError(f"{folder}: no clip in splits {sorted(splits or [])} and groups {sorted(groups or [])}")
    codec = manifest["codec"]
    with ThreadPoolExecutor(max(1, threads)) as pool:
        loaded = list(pool.map(lambda entry: _load_entry(folder, entry, codec, decoder, verify), entries))
    warnings = [warning for _, clip_warnings in loaded for warning in clip_warnings]
    if echo is not None:
        for warning in warnings:
            echo(f"warning: {warning}")
    return Pack(folder, manifest, [clip for clip, _ in loaded], warnings)


def load_pack_clips(config, show_progress: bool = True):
    """`clips.Clips` of a pack for `edvr train --gt PACK`: the train split trains; the validation
    clips are --val-clips (any split) or, without it, the selection split."""
    from edvr_cli.train.clips import Clips, DataError
    from edvr_cli.train.config import ConfigError

    manifest = read_manifest(config.gt)
    if config.lq:
        raise ConfigError("--gt is a training pack (ground truth and input together): leave out --lq")
    packed_degradation = manifest["degradation"]
    if config.degrade is not None and (config.degrade != packed_degradation["kind"] or (
            config.degrade == "compress" and config.qp != packed_degradation["qp"])):
        raise ConfigError(f"--gt {config.gt} is a pack made with {manifest['describe']}; it cannot train "
                          f"--degrade {config.degrade} --qp {config.qp}")
    pack = load_pack(config.gt, echo=print if show_progress else None)
    if config.val_clips:
        unknown = [name for name in config.val_clips if name not in {clip.name for clip in pack.clips}]
        if unknown:
            raise DataError(f"--val-clips: no clip named {unknown[0]!r} in the pack {config.gt}")
        val = [clip for clip in pack.clips if clip.name in config.val_clips]
        train = [clip for clip in pack.split("train") if clip.name not in config.val_clips]
    else:
        val, train = pack.split("selection"), pack.split("train")
    if not train:
        raise DataError(f"{config.gt}: no training clips left in the pack")
    for clip in train + val:
        if (clip.lq_size[0] * config.scale, clip.lq_size[1] * config.scale) != clip.gt_size:
            raise DataError(f"clip {clip.name!r}: input {clip.lq_size} x {config.scale} is not {clip.gt_size}")
    for clip in train:
        if clip.gt_size[0] < config.patch or clip.gt_size[1] < config.patch:
            raise DataError(f"clip {clip.name!r}: frames {clip.gt_size[1]}x{clip.gt_size[0]} are smaller than "
                            f"--patch {config.patch}")
    return Clips(train, val, pack.describe)


__all__ = ["PackError", "ClipSource", "PackedClip", "Pack", "pack_clip", "write_manifest", "read_manifest",
           "load_pack", "load_pack_clips", "is_pack", "select_entries", "pack_i420", "unpack_i420",
           "encode_frames", "decode_frames", "planes_to_rgb", "opencv_available", "CODECS", "SPLITS"]
