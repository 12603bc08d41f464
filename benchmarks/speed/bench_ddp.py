"""Training throughput of 1 process against N processes (torchrun + DDP), the same run and global batch.

Each configuration trains the main job (VICReg on MNIST-1D, conv1d) for a few epochs through the real
command (``selfsup train`` and ``selfsup train --nproc N``); throughput is training steps per second of
the epochs after the first (``epoch_time`` in ``metrics.jsonl``: the steps only, no monitor, no checkpoint),
and wall time is the whole command. The 1-process run is the baseline, measured in the same invocation,
alternating with the N-process runs over ``--rounds``.

On a 2-core CPU there is nothing to gain: two processes share the same two cores (one thread each, as
torchrun sets ``OMP_NUM_THREADS=1``) and add the gradient all-reduce and the embedding gathers, so the
ratio shows the overhead. On a machine with N GPUs, ``--device cuda --nproc 1 N`` measures the scaling.

    python -m benchmarks.speed.bench_ddp                    # 1 vs 2 processes on the CPU
    python -m benchmarks.speed.bench_ddp --epochs 28 --rounds 1
        --out benchmarks/results/bench_ddp_main_job.json
    python -m benchmarks.speed.bench_ddp --device cuda --nproc 1 2 4 8 --epochs 6
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchmarks._common import ROOT, write_result

OUT = Path("benchmarks/results/bench_ddp.json")


def train(nproc: int, args: argparse.Namespace, name: str) -> dict:
    """One run through the command; its steps/s (epochs 2+), wall time and final accuracy."""
    out_dir = ROOT / "runs" / "bench"
    shutil.rmtree(out_dir / name, ignore_errors=True)
    cmd = [
        sys.executable,
        "-m",
        "selfsup",
        "train",
        "--quiet",
        *(["--nproc", str(nproc)] if nproc > 1 else []),
    ]
    cmd += [f"train.epochs={args.epochs}", f"train.device={args.device}", f"train.out_dir={out_dir}"]
    cmd += [f"train.name={name}", *args.overrides]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{proc.stdout}\n{proc.stderr}")
    records = [json.loads(line) for line in (out_dir / name / "metrics.jsonl").read_text().splitlines()]
    summary = json.loads((out_dir / name / "summary.json").read_text())
    steps_per_epoch = records[0]["step"]
    timed = records[1:] or records
    return {
        "steps_per_s": steps_per_epoch * len(timed) / sum(r["epoch_time"] for r in timed),
        "wall_s": wall,
        "linear_acc": summary.get("linear_acc"),
        "final_loss": records[-1]["loss"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog=f"python -m {__spec__.name}", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--nproc", type=int, nargs="+", default=[1, 2], help="process counts (first: baseline)"
    )
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=2, help="alternating repetitions of every count")
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--out", type=Path, default=OUT, help="result file (relative: to the repository root)"
    )
    parser.add_argument("overrides", nargs="*", help="config overrides, e.g. train.batch_size=256")
    args = parser.parse_args()
    runs: dict[int, list[dict]] = {n: [] for n in args.nproc}
    for r in range(args.rounds):
        for n in args.nproc:
            runs[n].append(train(n, args, f"ddp-{n}"))
            print(f"round {r + 1}: {n} process(es): {runs[n][-1]}", flush=True)
    base = statistics.median(x["steps_per_s"] for x in runs[args.nproc[0]])
    results = {}
    for n, xs in runs.items():
        sps = statistics.median(x["steps_per_s"] for x in xs)
        results[str(n)] = {
            "steps_per_s": round(sps, 2),
            "steps_per_s_ratio_vs_baseline": round(sps / base, 3),
            "wall_s": round(statistics.median(x["wall_s"] for x in xs), 1),
            "linear_acc": xs[-1]["linear_acc"],
            "final_loss": xs[-1]["final_loss"],
            "runs": xs,
        }
    out = write_result(
        ROOT / args.out,
        {
            "benchmark": "bench_ddp",
            "baseline": f"{args.nproc[0]} process(es), same command, alternating",
            "config": {"epochs": args.epochs, "device": args.device, "overrides": args.overrides},
            "results": results,
        },
    )
    for n, r in results.items():
        ratio = r["steps_per_s_ratio_vs_baseline"]
        print(f"{n} process(es): {r['steps_per_s']} steps/s ({ratio}x), wall {r['wall_s']} s")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
