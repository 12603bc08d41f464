"""Train every method recipe on MNIST-1D and tabulate probe accuracy, kNN, RankMe and time.

Also measures a randomly initialised backbone (same architecture, no training) as the baseline every
method must beat, and checks for collapse (RankMe of the backbone well above the random network's).

    python -m benchmarks.studies.methods_table [--epochs 15] [--methods vicreg simclr ...] [--out FILE]

Writes benchmarks/results/methods_table.json (or --out); the table: ``python -m benchmarks.render``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from rich.console import Console

from benchmarks._common import ROOT, write_result
from selfsup import config as C
from selfsup.methods import METHODS
from selfsup.quality import rankme
from selfsup.train import build, embed, fit, probe_run

OUT = Path("benchmarks/results/methods_table.json")


#: Every method on one backbone: the presets' conv1d at width 64 (VICReg's preset is the main job, at 48).
SAME_BACKBONE = ["model.backbone_args={width: 64}"]


def preset(name: str) -> Path:
    return ROOT / "configs" / f"{name}-mnist1d.yaml"


def random_init_baseline(cfg: C.RunConfig) -> dict:
    torch.manual_seed(cfg.train.seed)
    c = build(cfg)
    res = probe_run(c)
    layer = c.model.backbone.layer_names[-1]
    res["rankme_backbone"] = rankme(embed(c.model, c.data.train.x[:2048], c.device, [layer])[layer])
    return res


def main() -> None:
    ap = argparse.ArgumentParser(prog=f"python -m {__spec__.name}", description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--methods", nargs="*", default=sorted(METHODS))
    ap.add_argument("--out", type=Path, default=OUT, help="result file (relative: to the repository root)")
    args = ap.parse_args()
    console = Console()
    rows = []
    base = C.resolve(preset("vicreg"), [f"train.epochs={args.epochs}", *SAME_BACKBONE])
    rand = random_init_baseline(base)
    console.print(f"random init: linear {rand['linear_acc']:.4f} RankMe {rand['rankme_backbone']:.1f}")
    with tempfile.TemporaryDirectory() as tmp:
        for m in args.methods:
            cfg = C.resolve(
                preset(m),
                [
                    f"train.epochs={args.epochs}",
                    *SAME_BACKBONE,
                    f"train.out_dir={tmp}",
                    f"train.name={m}",
                    "train.monitor_every=1000",
                    "train.lidar_samples=0",
                ],
            )
            t0 = time.perf_counter()
            s = fit(cfg, console=console, progress=False)
            rows.append(
                {
                    "method": m,
                    "linear_acc": s["linear_acc"],
                    "knn_acc": s["knn_acc"],
                    "rankme_backbone": s["rankme_backbone"],
                    "seconds": time.perf_counter() - t0,
                    "collapsed": s["rankme_backbone"] <= rand["rankme_backbone"],
                    "beats_random_init": s["linear_acc"] > rand["linear_acc"],
                }
            )
    result = {
        "benchmark": "methods_table",
        "dataset": "mnist1d",
        "epochs": args.epochs,
        "random_init": rand,
        "rows": rows,
    }
    out = write_result(ROOT / args.out, result)
    best = max(rows, key=lambda r: r["linear_acc"])
    print(
        f"{len(rows)} methods, {args.epochs} epochs: best linear probe {best['method']} "
        f"{100 * best['linear_acc']:.1f} % (random init {100 * rand['linear_acc']:.1f} %) -> {out}"
    )
    print("tables: python -m benchmarks.render")


if __name__ == "__main__":
    main()
