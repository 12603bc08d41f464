"""A ViT from timm against the convnet preset on objects3d (VICReg on the pairs), on 2 CPU cores.

Trains ``configs/vicreg-vit-objects3d.yaml`` and ``configs/vicreg-objects3d.yaml`` (the convnet preset) with
the online probe measured every epoch, probes the same ViT at random initialisation, and reports for each
model its final linear probe, RankMe, wall time, and the time its online probe first reached the ViT's
final online-probe accuracy.

    python -m benchmarks.studies.vit_objects3d [--epochs 15] [--out benchmarks/results/vit_objects3d.json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from benchmarks._common import ROOT, write_result
from selfsup import config as C
from selfsup.train import build, fit, probe_run

PRESETS = {"vit": "configs/vicreg-vit-objects3d.yaml", "convnet": "configs/vicreg-objects3d.yaml"}


def _curve(run_dir: Path) -> list[dict]:
    """Per epoch: the online probe's test accuracy and the seconds of training so far."""
    rows, elapsed = [], 0.0
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        r = json.loads(line)
        elapsed += r["epoch_time"]
        rows.append({"epoch": r["epoch"], "online_acc": r.get("online_probe_test_acc"), "seconds": elapsed})
    return rows


def _train(name: str, epochs: int, tmp: str) -> dict:
    cfg = C.resolve(
        ROOT / PRESETS[name],
        [f"train.epochs={epochs}", "train.monitor_every=1", f"train.out_dir={tmp}", f"train.name={name}"],
    )
    t0 = time.perf_counter()
    s = fit(cfg, progress=False)
    return {
        "config": PRESETS[name],
        "epochs": epochs,
        "linear_acc": s["linear_acc"],
        "knn_acc": s["knn_acc"],
        "rankme_backbone": s["rankme_backbone"],
        "wall_s": time.perf_counter() - t0,
        "layers": {k: v["rankme"] for k, v in s["layers"].items()},
        "curve": _curve(Path(s["run_dir"])),
    }


def main() -> None:
    ap = argparse.ArgumentParser(prog=f"python -m {__spec__.name}", description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/vit_objects3d.json"))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        runs = {name: _train(name, args.epochs, tmp) for name in PRESETS}
    cfg = C.resolve(ROOT / PRESETS["vit"], [f"train.epochs={args.epochs}"])
    torch.manual_seed(cfg.train.seed)
    random_init = probe_run(build(cfg))
    target = runs["vit"]["curve"][-1]["online_acc"]
    for r in runs.values():
        reached = [c for c in r["curve"] if c["online_acc"] is not None and c["online_acc"] >= target]
        r["seconds_to_vit_final_online_acc"] = reached[0]["seconds"] if reached else None
    results = {"runs": runs, "random_init_vit": random_init, "vit_final_online_acc": target}
    out = write_result(ROOT / args.out, results)
    vit = runs["vit"]
    print(
        f"ViT {100 * vit['linear_acc']:.1f} % (random init {100 * random_init['linear_acc']:.1f} %), convnet "
        f"{100 * runs['convnet']['linear_acc']:.1f} % -> {out}\ntables: python -m benchmarks.render"
    )


if __name__ == "__main__":
    main()
