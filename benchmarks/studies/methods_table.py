"""Train every method recipe on MNIST-1D and tabulate probe accuracy, kNN, RankMe and time.

Also measures a randomly initialised backbone (same architecture, no training) as the baseline every
method must beat, and checks for collapse (RankMe of the backbone well above the random network's).

    python benchmarks/methods_table.py [--epochs 15] [--methods vicreg simclr ...] [--out FILE]

Writes benchmarks/results/methods_table.json (or --out) and prints a Markdown table for the README.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import torch
from rich.console import Console

from selfsup import config as C
from selfsup.methods import METHODS
from selfsup.quality import rankme
from selfsup.train import build, embed, fit, probe_run

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "results" / "methods_table.json"


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
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--methods", nargs="*", default=sorted(METHODS))
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    console = Console()
    rows = []
    base = C.resolve(preset("vicreg"), [f"train.epochs={args.epochs}"])
    rand = random_init_baseline(base)
    console.print(f"random init: linear {rand['linear_acc']:.4f} RankMe {rand['rankme_backbone']:.1f}")
    with tempfile.TemporaryDirectory() as tmp:
        for m in args.methods:
            cfg = C.resolve(
                preset(m),
                [
                    f"train.epochs={args.epochs}",
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
        "command": " ".join(["python benchmarks/methods_table.py", *sys.argv[1:]]),
        "random_init": rand,
        "rows": rows,
        "date": datetime.now(timezone.utc).isoformat(),
        "machine": {
            "cpus": torch.get_num_threads(),
            "platform": platform.platform(),
            "torch": torch.__version__,
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print("| method | linear probe | kNN (k=20) | RankMe (backbone) | time |")
    print("|---|---|---|---|---|")
    print(
        f"| random init | {100 * rand['linear_acc']:.1f} % | {100 * rand['knn_acc']:.1f} % | "
        f"{rand['rankme_backbone']:.1f} | - |"
    )
    for r in rows:
        print(
            f"| {r['method']} | {100 * r['linear_acc']:.1f} % | {100 * r['knn_acc']:.1f} % | "
            f"{r['rankme_backbone']:.1f} | {r['seconds']:.0f} s |"
        )


if __name__ == "__main__":
    main()
