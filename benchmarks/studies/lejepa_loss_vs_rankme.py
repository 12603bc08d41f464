"""LeJEPA's claim at our scale: does its training loss rank configurations like their downstream accuracy?

Reads the finished trials of a LeJEPA sweep (each trial's ``summary.json``) and reports, side by side, the
Spearman (and Kendall) correlation with the linear-probe and kNN accuracies of

* the training loss measured on the monitor subset (``lejepa_loss``; its two terms beside it), negated so
  that a positive value means "lower loss, higher accuracy" (the sign of the paper's 0.945), and
* RankMe of the backbone output (higher is better, Garrido et al. 2023).

    selfsup sweep --config configs/sweeps/lejepa-study-mnist1d.yaml
    python -m benchmarks.studies.lejepa_loss_vs_rankme sweeps/lejepa-study-mnist1d

Writes benchmarks/results/lejepa_loss_vs_rankme.json (or --out); the table: ``python -m benchmarks.render``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import yaml
from scipy import stats

from benchmarks._common import ROOT, write_result

OUT = Path("benchmarks/results/lejepa_loss_vs_rankme.json")
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
    parser = argparse.ArgumentParser(prog=f"python -m {__spec__.name}", description=__doc__.split("\n\n")[0])
    parser.add_argument("sweep_dir", type=Path)
    parser.add_argument(
        "--out", type=Path, default=OUT, help="result file (relative: to the repository root)"
    )
    args = parser.parse_args()
    rows = load_trials(args.sweep_dir)
    if len(rows) < 3:
        raise SystemExit(f"error: {args.sweep_dir} has {len(rows)} finished trial(s); need at least 3")
    distinct = len({json.dumps(r["config"], sort_keys=True) for r in rows})
    result = {"sweep_dir": str(args.sweep_dir), "n_trials": len(rows), "distinct_configs": distinct}
    result.update(correlations=correlations(rows), trials=rows)
    out = write_result(ROOT / args.out, result)
    rho = {
        s: result["correlations"][f"{s}/linear_acc"]["spearman_rho"]
        for s in ("lejepa_loss", "rankme_backbone")
    }
    print(
        f"{len(rows)} trials ({distinct} distinct configurations): Spearman vs linear probe, "
        f"-lejepa_loss {rho['lejepa_loss']:+.3f}, rankme_backbone {rho['rankme_backbone']:+.3f} -> {out}"
    )
    print("tables: python -m benchmarks.render")


if __name__ == "__main__":
    main()
