"""SIE against its baselines on objects3d: train each method on the same pairs, then `selfsup equivariance`.

Methods (configs/*-objects3d.yaml, identical backbone, data, optimiser and epochs): SIE (split, hypernetwork
predictor), SIE without a split (MLP predictor of [z, t], EquiMod-style) and VICReg (invariant only, with
SIE's public loss weights 10/10/1 so that only the equivariant part differs). For every run:
`selfsup equivariance RUN_DIR`: linear probe per part, rotation/colour R^2 from two views, predictor
retrieval (MRR, Hit@k) against the identity, RankMe per part.

    python -m benchmarks.studies.sie_study [--seeds 0 1 2] [--methods sie vicreg] [--epochs N] [--skip-train]

Writes benchmarks/results/sie_objects3d.json (per run, per seed, and mean +- std per method); run
directories stay in runs/bench/sie-METHOD-sSEED/. The table: ``python -m benchmarks.render``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys

from benchmarks._common import RESULTS, ROOT, read_result, sh, write_result

OUT = RESULTS / "sie_objects3d.json"
METHODS = ("sie", "sie-nosplit", "vicreg")


def headline(res: dict) -> dict:
    """The numbers the study compares the methods on, from one `selfsup equivariance` result."""
    retr = res["retrieval"]
    out = {
        "acc_whole": res["classification"]["whole"],
        "acc_invariant": res["classification"].get("invariant", res["classification"]["whole"]),
        "rotation_r2": res["rotation_r2"]["whole"]["r2_global"],
        "colour_r2": res["colour_r2"]["whole"]["r2_global"],
        "mrr_identity": retr["identity"]["mrr"],
        "rankme_whole": res["rankme"]["whole"],
    }
    if "predictor" in retr:
        out.update(mrr_predictor=retr["predictor"]["mrr"], hit1_predictor=retr["predictor"]["hits"]["1"])
        out["hit5_predictor"] = retr["predictor"]["hits"]["5"]
    for part in ("invariant", "equivariant"):
        if part in res["rankme"]:
            out[f"rankme_{part}"] = res["rankme"][part]
            out[f"rotation_r2_{part}"] = res["rotation_r2"][part]["r2_global"]
            out[f"acc_{part}"] = res["classification"][part]
    return out


def summarise(per_seed: dict[str, dict]) -> dict:
    keys = sorted({k for h in per_seed.values() for k in h})
    stats = {}
    for k in keys:
        vals = [h[k] for h in per_seed.values() if k in h]
        stats[k] = {"mean": statistics.fmean(vals), "std": statistics.stdev(vals) if len(vals) > 1 else 0.0}
    return stats


def run(method: str, seed: int, epochs: int | None, skip_train: bool) -> dict:
    run_dir = ROOT / "runs" / "bench" / f"sie-{method}-s{seed}"
    cmd = [sys.executable, "-m", "selfsup", "train", "--config", f"configs/{method}-objects3d.yaml"]
    cmd += [f"train.out_dir={run_dir.parent}", f"train.name={run_dir.name}", f"train.seed={seed}"]
    cmd += [f"train.epochs={epochs}"] if epochs else []
    if not skip_train and run_dir.exists():
        shutil.rmtree(run_dir)  # a new run of the same name replaces the old one
    train_s = 0.0 if skip_train else sh(cmd)
    eval_s = sh([sys.executable, "-m", "selfsup", "equivariance", str(run_dir), "--seed", str(seed)])
    res = json.loads((run_dir / "equivariance.json").read_text())
    return {"train_seconds": train_s, "eval_seconds": eval_s, "headline": headline(res), "result": res}


def main() -> None:
    ap = argparse.ArgumentParser(
        prog=f"python -m {__spec__.name}",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    ap.add_argument("--epochs", type=int, default=None, help="override train.epochs of the configs")
    ap.add_argument("--skip-train", action="store_true", help="re-evaluate existing run directories")
    args = ap.parse_args()
    data = read_result(OUT) if OUT.exists() else {"methods": {}}
    for method in args.methods:
        entry = data["methods"].setdefault(method, {"seeds": {}})
        for seed in args.seeds:
            entry["seeds"][str(seed)] = run(method, seed, args.epochs, args.skip_train)
            entry["summary"] = summarise({s: r["headline"] for s, r in entry["seeds"].items()})
            write_result(OUT, data)
        print(method, json.dumps({k: round(v["mean"], 4) for k, v in entry["summary"].items()}))
    print(f"-> {OUT}; tables: python -m benchmarks.render")


if __name__ == "__main__":
    main()
