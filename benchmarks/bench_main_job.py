"""The main job's targets: `selfsup train` (no argument) and the long preset, timed as a user runs them.

Each command runs in a fresh process; wall time, peak resident memory (that child's, from os.wait4) and the
final linear-probe / kNN test accuracy from its summary.json are recorded against the targets
(main job: <= 180 s, <= 1.5 GB, >= 95 %; long preset: <= 600 s, >= 97 %; LeJEPA preset: the main job's).

    python benchmarks/bench_main_job.py [--only main long lejepa]

Writes benchmarks/results/bench_main_job.json; the run directories stay in runs/bench/.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "results" / "bench_main_job.json"
JOBS = {
    "main": {"args": [], "target_s": 180, "target_acc": 0.95},
    "long": {
        "args": ["--config", str(ROOT / "configs" / "vicreg-mnist1d-long.yaml")],
        "target_s": 600,
        "target_acc": 0.97,
    },
    # LeJEPA with the main job's backbone and budget, against the main job's bar
    "lejepa": {
        "args": ["--config", str(ROOT / "configs" / "lejepa-mnist1d.yaml")],
        "target_s": 180,
        "target_acc": 0.95,
    },
}


def run(name: str, job: dict, out_dir: str) -> dict:
    cmd = [
        sys.executable,
        "-m",
        "selfsup.cli",
        "train",
        "--quiet",
        *job["args"],
        f"train.out_dir={out_dir}",
        f"train.name={name}",
    ]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT)
    _, status, usage = os.wait4(proc.pid, 0)  # this child's own peak (RUSAGE_CHILDREN is a max over all)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise subprocess.CalledProcessError(proc.returncode, cmd)
    peak_mb = usage.ru_maxrss / 1024
    s = json.loads((Path(out_dir) / name / "summary.json").read_text())
    return {
        "command": "selfsup train " + " ".join(job["args"]).replace(str(ROOT) + "/", ""),
        "wall_s": wall,
        "peak_rss_mb": peak_mb,
        "linear_acc": s["linear_acc"],
        "knn_acc": s["knn_acc"],
        "rankme_backbone": s["rankme_backbone"],
        "target_s": job["target_s"],
        "target_acc": job["target_acc"],
        "meets_time": wall <= job["target_s"],
        "meets_acc": s["linear_acc"] >= job["target_acc"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", choices=sorted(JOBS), nargs="+", help="jobs to run (default: all)")
    args = ap.parse_args()
    results = json.loads(OUT.read_text()).get("jobs", {}) if OUT.is_file() else {}
    out_dir = ROOT / "runs" / "bench"  # kept, e.g. for `selfsup layers runs/bench/main`
    for name, job in JOBS.items():
        if args.only is None or name in args.only:
            shutil.rmtree(out_dir / name, ignore_errors=True)
            results[name] = run(name, job, str(out_dir))
            print(name, json.dumps(results[name], indent=1))
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(
        json.dumps(
            {
                "benchmark": "bench_main_job",
                "jobs": results,
                "date": datetime.now(timezone.utc).isoformat(),
                "machine": {
                    "cpus": os.cpu_count(),
                    "platform": platform.platform(),
                    "load_avg": os.getloadavg(),
                },
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
