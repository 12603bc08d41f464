"""LeJEPA's claim at our scale: does its training loss rank configurations like their downstream accuracy?

Reads the finished trials of a LeJEPA sweep (each trial's ``summary.json``) and reports, side by side, the
Spearman (and Kendall) correlation with the linear-probe and kNN accuracies of

* the training loss measured on the monitor subset (``lejepa_loss``; its two terms beside it), negated so
  that a positive value means "lower loss, higher accuracy" (the sign of the paper's 0.945), and
* RankMe of the backbone output (higher is better, Garrido et al. 2023).

    selfsup sweep --config configs/sweeps/lejepa-study-mnist1d.yaml
    python benchmarks/lejepa_loss_vs_rankme.py sweeps/lejepa-study-mnist1d

Writes benchmarks/results/lejepa_loss_vs_rankme.json (or --out) and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import yaml
from scipy import stats

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "results" / "lejepa_loss_vs_rankme.json"
#: label-free score -> sign that makes "higher = predicted better"
SCORES = {"lejepa_loss": -1, "lejepa_prediction": -1, "lejepa_sigreg": -1, "rankme_backbone": 1}
ACCURACIES = ("linear_acc", "knn_acc")


def load_trials(sweep_dir: Path) -> list[dict]:
    """One row per finished trial: its swept config and the numbers of its summary.json."""
    rows = []
    for path in sorted((sweep_dir / "trials").glob("*/summary.json")):
        summary = json.loads(path.read_text())
        row = {"trial": path.parent.name, "config": _config(path.parent)}
        row.update({k: summary.get(k) for k in (*SCORES, *ACCURACIES)})
        rows.append(row)
    return rows


def _config(run_dir: Path) -> dict:
    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    return {
        "lambd": cfg["method"]["params"].get("lambd"),
        "lr": cfg["optim"]["lr"],
        "local_views": cfg["data"]["local_views"],
        "projector": cfg["model"]["projector"],
    }


def correlations(rows: list[dict]) -> dict:
    out = {}
    for score, sign in SCORES.items():
        for acc in ACCURACIES:
            pairs = [(sign * r[score], r[acc]) for r in rows if r[score] is not None and r[acc] is not None]
            x, y = zip(*pairs, strict=True) if pairs else ((), ())
            rho, tau = stats.spearmanr(x, y), stats.kendalltau(x, y)
            out[f"{score}/{acc}"] = {
                "n": len(pairs),
                "spearman_rho": float(rho.statistic),
                "spearman_p": float(rho.pvalue),
                "kendall_tau": float(tau.statistic),
            }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sweep_dir", type=Path)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    rows = load_trials(args.sweep_dir)
    if len(rows) < 3:
        raise SystemExit(f"error: {args.sweep_dir} has {len(rows)} finished trial(s); need at least 3")
    distinct = len({json.dumps(r["config"], sort_keys=True) for r in rows})
    result = {"sweep_dir": str(args.sweep_dir), "n_trials": len(rows), "distinct_configs": distinct}
    result.update(correlations=correlations(rows), trials=rows)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"{len(rows)} trials ({distinct} distinct configurations); + means the score ranks like accuracy")
    print("| score | Spearman vs linear probe | Spearman vs kNN |\n|---|---|---|")
    c = result["correlations"]
    for score, sign in SCORES.items():
        lin, knn = c[f"{score}/linear_acc"], c[f"{score}/knn_acc"]
        name = score if sign > 0 else f"-{score}"
        p = f"{lin['spearman_rho']:+.3f} (p {lin['spearman_p']:.2g})"
        print(f"| {name} | {p} | {knn['spearman_rho']:+.3f} |")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
