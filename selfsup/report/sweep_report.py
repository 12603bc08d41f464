"""``report.html`` for a sweep: one plot per swept hyper-parameter (score and accuracy against its value,
twin axes, log x for log spaces), the label-free pick against the label oracle, and every trial."""

from __future__ import annotations

import html
import json
import math
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt

from selfsup.report.html import figure_to_img, link, page, table


def _num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _log_axis(spec: dict, xs: list) -> bool:
    if spec.get("log") is not None:
        return bool(spec["log"])
    return bool(xs) and all(_num(x) and x > 0 for x in xs) and max(xs) / min(xs) >= 100


def param_figure(summary: dict, key: str):
    """Score (left axis) and probe accuracies (right axis) against one hyper-parameter."""
    spec = summary["space"][key]
    rows = [r for r in summary["trials"] if key in r["params"]]
    raw = [r["params"][key] for r in rows]
    numeric = all(_num(x) for x in raw)
    if numeric:
        order = sorted(range(len(rows)), key=lambda i: raw[i])
        xs = [raw[i] for i in order]
        ticks = None
    else:  # categories: positions in the order of the sweep file
        cats = [v for v in (spec.get("values") or []) if v in raw] or list(dict.fromkeys(raw))
        order = sorted(range(len(rows)), key=lambda i: cats.index(raw[i]))
        xs = [cats.index(raw[i]) for i in order]
        ticks = cats
    rows = [rows[i] for i in order]
    several = len(summary["space"]) > 1  # other keys vary too: points, not a line
    style = "o" if several else "o-"
    obj = summary["objective"]

    fig, ax = plt.subplots(figsize=(6.4, 4))
    ys = [r["score"] if _num(r["score"]) else math.nan for r in rows]
    ax.plot(xs, ys, style, color="C0", label=f"{obj['metric']} ({obj['layer']})")
    ax.set_xlabel(key)
    ax.set_ylabel(f"{obj['metric']} ({obj['layer']})", color="C0")
    failed = [x for x, r in zip(xs, rows, strict=True) if r["state"] == "failed"]
    if failed:
        lo = min((y for y in ys if not math.isnan(y)), default=0.0)
        ax.plot(failed, [lo] * len(failed), "x", color="red", markersize=9, label="failed")
    pick = (summary["selection"].get("pick") or {}).get("trial")
    for x, r, y in zip(xs, rows, ys, strict=True):
        if r["trial"] == pick:
            ax.plot([x], [y], "*", color="C0", markersize=16, label="label-free pick")
    handles, labels = ax.get_legend_handles_labels()
    if summary.get("labelled"):
        ax2 = ax.twinx()
        for name, color, marker in (("linear_acc", "C1", "s"), ("knn_acc", "C2", "^")):
            acc = [100 * r[name] if _num(r.get(name)) else math.nan for r in rows]
            ax2.plot(
                xs,
                acc,
                marker + ("" if several else "--"),
                color=color,
                label=name.replace("_acc", " probe %"),
            )
        oracle = ((summary.get("oracle") or {}).get("linear_acc") or {}).get("trial")
        for x, r in zip(xs, rows, strict=True):
            if r["trial"] == oracle and _num(r.get("linear_acc")):
                ax2.plot(
                    [x], [100 * r["linear_acc"]], "v", color="C1", markersize=13, label="oracle (linear)"
                )
        ax2.set_ylabel("test accuracy (%)", color="C1")
        h2, l2 = ax2.get_legend_handles_labels()
        handles, labels = handles + h2, labels + l2
    if numeric and _log_axis(spec, xs):
        ax.set_xscale("log")
    if ticks is not None:
        ax.set_xticks(range(len(ticks)), [str(t) for t in ticks])
    ax.set_title(f"{summary['name']}: {key}")
    ax.legend(handles, labels, fontsize=8, loc="best")
    return fig


def write_sweep_report(sweep_dir: str | Path, summary: dict | None = None) -> Path:
    """Write ``SWEEP_DIR/report.html`` from ``summary`` (by default the directory's ``summary.json``)."""
    sweep_dir = Path(sweep_dir)
    if summary is None:
        summary = json.loads((sweep_dir / "summary.json").read_text())
    c = summary["counts"]
    obj = summary["objective"]
    sel = summary["selection"]
    sections = [
        f"<p>objective: <b>{html.escape(obj['metric'])}</b> of layer <b>{html.escape(obj['layer'])}</b> "
        f"({obj['direction']}); sampler {html.escape(summary['sampler'])}; selection rule "
        f"<b>{html.escape(sel['rule'])}</b>"
        + (f" (tol {sel['tol']}, prefer {sel['prefer']} {sel['key']})" if sel["rule"] == "threshold" else "")
        + ". Labels are never used to select; they only measure the pick.</p>",
        table([c]),
    ]
    pick = sel.get("pick")
    if pick:
        rows = [
            {
                "": "label-free pick",
                "trial": pick["trial"],
                **pick["params"],
                "score": pick["score"],
                "linear %": _pct(pick.get("linear_acc")),
                "kNN %": _pct(pick.get("knn_acc")),
            }
        ]
        for name, o in (summary.get("oracle") or {}).items():
            if o:
                rows.append(
                    {
                        "": f"oracle ({name})",
                        "trial": o["trial"],
                        **o["params"],
                        "score": o["score"],
                        "linear %": _pct(o.get("linear_acc")),
                        "kNN %": _pct(o.get("knn_acc")),
                    }
                )
        sections.append("<h2>Selection</h2>" + _unreliable(sel.get("unreliable") or {}) + table(rows))
    if summary.get("agreement"):
        rows = [
            {
                "accuracy": k,
                "Kendall tau": g["kendall_tau"],
                "Spearman rho": g["spearman_rho"],
                "pick %": _pct(g["pick_acc"]),
                "oracle %": _pct(g["oracle_acc"]),
                "gap (points)": g["gap_points"],
            }
            for k, g in summary["agreement"].items()
        ]
        sections.append("<h2>Agreement with the labels</h2>" + table(rows))
        per = [{"hyper-parameter": k, **v} for k, v in summary["per_param"].items()]
        sections.append(table(per))
    if sel.get("excluded", {}).get("by_flag"):
        sections.append("<h2>Unsafe-run flags</h2>" + _flags_table(sel["excluded"]))
    if summary.get("rules"):
        sections.append("<h2>Label-free rules</h2>" + _rules_section(summary["rules"]))
    for key in summary["space"]:
        if summary["trials"]:
            sections.append(f"<h2>{html.escape(key)}</h2>" + figure_to_img(param_figure(summary, key)))
    sections.append("<h2>Trials (sweep order)</h2>" + _trials_table(summary, sweep_dir))
    sections.append(f"<p>sweep: {html.escape(str(sweep_dir))}; storage {html.escape(summary['storage'])}</p>")
    out = sweep_dir / "report.html"
    out.write_text(page(f"selfsup sweep: {summary['name']}", sections))
    return out


def _flags_table(excluded: dict) -> str:
    """Per flag: the runs it flagged, whether they were left out of the pick, and (with labels) its cost."""
    rows = []
    for flag, n in excluded["by_flag"].items():
        cost = (excluded.get("cost") or {}).get(flag) or {}
        rows.append(
            {
                "flag": flag,
                "runs": n,
                "left out of the pick": "no (reported only)"
                if flag in excluded.get("reported_only", ())
                else "yes"
                if excluded["applied"]
                else "no (every run flagged, or off)",
                "removed the oracle": {True: "yes", False: "no"}.get(cost.get("removed_oracle")),
                "best flagged run below the oracle (points)": cost.get("best_removed_gap_points"),
            }
        )
    return table(rows)


def _unreliable(verdicts: dict) -> str:
    """A warning per seed whose runs cannot be compared (:func:`selfsup.select.rules.verdict`)."""
    return "".join(
        f"<p><b>The pick is unreliable</b> (seed {html.escape(seed)}): "
        f"{html.escape('; '.join(v['reasons']))}. {html.escape(v['advice'])}.</p>"
        for seed, v in verdicts.items()
    )


def _rules_section(ev: dict) -> str:
    """Every candidate rule's pick per seed, gap and tau; a warning for each seed whose pick is unreliable."""
    rows = [
        {
            "rule": name,
            "pick per seed": "; ".join(
                "-" if p is None else ", ".join(f"{k}={v}" for k, v in p.items()) for p in r["pick"]
            ),
            "gap (points)": r["gap_points"],
            "Kendall tau": r["kendall_tau"],
            "tau (unflagged)": r["kendall_tau_unflagged"],
        }
        for name, r in ev["rules"].items()
    ]
    notes = [_unreliable({seed: v for seed, v in ev["verdicts"].items() if not v["reliable"]})]
    std = ev.get("oracle_seed_std")
    if std is not None:
        notes.append(
            f"<p>oracle seed standard deviation {std:.2f} points"
            + (": a flat sweep</p>" if ev["flat"] else "</p>")
        )
    return table(rows) + "".join(notes)


def _trials_table(summary: dict, sweep_dir: Path) -> str:
    """Every finished trial in sweep order; its run directory links the trial's own ``report.html`` (a
    relative link, so the sweep directory can be moved or copied whole) when the worker wrote one."""
    rows = []
    for r in summary["trials"]:
        reason = (r.get("reason") or "").splitlines()[0][:120] if r.get("reason") else ""
        run = r.get("run_dir")  # relative to the sweep directory: trials/N
        if run and (sweep_dir / run / "report.html").is_file():
            run = link(f"{run}/report.html", run)
        rows.append(
            {
                "slot": r["slot"],
                "trial": r["trial"],
                "state": r["state"],
                **r["params"],
                "score": r["score"],
                "linear %": _pct(r.get("linear_acc")),
                "kNN %": _pct(r.get("knn_acc")),
                "flags": ", ".join(r.get("flags") or []),
                "run": run,
                "reason": reason,
            }
        )
    return table(rows)


def _pct(v: Any) -> float | None:
    return 100 * v if _num(v) else None
