"""The label-free selection-rule study: seeded sweeps, every candidate rule's gap to the oracle and tau.

    python -m benchmarks.studies.selection_rules development   # configs/sweeps/development/*.yaml
    python -m benchmarks.studies.selection_rules held-out      # configs/sweeps/held-out/*.yaml
    python -m benchmarks.studies.selection_rules all           # both: the whole study, about 90 min

Runs every sweep file of the set with ``selfsup sweep`` (a finished sweep is not run again, an interrupted
one resumes; ``--sweeps-dir`` is where the sweeps' directories go), summarises each with ``selfsup sweep
summary`` (every rule of :mod:`selfsup.select.rules` applied per seed and measured by
:mod:`selfsup.select.evidence`), copies its summary and report to ``benchmarks/results/selection/<set>/``
and writes ``summary.json`` there: per sweep and rule the gap (points, mean over seeds), Kendall tau and
picks; over the counted sweeps (not flat) each rule's mean gap and median tau; the chosen rule and the
SHA-256 of the rules' module. The development set also carries the eight stored single-seed full-length
sweeps (``benchmarks/results/selection/full/summary.json``) for the rules computable from their records.
Tables: ``python -m benchmarks.render``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import statistics
import subprocess
import time
from pathlib import Path

from benchmarks._common import ROOT, write_result
from selfsup.select import rules as R

RESULTS = ROOT / "benchmarks" / "results" / "selection"
#: Epoch selection over 3 seeds (``selfsup select-epoch``'s rule, online-probe accuracy per monitored epoch):
#: the main job's recipe in the development set, the image preset's own configuration in the held-out one.
EPOCH_RUNS = {
    "development": ("vicreg-lr-mnist1d-seeds", {"optim.lr": 3.0e-3}),
    "held-out": ("objects3d-vicreg-cov", {"method.params.cov_coeff": 1.0}),
}
#: The stored single-seed sweeps' result names -> the rule they are.
STORED = {"rankme": "rankme", "rankme_safe": "rankme-safe", "lidar": "lidar", "alpha_req": "alpha-req"}


def rule_sha() -> str:
    return hashlib.sha256(Path(R.__file__).read_bytes()).hexdigest()


def run_sweep(path: Path, sweeps_dir: Path, out: Path) -> dict:
    """Run (or finish) one sweep file, summarise it, keep its summary and report; the summary."""
    selfsup = str(ROOT / ".venv" / "bin" / "selfsup")
    subprocess.run([selfsup, "sweep", "--config", str(path), "--quiet"], cwd=sweeps_dir, check=True)
    sweep_dir = sweeps_dir / "sweeps" / path.stem
    text = subprocess.run(
        [selfsup, "sweep", "summary", str(sweep_dir), "--json"], check=True, capture_output=True, text=True
    ).stdout
    (out / f"{path.stem}.json").write_text(text)
    shutil.copy(sweep_dir / "report.html", out / f"{path.stem}.html")
    return json.loads(text)


def sweep_entry(summary: dict) -> dict:
    """One sweep's line of the study: per rule gap, tau, picks; the oracle's seed spread; flat or not."""
    ev = summary["rules"]
    return {
        "sweep": summary["name"],
        "seeds": len(ev["seeds"]),
        "configs": len(ev["configs"]),
        "oracle": ev["oracle_config"],
        "oracle_acc": ev["oracle_acc"],
        "oracle_seed_std": ev["oracle_seed_std"],
        "acc_span_points": ev["acc_span_points"],
        "flat": ev["flat"],
        "unreliable_seeds": sum(not v["reliable"] for v in ev["verdicts"].values()),
        **{
            rule: {k: r[k] for k in ("gap_points", "kendall_tau", "kendall_tau_unflagged", "pick")}
            for rule, r in ev["rules"].items()
        },
    }


def epoch_selection(which: str, sweeps_dir: Path) -> dict:
    """The label-free epoch pick of each seed's run of one configuration, and its gap to the best epoch."""
    from selfsup.select.epochs import select_epoch

    name, match = EPOCH_RUNS[which]
    sweep_dir = sweeps_dir / "sweeps" / name
    trials = json.loads((sweep_dir / "summary.json").read_text())["trials"]
    runs = [t for t in trials if all(t["params"].get(k) == v for k, v in match.items())]
    picks = [select_epoch(sweep_dir / t["run_dir"]) for t in runs]
    gaps = [p["gap_points"] for p in picks]
    return {
        "sweep": name,
        "params": match,
        "seeds": [t["params"].get("train.seed") for t in runs],
        "pick_epochs": [p["pick"] for p in picks],
        "best_epochs": [p["oracle"] for p in picks],
        "gap_points": gaps,
        "mean_gap_points": statistics.fmean(gaps),
        "accuracy": picks[0]["accuracy"],
    }


def stored_entries() -> list[dict]:
    """The eight stored full-length sweeps (one seed each), for the rules their records allow."""
    path = RESULTS / "full" / "summary.json"
    sweeps = json.loads(path.read_text())["results"]["sweeps"]
    return [
        {
            "sweep": s["sweep"],
            "seeds": 1,
            "configs": s["n"],
            "oracle_acc": s["oracle_acc"],
            "oracle_seed_std": None,
            "flat": None,
            **{
                rule: {"gap_points": s[k]["gap_points"], "kendall_tau": s[k]["kendall_tau"]}
                for k, rule in STORED.items()
            },
        }
        for s in sweeps
    ]


def aggregate(entries: list[dict]) -> dict:
    """Per rule over the counted sweeps (not flat): mean gap, median tau, how many sweeps."""
    out = {}
    for rule in R.RULES:
        rows = [e[rule] for e in entries if not e.get("flat") and rule in e]
        gaps = [r["gap_points"] for r in rows if r["gap_points"] is not None]
        taus = [r["kendall_tau"] for r in rows if r["kendall_tau"] is not None]
        out[rule] = {
            "sweeps": len(gaps),  # where the rule made a pick (``loss`` abstains where the loss is swept)
            "mean_gap_points": statistics.fmean(gaps) if gaps else None,
            "median_kendall_tau": statistics.median(taus) if taus else None,
        }
    return out


def study(which: str, sweeps_dir: Path) -> None:
    """Run, summarise and write one set (``development`` or ``held-out``)."""
    out = RESULTS / which
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    files = sorted((ROOT / "configs" / "sweeps" / which).glob("*.yaml"))
    seeded = [sweep_entry(run_sweep(f, sweeps_dir, out)) for f in files]
    stored = stored_entries() if which == "development" else []
    result = {
        "chosen_rule": R.CHOSEN_RULE,
        "rule_sha": rule_sha(),
        "wall_s": time.perf_counter() - t0,
        "sweeps": seeded,
        "aggregate": aggregate(seeded),
        "epoch_selection": epoch_selection(which, sweeps_dir),
    }
    if stored:
        result["stored_single_seed_sweeps"] = stored
        result["aggregate_with_stored"] = aggregate(seeded + stored)
    write_result(
        out / "summary.json", result, command=f"python -m benchmarks.studies.selection_rules {which}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(prog=f"python -m {__spec__.name}", description=__doc__.splitlines()[0])
    ap.add_argument("set", choices=["development", "held-out", "all"], help="all: development, then held-out")
    ap.add_argument("--sweeps-dir", default=str(ROOT), help="where the sweeps' directories go (DIR/sweeps/)")
    args = ap.parse_args()
    for which in ["development", "held-out"] if args.set == "all" else [args.set]:
        study(which, Path(args.sweeps_dir))


if __name__ == "__main__":
    main()
