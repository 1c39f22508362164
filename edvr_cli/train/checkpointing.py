"""Training checkpoints: the weights `enhance --model` loads, plus what `--resume` needs.

A checkpoint is `models.save_model`'s format ({"params", "edvr_config", ...}, written to a temporary
file then `os.replace`d) with two more entries:
- "train_config": the resolved TrainConfig as a dict;
- "train_state" (last.pth only): iteration, data position (samples drawn per rank), optimizer and
  GradScaler states, RNG states (python, numpy, torch, cuda), best validation PSNR, the count of
  non-finite steps in a row.
Everything is tensors and plain containers, so `torch.load(weights_only=True)` reads it.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch

from models import CheckpointError, read_checkpoint, save_model
from models.checkpoint import load_checkpoint_file
from models.edvr import EDVR


# --- RNG states --------------------------------------------------------------------------------

def capture_rng_states() -> dict:
    """Python, numpy, torch and CUDA generator states as weights_only-loadable values."""
    kind, keys, pos, has_gauss, cached_gauss = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached_gauss)},
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def restore_rng_states(states: dict) -> None:
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))
    numpy_state = states["numpy"]
    np.random.set_state((numpy_state["kind"], numpy_state["keys"].numpy().astype(np.uint32), numpy_state["pos"],
                         numpy_state["has_gauss"], numpy_state["cached_gaussian"]))
    torch.set_rng_state(states["torch"])
    if torch.cuda.is_available() and states["cuda"] and len(states["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(states["cuda"])


# --- writing -----------------------------------------------------------------------------------

def save_checkpoint(path: str | Path, model: EDVR, train_config: dict, train_state: dict | None = None,
                    **extra) -> None:
    """Write weights + configuration (+ training state) atomically (temporary file, os.replace)."""
    entries = {"train_config": train_config, **extra}
    if train_state is not None:
        entries["train_state"] = train_state
    save_model(model, path, extra=entries)


def training_state(iteration: int, samples_per_rank: int, optimizer: torch.optim.Optimizer,
                   scaler: torch.amp.GradScaler, best_psnr: float | None, bad_steps: int) -> dict:
    return {"iteration": iteration, "samples_per_rank": samples_per_rank, "optimizer": optimizer.state_dict(),
            "scaler": scaler.state_dict(), "rng": capture_rng_states(), "best_psnr": best_psnr,
            "bad_steps": bad_steps}


# --- reading -----------------------------------------------------------------------------------

def read_training_checkpoint(path: str | Path) -> tuple[dict, dict, dict]:
    """(params, train_config dict, train_state) of a last.pth written by `edvr train`."""
    checkpoint = load_checkpoint_file(path)
    if not isinstance(checkpoint, dict) or "train_state" not in checkpoint or "train_config" not in checkpoint:
        raise CheckpointError(f"{path}: holds no training state; --resume takes the last.pth of an "
                              "`edvr train` run (use --init to start from other weights)")
    return checkpoint["params"], checkpoint["train_config"], checkpoint["train_state"]


def load_init_weights(model: EDVR, path: str | Path) -> str:
    """Load weights of any layout `enhance` reads into `model`; returns a report of what loaded.

    Only one gap is allowed: a TSA network warm-started from a no-TSA checkpoint, whose TSA
    fusion weights (`fusion.*`) start fresh while the no-TSA fusion conv (`fusion.weight`,
    `fusion.bias`) is left out -- BasicSR's second stage. Anything else that does not fit raises
    CheckpointError naming the keys.
    """
    layout, state, _ = read_checkpoint(path)
    expected = model.state_dict()
    missing = [key for key in expected if key not in state]
    unexpected = [key for key in state if key not in expected]
    wrong_shape = [key for key in expected if key in state and state[key].shape != expected[key].shape]
    tsa_from_no_tsa = model.with_tsa and "fusion.temporal_attn1.weight" not in state
    allowed_missing = [key for key in missing if tsa_from_no_tsa and key.startswith("fusion.")]
    allowed_unexpected = [key for key in unexpected if tsa_from_no_tsa and key in ("fusion.weight", "fusion.bias")]
    problems = []

    def listed(keys):
        return ", ".join(keys[:4]) + (f" (+{len(keys) - 4} more)" if len(keys) > 4 else "")

    if wrong_shape:
        problems.append(f"wrong shapes: {listed(wrong_shape)}")
    if set(missing) - set(allowed_missing):
        problems.append(f"missing: {listed([k for k in missing if k not in allowed_missing])}")
    if set(unexpected) - set(allowed_unexpected):
        problems.append(f"not in this network: {listed([k for k in unexpected if k not in allowed_unexpected])}")
    if problems:
        raise CheckpointError(f"--init {path} ({layout} layout) does not fit the network: " + "; ".join(problems))
    loadable = {key: value for key, value in state.items() if key in expected}
    model.load_state_dict(loadable, strict=False)
    report = f"--init {path} ({layout} layout): loaded {len(loadable)} of {len(expected)} tensors"
    if allowed_missing:
        report += (f"; {len(allowed_missing)} TSA fusion tensors start fresh (no-TSA checkpoint), "
                   f"its 1x1 fusion conv ({len(allowed_unexpected)} tensors) is not used")
    return report
