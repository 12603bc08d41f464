"""SSL on PDEs with Lie point symmetry views: train each preset per seed, then `selfsup pde evaluate` it.

For every equation and encoder seed s: `selfsup train --config configs/vicreg-EQ.yaml train.seed=s`
(generated data, cached), then `selfsup pde evaluate RUN_DIR --seeds 1 --solver-steps S --diagnostics
oracle,random` (docs/pde-protocol.md): coefficient regression (SSL + ridge vs a supervised encoder of the same
architecture; KdV/KS: the initial condition's mode amplitudes, L and T; Burgers: nu) and LPSDA's rollout error
of a time-stepper given the grid, without a code (baseline), with the SSL representation, with the true
coefficients (oracle) and with a random code (Mialon, Garrido et al., NeurIPS 2023, arXiv 2307.05432).

    python -m benchmarks.studies.pde_ssl_study [--only kdv] [--seeds 0 1 2] [--solver-steps 300 1000 3000]
        [--solver small|lpsda] [--skip-train]
    python -m benchmarks.studies.pde_ssl_study --only kdv --tag e40 --set train.epochs=40   # a variant
    python -m benchmarks.studies.pde_ssl_study --only kdv --tag sgd
        --eval-args='--head sgd --skip timestepping'

Writes benchmarks/results/pde_ssl.json after every seed (seeds of later invocations are added): per equation,
per solver budget and per seed the full `pde_eval.json` (also kept as RUN_DIR/pde_eval-STEPS.json), and a
top-level "headline" (per-seed values at the largest budget evaluated for every seed):
{"kdv": {"baseline_nmse", "conditioned_nmse", "oracle_nmse", "random_nmse", "ssl_ic_nmse",
"supervised_ic_nmse", "rankme"}, "ks": {...}, "burgers": {"ssl_rel_err", "supervised_rel_err", ...}}.
NMSE = LPSDA's, summed over the predicted steps; *_ic_nmse = the mean over u0_k1 and u0_k2. Run directories
stay in runs/bench/pde-EQ-sS/.
The results of an earlier evaluation protocol are kept under "previous_protocol". A run with ``--tag T``
trains the preset with the ``--set`` overrides (run directories runs/bench/pde-EQ-T-sS) and is stored under
"variants" -> T (with its overrides), outside the headline. The tables: ``python -m benchmarks.render``.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys

from benchmarks._common import RESULTS, ROOT, read_result, sh, write_result

OUT = RESULTS / "pde_ssl.json"
EQUATIONS = ("burgers", "kdv", "ks")
IC = ("u0_k1", "u0_k2")
KINDS = ("ssl_linear", "supervised")


def _values(node: dict) -> float:
    return node["values"][0]  # one evaluation seed per encoder


def seed_summary(ev: dict) -> dict:
    """One encoder seed's numbers: rollout errors per code (LPSDA's sum) and regression errors."""
    out: dict = {}
    ts = ev.get("timestepping", {})
    for kind in ("baseline", "ssl_conditioned", "oracle", "random"):
        if kind in ts:
            out[f"{kind}_nmse"] = _values(ts[kind]["nmse_sum"])
            out[f"{kind}_nmse_global"] = _values(ts[kind]["nmse_global"])
    reg = ev.get("regression", {})
    for name in reg.get("targets", []):
        for kind in KINDS:
            out[f"{kind}_{name}_rel_err"] = _values(reg[kind][name])
            out[f"{kind}_{name}_nmse"] = _values(reg[f"{kind}_nmse"][name])
        out[f"mean_{name}_nmse"] = reg["mean_nmse"][name]
        out[f"mean_{name}_rel_err"] = reg["mean"][name]
    return out


def headline(results: dict) -> dict:
    """The headline object, from the largest solver budget evaluated for every seed of an equation."""
    head: dict = {}
    for eq, entry in results.items():
        full = [b for b, per in entry["budgets"].items() if set(per) >= set(entry["rankme"])]
        budget = max(full, key=int)
        seeds = sorted(entry["budgets"][budget], key=int)
        per = [entry["budgets"][budget][s]["summary"] for s in seeds]
        reg = [entry["budgets"][entry["regression_budget"]][s]["summary"] for s in seeds]
        h = {"seeds": [int(s) for s in seeds], "solver_steps": int(budget)}
        h["rankme"] = [entry["rankme"][s] for s in seeds]
        for key, kind in (("baseline", "baseline"), ("conditioned", "ssl_conditioned"), ("oracle", "oracle")):
            h[f"{key}_nmse"] = [p.get(f"{kind}_nmse") for p in per]
        h["random_nmse"] = [p.get("random_nmse") for p in per]
        if eq == "burgers":
            h["ssl_rel_err"] = [r["ssl_linear_nu_rel_err"] for r in reg]
            h["supervised_rel_err"] = [r["supervised_nu_rel_err"] for r in reg]
        else:
            for kind, key in (("ssl_linear", "ssl"), ("supervised", "supervised")):
                h[f"{key}_ic_nmse"] = [sum(r[f"{kind}_{k}_nmse"] for k in IC) / len(IC) for r in reg]
        head[eq] = h
    return head


def run_seed(eq: str, seed: int, budgets: list[int], args) -> tuple[float, dict[int, dict]]:
    """Train (unless --skip-train) and evaluate one encoder seed; returns its RankMe and one entry per
    budget."""
    selfsup = [sys.executable, "-m", "selfsup.cli"]
    name = f"pde-{eq}-{args.tag}-s{seed}" if args.tag else f"pde-{eq}-s{seed}"
    run_dir = ROOT / "runs" / "bench" / name
    train = ["train", "--quiet", "--config", f"configs/vicreg-{eq}.yaml", f"train.seed={seed}"]
    train += ["train.out_dir=runs/bench", f"train.name={name}", *args.set]
    if not args.skip_train:
        subprocess.run(["rm", "-rf", str(run_dir)], check=True)
        sh(selfsup + train)
    rankme = json.loads((run_dir / "summary.json").read_text())["rankme_backbone"]
    out = {}
    for i, steps in enumerate(budgets):
        cmd = ["pde", "evaluate", f"runs/bench/{name}", "--seeds", "1", "--solver-steps", str(steps)]
        cmd += ["--solver", args.solver, "--diagnostics", args.diagnostics, *args.eval_args]
        if i:  # the regression does not depend on the solver budget
            cmd += ["--skip", "regression"]
        wall = sh(selfsup + cmd)
        ev = json.loads((run_dir / "pde_eval.json").read_text())
        (run_dir / f"pde_eval-{steps}.json").write_text(json.dumps(ev, indent=2))  # kept per budget
        out[steps] = {"train_command": "selfsup " + " ".join(train), "command": "selfsup " + " ".join(cmd)}
        out[steps].update(wall_s=wall, summary=seed_summary(ev), raw=ev)
    return rankme, out


def main() -> None:
    ap = argparse.ArgumentParser(prog=f"python -m {__spec__.name}", description=__doc__.splitlines()[0])
    ap.add_argument("--only", choices=EQUATIONS, action="append")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="encoder seeds")
    ap.add_argument("--solver-steps", type=int, nargs="+", default=[1000])
    ap.add_argument("--solver", choices=["small", "lpsda"], default="small")
    ap.add_argument("--diagnostics", default="oracle,random", help="codes beside the SSL one")
    ap.add_argument("--skip-train", action="store_true", help="reuse runs/bench/pde-EQ-sS")
    ap.add_argument("--tag", help="store as the variant TAG (under 'variants', not in the headline)")
    ap.add_argument("--set", nargs="+", default=[], help="config overrides of the variant (key=value)")
    ap.add_argument(
        "--eval-args",
        type=shlex.split,
        default=[],
        help="more `pde evaluate` options: --eval-args='--head sgd'",
    )
    args = ap.parse_args()
    doc = read_result(OUT) if OUT.is_file() else {}
    if (args.set or args.eval_args) and not args.tag:
        ap.error("--set and --eval-args describe a variant: give it a --tag")
    section = (
        doc.setdefault("variants", {}).setdefault(args.tag, {})
        if args.tag
        else doc.setdefault("equations", {})
    )
    for eq in args.only or EQUATIONS:
        entry = section.get(eq, {})
        setup = {"solver": args.solver, "overrides": args.set, "eval_args": args.eval_args}
        if any(entry.get(k, [] if k != "solver" else "small") != v for k, v in setup.items()):
            entry = {"budgets": {}, "rankme": {}, "regression_budget": str(args.solver_steps[0]), **setup}
        for seed in args.seeds:
            rankme, per_budget = run_seed(eq, seed, args.solver_steps, args)
            entry["rankme"][str(seed)] = rankme
            for steps, res in per_budget.items():
                entry["budgets"].setdefault(str(steps), {})[str(seed)] = res
            section[eq] = entry
            doc["headline"] = headline(doc["equations"])
            write_result(OUT, doc)
        print(eq, json.dumps(headline(section)[eq], indent=1))
    print("tables: python -m benchmarks.render")


if __name__ == "__main__":
    main()
