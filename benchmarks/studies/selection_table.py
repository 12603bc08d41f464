"""Aggregate the selection study: per sweep, how close each label-free pick comes to the labelled oracle.

Reads the `selfsup sweep summary --json` files written by selection_study.sh and, for every trial,
the last monitor record of its run (RankMe, alpha-ReQ, LiDAR of the backbone). Picks per metric: RankMe
highest (of the backbone and of the projector output), LiDAR highest, alpha-ReQ closest to 1 (Agrawal et
al. 2022), and for LeJEPA sweeps LeJEPA's loss on the monitor subset, lowest. Kendall tau (scipy) between
each metric and linear-probe accuracy; gap = oracle accuracy - pick accuracy, in points. "rankme_safe" is
the backbone RankMe pick among the runs the sweep did not flag as unsafe (selfsup/select/flags.py; all runs
when every one is flagged), as the sweep itself picks; its tau is computed among those runs.

    python -m benchmarks.studies.selection_table benchmarks/results/selection

Writes DIRECTORY/summary.json; the tables: ``python -m benchmarks.render``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from scipy import stats

from benchmarks._common import ROOT, write_result

METRICS = {
    "rankme": ("backbone/rankme", lambda v: v),
    "rankme_projector": ("projector/rankme", lambda v: v),
    "lidar": ("backbone/lidar", lambda v: v),
    "alpha_req": ("backbone/alpha_req", lambda v: -abs(v - 1.0)),
    "lejepa_loss": ("lejepa_loss", lambda v: -v),  # LeJEPA runs only: lower is better
}


def last_monitor(sweep_dir: str, run_dir: str) -> dict:
    lines = (ROOT / sweep_dir / run_dir / "metrics.jsonl").read_text().splitlines()
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


def main() -> None:
    ap = argparse.ArgumentParser(prog=f"python -m {__spec__.name}", description=__doc__.splitlines()[0])
    ap.add_argument(
        "directory",
        type=Path,
        nargs="?",
        default=Path("benchmarks/results/selection"),
        help="the sweeps' summaries (relative: to the repository root)",
    )
    d = ROOT / ap.parse_args().directory
    rows = [analyse(json.loads(p.read_text())) for p in sorted(d.glob("*-mnist1d*.json"))]
    names = ("rankme", "rankme_safe", "rankme_projector", "alpha_req", "lidar", "lejepa_loss")
    present = [m for m in names if any(m in r for r in rows)]
    mean = {m: float(np.mean([r[m]["gap_points"] for r in rows if m in r])) for m in present}
    median_tau = {m: float(np.median([r[m]["kendall_tau"] for r in rows if m in r])) for m in present}
    out = write_result(
        d / "summary.json", {"sweeps": rows, "mean_gap_points": mean, "median_kendall_tau": median_tau}
    )
    gaps = ", ".join(f"{m} {v:.2f}" for m, v in mean.items())
    print(f"{len(rows)} sweeps; mean gap to the oracle (points): {gaps} -> {out}")
    print("tables: python -m benchmarks.render")


if __name__ == "__main__":
    main()
