"""Choosing the main job's recipe without its test set: candidates trained on 3,000 of MNIST-1D's 4,000
training signals and probed on the other 1,000 (``data.validation=1000``), float32 steps, on this machine.

Each row: the candidate's overrides, the seed, wall time, validation linear-probe accuracy (the summary's
``linear_acc``: with ``data.validation`` the probes test on the held-out signals) and the epoch
``select-epoch`` picks without labels (with its gap to the best epoch by the online probe, validation). The
recipe is chosen here; its test accuracy is then measured once, over 3 seeds, by
``benchmarks.speed.bench_main_job --only main-fp32``.

    python -m benchmarks.studies.main_job_recipe [--only NAME ...] [--seeds 0 1]

Writes benchmarks/results/main_job_recipe.json (rows of earlier calls are kept, a rerun replaces its row).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from benchmarks._common import ROOT, read_result, write_result
from benchmarks.speed.bench_main_job import run

OUT = ROOT / "benchmarks" / "results" / "main_job_recipe.json"
VALIDATION = ["data.validation=1000", "train.amp=false"]
#: The file's command: its rows accumulate over calls.
CALLS = (
    "python -m benchmarks.studies.main_job_recipe --only NAME ... --seeds SEED ... "
    "(several calls; each row records its own command)"
)
#: name -> overrides of the main job. Every candidate keeps the model's method, data and views.
CANDIDATES = {
    "28 epochs (before)": ["train.epochs=28"],
    "20 epochs": ["train.epochs=20"],
    "18 epochs": ["train.epochs=18"],
    "16 epochs": ["train.epochs=16"],
    "18 epochs, lr 4e-3": ["train.epochs=18", "optim.lr=4e-3"],
    "20 epochs, width 48": ["train.epochs=20", "model.backbone_args={width: 48}"],
    "24 epochs, width 48": ["train.epochs=24", "model.backbone_args={width: 48}"],
}


def select_epoch(run_dir: Path) -> dict:
    """``selfsup select-epoch``'s pick on the run (labels of the validation split give its gap)."""
    from selfsup.select.epochs import select_epoch as pick_epoch

    pick = pick_epoch(run_dir)
    return {k: pick.get(k) for k in ("pick", "oracle", "gap_points", "accuracy")}


def main() -> None:
    ap = argparse.ArgumentParser(prog=f"python -m {__spec__.name}", description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="+", choices=sorted(CANDIDATES), help="candidates (default: all)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    args = ap.parse_args()
    rows = read_result(OUT).get("rows", []) if OUT.is_file() else []
    out_dir = ROOT / "runs" / "recipe"
    for name in args.only or CANDIDATES:
        for seed in args.seeds:
            job = {"config": None, "overrides": [*VALIDATION, *CANDIDATES[name]]}
            tag = name.replace(" ", "").replace(",", "-")
            row = {"candidate": name, **run(f"{tag}-s{seed}", job, out_dir, seed=seed)}
            row["validation_acc"] = row.pop("linear_acc")
            row["select_epoch"] = select_epoch(out_dir / f"{tag}-s{seed}")
            rows = [r for r in rows if (r["candidate"], r["seed"]) != (name, seed)] + [row]
            print(json.dumps(row), flush=True)
            doc = {"benchmark": "main_job_recipe", "validation": VALIDATION, "rows": rows}
            write_result(OUT, doc, command=CALLS)


if __name__ == "__main__":
    main()
