"""Outputs of ``selfsup layers``: ``layers.json``, ``layers.png`` (a bar group per layer), a rich table."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
from rich.table import Table


def _f(v: Any, pct: bool = False) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    if pct:
        return f"{100 * v:.2f}"
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def layers_table(result: dict) -> Table:
    probes = ", probes on the test split)" if result["probes"] else ")"
    t = Table(
        title=f"layers of {result['run_dir']} ({result['method']} on {result['dataset']}; quality on "
        f"{result['monitor_size']} monitor samples{probes}"
    )
    cols = ["layer", "part", "dim", "RankMe", "RankMe/dim", "alpha-ReQ", "stable rank", "collapse std"]
    if result["probes"]:
        cols += ["linear %", "kNN %"]
    for c in cols:
        t.add_column(c, justify="left" if c in ("layer", "part") else "right")
    for r in result["layers"]:
        cells = [
            r["layer"],
            r["part"],
            str(r["dim"]),
            _f(r["rankme"]),
            _f(r["rankme_norm"]),
            _f(r["alpha_req"]),
            _f(r["stable_rank"]),
            _f(r["collapse_std"]),
        ]
        if result["probes"]:
            cells += [_f(r.get("linear_acc"), True), _f(r.get("knn_acc"), True)]
        style = "bold" if r["layer"] == result.get("best_linear_layer") else None
        t.add_row(*cells, style=style)
    return t


def layers_figure(result: dict):
    rows = result["layers"]
    series = [("rankme_norm", "RankMe / dim", "C0")]
    if result["probes"]:
        series += [("linear_acc", "linear probe acc", "C1"), ("knn_acc", "kNN acc", "C2")]
    width = 0.8 / len(series)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(rows) + 2), 4))
    for j, (key, label, color) in enumerate(series):
        xs = [i + (j - (len(series) - 1) / 2) * width for i in range(len(rows))]
        ax.bar(xs, [r.get(key) or 0.0 for r in rows], width, label=label, color=color)
    ax.set_xticks(range(len(rows)), [r["layer"] for r in rows])
    if any(r["part"] == "projector" for r in rows) and any(r["part"] == "backbone" for r in rows):
        cut = max(i for i, r in enumerate(rows) if r["part"] == "backbone") + 0.5
        ax.axvline(cut, color="grey", linestyle=":", linewidth=1)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("fraction")
    ax.set_title(f"layer-wise quality: {result['method']} on {result['dataset']}")
    ax.legend(fontsize=8)
    return fig


def write_layers(run_dir: str | Path, result: dict) -> tuple[Path, Path]:
    run_dir = Path(run_dir)
    jpath, ppath = run_dir / "layers.json", run_dir / "layers.png"
    tmp = jpath.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=2))
    tmp.replace(jpath)
    fig = layers_figure(result)
    fig.savefig(ppath, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return jpath, ppath
