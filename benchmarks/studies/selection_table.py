"""Aggregate the selection study: per sweep, how close each label-free pick comes to the labelled oracle.

Reads the `selfsup sweep summary --json` files written by benchmarks/selection_study.sh and, for every trial,
the last monitor record of its run (RankMe, alpha-ReQ, LiDAR of the backbone). Picks per metric: RankMe
highest (of the backbone and of the projector output), LiDAR highest, alpha-ReQ closest to 1 (Agrawal et
al. 2022), and for LeJEPA sweeps LeJEPA's loss on the monitor subset, lowest. Kendall tau (scipy) between
each metric and linear-probe accuracy; gap = oracle accuracy - pick accuracy, in points. "rankme_safe" is
the backbone RankMe pick among the runs the sweep did not flag as unsafe (selfsup/select/flags.py; all runs
when every one is flagged), as the sweep itself picks; its tau is computed among those runs.

    python benchmarks/selection_table.py benchmarks/results/selection
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from scipy import stats

METRICS = {
    "rankme": ("backbone/rankme", lambda v: v),
    "rankme_projector": ("projector/rankme", lambda v: v),
    "lidar": ("backbone/lidar", lambda v: v),
    "alpha_req": ("backbone/alpha_req", lambda v: -abs(v - 1.0)),
    "lejepa_loss": ("lejepa_loss", lambda v: -v),  # LeJEPA runs only: lower is better
}


def last_monitor(sweep_dir: str, run_dir: str) -> dict:
    lines = (Path(sweep_dir) / run_dir / "metrics.jsonl").read_text().splitlines()
    return json.loads(lines[-1])


def _pick(utility: list, among, acc: list, tau: float, values: list) -> dict:
    """The run of highest utility among ``among`` (ties: first in sweep order) and its gap to the oracle."""
    i = max(among, key=lambda j: (utility[j], -j))
    return {
        "pick_acc": acc[i],
        "gap_points": 100 * (max(acc) - acc[i]),
        "kendall_tau": tau,
        "pick_value": values[i],
    }


def analyse(summary: dict) -> dict:
    trials = [t for t in summary["trials"] if t["state"] == "complete" and t.get("linear_acc") is not None]
    acc = [t["linear_acc"] for t in trials]
    oracle = max(acc)
    out = {
        "sweep": summary["name"],
        "n": len(trials),
        "oracle_acc": oracle,
        "values": [next(iter(t["params"].values())) for t in trials],
    }
    safe = [i for i, t in enumerate(trials) if not t.get("flags")] or list(range(len(trials)))
    for name, (key, utility) in METRICS.items():
        vals = [last_monitor(summary["sweep_dir"], t["run_dir"]).get(key) for t in trials]
        if any(v is None for v in vals):
            continue
        u = [utility(v) for v in vals]
        tau = float(stats.kendalltau(u, acc).statistic)
        out[name] = _pick(u, range(len(u)), acc, tau, out["values"])
        if name == "rankme":  # tau among the safe runs: the ranking the safe pick is made from
            tau_safe = float(stats.kendalltau([u[i] for i in safe], [acc[i] for i in safe]).statistic)
            out["rankme_safe"] = _pick(u, safe, acc, tau_safe, out["values"])
    out["excluded"] = {str(out["values"][i]): t["flags"] for i, t in enumerate(trials) if t.get("flags")}
    return out


def main(directory: str) -> None:
    d = Path(directory)
    rows = [analyse(json.loads(p.read_text())) for p in sorted(d.glob("*-mnist1d*.json"))]
    names = ("rankme", "rankme_safe", "rankme_projector", "alpha_req", "lidar", "lejepa_loss")
    present = [m for m in names if any(m in r for r in rows)]
    mean = {m: float(np.mean([r[m]["gap_points"] for r in rows if m in r])) for m in present}
    median_tau = {m: float(np.median([r[m]["kendall_tau"] for r in rows if m in r])) for m in present}
    summary = {"sweeps": rows, "mean_gap_points": mean, "median_kendall_tau": median_tau}
    (d / "summary.json").write_text(json.dumps(summary, indent=2))
    heads = ("RankMe", "RankMe, safe runs", "RankMe of the projector", "alpha-ReQ", "LiDAR", "LeJEPA loss")
    print("| sweep | runs | oracle | " + " | ".join(f"{h} pick (gap, tau)" for h in heads) + " | excluded |")
    print("|---|---|---|" + "---|" * (len(heads) + 1))
    for r in rows:
        cells = [
            f"{100 * r[m]['pick_acc']:.1f} % ({r[m]['gap_points']:.1f}, {r[m]['kendall_tau']:.2f})"
            if m in r
            else "-"
            for m in names
        ]
        cells.append(", ".join(f"{v}: {'+'.join(f)}" for v, f in r["excluded"].items()) or "-")
        print(f"| {r['sweep']} | {r['n']} | {100 * r['oracle_acc']:.1f} % | " + " | ".join(cells) + " |")
    print("mean gap (points): " + ", ".join(f"{m} {v:.2f}" for m, v in mean.items()))
    print("median Kendall tau: " + ", ".join(f"{m} {v:.2f}" for m, v in median_tau.items()))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "benchmarks/results/selection")
