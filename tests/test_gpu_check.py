"""benchmarks/gpu_check.sh (issue 11 §3): its dry mode runs every code path on the CPU with tiny sizes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.sh"


def _run(*args: str, **env: str) -> subprocess.CompletedProcess:
    environ = {**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1", "GPU_CHECK_TIMEOUT": "240", **env}
    return subprocess.run(["bash", str(SCRIPT), *args], cwd=ROOT, env=environ, capture_output=True, text=True,
                          timeout=300)


def test_dry_mode_runs_every_measurement(tmp_path):
    out = tmp_path / "gpu_check.json"
    proc = _run("--json", str(out), GPU_CHECK_DRY="1")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    res = json.loads(out.read_text())
    assert res["dry"] and res["config"]["backbone"] == "transunet_tiny"
    assert res["train_amp_off"]["steps_per_s"] > 0 and res["train_amp_bfloat16"]["steps_per_s"] > 0
    assert res["slide_map"]["windows"] > 0 and res["slide_map"]["slide_mp_per_s"] > 0
    assert res["embed_amp_off"]["tiles_per_s"] > 0 and res["embed_amp_off"]["dim"] == 2048
    assert res["ddp"]["world"] == 2 and res["ddp"]["samples_per_s"] > 0
    for line in ("steps/s", "slide MP/s", "tiles/s", "DDP 2 processes", "gpu_check: done"):
        assert line in proc.stdout


def test_full_mode_without_a_gpu_says_so():
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a GPU is present: the full run is not a test")
    proc = _run("--no-ddp")
    assert proc.returncode == 2 and "--dry" in proc.stderr
