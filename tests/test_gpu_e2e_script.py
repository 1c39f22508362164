"""benchmarks/gpu_e2e.py (the end-to-end GPU benchmark) works: its --smoke mode runs every section tiny on
the CPU, as on a GPU machine, and writes its JSON report."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
STAGES = ("decode", "upload", "model", "download", "encode")


def test_smoke_run_writes_every_sections_json(tmp_path):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu_e2e.py"), "--smoke", "--device", "cpu",
                           "--out-dir", str(tmp_path), "--work", str(tmp_path / "work")],
                          capture_output=True, text=True, timeout=170, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    [path] = tmp_path.glob("gpu_e2e-smoke-cpu-*.json")
    report = json.loads(path.read_text())  # strict JSON: no NaN or Infinity

    assert "errors" not in report, report["errors"]
    for key in ("gpu", "torch", "frames_in", "frames_out", "enhance_ms_per_frame", "reference_ms_per_frame"):
        assert report[key] not in (None, ""), key
    assert report["smoke"] is True and report["gpu"] == "cpu"
    assert report["frames_out"] == report["frames_in"] == report["sizes"]["frames"]
    assert report["enhance_ms_per_frame"] > 0 and report["reference_ms_per_frame"] > 0
    stages = report["stages_ms_per_frame"]
    assert all(isinstance(stages[name], (int, float)) and stages[name] >= 0 for name in STAGES), stages
    assert report["e2e"]["instrumented"]["same_frames_as_default"] is True

    tests = report["tests"]  # pytest -m cuda ran: on a CPU every test skips, none fails
    assert tests["returncode"] == 0 and tests["failed"] == tests["error"] == 0
    assert tests["skipped"] == len(tests["cases"]) >= 8

    variants = report["e2e"]["variants"]
    ran = {label: row for label, row in variants.items() if "ms_per_frame" in row}
    assert {"pytorch_bf16_batch8", "default_rawvideo_out", "pytorch_bf16_batch8_compiled"} <= set(ran), variants
    assert all(row["frames_out"] == report["frames_in"] for row in ran.values())
    assert ran["pytorch_bf16_batch8_compiled"]["compiled"] and not ran["pytorch_bf16_batch8_compiled"]["notes"]
    for name in ("builtin-qe", "builtin-sr4"):
        hd = report["hd"][name]["enhance"]
        assert hd["frames_out"] == hd["frames"] > 0 and hd["fps"] > 0
    assert report["hd"]["builtin-sr4"]["enhance"]["output"] == "256x192"  # x4 of the stand-in 64x48
    assert any("fps" in row for row in report["encoders"])
