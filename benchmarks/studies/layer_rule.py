"""The label-free layer rule (``selfsup export --layer auto``, :mod:`selfsup.select.layers`) against the
linear probe's best layer, on three presets of different backbones: the main job (1-D ResNet, MNIST-1D),
the objects3d convnet preset and the ViT preset (timm).

Each preset is trained once with its own config; then every backbone layer of the final checkpoint is
scored as ``selfsup layers`` scores it (label-free metrics on the monitor subset, linear probe on the test
split). Reported per preset and rule (the current rule, and RankMe / width, the rule tried first): the
pick, the best layer and the gap in points, with the backbone output's gap beside them (the default
export). ``--rescore`` recomputes the picks from the layers of an earlier result (no training).

    python -m benchmarks.studies.layer_rule [--out benchmarks/results/layer_rule.json] [--rescore]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from benchmarks._common import ROOT, write_result
from selfsup import config as C
from selfsup.evaluate.layers import evaluate_layers
from selfsup.select.layers import LAYER_RULE, pick_layer
from selfsup.train import fit

PER_WIDTH = "highest RankMe / width among the backbone's layers (equal scores: the deeper layer)"

PRESETS = {  # name -> the config and its overrides
    # the main job's recipe the rule was chosen on: conv1d width 64, 28 epochs
    "mnist1d (conv1d ResNet)": (
        "configs/vicreg-mnist1d.yaml",
        ["model.backbone_args={width: 64}", "train.epochs=28"],
    ),
    "objects3d (convnet)": ("configs/vicreg-objects3d.yaml", []),
    "objects3d (ViT, timm)": ("configs/vicreg-vit-objects3d.yaml", []),
}


def _study(config: str, overrides: list[str], tmp: str) -> dict:
    t0 = time.perf_counter()
    run = fit(C.resolve(ROOT / config, [*overrides, f"train.out_dir={tmp}"]), progress=False)["run_dir"]
    result = evaluate_layers(run)
    keys = ("layer", "dim", "rankme", "rankme_norm", "linear_acc")
    rows = [{k: r[k] for k in keys} for r in result["layers"] if r["part"] == "backbone"]
    return {"config": config, "layers": rows, "wall_s": time.perf_counter() - t0}


def _picks(study: dict) -> dict:
    """Each rule's pick on a study's backbone layers, the best layer and the gaps in points."""
    rows = [{**r, "part": "backbone"} for r in study["layers"]]
    acc = {r["layer"]: r["linear_acc"] for r in rows}
    best, output = max(acc, key=acc.get), rows[-1]["layer"]
    per_width = max(range(len(rows)), key=lambda i: (rows[i]["rankme_norm"], i))
    rules = {"rule": pick_layer({"layers": rows})["pick"], "rankme_per_width": rows[per_width]["layer"]}
    out = {"best": best, "output": output, "output_gap_points": 100 * (acc[best] - acc[output])}
    for name, pick in rules.items():
        out[name] = {"pick": pick, "gap_points": 100 * (acc[best] - acc[pick])}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(prog=f"python -m {__spec__.name}", description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/layer_rule.json"))
    ap.add_argument("--rescore", action="store_true", help="recompute the picks of --out's layers")
    args = ap.parse_args()
    trained = None
    if args.rescore:  # the layers as trained and scored then, the picks of today's rules
        earlier = json.loads((ROOT / args.out).read_text())  # where it was written
        studies = earlier["results"]["presets"]
        trained = earlier["results"].get("trained") or {k: earlier[k] for k in ("date", "command", "git_rev")}
    else:
        with tempfile.TemporaryDirectory() as tmp:
            studies = {name: _study(*preset, tmp) for name, preset in PRESETS.items()}
    keep = ("config", "layers", "wall_s")
    studies = {name: {**{k: s[k] for k in keep}, **_picks(s)} for name, s in studies.items()}
    rules = {"rule": LAYER_RULE, "rankme_per_width": PER_WIDTH}
    out = write_result(ROOT / args.out, {"rules": rules, "presets": studies, "trained": trained})
    for name, s in studies.items():
        print(f"{name}: best {s['best']}; pick {s['rule']['pick']} (gap {s['rule']['gap_points']:.2f})")
    print(f"-> {out}\ntables: python -m benchmarks.render")


if __name__ == "__main__":
    main()
