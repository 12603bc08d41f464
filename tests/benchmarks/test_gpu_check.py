"""benchmarks.speed.gpu_check: every stage is set up without a GPU, and a missing GPU stops it loudly."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _run(*args, **env):
    return subprocess.run(
        [sys.executable, "-m", "benchmarks.speed.gpu_check", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, **env},
    )


@pytest.mark.slow
def test_dry_run_sets_up_every_stage_and_runs_the_ddp_job_on_the_cpu(tmp_path):
    res = _run("--dry-run", "--out", str(tmp_path / "g.json"))
    assert res.returncode == 0, res.stdout + res.stderr
    doc = json.loads((tmp_path / "g.json").read_text())
    assert list(doc) == ["date", "machine", "git_rev", "command", "results"]
    assert doc["command"].startswith("python -m benchmarks.speed.gpu_check --dry-run --out ")
    assert doc["machine"]["cpus"] == os.cpu_count()
    results = doc["results"]
    stages = results["stages"]
    assert results["dry_run"] and list(stages) == ["preflight", "main", "vit", "stream", "nccl", "pde"]
    assert stages["main"]["command"] == "selfsup train train.device=cuda"
    assert stages["vit"]["command"].startswith("selfsup train --config configs/vicreg-vit-objects3d.yaml")
    assert stages["vit"]["backbone_parameters"] > 100_000 and stages["vit"]["epochs"] == 15  # timm's ViT
    ddp = results["stages"]["nccl"]
    assert ddp["backend"] == "gloo" and ddp["steps"] == 2 and len(ddp["losses"]) == 2
    assert "--solver-steps 10000 --device cuda" in results["stages"]["pde"]["evaluate"]


@pytest.mark.slow
def test_without_a_gpu_it_stops_with_one_error_line(tmp_path):
    res = _run("--only", "preflight", "--out", str(tmp_path / "g.json"), CUDA_VISIBLE_DEVICES="")
    assert res.returncode != 0 and "error: no CUDA GPU is visible" in res.stderr
    assert "Traceback" not in res.stderr
    assert not (tmp_path / "g.json").exists()
