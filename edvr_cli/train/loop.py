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

from edvr_cli.host_memory import keep_freed_memory
from edvr_cli.train.checkpointing import (load_init_weights, read_training_checkpoint, restore_rng_states,
                                          save_checkpoint, training_state)
from edvr_cli.train.config import ConfigError, TrainConfig, loss_weight_rule
from edvr_cli.train.data import Clips, PatchDataset, load_clips, make_loader
from edvr_cli.train.distributed import Distributed, all_ranks_true, setup_distributed, wrap_for_ranks
from edvr_cli.train.losses import pixel_loss, with_input_colour
from edvr_cli.train.runlog import RunLog
from edvr_cli.train.schedule import get_lr
from edvr_cli.train.validation import input_scores, validate
from models import CheckpointError, build_model
from models.dcn import OFFSET_WARN_ABSMEAN, max_offset_absmean
from models.errors import EdvrError


class TrainingError(EdvrError, RuntimeError):
    """Training cannot go on (e.g. the loss stays non-finite); the message says what to try."""


@dataclass
class TrainResult:
    iteration: int
    best_psnr: float | None
    baseline_psnr: float | None
    out: Path
    model: torch.nn.Module  # unwrapped, on its device


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


def train(config: TrainConfig, show_progress: bool = True, echo: Callable[[str], None] = print,
          replace_run: bool = False) -> TrainResult:
    """Run (or resume) training as `config` says; returns where it stopped. With `replace_run` an
    earlier run's files in `config.out` are removed when this run writes its first record.

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
            return _train(config, ctx, show_progress, echo, tqdm, replace_run)
    finally:
        torch.set_num_threads(threads)
        if ctx.world_size > 1 and dist.is_initialized():
            dist.destroy_process_group()


@dataclass
class _Run:
    """One session's network, optimiser and position: what setup makes and the steps advance."""

    config: TrainConfig
    ctx: Distributed
    log: RunLog
    clips: Clips
    model: torch.nn.Module
    optimizer: torch.optim.Adam
    scaler: torch.amp.GradScaler
    amp_dtype: torch.dtype | None
    start_iter: int = 0
    it: int = 0
    best_psnr: float | None = None
    bad_steps: int = 0
    baseline_psnr: float | None = None
    window_start: float = 0.0  # it/s is measured over the steps since the last log line
    window_iter: int = 0

    @property
    def out(self) -> Path:
        return Path(self.config.out)

    def save_last(self) -> None:
        if self.ctx.is_master:
            state = training_state(self.it, self.it * self.config.batch, self.optimizer, self.scaler,
                                   self.best_psnr, self.bad_steps)
            save_checkpoint(self.out / "last.pth", self.model, self.config.to_dict(), state)


def _train(config: TrainConfig, ctx: Distributed, show_progress: bool, echo, tqdm, replace_run: bool) -> TrainResult:
    run = _setup(config, ctx, show_progress, echo, replace_run)
    dataset = PatchDataset(run.clips.train, config.num_frame, config.patch, config.scale, config.intervals,
                           config.augment, config.seed, ctx.rank)
    batches = iter(make_loader(dataset, config.batch, config.num_workers, run.start_iter * config.batch,
                               pin_memory=ctx.device.type == "cuda"))
    end_iter = min(config.iters, config.stop_at) if config.stop_at is not None else config.iters
    fusion_only, wrapped = None, run.model
    run.model.train()
    progress = tqdm(total=config.iters, initial=run.start_iter, desc="training", unit="it", dynamic_ncols=True,
                    disable=None if show_progress and ctx.is_master else True)  # None: off when not a terminal
    batch = next(batches)
    run.window_start, run.window_iter = time.perf_counter(), run.it
    stop = StopRequest()
    with stop.installed(), progress:
        while run.it < end_iter and not stop.requested:
            if fusion_only != (run.it < config.tsa_warmup):  # (re)wrap DDP when the trainable set changes
                fusion_only = run.it < config.tsa_warmup
                set_fusion_only(run.model, fusion_only)
                wrapped = wrap_for_ranks(run.model, ctx)
            lr = get_lr(run.it, config.lr, config.periods, config.restart_weights, config.eta_min)
            for group in run.optimizer.param_groups:
                group["lr"] = lr * group["lr_mul"]
            loss, stepped, batch = _step(run, wrapped, batch, batches)
            run.it += 1
            progress.update(1)
            if not stepped:
                _skipped(run, loss)
                continue
            if run.it % config.log_every == 0 or run.it == end_iter or run.it == run.start_iter + 1:
                _log_step(run, loss, lr, progress)
            _validate_and_checkpoint(run)
    return _finish(run, stop)


def _setup(config: TrainConfig, ctx: Distributed, show_progress: bool, echo, replace_run: bool) -> _Run:
    """Data, network, optimiser and the state to continue from; the opening notes and the
    input's validation scores."""
    log = RunLog(Path(config.out), enabled=ctx.is_master, echo=echo, replace_run=replace_run)
    amp_dtype = resolve_amp(config.amp, ctx.device)
    if ctx.device.type == "cpu" and config.cpu_threads:
        torch.set_num_threads(config.cpu_threads)
    if ctx.device.type == "cpu":
        keep_freed_memory()  # the step's tensors are freed and allocated again every iteration
    torch.manual_seed(config.seed)  # the same initial weights on every rank

    # Data: rank 0 fills the cache first, the others then find it there.
    from models.download import default_cache_dir
    cache_root = Path(config.cache_dir) if config.cache_dir else default_cache_dir() / "train"
    if not ctx.is_master:
        ctx.barrier()
    clips = load_clips(config, cache_root, show_progress=show_progress and ctx.is_master)
    if ctx.is_master:
        ctx.barrier()

    model = build_model(config.model_kwargs()).to(ctx.device)
    run = _Run(config, ctx, log, clips, model, build_optimizer(model, config),
               torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16), amp_dtype)
    if config.resume:
        _resume(run, config.resume)
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
    if config.tsa_warmup > run.start_iter:
        log.note(f"TSA warm-up: only the fusion module trains until iteration {config.tsa_warmup}")

    if clips.val and ctx.is_master:
        baseline = input_scores(clips.val, config.scale, config.val_frames)
        run.baseline_psnr = baseline.psnr
        log.record("baseline", psnr=baseline.psnr, ssim=baseline.ssim, clips=baseline.clips)
        log.note(f"input ({clips.degradation}) on the validation clips: PSNR {baseline.psnr:.4f} dB, "
                 f"SSIM {baseline.ssim:.4f}")
    elif not clips.val:
        log.note("no --val-clips: no validation, no best.pth")
    return run


def _resume(run: _Run, path: str) -> None:
    """Weights, optimiser, scaler, RNG states and position from a last.pth."""
    params, _, state = read_training_checkpoint(path)
    run.model.load_state_dict(params)
    run.optimizer.load_state_dict(state["optimizer"])
    run.scaler.load_state_dict(state["scaler"])
    restore_rng_states(state["rng"])
    run.start_iter = run.it = state["iteration"]
    run.best_psnr, run.bad_steps = state["best_psnr"], state["bad_steps"]
    if state["samples_per_rank"] != run.start_iter * run.config.batch:
        raise CheckpointError(f"{path}: data position {state['samples_per_rank']} does not "
                              f"match iteration {run.start_iter} x batch {run.config.batch}")
    run.log.note(f"resumed from {path} at iteration {run.start_iter}")


def _step(run: _Run, wrapped: torch.nn.Module, batch, batches) -> tuple[torch.Tensor, bool, tuple]:
    """One optimiser step on `batch`; returns (loss, whether it stepped, the next batch).

    The next batch is fetched while the device computes; a non-finite loss on any rank skips
    the step on every rank."""
    config, ctx = run.config, run.ctx
    lq, gt = batch
    lq_batch = lq.to(ctx.device, non_blocking=True).float().div_(255)  # (b, t, 3, h, w)
    gt_batch = gt.to(ctx.device, non_blocking=True).float().div_(255)  # (b, 3, H, W)
    if config.keep_input_colour:
        gt_batch = with_input_colour(gt_batch, lq_batch)
    with torch.autocast(ctx.device.type, dtype=run.amp_dtype or torch.float32, enabled=run.amp_dtype is not None):
        pred = wrapped(lq_batch)
    loss = pixel_loss(pred, gt_batch, config) * config.effective_loss_weight()
    batch = next(batches)  # fetched while the device computes

    # Sync point: every rank must agree before backward, or DDP would hang.
    if not all_ranks_true(bool(torch.isfinite(loss)), ctx):
        run.optimizer.zero_grad(set_to_none=True)
        return loss, False, batch
    run.bad_steps = 0
    run.scaler.scale(loss).backward()
    if config.grad_clip > 0:
        run.scaler.unscale_(run.optimizer)
        torch.nn.utils.clip_grad_norm_([p for p in run.model.parameters() if p.grad is not None],
                                       config.grad_clip)
    run.scaler.step(run.optimizer)
    run.scaler.update()
    run.optimizer.zero_grad(set_to_none=True)
    return loss, True, batch


def _skipped(run: _Run, loss: torch.Tensor) -> None:
    """Count a skipped step; too many in a row end the run with the last good weights saved."""
    run.bad_steps += 1
    run.log.record("skip", iter=run.it, loss=float(loss.detach()), bad_steps=run.bad_steps)
    run.log.warning(f"iteration {run.it}: non-finite loss, step skipped ({run.bad_steps} in a row)")
    if run.bad_steps >= run.config.max_bad_steps:
        run.save_last()
        run.log.close()
        raise TrainingError(
            f"stopped at iteration {run.it}: {run.bad_steps} non-finite losses in a row. The weights "
            f"in {run.out / 'last.pth'} are the last good ones; lower --lr, set --grad-clip, or "
            "use --amp off")


def _log_step(run: _Run, loss: torch.Tensor, lr: float, progress) -> None:
    loss_value = loss.item()  # sync point, only when logging
    now = time.perf_counter()
    it_per_s = (run.it - run.window_iter) / max(now - run.window_start, 1e-9)
    run.window_start, run.window_iter = now, run.it
    offset = max_offset_absmean(run.model)
    run.log.record("train", iter=run.it, loss=loss_value, lr=lr, it_per_s=it_per_s, offset_absmean=offset)
    progress.set_postfix(loss=f"{loss_value:.4g}", lr=f"{lr:.3g}")
    if offset is not None and offset > OFFSET_WARN_ABSMEAN:
        run.log.warning(f"iteration {run.it}: mean |DCN offset| {offset:.1f} > {OFFSET_WARN_ABSMEAN:g}: "
                        "alignment is diverging (lower --lr or --dcn-lr-mul)", iter=run.it)


def _validate_and_checkpoint(run: _Run) -> None:
    """Validation (best.pth when it improves), last.pth and snapshots, each when due."""
    config, ctx, it = run.config, run.ctx, run.it
    if run.clips.val and (it % config.val_every == 0 or it == config.iters):
        if ctx.is_master:
            scores = validate(run.model, run.clips.val, config.num_frame, config.val_padding, ctx.device,
                              run.amp_dtype, config.val_frames)
            run.log.record("val", iter=it, psnr=scores.psnr, ssim=scores.ssim, clips=scores.clips)
            gain = f" ({scores.psnr - run.baseline_psnr:+.4f} dB over the input)" if run.baseline_psnr else ""
            run.log.echo(f"iteration {it}: validation PSNR {scores.psnr:.4f} dB{gain}, SSIM {scores.ssim:.4f}")
            if run.best_psnr is None or scores.psnr > run.best_psnr:
                run.best_psnr = scores.psnr
                save_checkpoint(run.out / "best.pth", run.model, config.to_dict(), iteration=it,
                                val_psnr=scores.psnr, val_ssim=scores.ssim)
        ctx.barrier()
        run.window_start = time.perf_counter()  # it/s counts training steps, not validation
    if it % config.save_every == 0:
        run.save_last()
    if config.snapshot_every and it % config.snapshot_every == 0 and ctx.is_master:
        (run.out / "snapshots").mkdir(exist_ok=True)
        save_checkpoint(run.out / "snapshots" / f"iter_{it}.pth", run.model, config.to_dict(), iteration=it)


def _finish(run: _Run, stop: StopRequest) -> TrainResult:
    run.save_last()
    out, it = run.out, run.it
    if stop.requested:
        run.log.note(f"stopped on request at iteration {it}; continue with --resume {out / 'last.pth'}")
    elif it < run.config.iters:
        run.log.note(f"stopped at iteration {it} (--stop-at); continue with --resume {out / 'last.pth'}")
    else:
        run.log.note(f"done: {it} iterations; weights in {out / 'last.pth'}"
                     + (f", best validation PSNR {run.best_psnr:.4f} dB in {out / 'best.pth'}"
                        if run.best_psnr else ""))
    run.log.close()
    return TrainResult(it, run.best_psnr, run.baseline_psnr, out, run.model)
