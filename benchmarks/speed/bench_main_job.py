"""The main job's targets: `selfsup train` (no argument) and the presets, timed as a user runs them.

Each command runs in a fresh process; wall time, peak resident memory (that child's, from os.wait4) and the
final linear-probe / kNN test accuracy from its summary.json are recorded against the targets
(main job: <= 100 s, <= 1.5 GB, >= 95 %, over --seeds; long preset: >= 97 %; LeJEPA preset: >= 95 %).

The training throughput is the work of one step (torch's FLOP counter on the job's own model, views and
loss) times the steps, over the epochs' training time (metrics.jsonl ``epoch_time``: steps only, without
the monitor or checkpoints), reported against this machine's 2048 x 2048 matmul throughput (float32 and
bfloat16) measured in the same run. ``--baseline REV`` also runs each job from a git worktree of REV (the
code before a change) in the same session, so the speed-up is a ratio of two runs on the same machine state.

    python -m benchmarks.speed.bench_main_job [--only main main-fp32 main-bf16 long lejepa digits burgers]
                                              [--seeds 0 1 2] [--baseline REV] [--out FILE]
                                              [--overrides KEY=VALUE ...]   # a candidate recipe

Writes benchmarks/results/bench_main_job.json (or --out: one file per machine); the run directories stay in
runs/bench/. ``main-bf16`` forces bfloat16 steps (``SELFSUP_AMX=1``), for their accuracy on a CPU without AMX.
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks._common import ROOT, machine_info, read_result, write_result

OUT = Path("benchmarks/results/bench_main_job.json")
JOBS = {
    "main": {"config": None, "target_s": 100, "target_acc": 0.95},
    # the same without mixed precision: what a CPU without AMX runs (and the accuracy check of bfloat16)
    "main-fp32": {"config": None, "overrides": ["train.amp=false"], "target_s": None, "target_acc": 0.95},
    # bfloat16 steps forced on (what a CPU with AMX runs), for their accuracy on a CPU without AMX
    "main-bf16": {"config": None, "env": {"SELFSUP_AMX": "1"}, "target_s": None, "target_acc": 0.95},
    "long": {"config": "configs/vicreg-mnist1d-long.yaml", "target_s": 600, "target_acc": 0.97},
    # LeJEPA with the main job's backbone and budget, against the main job's bar
    "lejepa": {"config": "configs/lejepa-mnist1d.yaml", "target_s": 180, "target_acc": 0.95},
    # one image and one PDE preset: no targets of their own, timed to see that the changes help them too
    "digits": {"config": "configs/vicreg-digits.yaml", "target_s": None, "target_acc": None},
    "burgers": {"config": "configs/vicreg-burgers.yaml", "target_s": None, "target_acc": None},
}
SEEDED = ("main", "main-fp32", "main-bf16")  # the jobs --seeds applies to


def run(name: str, job: dict, out_dir: Path, src: Path = ROOT, seed: int | None = None) -> dict:
    """One `selfsup train` of the code in ``src`` (ROOT, or a baseline worktree), in a fresh process."""
    from selfsup.train.loop import peak_rss_mb

    extra = job.get("overrides", []) + ([] if seed is None else [f"train.seed={seed}"])
    args = ["--config", job["config"]] if job["config"] else []
    cmd = [sys.executable, "-m", "selfsup.cli", "train", "--quiet", *args, *extra]
    cmd += [f"train.out_dir={out_dir}", f"train.name={name}"]
    shutil.rmtree(out_dir / name, ignore_errors=True)
    t0 = time.perf_counter()
    env = {**os.environ, **job.get("env", {}), "PYTHONPATH": str(src)}
    proc = subprocess.Popen(cmd, cwd=src, env=env)
    _, status, usage = os.wait4(proc.pid, 0)  # this child's own peak (RUSAGE_CHILDREN is a max over all)
    wall = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        raise subprocess.CalledProcessError(os.waitstatus_to_exitcode(status), cmd)
    s = json.loads((out_dir / name / "summary.json").read_text())
    records = [json.loads(line) for line in (out_dir / name / "metrics.jsonl").read_text().splitlines()]
    prefix = [f"{k}={v}" for k, v in job.get("env", {}).items()]
    return {
        "command": " ".join([*prefix, "selfsup train", *args, *extra]),
        "seed": 0 if seed is None else seed,
        "train_precision": s.get("train_precision"),
        "wall_s": round(wall, 1),
        "train_steps_s": round(sum(r["epoch_time"] for r in records), 1),
        "steps": records[-1]["step"],
        "peak_rss_mb": round(peak_rss_mb(usage.ru_maxrss)),
        "linear_acc": s.get("linear_acc"),
        "knn_acc": s.get("knn_acc"),
        "rankme_backbone": s["rankme_backbone"],
    }


def step_gflop(job: dict, src: Path = ROOT) -> float:
    """GFLOP of one training step (forward + backward; torch's FLOP counter) of the code in ``src``: for a
    baseline checkout, :func:`_flop_count`'s source runs in a process of its own on that checkout's selfsup
    (older checkouts have another benchmarks package, so nothing of it is imported)."""
    if src == ROOT:
        return _flop_count(job)
    code = inspect.getsource(_flop_count) + f"\nprint(_flop_count({job!r}))"
    env = {**os.environ, "PYTHONPATH": str(src)}
    run = subprocess.run([sys.executable, "-c", code], cwd=src, env=env, capture_output=True, text=True)
    if run.returncode != 0:
        raise SystemExit(f"error: counting the FLOPs of {src} failed:\n{run.stderr}")
    return float(run.stdout.split()[-1])


def _flop_count(job: dict) -> float:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from selfsup import config as C
    from selfsup.train import build

    cfg = C.resolve(job["config"], job.get("overrides", []))  # the path is relative to the working directory
    c = build(cfg.model_copy(update={"train": cfg.train.model_copy(update={"device": "cpu"})}))
    idx = torch.arange(cfg.train.batch_size)
    counter = FlopCounterMode(display=False)
    with counter:
        loss, _ = c.model.loss([view(c.data.train.x[idx]) for view in c.views], idx)
        loss.backward()
    return counter.get_total_flops() / 1e9


def matmul_gflops() -> dict:
    """This machine's 2048 x 2048 matmul throughput (median of 10, torch's default threads)."""
    import torch

    out = {"threads": torch.get_num_threads()}
    for dtype in (torch.float32, torch.bfloat16):
        a, b = torch.randn(2048, 2048, dtype=dtype), torch.randn(2048, 2048, dtype=dtype)
        a @ b
        times = []
        for _ in range(10):
            t0 = time.perf_counter()
            a @ b
            times.append(time.perf_counter() - t0)
        out[str(dtype).removeprefix("torch.")] = round(2 * 2048**3 / sorted(times)[5] / 1e9, 1)
    return out


def summarise(job: dict, rows: list[dict], base: dict | None, gflop: float, mm: dict) -> dict:
    """The job's rows (one per seed), their mean and spread, the targets, throughput and the baseline."""
    acc = [r["linear_acc"] for r in rows if r["linear_acc"] is not None]  # None: a dataset without labels
    gflops = gflop * rows[0]["steps"] / rows[0]["train_steps_s"]
    out = {
        "command": rows[0]["command"].removesuffix(" train.seed=0"),
        "runs": rows,
        "wall_s_mean": round(sum(r["wall_s"] for r in rows) / len(rows), 1),
        "linear_acc_mean": round(sum(acc) / len(acc), 4) if acc else None,
        "linear_acc_min": min(acc, default=None),
        "peak_rss_mb_max": max(r["peak_rss_mb"] for r in rows),
        "gflop_per_step": round(gflop, 2),
        "train_gflops": round(gflops, 1),
        "train_gflops_over_matmul_fp32": round(gflops / mm["float32"], 3),
        "train_gflops_over_matmul_bf16": round(gflops / mm["bfloat16"], 3),
        "target_s": job["target_s"],
        "target_acc": job["target_acc"],
    }
    if job["target_s"] is not None:
        out["meets_time"] = all(r["wall_s"] <= job["target_s"] for r in rows)
        out["meets_acc"] = out["linear_acc_mean"] >= job["target_acc"]
    if base is not None:
        base["train_gflops"] = round(base["gflop_per_step"] * base["steps"] / base["train_steps_s"], 1)
        base["train_gflops_over_matmul_fp32"] = round(base["train_gflops"] / mm["float32"], 3)
        out["baseline"] = base
        out["speedup_wall"] = round(base["wall_s"] / rows[0]["wall_s"], 2)  # the same seed
        out["speedup_wall_mean"] = round(base["wall_s"] / out["wall_s_mean"], 2)  # over the seeds
        out["speedup_train_steps"] = round(base["train_steps_s"] / rows[0]["train_steps_s"], 2)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(prog=f"python -m {__spec__.name}", description=__doc__.splitlines()[0])
    ap.add_argument("--only", choices=sorted(JOBS), nargs="+", help="jobs to run (default: all)")
    ap.add_argument(
        "--seeds", type=int, nargs="+", default=[0], help=f"seeds of the jobs {', '.join(SEEDED)}"
    )
    ap.add_argument("--baseline", metavar="REV", help="also run each job from this git revision")
    ap.add_argument(
        "--overrides",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="a candidate recipe: added to the jobs of this checkout, not to the baseline's",
    )
    ap.add_argument(
        "--out", type=Path, default=OUT, help=f"result file (relative: to the repository root; default {OUT})"
    )
    args = ap.parse_args()
    os.chdir(ROOT)  # the presets' paths are relative to the repository
    out = ROOT / args.out
    results = read_result(out).get("jobs", {}) if out.is_file() else {}
    out_dir = ROOT / "runs" / "bench"  # kept, e.g. for `selfsup layers runs/bench/main-s0`
    mm = matmul_gflops()
    with baseline_tree(args.baseline) as base_src:
        for name, job in JOBS.items():
            if args.only is not None and name not in args.only:
                continue
            seeds = args.seeds if name in SEEDED else [None]
            mine = {**job, "overrides": job.get("overrides", []) + args.overrides}  # the baseline: as it is
            rows = [run(name if s is None else f"{name}-s{s}", mine, out_dir, seed=s) for s in seeds]
            base = None
            if base_src is not None:
                base = run(f"{name}-baseline", job, out_dir, base_src)
                base["gflop_per_step"] = round(step_gflop(job, base_src), 2)
            results[name] = summarise(mine, rows, base, step_gflop(mine), mm)
            print(name, json.dumps({k: v for k, v in results[name].items() if k != "runs"}, indent=1))
            write(out, results, mm, args.baseline)  # after every job: a later failure loses nothing


def write(out: Path, results: dict, mm: dict, baseline: str | None) -> None:
    """The result file; the machine with its AMX support and SELFSUP_AMX, which decide the step precision."""
    from selfsup.train.components import cpu_has_amx

    machine = {**machine_info(), "amx": cpu_has_amx(), "SELFSUP_AMX": os.environ.get("SELFSUP_AMX")}
    doc = {"benchmark": "bench_main_job", "jobs": results, "matmul_gflops": mm, "baseline_rev": baseline}
    write_result(out, doc, machine=machine)


@contextlib.contextmanager
def baseline_tree(rev: str | None):
    """A detached git worktree of ``rev`` (removed afterwards), or None."""
    if rev is None:
        yield None
        return
    path = Path(tempfile.mkdtemp(prefix="selfsup-baseline-"))
    subprocess.run(["git", "worktree", "add", "--detach", str(path), rev], cwd=ROOT, check=True)
    try:
        yield path
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(path)], cwd=ROOT, check=False)


if __name__ == "__main__":
    main()
