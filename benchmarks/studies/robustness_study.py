"""The training-diversity study of "The Robustness Limits of SoTA Vision Models to Natural Variation"
(Ibrahim, Garrido, Morcos, Bouchacourt 2022) on objects3d: how much variation of a factor must training see?

Each method (VICReg, SIE, and the supervised reference; configs/*-objects3d.yaml) is trained on data that is
canonical but for one factor (default pose), varied for a fraction p of the training images
(`data.load_args.diversity`), and once with the factor varied in half of the classes only. Every run is then
scored by `selfsup robustness`: a linear probe trained on canonical renders, tested on canonical test objects
and with the factor varied; for the half-classes runs, on the classes that saw the variation and the others.

    python -m benchmarks.studies.robustness_study [--factor pose] [--fractions 0 0.1 0.5 1] [--seeds 0]
        [--methods vicreg sie supervised] [--epochs 10] [--instances 30] [--views 20] [--rescore]
    python -m benchmarks.studies.robustness_study --main [--seeds 0 1 2]

Writes benchmarks/results/robustness_objects3d_FACTOR.json; run directories stay in runs/bench/robust-*/, and
`--rescore` scores them again without training (after a change to `selfsup robustness`). "unseen as seen" is
how often a varied render of an unseen-variation class is put into a seen-variation class (chance: 0.5).

`--main` scores the main objects3d runs per factor instead: `selfsup robustness` on the runs of
benchmarks.studies.sie_study (SIE, SIE without split, VICReg: runs/bench/sie-METHOD-sSEED) and on the
supervised reference (configs/supervised-objects3d.yaml, trained here as runs/bench/supervised-sSEED when
missing), with SIE's invariant and equivariant parts scored apart.
Writes benchmarks/results/robustness_objects3d_main.json. The tables: ``python -m benchmarks.render``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys

from benchmarks._common import RESULTS, ROOT, read_result, sh, write_result

OUT_MAIN = RESULTS / "robustness_objects3d_main.json"
METHODS = ("vicreg", "sie", "supervised")
#: the main runs' names in the results -> their run directories' prefix under runs/bench
MAIN = {
    "SIE": "sie-sie",
    "SIE no split": "sie-sie-nosplit",
    "VICReg": "sie-vicreg",
    "supervised": "supervised",
}


def run(method: str, diversity: dict, seed: int, args) -> dict:
    tag = f"{diversity['fraction']}-{diversity['classes']}"
    run_dir = ROOT / "runs" / "bench" / f"robust-{method}-{args.factor}-{tag}-s{seed}"
    load = {"instances": args.instances, "views": args.views, "diversity": diversity}
    cmd = [sys.executable, "-m", "selfsup", "train", "--config", f"configs/{method}-objects3d.yaml"]
    cmd += [f"data.load_args={json.dumps(load)}", f"train.epochs={args.epochs}", f"train.seed={seed}"]
    cmd += [f"train.out_dir={run_dir.parent}", f"train.name={run_dir.name}", "train.lidar_samples=0"]
    if not (args.rescore and (run_dir / "summary.json").is_file()):
        shutil.rmtree(run_dir, ignore_errors=True)
        sh(cmd)
    sh([sys.executable, "-m", "selfsup", "robustness", str(run_dir)])
    res = json.loads((run_dir / "robustness.json").read_text())
    out = {"canonical": res["canonical_accuracy"], "varied": res["factors"][args.factor]["accuracy"]}
    if res.get("seen_unseen"):
        su = res["seen_unseen"]
        out.update(seen=su["seen_classes"], unseen=su["unseen_classes"], unseen_as_seen=su["unseen_as_seen"])
    out["all_factors"] = {f: r["accuracy"] for f, r in res["factors"].items()}
    if res["parts"]:  # SIE: the invariant part's accuracy on the varied set
        out["varied_invariant_part"] = res["parts"]["invariant"]["factors"][args.factor]["accuracy"]
    return out


def main_run(name: str, seed: int) -> dict:
    """`selfsup robustness` of one main run: canonical and per-factor accuracy, and per SIE part."""
    run_dir = ROOT / "runs" / "bench" / f"{MAIN[name]}-s{seed}"
    if not (run_dir / "summary.json").is_file():
        if name != "supervised":
            raise SystemExit(
                f"{run_dir} is missing: run python -m benchmarks.studies.sie_study --seeds {seed} first"
            )
        cmd = [sys.executable, "-m", "selfsup", "train", "--config", "configs/supervised-objects3d.yaml"]
        sh([*cmd, f"train.seed={seed}", f"train.out_dir={run_dir.parent}", f"train.name={run_dir.name}"])
    sh([sys.executable, "-m", "selfsup", "robustness", str(run_dir)])
    res = json.loads((run_dir / "robustness.json").read_text())

    def accuracies(r: dict) -> dict:
        return {"canonical": r["canonical_accuracy"], **{f: v["accuracy"] for f, v in r["factors"].items()}}

    return {"all": accuracies(res), **{part: accuracies(r) for part, r in res["parts"].items()}}


def main() -> None:
    ap = argparse.ArgumentParser(
        prog=f"python -m {__spec__.name}",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--factor", default="pose")
    ap.add_argument("--fractions", type=float, nargs="*", default=[0.0, 0.1, 0.5, 1.0])
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--instances", type=int, default=30)
    ap.add_argument("--views", type=int, default=20)
    ap.add_argument("--rescore", action="store_true", help="score existing run directories, no training")
    ap.add_argument("--main", action="store_true", help="score the main runs per factor instead")
    args = ap.parse_args()
    if args.main:
        runs = {name: {str(s): main_run(name, s) for s in args.seeds} for name in MAIN}
        print(f"-> {write_result(OUT_MAIN, {'runs': runs})}; tables: python -m benchmarks.render")
        return
    out = RESULTS / f"robustness_objects3d_{args.factor}.json"
    data = read_result(out) if out.exists() else {"runs": {}}
    settings = [{"factor": args.factor, "fraction": p, "classes": "all"} for p in args.fractions]
    settings.append({"factor": args.factor, "fraction": 1.0, "classes": "half"})
    data.update(factor=args.factor, epochs=args.epochs, instances=args.instances, views=args.views)
    for method in args.methods:
        for d in settings:
            tag = f"p={d['fraction']} ({d['classes']} classes)"
            for seed in args.seeds:
                data["runs"].setdefault(method, {}).setdefault(tag, {})[str(seed)] = run(
                    method, d, seed, args
                )
                write_result(out, data)
    print(f"-> {out}; tables: python -m benchmarks.render")


if __name__ == "__main__":
    main()
