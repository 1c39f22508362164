"""One training configuration: every default in one commented dataclass, presets as plain dicts.

Resolution order (later wins): dataclass defaults -> preset -> command-line overrides.
The resolved configuration is printed by `edvr train --print-config` and stored in every
checkpoint; `--resume` takes it back from the checkpoint (see `resume_config`).

Sources of the preset values:
- small, large: the seed's compressed-video (LDV) runs -- scale 1, high-res input, predeblur,
  5 frames, 256x256 patches, 4 per GPU x 8 GPUs = 32, Adam lr 2e-4, cosine restarts
  50k/50k/50k/100k.
- edvr-m-wotsa, edvr-l-wotsa, edvr-m, edvr-l: BasicSR `options/train/EDVR/train_EDVR_{M,L}_x4_SR_REDS
  [_woTSA].yml` -- x4 SR, GT patch 256, 4 per GPU x 8 GPUs, lr 4e-4, eta_min 1e-7, Charbonnier
  sum, flips + rotations. The no-TSA stage runs 4 x 150k; the TSA stage starts from it
  (`--init`), trains only the fusion module for 50k iterations (`tsa_iter`), periods
  50k/100k/150k/150k/150k; EDVR-L restarts at half weight.
- tiny: a few-thousand-parameter network for tests and CPU smoke runs.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

from edvr_cli.windows import DEFAULT_PADDING, PADDING_MODES
from models.errors import EdvrError
from models.presets import PRESETS as ARCHITECTURES

# The seed's reference: GT patch side squared x batch per GPU (256 x 256 x 4) is held constant.
REFERENCE_PIXELS_PER_GPU = 256 * 256 * 4
DEGRADATIONS = ("compress", "compress3", "bicubic4")
AMP_MODES = ("auto", "bf16", "fp16", "off")
LOSS_REDUCTIONS = ("sum", "mean")
CRITERIA = ("charbonnier", "l2")


class ConfigError(EdvrError, ValueError):
    """A training configuration that cannot run; the message says what to change."""


def _help(text: str, **kwargs):
    return field(metadata={"help": text}, **kwargs)


@dataclass
class TrainConfig:
    """Everything a training run depends on. Defaults are the seed's `small` recipe."""

    preset: str = _help("preset the values started from", default="small")
    # --- data -----------------------------------------------------------------------------------
    gt: str | None = _help("ground truth: clip folders of frames, videos, or a folder of them", default=None)
    lq: str | None = _help("degraded input laid out like --gt (paired data); else --degrade", default=None)
    degrade: str | None = _help("make the input from --gt: compress (x265 QP), compress3 (x265 "
                                "bitrate), bicubic4 (x4 down)", default=None)
    qp: int = _help("x265 quantiser for --degrade compress (LDV tracks 1/2: 37)", default=37)
    bitrate_kbps: int = _help("x265 two-pass bitrate for --degrade compress3 (LDV track 3: 200)", default=200)
    cache_dir: str | None = _help("where decoded/degraded clips are kept; None: <EDVR cache>/train",
                                  default=None)
    val_clips: tuple[str, ...] = _help("clip names held out for validation", default=())
    val_frames: int = _help("validate on the first N frames of each clip (0: all)", default=0)
    val_padding: str = _help("temporal padding at clip ends in validation (as `enhance`)",
                             default=DEFAULT_PADDING)
    patch: int = _help("ground-truth patch side in pixels (input patch = patch / scale)", default=256)
    batch: int = _help("patches per GPU (per process) and step", default=4)
    intervals: tuple[int, ...] = _help("temporal strides drawn per sample; (1, 2) is the seed's "
                                       "interval1_2", default=(1,))
    augment: bool = _help("random horizontal/vertical flips and 90-degree rotations", default=True)
    num_workers: int = _help("DataLoader worker processes per GPU", default=3)
    # --- network (models.EDVR arguments) --------------------------------------------------------
    num_feat: int = _help("feature channels", default=64)
    num_frame: int = _help("input frames per output frame (odd)", default=5)
    num_extract_block: int = _help("residual blocks in feature extraction", default=5)
    num_reconstruct_block: int = _help("residual blocks in reconstruction", default=10)
    deformable_groups: int = _help("DCN offset groups", default=8)
    num_hr_feat: int = _help("channels of the last full-resolution convs (BasicSR: 64)", default=64)
    hr_in: bool = _help("high-resolution input (features at 1/4 size)", default=True)
    with_predeblur: bool = _help("predeblur module for the first features", default=True)
    with_tsa: bool = _help("TSA fusion (else a 1x1 conv)", default=True)
    scale: int = _help("output size / input size", default=1)
    car: bool = _help("channel attention in reconstruction blocks (seed's `car`)", default=False)
    nonlocal_attn: bool = _help("non-local attention after alignment (seed's `nonlocal`)", default=False)
    dcn_backend: str = _help("deformable conv: pytorch, torchvision or auto", default="auto")
    # --- optimisation ---------------------------------------------------------------------------
    iters: int = _help("total iterations (optimizer steps)", default=250_000)
    lr: float = _help("Adam learning rate at each cycle's start", default=2e-4)
    betas: tuple[float, float] = _help("Adam betas", default=(0.9, 0.99))
    weight_decay: float = _help("Adam weight decay", default=0.0)
    periods: tuple[int, ...] = _help("cosine-annealing cycle lengths; they scale with --iters "
                                     "unless given", default=(50_000, 50_000, 50_000, 100_000))
    restart_weights: tuple[float, ...] = _help("lr multiplier of each cycle", default=(1.0, 1.0, 1.0, 1.0))
    eta_min: float = _help("lr at the end of each cycle", default=1e-7)
    tsa_warmup: int = _help("iterations training only the fusion module (needs --init from a "
                            "no-TSA run; 0: off)", default=0)
    dcn_lr_mul: float = _help("lr multiplier of the DCN layers (BasicSR dcn_lr_mul)", default=1.0)
    grad_clip: float = _help("clip the gradient norm to this (0: off)", default=0.0)
    criterion: str = _help("pixel loss: charbonnier (the seed's, ~L1) or l2 (squared error: the loss PSNR "
                           "measures)", default="charbonnier")
    loss_reduction: str = _help("loss reduction: sum (BasicSR) or mean", default="sum")
    loss_weight: float | None = _help("loss weight; None: the seed's rule (see loss_weight_rule)",
                                      default=None)
    charbonnier_eps: float = _help("Charbonnier epsilon: sqrt(d^2 + eps)", default=1e-12)
    keep_input_colour: bool = _help("train towards ground truth shifted to the input's mean colour per "
                                    "patch and channel, so the network learns no colour casts (those of a "
                                    "few training clips do not carry over to other footage)", default=False)
    # --- loop -----------------------------------------------------------------------------------
    amp: str = _help("mixed precision on GPU: auto (bf16 if supported, else fp16), bf16, fp16, "
                     "off; always fp32 on CPU", default="auto")
    max_bad_steps: int = _help("stop after this many non-finite losses in a row", default=20)
    log_every: int = _help("iterations between log lines", default=100)
    val_every: int = _help("iterations between validations", default=5000)
    save_every: int = _help("iterations between checkpoints (last.pth)", default=5000)
    snapshot_every: int = _help("iterations between weight snapshots kept as snapshots/iter_N.pth, to "
                                "choose a checkpoint after the run (0: none)", default=0)
    stop_at: int | None = _help("end this session after iteration N (checkpoint written; the "
                                "schedule still runs to --iters)", default=None)
    seed: int = _help("seed for initialisation and sampling", default=10)
    cpu_threads: int = _help("torch threads when training on the CPU (0: torch's default; 1 is "
                             "fastest on a busy machine)", default=0)
    out: str = _help("run folder: checkpoints, logs", default="runs/edvr")
    init: str | None = _help("start from these weights (any layout enhance reads)", default=None)
    identity_start: bool = _help("zero the last conv so the untrained network returns its input "
                                 "(restoration starts at the input's score, not below it)", default=False)
    resume: str | None = _help("continue exactly from this last.pth", default=None)

    # -- derived values ---------------------------------------------------------------------------
    def model_kwargs(self) -> dict:
        """Constructor arguments of `models.EDVR`."""
        return dict(num_feat=self.num_feat, num_frame=self.num_frame, num_extract_block=self.num_extract_block,
                    num_reconstruct_block=self.num_reconstruct_block, deformable_groups=self.deformable_groups,
                    num_hr_feat=self.num_hr_feat,
                    hr_in=self.hr_in, with_predeblur=self.with_predeblur, with_tsa=self.with_tsa,
                    scale=self.scale, car=self.car, nonlocal_attn=self.nonlocal_attn,
                    dcn_backend=self.dcn_backend)

    def effective_loss_weight(self) -> float:
        return self.loss_weight if self.loss_weight is not None else seed_loss_weight(
            self.patch, self.batch, self.loss_reduction)

    def to_dict(self) -> dict:
        return {f.name: list(v) if isinstance(v := getattr(self, f.name), tuple) else v
                for f in dataclasses.fields(self)}


def seed_loss_weight(patch: int, batch: int, reduction: str = "sum") -> float:
    """The seed's rule: (256 * 256 * 4) / (patch^2 * batch per GPU) for a sum-reduced loss.

    A sum-reduced Charbonnier loss grows with the pixels in a batch, and so do its gradients;
    scaling the weight by the inverse ratio keeps the gradient scale of the seed's 256x256x4 runs
    (smaller patches or batches -> weight > 1). A mean-reduced loss does not grow: weight 1.
    """
    if reduction == "mean":
        return 1.0
    return REFERENCE_PIXELS_PER_GPU / (patch * patch * batch)


def loss_weight_rule(config: TrainConfig) -> str:
    """One line saying which loss weight applies and why."""
    if config.loss_weight is not None:
        return f"loss weight {config.loss_weight:g} (given)"
    if config.loss_reduction == "mean":
        return "loss weight 1 (mean-reduced loss: independent of patch and batch size)"
    pixels = config.patch * config.patch * config.batch
    weight = seed_loss_weight(config.patch, config.batch)
    if pixels == REFERENCE_PIXELS_PER_GPU:
        return "loss weight 1: patch^2 x batch = 256x256x4, the seed's reference"
    return (f"loss weight {weight:g} = (256*256*4) / ({config.patch}^2 * {config.batch}): the seed's "
            "rule keeps the gradient scale of its 256x256x4 runs (a sum-reduced loss grows "
            "with pixels per batch)")


# --- presets -----------------------------------------------------------------------------------

# The networks are `models.PRESETS` (one table); a preset here adds how to train them.
_SEED_LDV = dict(patch=256, batch=4, lr=2e-4, iters=250_000, periods=(50_000, 50_000, 50_000, 100_000),
                 restart_weights=(1.0, 1.0, 1.0, 1.0), eta_min=1e-7, tsa_warmup=0, degrade="compress")
_BASICSR_SR = dict(patch=256, batch=4, lr=4e-4, iters=600_000, eta_min=1e-7, dcn_lr_mul=1.0,
                   degrade="bicubic4", seed=10)
_BASICSR_TSA_PERIODS = (50_000, 100_000, 150_000, 150_000, 150_000)

PRESETS: dict[str, dict] = {
    "small": dict(ARCHITECTURES["small"], **_SEED_LDV),
    "large": dict(ARCHITECTURES["large"], **_SEED_LDV),
    # BasicSR stage 1: no TSA, from scratch.
    "edvr-m-wotsa": dict(ARCHITECTURES["edvr-m"], **_BASICSR_SR, with_tsa=False,
                         periods=(150_000,) * 4, restart_weights=(1.0,) * 4, tsa_warmup=0),
    "edvr-l-wotsa": dict(ARCHITECTURES["edvr-l"], **_BASICSR_SR, with_tsa=False,
                         periods=(150_000,) * 4, restart_weights=(1.0, 0.5, 0.5, 0.5), tsa_warmup=0),
    # BasicSR stage 2: TSA, `--init` from stage 1, fusion-only warm-up for 50k iterations.
    "edvr-m": dict(ARCHITECTURES["edvr-m"], **_BASICSR_SR, periods=_BASICSR_TSA_PERIODS,
                   restart_weights=(1.0,) * 5, tsa_warmup=50_000),
    "edvr-l": dict(ARCHITECTURES["edvr-l"], **_BASICSR_SR, periods=_BASICSR_TSA_PERIODS,
                   restart_weights=(1.0, 0.5, 0.5, 0.5, 0.5), tsa_warmup=50_000),
    # Tests and CPU smoke runs: scale 1 without hr_in, so patches can be small (multiples of 4).
    "tiny": dict(num_feat=8, num_frame=3, num_extract_block=1, num_reconstruct_block=1,
                 deformable_groups=2, num_hr_feat=16, hr_in=False, with_predeblur=False, with_tsa=False,
                 scale=1, patch=16, batch=4, lr=3e-3, iters=200, periods=(200,), restart_weights=(1.0,),
                 eta_min=1e-6, num_workers=0, log_every=10, val_every=100, save_every=100,
                 degrade="compress", dcn_backend="pytorch"),
}

# Options that may differ on --resume (they change when/where, not what, the run computes).
RESUMABLE_OVERRIDES = ("iters", "stop_at", "cpu_threads", "log_every", "val_every", "save_every", "snapshot_every",
                       "num_workers",
                       "out", "resume", "max_bad_steps", "cache_dir", "gt", "lq")


def scale_periods(periods: tuple[int, ...], iters: int) -> tuple[int, ...]:
    """`periods` stretched proportionally to sum to `iters` (each at least 1)."""
    total = sum(periods)
    bounds = [round(iters * sum(periods[: i + 1]) / total) for i in range(len(periods))]
    scaled, previous = [], 0
    for bound in bounds:
        scaled.append(max(1, bound - previous))
        previous += scaled[-1]
    scaled[-1] = max(1, iters - sum(scaled[:-1]))
    return tuple(scaled)


def resolve_config(preset: str, overrides: dict | None = None) -> TrainConfig:
    """Preset values with `overrides` (only options the user gave) applied, then checked.

    Rules applied here, visible in `--print-config`:
    - periods not given but iters given: the preset's periods are stretched to sum to iters.
    - restart_weights not given but the number of periods changed: all 1.
    - --lq (paired input) replaces the preset's --degrade.
    - the preset's TSA warm-up applies only with --init and TSA (BasicSR's second stage);
      asking for a warm-up without them is an error.
    """
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    overrides = {key: value for key, value in (overrides or {}).items() if value is not None}
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ConfigError(f"unknown configuration keys: {', '.join(unknown)}")
    values = dict(PRESETS[preset], preset=preset)
    values.update(overrides)
    if "iters" in overrides and "periods" not in overrides:
        values["periods"] = scale_periods(tuple(values.get("periods", TrainConfig.periods)), values["iters"])
    if "periods" in overrides and "restart_weights" not in overrides:
        if len(values["periods"]) != len(values.get("restart_weights", ())):
            values["restart_weights"] = (1.0,) * len(values["periods"])
    if values.get("lq") and "degrade" not in overrides:
        values["degrade"] = None  # paired input replaces the preset's degradation
    with_tsa = values.get("with_tsa", True)
    if "tsa_warmup" not in overrides and (not with_tsa or not values.get("init")):
        values["tsa_warmup"] = 0
    for key in ("val_clips", "intervals", "periods", "restart_weights", "betas"):
        if key in values:
            values[key] = tuple(values[key])
    config = TrainConfig(**values)
    check_config(config)
    return config


def check_config(config: TrainConfig) -> None:
    """Raise ConfigError for values that cannot run, naming the option to change."""
    def require(ok: bool, message: str) -> None:
        if not ok:
            raise ConfigError(message)

    require(config.num_frame >= 1 and config.num_frame % 2 == 1, f"--frames must be odd, got {config.num_frame}")
    require(config.scale in ((1,) if config.hr_in else (1, 2, 4)),
            f"scale {config.scale} is not possible with hr_in={config.hr_in}")
    multiple = config.scale * (16 if config.hr_in else 4)
    require(config.patch >= multiple and config.patch % multiple == 0,
            f"--patch {config.patch} must be a positive multiple of {multiple} for this network "
            f"(scale {config.scale}, hr_in={config.hr_in})")
    require(config.batch >= 1, f"--batch must be at least 1, got {config.batch}")
    require(config.iters >= 1, f"--iters must be at least 1, got {config.iters}")
    require(config.lr > 0 and math.isfinite(config.lr), f"--lr must be positive, got {config.lr}")
    require(len(config.periods) >= 1 and all(p >= 1 for p in config.periods),
            f"--periods must be positive integers, got {config.periods}")
    require(len(config.restart_weights) == len(config.periods),
            f"{len(config.periods)} periods but {len(config.restart_weights)} restart weights")
    require(all(i >= 1 for i in config.intervals) and config.intervals, "--intervals must be positive")
    require(config.tsa_warmup >= 0, "--tsa-warmup must be >= 0")
    if config.tsa_warmup:
        require(config.with_tsa, "--tsa-warmup trains the TSA fusion module: it needs --tsa")
        require(bool(config.init) or bool(config.resume),
                "--tsa-warmup trains only the fusion module, so the rest must come from a trained "
                "no-TSA network: give --init PATH (or --tsa-warmup 0)")
    require(config.degrade is None or config.degrade in DEGRADATIONS,
            f"--degrade must be one of {', '.join(DEGRADATIONS)}")
    require(config.degrade != "bicubic4" or config.scale == 4, "--degrade bicubic4 needs a x4 network (scale 4)")
    require(config.degrade not in ("compress", "compress3") or config.scale == 1,
            f"--degrade {config.degrade} keeps the size: it needs a scale-1 network")
    require(0 <= config.qp <= 51, f"--qp must be in 0..51, got {config.qp}")
    require(config.bitrate_kbps >= 1, "--bitrate must be positive")
    require(config.amp in AMP_MODES, f"--amp must be one of {', '.join(AMP_MODES)}")
    require(not (config.identity_start and config.init),
            "--identity-start zeroes the last conv of an untrained network; it does not go with --init")
    require(config.criterion in CRITERIA, f"--criterion must be one of {', '.join(CRITERIA)}")
    require(config.loss_reduction in LOSS_REDUCTIONS, f"--loss must be one of {', '.join(LOSS_REDUCTIONS)}")
    require(config.val_padding in PADDING_MODES, f"--val-padding must be one of {', '.join(PADDING_MODES)}")
    require(config.max_bad_steps >= 1, "--max-bad-steps must be at least 1")
    for name in ("log_every", "val_every", "save_every"):
        require(getattr(config, name) >= 1, f"--{name.replace('_', '-')} must be at least 1")
    require(config.grad_clip >= 0, "--grad-clip must be >= 0")
    require(config.snapshot_every >= 0, "--snapshot-every must be >= 0")
    require(config.num_workers >= 0, "--workers must be >= 0")
    require(config.cpu_threads >= 0, "--threads must be >= 0")


def resume_config(stored: dict, overrides: dict) -> TrainConfig:
    """The configuration stored in a checkpoint, with the overrides that may change on resume.

    Anything else given differently is an error: a resumed run computes what the first one would.
    """
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    values = {key: value for key, value in stored.items() if key in known}
    for key in ("val_clips", "intervals", "periods", "restart_weights", "betas"):
        values[key] = tuple(values[key])
    current = TrainConfig(**values)
    changed = []
    for key, value in overrides.items():
        if value is None or key == "preset":
            continue
        value = tuple(value) if isinstance(value, list) else value
        if key in RESUMABLE_OVERRIDES:
            setattr(current, key, value)
        elif getattr(current, key) != value:
            changed.append(key)
    if changed:
        raise ConfigError(f"--resume continues the stored configuration; these cannot change: "
                          f"{', '.join(changed)} (start a new run with --init instead)")
    check_config(current)
    return current


def format_config(config: TrainConfig) -> str:
    """The resolved configuration, one `name = value  # help` line each, plus the loss-weight rule."""
    lines = []
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        lines.append(f"{f.name:22s} = {value!r:34s} # {f.metadata.get('help', '')}")
    lines.append(f"# {loss_weight_rule(config)}")
    preset_warmup = PRESETS.get(config.preset, {}).get("tsa_warmup", 0)
    if preset_warmup and not config.tsa_warmup:
        lines.append(f"# the {config.preset} preset trains only the TSA fusion module for {preset_warmup} "
                     "iterations when started with --init from a no-TSA run (BasicSR's second stage); "
                     "without --init everything trains from step 0")
    return "\n".join(lines)
