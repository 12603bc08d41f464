"""SSL on PDEs with Lie point symmetry views: train each preset, then `selfsup pde evaluate` it.

For every equation: `selfsup train --config configs/vicreg-EQ.yaml` (generated data, cached), then
`selfsup pde evaluate RUN_DIR --seeds 3 [--solver-steps S]`: coefficient regression (SSL + ridge vs a
supervised encoder of the same architecture) and rollout NMSE of a 1-D CNN time-stepper with and without
the frozen representation as conditioning (Mialon, Garrido et al., NeurIPS 2023, arXiv 2307.05432).

    python benchmarks/pde_ssl_study.py [--only kdv] [--solver-steps 300 1000] [--skip-train]
        [--skip-regression] [--solver-plain] [--conditioning shift|film]
    python benchmarks/pde_ssl_study.py --table     # Markdown tables of the stored results

Writes benchmarks/results/pde_ssl.json (merged with previous results); run directories stay in
runs/bench/pde-EQ/. Each evaluation is keyed by its solver (steps, dilated or plain convolutions, shift or
FiLM conditioning), so solver variants can be compared on the same representation.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "results" / "pde_ssl.json"
EQUATIONS = ("burgers", "kdv", "ks")


def sh(cmd: list[str]) -> float:
    print("+", " ".join(cmd), flush=True)
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=ROOT)
    return time.perf_counter() - t0


def verdict(ev: dict) -> dict:
    """Which of the issue's claims hold in this evaluation (mean over seeds; spread reported beside)."""
    out: dict = {}
    reg = ev.get("regression", {})
    for name in reg.get("targets", []):
        ssl, sup = reg["ssl_linear"][name], reg["supervised"][name]
        out[f"regression_{name}"] = {
            "ssl_rel_err": ssl["mean"],
            "ssl_std": ssl["std"],
            "supervised_rel_err": sup["mean"],
            "supervised_std": sup["std"],
            "train_mean_rel_err": reg["mean"][name],
            "ssl_better": ssl["mean"] < sup["mean"],
            "ratio_supervised_over_ssl": sup["mean"] / ssl["mean"],
        }
    ts = ev.get("timestepping")
    if ts:
        out["timestepping"] = {
            "solver_steps": ts["train_steps"],
            "baseline_nmse": ts["baseline"]["mean"],
            "baseline_std": ts["baseline"]["std"],
            "conditioned_nmse": ts["ssl_conditioned"]["mean"],
            "conditioned_std": ts["ssl_conditioned"]["std"],
            "conditioning_helps": ts["ssl_conditioned"]["mean"] < ts["baseline"]["mean"],
        }
    return out


def _pm(v: dict, digits: int = 3) -> str:
    return f"{v['mean']:.{digits}g} ± {v['std']:.1g}"


def print_tables(results: dict) -> None:
    print("| equation | coefficient | SSL + ridge | supervised | train mean | evaluation |")
    print("|---|---|---|---|---|---|")
    for eq, entry in results.items():
        for ev in entry["evaluations"].values():
            reg = ev["raw"].get("regression")
            for name in (reg or {}).get("targets", []):
                print(
                    f"| {eq} | {name} | {_pm(reg['ssl_linear'][name])} | {_pm(reg['supervised'][name])} | "
                    f"{reg['mean'][name]:.3g} | `{ev['command']}` |"
                )
    print()
    print("| equation | solver | steps | conditioning | baseline NMSE | conditioned NMSE |")
    print("|---|---|---|---|---|---|")
    for eq, entry in results.items():
        for key, ev in entry["evaluations"].items():
            ts = ev["raw"].get("timestepping")
            if ts:
                steps, conv, cond = key.removeprefix("solver_steps=").split(",")
                base, cnd = _pm(ts["baseline"]), _pm(ts["ssl_conditioned"])
                print(f"| {eq} | {conv} | {steps} | {cond} | {base} | {cnd} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", choices=EQUATIONS, action="append")
    ap.add_argument("--solver-steps", type=int, nargs="+", default=[300])
    ap.add_argument("--skip-train", action="store_true", help="reuse runs/bench/pde-EQ")
    ap.add_argument("--skip-regression", action="store_true", help="time-stepping only")
    ap.add_argument("--solver-plain", action="store_true", help="undilated time-stepper convolutions")
    ap.add_argument("--conditioning", choices=["shift", "film"], default="shift")
    ap.add_argument("--table", action="store_true", help="only print the stored results as Markdown")
    args = ap.parse_args()
    results = json.loads(OUT.read_text()).get("equations", {}) if OUT.is_file() else {}
    if args.table:
        print_tables(results)
        return
    selfsup = [sys.executable, "-m", "selfsup.cli"]
    for eq in args.only or EQUATIONS:
        run_dir = ROOT / "runs" / "bench" / f"pde-{eq}"
        entry = results.get(eq, {}) if args.skip_train else {}
        if not args.skip_train:
            train = [
                "train",
                "--quiet",
                "--config",
                f"configs/vicreg-{eq}.yaml",
                "train.out_dir=runs/bench",
                f"train.name=pde-{eq}",
            ]
            subprocess.run(["rm", "-rf", str(run_dir)], check=True)
            entry["train_command"] = "selfsup " + " ".join(train)
            entry["train_s"] = sh(selfsup + train)
            summary = json.loads((run_dir / "summary.json").read_text())
            entry["rankme_backbone"] = summary["rankme_backbone"]
        entry.setdefault("evaluations", {})
        for steps in args.solver_steps:
            ev_cmd = ["pde", "evaluate", f"runs/bench/pde-{eq}", "--seeds", "3", "--solver-steps", str(steps)]
            if args.skip_regression:
                ev_cmd += ["--skip", "regression"]
            if args.solver_plain:
                ev_cmd += ["--solver-plain"]
            ev_cmd += ["--conditioning", args.conditioning]
            wall = sh(selfsup + ev_cmd)
            ev = json.loads((run_dir / "pde_eval.json").read_text())
            key = f"solver_steps={steps},{'plain' if args.solver_plain else 'dilated'},{args.conditioning}"
            entry["evaluations"][key] = {
                "command": "selfsup " + " ".join(ev_cmd),
                "wall_s": wall,
                "summary": verdict(ev),
                "raw": ev,
            }
        results[eq] = entry
        OUT.write_text(
            json.dumps(
                {
                    "benchmark": "pde_ssl_study",
                    "equations": results,
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
        print(eq, json.dumps({k: v["summary"] for k, v in entry["evaluations"].items()}, indent=1))


if __name__ == "__main__":
    main()
