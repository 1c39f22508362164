"""The training loop, one for 1 or N processes.

One process (GPU if there is one, else CPU):
    edvr train --preset small --gt footage/ --degrade compress --val-clips clip07 --out runs/small

One node, 8 GPUs (DistributedDataParallel; --batch is per GPU, as in the presets):
    torchrun --standalone --nproc_per_node 8 --no-python edvr train --preset large --gt footage/ ...

RANK / WORLD_SIZE / LOCAL_RANK come from torchrun's environment. Only rank 0 logs and writes;
every rank draws its own samples (keyed by seed, rank and sample number, see data.py).

Each iteration: lr from get_lr(it) -> forward (AMP on GPU) -> loss -> fetch the next batch while
the device works -> one sync: is the loss finite on every rank? (if not, skip the step) ->
backward -> optional clipping -> step -> zero_grad. Then log / validate / checkpoint when due.
"""

from __future__ import annotations

import os
import signal
import threading
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from models import build_model, CheckpointError
from models.dcn import OFFSET_WARN_ABSMEAN, max_offset_absmean
from edvr_cli.train.checkpointing import (load_init_weights, read_training_checkpoint, restore_rng_states,
                                          save_checkpoint, training_state)
from edvr_cli.train.config import ConfigError, TrainConfig, loss_weight_rule
from edvr_cli.train.data import PatchDataset, load_clips, make_loader
from edvr_cli.train.runlog import RunLog
from edvr_cli.train.schedule import get_lr
from edvr_cli.train.validation import input_scores, validate
from models.errors import EdvrError


class TrainingError(EdvrError, RuntimeError):
    """Training cannot go on (e.g. the loss stays non-finite); the message says what to try."""


@dataclass
class Distributed:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_master(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world_size > 1:
            dist.barrier()


@dataclass
class TrainResult:
    iteration: int
    best_psnr: float | None
    baseline_psnr: float | None
    out: Path
    model: torch.nn.Module  # unwrapped, on its device


def setup_distributed() -> Distributed:
    """Read torchrun's environment; start the process group when there is more than one process."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return Distributed(rank, world_size, local_rank, device)


def resolve_amp(amp: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype, or None for fp32 (always on CPU)."""
    if device.type != "cuda":
        if amp in ("fp16", "bf16"):
            raise ConfigError(f"--amp {amp} needs a GPU; on the CPU training runs in fp32 (--amp auto/off)")
        return None
    if amp == "off":
        return None
    if amp == "bf16" or (amp == "auto" and torch.cuda.is_bf16_supported()):
        return torch.bfloat16
    return torch.float16


def _reduce(per_pixel: torch.Tensor, reduction: str) -> torch.Tensor:
    return per_pixel.sum() if reduction == "sum" else per_pixel.mean()


def charbonnier_loss(pred: torch.Tensor, target: torch.Tensor, eps: float = 1e-12,
                     reduction: str = "sum") -> torch.Tensor:
    """sqrt((pred - target)^2 + eps), summed (BasicSR's EDVR configs) or averaged; computed in fp32."""
    return _reduce(torch.sqrt((pred.float() - target.float()) ** 2 + eps), reduction)


def pixel_loss(pred: torch.Tensor, target: torch.Tensor, config: TrainConfig) -> torch.Tensor:
    """The configured criterion: Charbonnier (the seed's) or squared error, in fp32."""
    if config.criterion == "l2":
        return _reduce((pred.float() - target.float()) ** 2, config.loss_reduction)
    return charbonnier_loss(pred, target, config.charbonnier_eps, config.loss_reduction)


def with_input_colour(gt: torch.Tensor, lq: torch.Tensor) -> torch.Tensor:
    """Ground truth (b, 3, H, W) moved to the mean colour of the centre input frame (lq: b, t, 3, h, w),
    per sample and channel. Training towards it teaches artefact removal without colour casts: the
    casts x265 gives a handful of training clips are not the ones it gives other footage."""
    centre = lq[:, lq.shape[1] // 2]
    return gt - gt.mean(dim=(-2, -1), keepdim=True) + centre.mean(dim=(-2, -1), keepdim=True)


def start_at_identity(model: torch.nn.Module) -> None:
    """Zero the last conv: EDVR adds its output to the (upsampled) centre frame, so the untrained
    network returns its input. Short QE runs otherwise spend their first thousand iterations
    cancelling a random residual that starts below the input's PSNR."""
    model.scale_residual(0.0)


def set_fusion_only(model: torch.nn.Module, fusion_only: bool) -> None:
    """TSA warm-up: only parameters under `fusion.` train (BasicSR's `tsa_iter`)."""
    for name, param in model.named_parameters():
        param.requires_grad_(name.startswith("fusion.") or not fusion_only)


def build_optimizer(model: torch.nn.Module, config: TrainConfig) -> torch.optim.Adam:
    """Adam with two parameter groups: DCN layers (lr x dcn_lr_mul) and the rest."""
    dcn = [p for name, p in model.named_parameters() if "dcn" in name]
    rest = [p for name, p in model.named_parameters() if "dcn" not in name]
    groups = [{"params": rest, "lr_mul": 1.0}, {"params": dcn, "lr_mul": config.dcn_lr_mul}]
    return torch.optim.Adam(groups, lr=config.lr, betas=tuple(config.betas), weight_decay=config.weight_decay)


class StopRequest:
    """SIGTERM (e.g. a scheduler's preemption) or a first Ctrl-C: finish the step, save, stop."""

    def __init__(self):
        self.requested = False

    @contextmanager
    def installed(self):
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}

        def handler(signum, frame):
            if self.requested and signum == signal.SIGINT:
                raise KeyboardInterrupt  # a second Ctrl-C stops at once
            self.requested = True

        for sig in previous:
            signal.signal(sig, handler)
        try:
            yield self
        finally:
            for sig, old in previous.items():
                signal.signal(sig, old)


def _all_ranks_true(flag: bool, ctx: Distributed) -> bool:
    """True when `flag` holds on every rank (one collective; all ranks then act alike)."""
    if ctx.world_size == 1:
        return flag
    value = torch.tensor([1 if flag else 0], device=ctx.device)
    dist.all_reduce(value, op=dist.ReduceOp.MIN)
    return bool(value.item())


def _wrap(model: torch.nn.Module, ctx: Distributed) -> torch.nn.Module:
    if ctx.world_size == 1:
        return model
    device_ids = [ctx.local_rank] if ctx.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=device_ids)


def train(config: TrainConfig, show_progress: bool = True, echo: Callable[[str], None] = print) -> TrainResult:
    """Run (or resume) training as `config` says; returns where it stopped.

    Raises ConfigError / DataError / DegradeError / CheckpointError for bad input, TrainingError
    when the loss stays non-finite.
    """
    from tqdm import tqdm

    ctx = setup_distributed()
    threads = torch.get_num_threads()
    try:
        with warnings.catch_warnings():
            # models.dcn warns on every CPU forward once offsets pass 50; the loop reports that
            # once per log step instead (and on GPU too), so silence the per-call warning here.
            warnings.filterwarnings("ignore", message="DCN offset mean", category=RuntimeWarning)
            return _train(config, ctx, show_progress, echo, tqdm)
    finally:
        torch.set_num_threads(threads)
        if ctx.world_size > 1 and dist.is_initialized():
            dist.destroy_process_group()


def _train(config: TrainConfig, ctx: Distributed, show_progress: bool, echo, tqdm) -> TrainResult:
    out = Path(config.out)
    log = RunLog(out, enabled=ctx.is_master, echo=echo)
    amp_dtype = resolve_amp(config.amp, ctx.device)
    if ctx.device.type == "cpu" and config.cpu_threads:
        torch.set_num_threads(config.cpu_threads)
    torch.manual_seed(config.seed)  # the same initial weights on every rank

    # Data: rank 0 fills the cache first, the others then find it there.
    from models.download import default_cache_dir
    cache_root = Path(config.cache_dir) if config.cache_dir else default_cache_dir() / "train"
    if not ctx.is_master:
        ctx.barrier()
    clips = load_clips(config, cache_root, show_progress=show_progress and ctx.is_master)
    if ctx.is_master:
        ctx.barrier()

    # Network, optimizer, and the state to continue from.
    model = build_model(config.model_kwargs()).to(ctx.device)
    optimizer = build_optimizer(model, config)
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)
    start_iter, best_psnr, bad_steps = 0, None, 0
    if config.resume:
        params, _, state = read_training_checkpoint(config.resume)
        model.load_state_dict(params)
        optimizer.load_state_dict(state["optimizer"])
        scaler.load_state_dict(state["scaler"])
        restore_rng_states(state["rng"])
        start_iter, best_psnr, bad_steps = state["iteration"], state["best_psnr"], state["bad_steps"]
        if state["samples_per_rank"] != start_iter * config.batch:
            raise CheckpointError(f"{config.resume}: data position {state['samples_per_rank']} does not "
                                  f"match iteration {start_iter} x batch {config.batch}")
        log.note(f"resumed from {config.resume} at iteration {start_iter}")
    elif config.init:
        log.note(load_init_weights(model, config.init))
    if config.identity_start and not config.resume:
        start_at_identity(model)
        log.note("identity start: the last conv is zeroed, the network begins as its input")

    num_params = sum(p.numel() for p in model.parameters())
    log.note(f"EDVR {num_params:,} parameters on {ctx.device} x {ctx.world_size} process(es), "
             f"{'fp32' if amp_dtype is None else str(amp_dtype).replace('torch.', '')}; "
             f"{len(clips.train)} training clip(s), {len(clips.val)} validation clip(s), input: {clips.degradation}")
    log.note(f"batch {config.batch} per process x {ctx.world_size} = {config.batch * ctx.world_size}, "
             f"patch {config.patch}; {loss_weight_rule(config)}")
    if config.tsa_warmup > start_iter:
        log.note(f"TSA warm-up: only the fusion module trains until iteration {config.tsa_warmup}")
    loss_weight = config.effective_loss_weight()

    baseline_psnr = None
    if clips.val and ctx.is_master:
        baseline = input_scores(clips.val, config.scale, config.val_frames)
        baseline_psnr = baseline.psnr
        log.record("baseline", psnr=baseline.psnr, ssim=baseline.ssim, clips=baseline.clips)
        log.note(f"input ({clips.degradation}) on the validation clips: PSNR {baseline.psnr:.4f} dB, "
                 f"SSIM {baseline.ssim:.4f}")
    elif not clips.val:
        log.note("no --val-clips: no validation, no best.pth")

    dataset = PatchDataset(clips.train, config.num_frame, config.patch, config.scale, config.intervals,
                           config.augment, config.seed, ctx.rank)
    loader = make_loader(dataset, config.batch, config.num_workers, start_iter * config.batch,
                         pin_memory=ctx.device.type == "cuda")
    batches = iter(loader)

    def save_last(iteration: int) -> None:
        if ctx.is_master:
            state = training_state(iteration, iteration * config.batch, optimizer, scaler, best_psnr, bad_steps)
            save_checkpoint(out / "last.pth", model, config.to_dict(), state)

    end_iter = min(config.iters, config.stop_at) if config.stop_at is not None else config.iters
    it = start_iter
    fusion_only = None
    wrapped = model
    model.train()
    progress = tqdm(total=config.iters, initial=start_iter, desc="training", unit="it", dynamic_ncols=True,
                    disable=None if show_progress and ctx.is_master else True)  # None: off when not a terminal
    lq, gt = next(batches)
    window_start, window_iter = time.perf_counter(), it
    stop = StopRequest()
    with stop.installed(), progress:
        while it < end_iter and not stop.requested:
            if fusion_only != (it < config.tsa_warmup):  # (re)wrap DDP when the trainable set changes
                fusion_only = it < config.tsa_warmup
                set_fusion_only(model, fusion_only)
                wrapped = _wrap(model, ctx)
            lr = get_lr(it, config.lr, config.periods, config.restart_weights, config.eta_min)
            for group in optimizer.param_groups:
                group["lr"] = lr * group["lr_mul"]

            lq_batch = lq.to(ctx.device, non_blocking=True).float().div_(255)  # (b, t, 3, h, w)
            gt_batch = gt.to(ctx.device, non_blocking=True).float().div_(255)  # (b, 3, H, W)
            if config.keep_input_colour:
                gt_batch = with_input_colour(gt_batch, lq_batch)
            with torch.autocast(ctx.device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
                pred = wrapped(lq_batch)
            loss = pixel_loss(pred, gt_batch, config) * loss_weight
            lq, gt = next(batches)  # fetched while the device computes

            # Sync point: every rank must agree before backward, or DDP would hang.
            if not _all_ranks_true(bool(torch.isfinite(loss)), ctx):
                bad_steps += 1
                optimizer.zero_grad(set_to_none=True)
                it += 1
                progress.update(1)
                log.record("skip", iter=it, loss=float(loss.detach()), bad_steps=bad_steps)
                log.warning(f"iteration {it}: non-finite loss, step skipped ({bad_steps} in a row)")
                if bad_steps >= config.max_bad_steps:
                    save_last(it)
                    log.close()
                    raise TrainingError(
                        f"stopped at iteration {it}: {bad_steps} non-finite losses in a row. The weights "
                        f"in {out / 'last.pth'} are the last good ones; lower --lr, set --grad-clip, or "
                        "use --amp off")
                continue
            bad_steps = 0
            scaler.scale(loss).backward()
            if config.grad_clip > 0:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.grad is not None],
                                               config.grad_clip)
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
            it += 1
            progress.update(1)

            if it % config.log_every == 0 or it == end_iter or it == start_iter + 1:
                loss_value = loss.item()  # sync point, only when logging
                now = time.perf_counter()
                it_per_s = (it - window_iter) / max(now - window_start, 1e-9)
                window_start, window_iter = now, it
                offset = max_offset_absmean(model)
                log.record("train", iter=it, loss=loss_value, lr=lr, it_per_s=it_per_s, offset_absmean=offset)
                progress.set_postfix(loss=f"{loss_value:.4g}", lr=f"{lr:.3g}")
                if offset is not None and offset > OFFSET_WARN_ABSMEAN:
                    log.warning(f"iteration {it}: mean |DCN offset| {offset:.1f} > {OFFSET_WARN_ABSMEAN:g}: "
                                "alignment is diverging (lower --lr or --dcn-lr-mul)", iter=it)

            if clips.val and (it % config.val_every == 0 or it == config.iters):
                if ctx.is_master:
                    scores = validate(model, clips.val, config.num_frame, config.val_padding, ctx.device,
                                      amp_dtype, config.val_frames)
                    log.record("val", iter=it, psnr=scores.psnr, ssim=scores.ssim, clips=scores.clips)
                    gain = f" ({scores.psnr - baseline_psnr:+.4f} dB over the input)" if baseline_psnr else ""
                    log.echo(f"iteration {it}: validation PSNR {scores.psnr:.4f} dB{gain}, SSIM {scores.ssim:.4f}")
                    if best_psnr is None or scores.psnr > best_psnr:
                        best_psnr = scores.psnr
                        save_checkpoint(out / "best.pth", model, config.to_dict(), iteration=it,
                                        val_psnr=scores.psnr, val_ssim=scores.ssim)
                ctx.barrier()
                window_start = time.perf_counter()  # it/s counts training steps, not validation
            if it % config.save_every == 0:
                save_last(it)
            if config.snapshot_every and it % config.snapshot_every == 0 and ctx.is_master:
                (out / "snapshots").mkdir(exist_ok=True)
                save_checkpoint(out / "snapshots" / f"iter_{it}.pth", model, config.to_dict(), iteration=it)

    save_last(it)
    if stop.requested:
        log.note(f"stopped on request at iteration {it}; continue with --resume {out / 'last.pth'}")
    elif it < config.iters:
        log.note(f"stopped at iteration {it} (--stop-at); continue with --resume {out / 'last.pth'}")
    else:
        log.note(f"done: {it} iterations; weights in {out / 'last.pth'}"
                 + (f", best validation PSNR {best_psnr:.4f} dB in {out / 'best.pth'}" if best_psnr else ""))
    log.close()
    return TrainResult(it, best_psnr, baseline_psnr, out, model)
