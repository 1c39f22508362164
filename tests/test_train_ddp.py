"""edvr train on 2 processes (torchrun, gloo on the CPU): one loop, rank 0 writes, identical weights."""

import hashlib
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import torch

from edvr_cli.image_io import write_png
from edvr_cli.train.checkpointing import read_training_checkpoint
from edvr_cli.train.runlog import read_log

RANK_SCRIPT = textwrap.dedent("""
    import hashlib, json, os, sys
    from edvr_cli.train.config import resolve_config
    from edvr_cli.train.loop import train

    config = resolve_config("tiny", json.loads(sys.argv[1]))
    result = train(config, show_progress=False)
    digest = hashlib.sha256()
    for key, value in sorted(result.model.state_dict().items()):
        digest.update(key.encode() + value.numpy().tobytes())
    with open(os.path.join(sys.argv[2], f"rank{os.environ['RANK']}.sha256"), "w") as handle:
        handle.write(digest.hexdigest())
""")


def state_digest(state):
    digest = hashlib.sha256()
    for key, value in sorted(state.items()):
        digest.update(key.encode() + value.numpy().tobytes())
    return digest.hexdigest()


def test_two_processes_train_identical_weights(tmp_path):
    rng = np.random.default_rng(3)
    for side in ("gt", "lq"):
        (tmp_path / side / "clip").mkdir(parents=True)
    for idx in range(4):
        frame = rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)
        write_png(tmp_path / "gt" / "clip" / f"{idx}.png", frame)
        write_png(tmp_path / "lq" / "clip" / f"{idx}.png", (frame // 2).astype(np.uint8))
    (tmp_path / "script.py").write_text(RANK_SCRIPT)
    overrides = {"gt": str(tmp_path / "gt"), "lq": str(tmp_path / "lq"), "out": str(tmp_path / "run"),
                 "iters": 4, "log_every": 1, "save_every": 2, "cpu_threads": 1}
    env = dict(os.environ, OMP_NUM_THREADS="1")
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                             str(tmp_path / "script.py"), json.dumps(overrides), str(tmp_path)],
                            capture_output=True, text=True, timeout=240, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]

    rank0, rank1 = ((tmp_path / f"rank{r}.sha256").read_text() for r in (0, 1))
    assert rank0 == rank1  # DDP averaged the same gradients into both copies
    params, stored, state = read_training_checkpoint(tmp_path / "run" / "last.pth")
    assert state_digest(params) == rank0 and state["iteration"] == 4
    log = read_log(tmp_path / "run" / "log.jsonl")
    assert [r["iter"] for r in log if r["event"] == "train"] == [1, 2, 3, 4]  # written once, by rank 0
    assert any("on cpu x 2 process(es)" in r.get("text", "") for r in log)
    assert any(r.get("text", "").startswith("batch 4 per process x 2 = 8") for r in log)
    # the weights moved (all ranks stepped together, not a no-op)
    torch.manual_seed(10)
    from models import build_model
    from edvr_cli.train.config import resolve_config
    initial = build_model(resolve_config("tiny").model_kwargs()).state_dict()
    assert state_digest(initial) != rank0
