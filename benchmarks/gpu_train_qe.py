"""Train the builtin-qe network on the training pack on a GPU, for a fixed time budget, and leave everything needed to continue or to choose a checkpoint.

    python benchmarks/gpu_train_qe.py --pack .train_pack/qe37 --out $OUT/qe15          # one GPU session
    python benchmarks/gpu_train_qe.py --resume .train_pack/resume --out $OUT/qe15      # the next one
    python benchmarks/gpu_train_qe.py --smoke --out /tmp/smoke                        # CPU, < 60 s

Normally started by benchmarks/gpu_train_qe.sh on the device machine (no ffmpeg there: the pack is
decoded with OpenCV, and imageio-ffmpeg, which the project imports, is stubbed when missing).

What one session does:
- decodes the pack (`edvr_cli.train.packed`): the train split trains, the selection split scores;
  the held-out clips are not in the pack;
- trains with the trainer's parts (`build_model`, `build_optimizer`, `PatchDataset` keyed sampling,
  `pixel_loss`, `get_lr`, `training_state`): bf16 autocast on a GPU (the loss, the residual add and
  validation stay fp32; non-finite steps are skipped, and three in a row switch bf16 off),
  channels_last (checked against the plain layout on the first batch; off when it fails or
  differs), cudnn autotuning, a large batch, an EMA of the weights;
- every --val-seconds (60): scores raw and EMA weights on the selection clips in fp32 (PSNR of the
  output and of the correction scaled by 0.5 and 0.25, and the best scale a* = <r, e> / |r|^2 of
  each clip), then writes last.pth (resumable, atomic), best.pth, ema.pth, snapshots.pth (every
  scored set of weights, fp16) and summary.json;
- stops by itself before --max-seconds (from the process start), after a last score and save;
  SIGTERM does the same at once.
`--resume DIR` (or a last.pth) continues exactly where that session stopped: same configuration,
weights, Adam and EMA states, RNG states and sample position; snapshots.pth beside it is kept.

Files in --out (at most 8 come back from the device tool): last.pth, best.pth, ema.pth,
snapshots.pth, log.jsonl, summary.json. All are `edvr enhance --model` files except snapshots.pth:
`--extract-snapshots DIR` writes each of its weights as one.
"""

from __future__ import annotations

import time

T0 = time.monotonic()

import argparse  # noqa: E402
import copy  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402
import types  # noqa: E402
from pathlib import Path  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

ARCHITECTURES = {
    # the shipped builtin-qe network (runs QE-3/4/6): 159,299 parameters at 3 frames
    "qe16": dict(num_feat=16, num_extract_block=2, num_reconstruct_block=4, num_hr_feat=16, deformable_groups=4),
    # QE-11's wider network: 527k parameters at 3 frames
    "qe32": dict(num_feat=32, num_extract_block=2, num_reconstruct_block=5, num_hr_feat=32, deformable_groups=4),
    # smoke runs
    "tiny": dict(num_feat=8, num_extract_block=1, num_reconstruct_block=1, num_hr_feat=16, deformable_groups=2),
}
FULL_RES = dict(hr_in=False, with_predeblur=False, with_tsa=False, scale=1)
# The GPU recipe (new runs only; a resumed run keeps its own). Untested on a GPU: see the model card.
RECIPE = dict(arch="qe16", frames=3, patch=64, batch=64, lr=5e-4, iters=15000, eta_min=1e-7, criterion="l2",
              dcn_lr_mul=0.1, grad_clip=0.0, ema=0.999, seed=10, loss="sum", identity_start=True)
SMOKE = dict(arch="tiny", frames=3, patch=32, batch=4, lr=1e-3, iters=40, workers=0, max_seconds=50.0,
             val_seconds=4.0, log_seconds=2.0, val_frames=3, log_every=5)
SCALES = (1.0, 0.5, 0.25)
SNAPSHOT_LIMIT = 12 * 2**20  # snapshots.pth stays under the device tool's 16 MiB per returned file


def _snapshot_bytes(snapshots: dict) -> int:
    return sum(t.numel() * t.element_size() for s in snapshots.values() for t in s["params"].values())


def stub_imageio_ffmpeg() -> bool:
    """The project imports imageio_ffmpeg (for ffmpeg's path) at import time; a GPU machine without
    it needs no ffmpeg for a pack, so a stub stands in. True when the stub was installed."""
    try:
        import imageio_ffmpeg  # noqa: F401
        return False
    except ImportError:
        stub = types.ModuleType("imageio_ffmpeg")

        def get_ffmpeg_exe():
            raise RuntimeError("no ffmpeg on this machine (imageio-ffmpeg is not installed); "
                               "a training pack is decoded with OpenCV")

        stub.get_ffmpeg_exe = get_ffmpeg_exe
        stub.__version__ = "0+stub"
        sys.modules["imageio_ffmpeg"] = stub
        return True


def pack_label(path: Path) -> str:
    """The pack's path as stored in checkpoints: relative to the repository when inside it (the
    repository's root differs between machines)."""
    resolved = Path(path).resolve()
    return str(resolved.relative_to(REPO)) if resolved.is_relative_to(REPO) else str(path)


def elapsed() -> float:
    return time.monotonic() - T0


# --- the smoke pack -----------------------------------------------------------------------------

def make_smoke_pack(folder: Path, frames: int = 10) -> Path:
    """A tiny real pack (needs ffmpeg): two photograph pans to train on,
    one to select on, through the same `pack_clip` as the real pack."""
    import numpy as np
    import skimage.data

    from edvr_cli.image_io import write_png
    from edvr_cli.train.degrade import Degradation
    from edvr_cli.train.packed import ClipSource, pack_clip, write_manifest

    folder = Path(folder)
    if (folder / "manifest.json").is_file():
        return folder
    degradation = Degradation("compress", qp=37)
    sources = folder / "sources"
    entries = []
    for name, image, split, (dx, dy) in (("camera", skimage.data.camera(), "train", (2, 1)),
                                         ("coins", skimage.data.coins(), "train", (-1, 2)),
                                         ("chelsea", skimage.data.chelsea(), "selection", (3, 1))):
        if image.ndim == 2:
            image = np.repeat(image[..., None], 3, axis=2)
        clip_folder = sources / name
        clip_folder.mkdir(parents=True, exist_ok=True)
        for k in range(frames):
            crop = image[40 + dy * k: 40 + dy * k + 128, 60 + dx * k: 60 + dx * k + 160].astype(np.float64)
            small = crop.reshape(64, 2, 80, 2, 3).mean(axis=(1, 3))  # area x2
            write_png(clip_folder / f"{k:08d}.png", np.round(small).astype(np.uint8))
        entries.append(pack_clip(ClipSource(name, clip_folder, split, "photo", f"skimage.data.{name} pan",
                                            "see models/weights/README.md"), degradation, folder, "h264"))
    write_manifest(folder, entries, degradation, "h264", extra={"built_by": "gpu_train_qe.make_smoke_pack"})
    return folder


# --- scoring on the selection clips -------------------------------------------------------------

def input_scores(clips, max_frames: int = 0) -> dict:
    """PSNR of each selection clip's input (what every gain is measured from)."""
    import numpy as np

    from edvr_cli.evaluate.metrics import psnr

    scores = {}
    for clip in clips:
        count = min(max_frames, clip.num_frames) if max_frames else clip.num_frames
        scores[clip.name] = float(np.mean([psnr(clip.gt_frame(i), clip.lq_frame(i)) for i in range(count)]))
    return {"input": float(np.mean(list(scores.values()))), "clips": scores}


def score_selection(model, clips, num_frame: int, device, max_frames: int = 0) -> dict:
    """fp32 whole-frame scores on each selection clip: PSNR (as `edvr eval`: RGB, rounded output)
    of the input, of the output and of the correction r scaled by each of SCALES; and the best scale
    a* = <r, e> / |r|^2 (e = ground truth - input) over the clip. Overall: means of the clip means."""
    import numpy as np
    import torch

    from edvr_cli.windows import DEFAULT_PADDING, window_indices

    was_training = model.training
    model.eval()
    clips_out = {}
    with torch.no_grad():
        for clip in clips:
            count = min(max_frames, clip.num_frames) if max_frames else clip.num_frames
            psnrs = {scale: [] for scale in SCALES}
            base, dot, norm = [], 0.0, 0.0
            for idx in range(count):
                window = np.stack([clip.lq_frame(i) for i in window_indices(idx, clip.num_frames, num_frame,
                                                                              DEFAULT_PADDING)])
                lq = torch.from_numpy(window).to(device).permute(0, 3, 1, 2).float().div_(255)[None]
                out = model(lq)[0].double().mul(255)
                centre = lq[0, num_frame // 2].double().mul(255)
                gt = torch.from_numpy(np.ascontiguousarray(clip.gt_frame(idx))).to(device).permute(2, 0, 1).double()
                residual, error = out - centre, gt - centre
                dot += float((residual * error).sum())
                norm += float((residual * residual).sum())

                def psnr(pred):
                    mse = float(((pred.clamp(0, 255).round() - gt) ** 2).mean())
                    return 10 * math.log10(255 ** 2 / mse) if mse > 0 else 100.0

                base.append(psnr(centre))
                for scale in SCALES:
                    psnrs[scale].append(psnr(centre + scale * residual))
            input_psnr = float(np.mean(base))
            clips_out[clip.name] = {"input": input_psnr, "frames": count,
                                    "a_star": dot / norm if norm > 0 else None,
                                    **{f"gain@{scale:g}": float(np.mean(psnrs[scale])) - input_psnr
                                       for scale in SCALES}}
    model.train(was_training)
    names = list(clips_out)
    summary = {f"gain@{scale:g}": float(np.mean([clips_out[n][f"gain@{scale:g}"] for n in names]))
               for scale in SCALES}
    summary["min_gain@1"] = float(min(clips_out[n]["gain@1"] for n in names))
    summary["input"] = float(np.mean([clips_out[n]["input"] for n in names]))
    summary["psnr"] = summary["input"] + summary["gain@1"]
    a_stars = [clips_out[n]["a_star"] for n in names if clips_out[n]["a_star"] is not None]
    summary["a_star_median"] = float(np.median(a_stars)) if a_stars else None
    return {"overall": summary, "clips": clips_out}


def estimate_scoring_seconds(model, clips, num_frame: int, device, max_frames: int, passes: int) -> float:
    """Seconds one `score_selection` of `passes` weight sets (plus the saves) should take: one timed
    forward of each clip's first frame, times its frame count; also warms the device up."""
    import numpy as np
    import torch

    was_training = model.training
    model.eval()
    total = 0.0
    with torch.no_grad():
        for clip in clips:
            window = np.stack([clip.lq_frame(0)] * num_frame)
            lq = torch.from_numpy(window).to(device).permute(0, 3, 1, 2).float().div_(255)[None]
            for attempt in range(2):  # the first one pays for autotuning
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                started = time.monotonic()
                model(lq)
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                took = time.monotonic() - started
            count = min(max_frames, clip.num_frames) if max_frames else clip.num_frames
            total += took * count
    model.train(was_training)
    return 1.3 * passes * total + 3.0


def describe_scores(scores: dict) -> str:
    overall = scores["overall"]
    a_star = overall["a_star_median"]
    return (f"selection {overall['psnr']:.4f} dB: {overall['gain@1']:+.4f} dB over the input "
            f"(min clip {overall['min_gain@1']:+.4f}); x0.5 {overall['gain@0.5']:+.4f}, "
            f"x0.25 {overall['gain@0.25']:+.4f}; median a* {a_star if a_star is None else round(a_star, 3)}")


# --- the run ------------------------------------------------------------------------------------

class PlainLog:
    """log.jsonl plus printed lines (no TensorBoard: the device tool returns at most 8 files)."""

    def __init__(self, folder: Path):
        self.path = folder / "log.jsonl"
        folder.mkdir(parents=True, exist_ok=True)

    def record(self, event: str, **values) -> None:
        from edvr_cli.train.runlog import _plain

        with open(self.path, "a") as handle:
            handle.write(json.dumps(_plain({"event": event, "time": round(time.time(), 3),
                                            "elapsed": round(elapsed(), 2), **values})) + "\n")

    def note(self, line: str, **values) -> None:
        self.record("note", text=line, **values)
        print(f"[{elapsed():6.1f}s] {line}", flush=True)


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pack", type=Path, help="the training pack (default: .train_pack/qe37; with --smoke: "
                        "a tiny one made in --out; with --resume: the run's own when this one is missing)")
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", str(REPO / "runs"))) / "qe15")
    parser.add_argument("--resume", type=Path, help="a last.pth, or a folder holding one (and snapshots.pth)")
    parser.add_argument("--max-seconds", type=float, default=540.0,
                        help="end (scored and saved) before this many seconds from the process start")
    parser.add_argument("--val-seconds", type=float, default=60.0, help="score and checkpoint this often")
    parser.add_argument("--log-seconds", type=float, default=10.0)
    parser.add_argument("--log-every", type=int, default=100, help="also log every N iterations")
    parser.add_argument("--stop-at", type=int, help="end this session after iteration N (tests, planned stops)")
    parser.add_argument("--workers", type=int, default=8, help="DataLoader worker processes")
    parser.add_argument("--groups", default="video,photo", help="pack groups to train on, comma-separated")
    parser.add_argument("--val-frames", type=int, default=0, help="frames scored per selection clip (0: all)")
    parser.add_argument("--amp", choices=("bf16", "off"), help="default: bf16 on a GPU, off on the CPU")
    parser.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--decoder", choices=("auto", "cv2", "ffmpeg"), default="auto")
    parser.add_argument("--device", help="default: cuda when there is one")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--smoke", action="store_true", help="a tiny CPU run on a tiny pack (< 60 s)")
    parser.add_argument("--extract-snapshots", type=Path, metavar="DIR",
                        help="write each weight set of --resume's snapshots.pth to DIR as a model file; no training")
    recipe = parser.add_argument_group("recipe (new runs; a resumed run keeps its stored one)")
    recipe.add_argument("--arch", choices=tuple(ARCHITECTURES))
    recipe.add_argument("--frames", type=int)
    recipe.add_argument("--patch", type=int)
    recipe.add_argument("--batch", type=int)
    recipe.add_argument("--lr", type=float)
    recipe.add_argument("--iters", type=int, help="length of the cosine schedule (a resumed run may change it)")
    recipe.add_argument("--eta-min", type=float)
    recipe.add_argument("--criterion", choices=("l2", "charbonnier"))
    recipe.add_argument("--loss", choices=("sum", "mean"))
    recipe.add_argument("--dcn-lr-mul", type=float)
    recipe.add_argument("--grad-clip", type=float)
    recipe.add_argument("--ema", type=float, help="EMA decay of the weights (0: none)")
    recipe.add_argument("--seed", type=int)
    recipe.add_argument("--identity-start", action=argparse.BooleanOptionalAction, default=None)
    args = parser.parse_args(argv)
    if args.smoke:
        for key, value in SMOKE.items():
            if key in ("workers", "max_seconds", "val_seconds", "log_seconds", "val_frames", "log_every"):
                if getattr(args, key) == parser.get_default(key):
                    setattr(args, key, value)
            elif getattr(args, key, None) is None and not args.resume:
                setattr(args, key, value)
    return args


def extract_snapshots(source: Path, destination: Path) -> None:
    import torch

    from edvr_cli.train.checkpointing import save_checkpoint
    from models import build_model

    path = source / "snapshots.pth" if source.is_dir() else source
    data = torch.load(path, map_location="cpu", weights_only=True)
    destination.mkdir(parents=True, exist_ok=True)
    for key, entry in sorted(data["snapshots"].items(), key=lambda item: (item[1]["iter"], item[0])):
        model = build_model(data["edvr_config"])
        model.load_state_dict({name: value.float() for name, value in entry["params"].items()})
        save_checkpoint(destination / f"{key}.pth", model, data["train_config"], iteration=entry["iter"],
                        selection=entry.get("selection"))
        print(destination / f"{key}.pth")


def main(argv=None) -> int:
    stubbed = stub_imageio_ffmpeg()
    args = parse_args(argv)
    if args.extract_snapshots:
        if not args.resume:
            raise SystemExit("--extract-snapshots reads --resume's snapshots.pth: give --resume DIR")
        extract_snapshots(args.resume, args.extract_snapshots)
        return 0

    import torch

    from edvr_cli.train.checkpointing import read_training_checkpoint, restore_rng_states, save_checkpoint, \
        training_state
    from edvr_cli.train.config import resolve_config, resume_config
    from edvr_cli.train.data import PatchDataset, make_loader
    from edvr_cli.train.loop import build_optimizer, start_at_identity
    from edvr_cli.train.losses import pixel_loss
    from edvr_cli.train.packed import load_pack, opencv_available
    from edvr_cli.train.schedule import get_lr
    from models import build_model
    from models.checkpoint import write_atomically

    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if args.threads:
        torch.set_num_threads(args.threads)
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    log = PlainLog(out)
    stop = {"requested": False}
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.update(requested=True))

    if args.pack is None and args.smoke and not args.resume:
        args.pack = make_smoke_pack(out / "smoke_pack")
    explicit_pack = args.pack is not None
    args.pack = args.pack or REPO / ".train_pack" / "qe37"

    # --- configuration: new, or the stored one of the run being resumed -------------------------
    resume_path, stored_snapshots = None, {}
    if args.resume:
        resume_path = args.resume / "last.pth" if args.resume.is_dir() else args.resume
        _, stored_config, state = read_training_checkpoint(resume_path)
        overrides = {"out": str(out), "num_workers": args.workers, "iters": args.iters,
                     "periods": None, "stop_at": args.stop_at}
        given = [name for name in RECIPE if name != "iters" and getattr(args, name, None) is not None]
        if given:
            raise SystemExit(f"--resume continues the stored recipe; leave out --{given[0].replace('_', '-')}")
        if args.iters is not None and args.iters != stored_config["iters"]:
            stored_config = {**stored_config, "periods": [args.iters], "iters": args.iters}
        config = resume_config(stored_config, {k: v for k, v in overrides.items() if k not in ("periods",)})
        config.stop_at = args.stop_at  # this session's, not the stored one
        if not (explicit_pack and (args.pack / "manifest.json").is_file()) and state.get("gpu_run", {}).get("pack"):
            args.pack = REPO / state["gpu_run"]["pack"]  # the pack the run started on (absolute stays absolute)
        run_meta = dict(state.get("gpu_run", {}))
        previous_best = resume_path.parent / "best.pth"
        if previous_best.is_file() and not (out / "best.pth").exists():
            shutil.copy2(previous_best, out / "best.pth")  # the new folder holds the whole run's best
        snapshots_file = resume_path.parent / "snapshots.pth"
        if snapshots_file.is_file():
            stored_snapshots = torch.load(snapshots_file, map_location="cpu", weights_only=True)["snapshots"]
    else:
        recipe = {key: (getattr(args, key) if getattr(args, key, None) is not None else value)
                  for key, value in RECIPE.items()}
        config = resolve_config("small", dict(
            ARCHITECTURES[recipe["arch"]], **FULL_RES, num_frame=recipe["frames"], gt=pack_label(args.pack), lq=None,
            degrade=None, patch=recipe["patch"], batch=recipe["batch"], lr=recipe["lr"], iters=recipe["iters"],
            periods=(recipe["iters"],), restart_weights=(1.0,), eta_min=recipe["eta_min"],
            criterion=recipe["criterion"], loss_reduction=recipe["loss"], dcn_lr_mul=recipe["dcn_lr_mul"],
            grad_clip=recipe["grad_clip"], seed=recipe["seed"], identity_start=recipe["identity_start"],
            num_workers=args.workers, out=str(out), stop_at=args.stop_at, dcn_backend="auto",
            amp="off" if args.amp == "off" else "auto", val_clips=()))  # auto: `edvr train --resume` on a CPU too
        run_meta = {"arch": recipe["arch"], "ema": recipe["ema"], "sessions": []}
    run_meta["pack"] = pack_label(args.pack)
    ema_decay = float(run_meta["ema"])
    amp_dtype = None
    if args.amp == "bf16" or (args.amp is None and device.type == "cuda" and torch.cuda.is_bf16_supported()):
        amp_dtype = torch.bfloat16
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        log.note(f"GPU {torch.cuda.get_device_name(device)}, torch {torch.__version__}, "
                 f"{torch.cuda.get_device_properties(device).total_memory / 2**30:.0f} GiB")
    log.note(f"imageio-ffmpeg stubbed: {stubbed}; OpenCV: {opencv_available()}; start at {elapsed():.1f} s")

    # --- data -----------------------------------------------------------------------------------
    groups = set(args.groups.split(","))
    pack = load_pack(args.pack, decoder=args.decoder, threads=8, echo=lambda line: log.note(line))
    train_clips = [clip for clip in pack.split("train") if clip.group in groups]
    selection = pack.split("selection")
    if not train_clips or not selection:
        raise SystemExit(f"{args.pack}: {len(train_clips)} training clips in groups {sorted(groups)}, "
                         f"{len(selection)} selection clips; both are needed")
    too_small = [clip.name for clip in train_clips if min(clip.gt_size) < config.patch]
    if too_small:
        raise SystemExit(f"clips smaller than --patch {config.patch}: {', '.join(too_small)}")
    log.note(f"pack {args.pack}: {len(train_clips)} training clips ({sum(c.num_frames for c in train_clips)} "
             f"frames), {len(selection)} selection clips ({sum(c.num_frames for c in selection)} frames); "
             f"{pack.manifest['describe']}; decoded at {elapsed():.1f} s", warnings=pack.warnings)

    # --- network, optimiser, state --------------------------------------------------------------
    torch.manual_seed(config.seed)
    model = build_model(config.model_kwargs()).to(device)
    optimizer = build_optimizer(model, config)
    it, best, bad_steps = 0, None, 0
    if resume_path is not None:
        params, _, state = read_training_checkpoint(resume_path)
        model.load_state_dict(params)
        optimizer.load_state_dict(state["optimizer"])
        restore_rng_states(state["rng"])
        it, best, bad_steps = state["iteration"], state["best_psnr"], state["bad_steps"]
        if state["samples_per_rank"] != it * config.batch:
            raise SystemExit(f"{resume_path}: data position does not match iteration {it} x batch {config.batch}")
        log.note(f"resumed from {resume_path} at iteration {it}")
    elif config.identity_start:
        start_at_identity(model)
    ema_model = None
    if ema_decay > 0:
        ema_model = copy.deepcopy(model)
        if resume_path is not None and "ema" in state:
            ema_model.load_state_dict(state["ema"])
        ema_model.requires_grad_(False)
    channels_last = args.channels_last

    dataset = PatchDataset(train_clips, config.num_frame, config.patch, config.scale, config.intervals,
                           config.augment, config.seed, 0)
    batches = iter(make_loader(dataset, config.batch, config.num_workers, it * config.batch,
                               pin_memory=device.type == "cuda"))
    batch = next(batches)

    def to_device(batch):
        lq, gt = batch
        return (lq.to(device, non_blocking=True).float().div_(255), gt.to(device, non_blocking=True).float().div_(255))

    if channels_last:  # the same first batch through both layouts: any failure or difference turns it off
        lq, _ = to_device(batch)
        try:
            with torch.no_grad():
                reference = model(lq[:2])
                model.to(memory_format=torch.channels_last)
                if ema_model is not None:
                    ema_model.to(memory_format=torch.channels_last)
                difference = float((model(lq[:2]) - reference).abs().max())
            if not difference < 1e-4:
                raise RuntimeError(f"outputs differ by {difference:.3g}")
            log.note(f"channels_last on (first batch: outputs within {difference:.2g} of the plain layout)")
        except Exception as error:  # noqa: BLE001 - any failure: train in the plain layout
            channels_last = False
            model.to(memory_format=torch.contiguous_format)
            if ema_model is not None:
                ema_model.to(memory_format=torch.contiguous_format)
            log.note(f"channels_last off: {error}")

    num_params = sum(p.numel() for p in model.parameters())
    session = {"started_iter": it, "device": str(device), "amp": str(amp_dtype), "channels_last": channels_last,
               "batch": config.batch, "patch": config.patch}
    run_meta.setdefault("sessions", []).append(session)
    log.note(f"EDVR {run_meta['arch']} {num_params:,} parameters, {config.num_frame} frames; batch {config.batch} "
             f"x patch {config.patch}, lr {config.lr:g} cosine over {config.iters}, {config.criterion} "
             f"({config.loss_reduction}, weight {config.effective_loss_weight():g}), EMA {ema_decay:g}, "
             f"amp {amp_dtype}, channels_last {channels_last}; iteration {it}", config=config.to_dict())

    baseline = input_scores(selection, args.val_frames)
    log.record("baseline", **baseline)
    log.note(f"selection input PSNR {baseline['input']:.4f} dB over {len(selection)} clips")

    snapshots = dict(stored_snapshots)
    weights_dtype = torch.float16

    def save_all(scores_raw, scores_ema, reason: str):
        nonlocal best
        session.update(ended_iter=it, elapsed=round(elapsed(), 1))
        state = training_state(it, it * config.batch, optimizer, torch.amp.GradScaler("cuda", enabled=False),
                               best, bad_steps)
        if ema_model is not None:
            state["ema"] = {k: v.detach().cpu() for k, v in ema_model.state_dict().items()}
        state["gpu_run"] = run_meta
        chosen = None
        for name, scores, net in (("raw", scores_raw, model), ("ema", scores_ema, ema_model)):
            if scores is None:
                continue
            snapshots[f"iter{it:06d}-{name}"] = {
                "iter": it, "weights": name, "selection": scores,
                "params": {k: v.detach().cpu().to(weights_dtype) if v.is_floating_point() else v.detach().cpu()
                           for k, v in net.state_dict().items()}}
            if best is None or scores["overall"]["psnr"] > best:
                best, chosen = scores["overall"]["psnr"], (name, scores, net)
        state["best_psnr"] = best
        if chosen is not None:
            save_checkpoint(out / "best.pth", chosen[2], config.to_dict(), iteration=it, weights=chosen[0],
                            selection=chosen[1])
        if ema_model is not None:
            save_checkpoint(out / "ema.pth", ema_model, config.to_dict(), iteration=it, ema_decay=ema_decay,
                            selection=scores_ema)
        save_checkpoint(out / "last.pth", model, config.to_dict(), state)
        while len(snapshots) > 2 and _snapshot_bytes(snapshots) > SNAPSHOT_LIMIT:
            snapshots.pop(min(snapshots, key=lambda key: (snapshots[key]["iter"], key)))  # the oldest first
        bundle = {"edvr_config": config.model_kwargs() | {"dcn_backend": "pytorch"},
                  "train_config": config.to_dict(), "snapshots": snapshots}
        write_atomically(out / "snapshots.pth", lambda tmp: torch.save(bundle, tmp))
        summary = {"iteration": it, "iters": config.iters, "elapsed": round(elapsed(), 1), "reason": reason,
                   "best_selection_psnr": best, "selection_input_psnr": baseline["input"],
                   "last_raw": scores_raw and scores_raw["overall"], "last_ema": scores_ema and scores_ema["overall"],
                   "run": run_meta, "pack_bytes": pack.manifest["bytes"]}
        write_atomically(out / "summary.json",
                         lambda tmp: Path(tmp).write_text(json.dumps(summary, indent=1, default=str) + "\n"))

    last_scored = {"iter": None, "raw": None, "ema": None}

    def validate_and_save(reason: str) -> float:
        started = time.monotonic()
        if last_scored["iter"] == it:  # scored at this iteration already: save only
            save_all(last_scored["raw"], last_scored["ema"], reason)
            return time.monotonic() - started
        scores_raw = score_selection(model, selection, config.num_frame, device, args.val_frames)
        scores_ema = (score_selection(ema_model, selection, config.num_frame, device, args.val_frames)
                      if ema_model is not None else None)
        log.record("val", iter=it, raw=scores_raw, ema=scores_ema)
        log.note(f"iteration {it}: raw {describe_scores(scores_raw)}")
        if scores_ema is not None:
            log.note(f"iteration {it}: EMA {describe_scores(scores_ema)}")
        save_all(scores_raw, scores_ema, reason)
        last_scored.update(iter=it, raw=scores_raw, ema=scores_ema)
        took = time.monotonic() - started
        log.note(f"iteration {it}: scored and saved in {took:.1f} s (last.pth, best.pth, ema.pth, snapshots.pth)")
        return took

    # --- the loop -------------------------------------------------------------------------------
    end_iter = min(config.iters, args.stop_at) if args.stop_at else config.iters
    weight = config.effective_loss_weight()
    model.train()
    step_time, save_cost = 0.0, estimate_scoring_seconds(model, selection, config.num_frame, device, args.val_frames,
                                                         2 if ema_model is not None else 1)
    log.note(f"scoring and saving should take about {save_cost:.1f} s; the session keeps that in reserve")
    last_val = last_log = time.monotonic()
    window_it, window_start, data_wait = it, time.monotonic(), 0.0
    loss_value, reason = float("nan"), "iterations done"
    ema_params = [p for p in ema_model.parameters()] if ema_model is not None else []
    params = [p for p in model.parameters()]
    while it < end_iter:
        if stop["requested"]:
            reason = "SIGTERM"
            break
        if elapsed() + save_cost * 1.5 + step_time * 2 + 2 > args.max_seconds:
            reason = f"time (--max-seconds {args.max_seconds:g})"
            break
        step_start = time.monotonic()
        lr = get_lr(it, config.lr, config.periods, config.restart_weights, config.eta_min)
        for group in optimizer.param_groups:
            group["lr"] = lr * group["lr_mul"]
        lq, gt = to_device(batch)
        with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
            pred = model(lq)
        loss = pixel_loss(pred, gt, config) * weight
        fetch = time.monotonic()
        batch = next(batches)
        data_wait += time.monotonic() - fetch
        if not bool(torch.isfinite(loss)):
            optimizer.zero_grad(set_to_none=True)
            bad_steps += 1
            it += 1
            log.record("skip", iter=it, loss=float(loss.detach()), bad_steps=bad_steps)
            if bad_steps >= 3 and amp_dtype is not None:
                log.note(f"iteration {it}: {bad_steps} non-finite losses in a row under {amp_dtype}: bf16 off")
                amp_dtype, session["amp"] = None, "bf16 then fp32"
            if bad_steps >= config.max_bad_steps:
                reason = "non-finite losses"
                break
            continue
        bad_steps = 0
        loss.backward()
        if config.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if ema_model is not None:
            torch._foreach_lerp_(ema_params, [p.detach() for p in params], 1 - ema_decay)
        it += 1
        step_time = 0.9 * step_time + 0.1 * (time.monotonic() - step_start) if step_time else time.monotonic() - step_start
        now = time.monotonic()
        if it % args.log_every == 0 or now - last_log >= args.log_seconds or it == end_iter:
            loss_value = float(loss.detach())
            rate = (it - window_it) / max(now - window_start, 1e-9)
            memory = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else 0.0
            log.record("train", iter=it, loss=loss_value, lr=lr, it_per_s=rate, samples_per_s=rate * config.batch,
                       data_wait_s=round(data_wait, 3), gpu_mem_gib=round(memory, 2))
            print(f"[{elapsed():6.1f}s] iteration {it}: loss {loss_value:.5g}, lr {lr:.3g}, {rate:.2f} it/s "
                  f"({rate * config.batch:.0f} patches/s), data wait {data_wait:.1f} s, GPU memory {memory:.1f} GiB",
                  flush=True)
            last_log, window_it, window_start, data_wait = now, it, now, 0.0
        if now - last_val >= args.val_seconds:
            save_cost = validate_and_save("periodic")
            last_val = time.monotonic()
            window_start = last_val
    validate_and_save(reason)
    log.note(f"session ended at iteration {it} of {config.iters} ({reason}) after {elapsed():.1f} s; "
             f"continue with --resume {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
