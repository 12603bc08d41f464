"""The training-diversity study of "The Robustness Limits of SoTA Vision Models to Natural Variation"
(Ibrahim, Garrido, Morcos, Bouchacourt 2022) on objects3d: how much variation of a factor must training see?

Each method (VICReg, SIE, and the supervised reference; configs/*-objects3d.yaml) is trained on data that is
canonical but for one factor (default pose), varied for a fraction p of the training images
(`data.load_args.diversity`), and once with the factor varied in half of the classes only. Every run is then
scored by `selfsup robustness`: a linear probe trained on canonical renders, tested on canonical test objects
and with the factor varied; for the half-classes runs, on the classes that saw the variation and the others.

    python benchmarks/robustness_study.py [--factor pose] [--fractions 0 0.1 0.5 1] [--seeds 0]
        [--methods vicreg sie supervised] [--epochs 10] [--instances 30] [--views 20] [--rescore]
    python benchmarks/robustness_study.py --main [--seeds 0 1 2]
    python benchmarks/robustness_study.py --table [--factor pose]

Writes benchmarks/results/robustness_objects3d_FACTOR.json; run directories stay in runs/bench/robust-*/, and
`--rescore` scores them again without training (after a change to `selfsup robustness`). "unseen as seen" is
how often a varied render of an unseen-variation class is put into a seen-variation class (chance: 0.5).

`--main` is the per-factor table of the main objects3d runs instead: `selfsup robustness` on the runs of
benchmarks/sie_study.py (SIE, SIE without split, VICReg: runs/bench/sie-METHOD-sSEED) and on the supervised
reference (configs/supervised-objects3d.yaml, trained here as runs/bench/supervised-sSEED when missing),
with SIE's invariant and equivariant parts scored apart.
Writes benchmarks/results/robustness_objects3d_main.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import statistics
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
OUT_MAIN = RESULTS / "robustness_objects3d_main.json"
METHODS = ("vicreg", "sie", "supervised")
#: the main runs' names in the table -> their run directories' prefix under runs/bench
MAIN = {
    "SIE": "sie-sie",
    "SIE no split": "sie-sie-nosplit",
    "VICReg": "sie-vicreg",
    "supervised": "supervised",
}


def sh(cmd: list[str]) -> None:
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, cwd=ROOT)


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
            raise SystemExit(f"{run_dir} is missing: run benchmarks/sie_study.py --seeds {seed} first")
        cmd = [sys.executable, "-m", "selfsup", "train", "--config", "configs/supervised-objects3d.yaml"]
        sh([*cmd, f"train.seed={seed}", f"train.out_dir={run_dir.parent}", f"train.name={run_dir.name}"])
    sh([sys.executable, "-m", "selfsup", "robustness", str(run_dir)])
    res = json.loads((run_dir / "robustness.json").read_text())

    def accuracies(r: dict) -> dict:
        return {"canonical": r["canonical_accuracy"], **{f: v["accuracy"] for f, v in r["factors"].items()}}

    return {"all": accuracies(res), **{part: accuracies(r) for part, r in res["parts"].items()}}


def mean_sd(vals: list[float]) -> str:
    """ "mean +- std" over seeds (std 0 for one seed), "-" for none."""
    if not vals:
        return "-"
    sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
    return f"{statistics.fmean(vals):.1f} +- {sd:.1f}"


def main_table(data: dict) -> str:
    """Mean +- std over seeds of each main run's (and SIE part's) accuracy per test set, in %."""
    first = next(iter(next(iter(data["runs"].values())).values()))["all"]
    lines = ["| run | " + " | ".join(first) + " |", "|---|" + "---|" * len(first)]
    for name, seeds in data["runs"].items():
        for part in next(iter(seeds.values())):
            cells = [mean_sd([100 * r[part][key] for r in seeds.values()]) for key in first]
            label = name if part == "all" else f"{name}, {part} part"
            lines.append(f"| {label} ({len(seeds)} seeds) | " + " | ".join(cells) + " |")
    return "\n".join(lines)


#: the diversity table's columns: result key -> header ("-" where a run has no such value)
COLUMNS = {
    "canonical": "canonical acc",
    "varied": "varied acc",
    "varied_invariant_part": "varied acc, SIE invariant part",
    "seen": "seen classes",
    "unseen": "unseen classes",
    "unseen_as_seen": "unseen as seen",
}


def _setting_order(item: tuple[str, dict]) -> tuple[bool, float]:
    """Tags "p=F (all classes)" by F, then "p=F (half classes)"."""
    tag = item[0]
    return "half" in tag, float(tag.split()[0].removeprefix("p="))


def table(data: dict) -> str:
    lines = ["| method | training data | " + " | ".join(COLUMNS.values()) + " |"]
    lines.append("|---|---|" + "---|" * len(COLUMNS))
    for method, entries in data["runs"].items():
        for tag, seeds in sorted(entries.items(), key=_setting_order):
            cells = [mean_sd([100 * r[key] for r in seeds.values() if key in r]) for key in COLUMNS]
            lines.append(
                f"| {method} | {data['factor']} {tag} ({len(seeds)} seeds) | " + " | ".join(cells) + " |"
            )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--factor", default="pose")
    ap.add_argument("--fractions", type=float, nargs="*", default=[0.0, 0.1, 0.5, 1.0])
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--instances", type=int, default=30)
    ap.add_argument("--views", type=int, default=20)
    ap.add_argument("--rescore", action="store_true", help="score existing run directories, no training")
    ap.add_argument("--main", action="store_true", help="the per-factor table of the main runs instead")
    ap.add_argument("--table", action="store_true")
    args = ap.parse_args()
    if args.main:
        data = json.loads(OUT_MAIN.read_text()) if OUT_MAIN.exists() else {"runs": {}}
        if not args.table:
            data["command"] = "python benchmarks/robustness_study.py --main --seeds " + " ".join(
                map(str, args.seeds)
            )
            data["runs"] = {name: {str(s): main_run(name, s) for s in args.seeds} for name in MAIN}
            stamp(data)
            OUT_MAIN.write_text(json.dumps(data, indent=2))
        print(main_table(data))
        return
    out = RESULTS / f"robustness_objects3d_{args.factor}.json"
    data = json.loads(out.read_text()) if out.exists() else {"runs": {}}
    if not args.table:
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
                    stamp(data)
                    out.write_text(json.dumps(data, indent=2))
    print(table(data))


def stamp(data: dict) -> None:
    data["machine"] = {"python": platform.python_version(), "processor": platform.processor()}
    data["date"] = datetime.now(timezone.utc).isoformat(timespec="seconds")


if __name__ == "__main__":
    main()
