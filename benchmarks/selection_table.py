"""Aggregate the selection study: per sweep, how close each label-free pick comes to the labelled oracle.

Reads the `selfsup sweep summary --json` files written by benchmarks/selection_study.sh and, for every trial,
the last monitor record of its run (RankMe, alpha-ReQ, LiDAR of the backbone). Picks per metric: RankMe
highest, LiDAR highest, alpha-ReQ closest to 1 (Agrawal et al. 2022). Kendall tau (scipy) between each
metric and linear-probe accuracy; gap = oracle accuracy - pick accuracy, in points.

    python benchmarks/selection_table.py benchmarks/results/selection
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from scipy import stats

METRICS = {
    "rankme": ("backbone/rankme", lambda v: v),
    "lidar": ("backbone/lidar", lambda v: v),
    "alpha_req": ("backbone/alpha_req", lambda v: -abs(v - 1.0)),
}


def last_monitor(sweep_dir: str, run_dir: str) -> dict:
    lines = (Path(sweep_dir) / run_dir / "metrics.jsonl").read_text().splitlines()
    return json.loads(lines[-1])


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
    for name, (key, utility) in METRICS.items():
        vals = [last_monitor(summary["sweep_dir"], t["run_dir"]).get(key) for t in trials]
        if any(v is None for v in vals):
            continue
        u = [utility(v) for v in vals]
        pick = max(range(len(u)), key=lambda i: (u[i], -i))  # ties: first in sweep order
        out[name] = {
            "pick_acc": acc[pick],
            "gap_points": 100 * (oracle - acc[pick]),
            "kendall_tau": float(stats.kendalltau(u, acc).statistic),
            "pick_value": out["values"][pick],
        }
    return out


def main(directory: str) -> None:
    d = Path(directory)
    rows = [analyse(json.loads(p.read_text())) for p in sorted(d.glob("*-mnist1d.json"))]
    mean = {
        m: sum(r[m]["gap_points"] for r in rows if m in r) / max(1, sum(m in r for r in rows))
        for m in METRICS
    }
    (d / "summary.json").write_text(json.dumps({"sweeps": rows, "mean_gap_points": mean}, indent=2))
    print("| sweep | runs | oracle | RankMe pick (gap, tau) | alpha-ReQ (gap, tau) | LiDAR (gap, tau) |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        cells = [
            f"{100 * r[m]['pick_acc']:.1f} % ({r[m]['gap_points']:.1f}, {r[m]['kendall_tau']:.2f})"
            if m in r
            else "-"
            for m in ("rankme", "alpha_req", "lidar")
        ]
        print(f"| {r['sweep']} | {r['n']} | {100 * r['oracle_acc']:.1f} % | " + " | ".join(cells) + " |")
    print("mean gap (points): " + ", ".join(f"{m} {v:.2f}" for m, v in mean.items()))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "benchmarks/results/selection")
