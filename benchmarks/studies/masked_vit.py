"""Masked prediction on the small ViT: MAE and I-JEPA against the same ViT at random initialisation, beside
DINO and VICReg on that ViT (objects3d pairs, 32 px, 2 CPU cores).

Trains ``configs/{mae,ijepa,dino}-vit-objects3d.yaml`` once each and probes (linear, kNN) each ViT at random
initialisation (MAE, DINO and VICReg share a ViT with a class token; I-JEPA's has none, its representation
is the mean patch token). VICReg's row is ``vit_objects3d.json``'s (the same preset, trained there).

    python -m benchmarks.studies.masked_vit [--out benchmarks/results/masked_vit.json] [--only mae]

``--only NAME`` retrains one preset and replaces its row in ``--out`` (the others kept as measured).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from benchmarks._common import ROOT, read_result, write_result
from selfsup import config as C
from selfsup.train import build, fit, probe_run

PRESETS = {
    "mae": "configs/mae-vit-objects3d.yaml",
    "ijepa": "configs/ijepa-vit-objects3d.yaml",
    "dino": "configs/dino-vit-objects3d.yaml",
}


def _train(config: str, tmp: str) -> dict:
    t0 = time.perf_counter()
    s = fit(C.resolve(ROOT / config, [f"train.out_dir={tmp}"]), progress=False)
    return {
        "config": config,
        "epochs": C.resolve(ROOT / config).train.epochs,
        "linear_acc": s["linear_acc"],
        "knn_acc": s["knn_acc"],
        "rankme_backbone": s["rankme_backbone"],
        "wall_s": time.perf_counter() - t0,
    }


def _random_init(config: str) -> dict:
    cfg = C.resolve(ROOT / config)
    torch.manual_seed(cfg.train.seed)
    return probe_run(build(cfg))


def main() -> None:
    ap = argparse.ArgumentParser(prog=f"python -m {__spec__.name}", description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/masked_vit.json"))
    ap.add_argument("--only", choices=sorted(PRESETS), help="retrain this preset only")
    args = ap.parse_args()
    names = [args.only] if args.only else list(PRESETS)
    runs = {}
    if args.only:  # the other rows as measured before, with the command and date that measured them
        earlier = json.loads((ROOT / args.out).read_text())  # where it was written
        runs = earlier["results"]["runs"]
        for r in runs.values():
            r.setdefault("measured_by", f"{earlier['command']} ({earlier['date'][:10]})")
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            runs[name] = _train(PRESETS[name], tmp)
    vicreg = read_result("vit_objects3d.json")["runs"]["vit"]
    runs["vicreg"] = {
        k: vicreg[k] for k in ("config", "epochs", "linear_acc", "knn_acc", "rankme_backbone", "wall_s")
    }
    runs["vicreg"]["source"] = "vit_objects3d.json"
    random = {
        "class token (MAE, DINO, VICReg)": _random_init(PRESETS["mae"]),
        "mean patch token (I-JEPA)": _random_init(PRESETS["ijepa"]),
    }
    out = write_result(ROOT / args.out, {"runs": runs, "random_init": random})
    for name, r in [*runs.items(), *random.items()]:
        print(f"{name}: linear {100 * r['linear_acc']:.1f} %, kNN {100 * r['knn_acc']:.1f} %")
    print(f"-> {out}\ntables: python -m benchmarks.render")


if __name__ == "__main__":
    main()
