"""``report.html`` for one run: loss, RankMe and probe accuracy per epoch, and the singular-value spectra."""

from __future__ import annotations

import html
import json
from pathlib import Path

import matplotlib.pyplot as plt
from matplotlib.ticker import MaxNLocator

from selfsup.errors import SelfsupError
from selfsup.evaluate.equivariance import equivariance_table
from selfsup.evaluate.robustness import robustness_plot
from selfsup.report.embedding_maps import embedding_section
from selfsup.report.html import figure_to_img, page, table
from selfsup.train.rundir import read_metrics


def _series(records: list[dict], key: str) -> tuple[list[int], list[float]]:
    pts = [(r["epoch"], r[key]) for r in records if r.get(key) is not None]
    return [p[0] for p in pts], [p[1] for p in pts]


def read_summary(run_dir: Path) -> dict:
    """A finished run's ``summary.json``; a missing or damaged one is a clean error with the way out."""
    path = run_dir / "summary.json"
    redo = f"selfsup train --resume {run_dir} redoes the final evaluation"
    if not path.is_file():
        raise SelfsupError(f"'{run_dir}' has no summary.json (an unfinished run, or not a run); {redo}")
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise SelfsupError(f"'{path}' is damaged (not JSON); {redo}") from None
    if not isinstance(summary, dict) or "layers" not in summary:
        raise SelfsupError(f"'{path}' is not a selfsup run summary; {redo}")
    return summary


def _equivariance_section(res: dict) -> str:
    """``selfsup equivariance``'s tables: per part, then the predictor retrieval."""
    cols = ("part", "dims", "RankMe", "linear accuracy", "rotation R^2", "colour R^2")
    parts = [dict(zip(cols, row, strict=True)) for row in equivariance_table(res)]
    retrieval = [
        {"prediction": name, "MRR": r["mrr"], **{f"Hit@{k}": v for k, v in r["hits"].items()}}
        for name, r in res["retrieval"].items()
    ]
    return "<h2>Equivariance (selfsup equivariance)</h2>" + table(parts) + table(retrieval)


def _robustness_section(res: dict) -> str:
    """``selfsup robustness``'s table and bar plot."""
    rows = [{"test set": "canonical", "accuracy": res["canonical_accuracy"], "drop": 0.0}]
    rows += [{"test set": f"{f} varied", **r} for f, r in res["factors"].items()]
    for part, r in res.get("parts", {}).items():  # SIE: the invariant and equivariant parts
        rows[0][f"{part} part"] = r["canonical_accuracy"]
        for row, f in zip(rows[1:], r["factors"], strict=True):
            row[f"{part} part"] = r["factors"][f]["accuracy"]
    head = f"<h2>Robustness under controlled factors (layer {html.escape(res['layer'])})</h2>"
    return head + table(rows) + figure_to_img(robustness_plot(res))


def write_run_report(run_dir: str | Path) -> Path:
    run_dir = Path(run_dir)
    records = read_metrics(run_dir / "metrics.jsonl")
    summary = read_summary(run_dir)
    sections = []

    fig, axes = plt.subplots(1, 3, figsize=(15, 3.8))
    axes[0].plot(*_series(records, "loss"), marker=".")
    axes[0].set(title="training loss", xlabel="epoch")
    for key, label in [("backbone/rankme", "backbone"), ("projector/rankme", "projector")]:
        if _series(records, key)[0]:
            axes[1].plot(*_series(records, key), marker=".", label=label)
    axes[1].set(title="RankMe (monitor subset)", xlabel="epoch")
    for key, label in [
        ("online_probe_test_acc", "online probe, test"),
        ("online_probe_train_acc", "online, train"),
    ]:
        if _series(records, key)[0]:
            axes[2].plot(*_series(records, key), marker=".", label=label)
    axes[2].set(title="probe accuracy", xlabel="epoch")
    for ax in axes[1:]:
        if ax.get_legend_handles_labels()[0]:  # unlabelled runs have no probe curve
            ax.legend()
    for ax in axes:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))  # epochs, not 0.96
    sections.append("<h2>Training</h2>" + figure_to_img(fig))

    fig, ax = plt.subplots(figsize=(7, 4))
    for layer, rep in summary["layers"].items():
        sv = rep.get("singular_values")
        if sv:
            ax.semilogy(range(1, len(sv) + 1), sv, label=f"{layer} (RankMe {rep['rankme']:.1f})")
    ax.set(title="singular-value spectrum of the monitor embeddings", xlabel="index", ylabel="singular value")
    ax.legend(fontsize=8)
    sections.append("<h2>Spectrum</h2>" + figure_to_img(fig))

    rows = [
        {"layer": layer, **{k: v for k, v in rep.items() if isinstance(v, (int, float))}}
        for layer, rep in summary["layers"].items()
    ]
    sections.append("<h2>Label-free quality per layer</h2>" + table(rows))
    probes = {k: summary[k] for k in ("probe_layer", "linear_acc", "knn_acc") if k in summary}
    if probes:
        sections.append("<h2>Probes (test split)</h2>" + table([probes]))
    sections.append(embedding_section(run_dir))
    if (run_dir / "equivariance.json").is_file():
        sections.append(_equivariance_section(json.loads((run_dir / "equivariance.json").read_text())))
    if (run_dir / "robustness.json").is_file():
        sections.append(_robustness_section(json.loads((run_dir / "robustness.json").read_text())))
    sections.append(f"<p>run: {html.escape(str(run_dir))}</p>")
    out = run_dir / "report.html"
    out.write_text(page(f"selfsup run: {summary.get('method')} on {summary.get('dataset')}", sections))
    return out
