"""The summary of a sweep: trials in sweep order, the label-free pick, and its agreement with the labels."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.table import Table

from selfsup.errors import SelfsupError, unknown_name
from selfsup.select import evidence as E
from selfsup.select import rules as R
from selfsup.select import selection as sel
from selfsup.select import study as S
from selfsup.select.flags import RELATIVE, read_run, run_flags
from selfsup.select.spec import Sweep, finite

ACCURACIES = ("linear_acc", "knn_acc")


def summarize(
    sweep: Sweep,
    recs: list[S.TrialRecord],
    rule: str | None = None,
    tol: float | None = None,
    prefer: str | None = None,
    key: str | None = None,
) -> dict[str, Any]:
    """Everything ``selfsup sweep summary`` shows, as a JSON-serialisable dict."""
    spec = sweep.spec
    rule, tol, prefer, key = _resolve_selection(sweep, rule, tol, prefer, key)
    n = sweep.n_trials
    slots = S.slot_table(recs, n)
    finished = [slots.done[k] for k in sorted(slots.done)]  # sweep order = slot order
    counts = _counts(recs, slots, n)
    rows = [_trial_row(r) for r in finished]
    runs = _read_runs(sweep, rows)  # and each row's unsafe-run flags
    scores = [row["score"] for row in rows]
    pick, selection = _select(sweep, rows, scores, runs, rule, tol, prefer, key)
    out: dict[str, Any] = {
        "name": sweep.name,
        "sweep_dir": str(sweep.sweep_dir),
        "storage": S.safe_url(sweep.storage_url),
        "objective": {**sweep.objective.model_dump(), "direction": spec.direction},
        "sampler": spec.sampler,
        "space": {k: v.model_dump(exclude_none=True) for k, v in spec.space.items()},
        "counts": counts,
        "selection": selection,
        "trials": rows,
    }
    labelled = any(finite(row.get(a)) for row in rows for a in ACCURACIES)
    out["labelled"] = labelled
    oracle = None
    if labelled:
        out["agreement"], oracle = _agreement(rows, scores, pick)
        out["oracle"] = oracle
        selection["excluded"]["cost"] = flag_cost(rows)
    out["per_param"] = _per_param(sweep.keys, rows, pick, oracle)
    if runs:  # every candidate rule's pick, over seeds when a seed is swept (and its gap, with labels)
        out["rules"] = E.evaluate([run for _, run in runs], [rows[i].get("linear_acc") for i, _ in runs])
        bad = {seed: v for seed, v in out["rules"]["verdicts"].items() if not v["reliable"]}
        selection["reliable"] = not bad  # can these runs be compared at all? (rules.verdict, per seed)
        selection["unreliable"] = bad
    return out


def _read_runs(sweep: Sweep, rows: list[dict]) -> list[tuple[int, R.Run]]:
    """The finished runs' records (row index, :class:`~selfsup.select.rules.Run`), and each row's flags:
    the run's own (None when its files cannot be read), then the relative collapse among its seed's runs."""
    obj, runs = sweep.objective, []
    for i, row in enumerate(rows):
        if row["state"] != "complete" or not row["run_dir"]:
            continue
        records = read_run(Path(sweep.sweep_dir) / row["run_dir"])  # relative to the sweep (absolute stays)
        row["flags"] = None  # nothing is known against a run whose files cannot be read
        if records is not None:
            row["flags"] = run_flags(*records, obj.metric, obj.layer, sweep.spec.direction)
            runs.append((i, R.Run(row["params"], *records, flags=list(row["flags"]))))
    for idx in E.group([run for _, run in runs])[1].values():
        for k, rel in zip(idx, R.relative_collapse([runs[k][1] for k in idx]), strict=True):
            if rel:
                rows[runs[k][0]]["flags"].append(RELATIVE)
    return runs


def _resolve_selection(
    sweep: Sweep, rule: str | None, tol: float | None, prefer: str | None, key: str | None
) -> tuple[str, float, str, str | None]:
    """The selection options: those given, else the spec's (the key defaults to the only swept key)."""
    spec = sweep.spec
    rule = check_rule(
        rule or spec.selection.rule or default_rule(sweep.objective.metric, sweep.objective.layer)
    )
    tol = spec.selection.tol if tol is None else tol
    prefer = prefer or spec.selection.prefer
    key = key or spec.selection.key or (sweep.keys[0] if len(sweep.keys) == 1 else None)
    return rule, tol, prefer, key


def check_rule(rule: str) -> str:
    """``rule`` if it names a selection rule, else a ConfigError with a did-you-mean hint."""
    known = ("highest", "threshold", *R.RULES)
    if rule not in known:
        raise unknown_name("selection rule", rule, known)
    return rule


def default_rule(metric: str, layer: str) -> str:
    """A sweep's rule when its file names none: the rule chosen by the held-out study
    (:data:`~selfsup.select.rules.CHOSEN_RULE`) on the backbone's RankMe, which its rules read; else the
    objective's best score (``highest``)."""
    return R.CHOSEN_RULE if (metric, layer) == ("rankme", "backbone") else "highest"


def _counts(recs: list[S.TrialRecord], slots: S.Slots, n: int) -> dict[str, int]:
    """How many slots are in each state, and how many trials were interrupted or surplus."""
    finished = slots.done.values()
    return {
        "n_trials": n,
        "complete": sum(r.state == "complete" for r in finished),
        "failed": sum(r.state == "failed" for r in finished),
        "running": len(slots.busy),
        "pending": n - len(slots.done) - len(slots.busy),
        "interrupted": sum(r.state == "interrupted" for r in recs),
        "surplus": sum(r.state == "surplus" for r in recs),
    }


def _trial_row(r: S.TrialRecord) -> dict[str, Any]:
    row = {
        "slot": r.slot,
        "trial": r.number,
        "state": r.state,
        "params": r.params,
        "score": r.score,
        "run_dir": r.run_dir,
    }
    for a in ACCURACIES:
        row[a] = r.metrics.get(a)
    if r.state == "failed":
        row["outcome"], row["reason"] = r.outcome, r.reason
    if r.resumed_from is not None:
        row["resumed_from"] = r.resumed_from
    return row


def _select(
    sweep: Sweep,
    rows: list[dict],
    scores: list,
    runs: list[tuple[int, R.Run]],
    rule: str,
    tol: float,
    prefer: str,
    key: str | None,
) -> tuple[int | None, dict[str, Any]]:
    """The label-free pick (an index into ``rows``, or None) and the summary's ``selection`` entry. A named
    rule picks from the runs' records (every seed's); without records, ``highest`` picks, and it says so."""
    direction = sweep.spec.direction
    if rule == "threshold":
        if key is None:
            raise SelfsupError(f"the threshold rule needs a key (one of {', '.join(sweep.keys)})")
        if key not in sweep.keys:
            raise unknown_name("swept key", key, sweep.keys)
    values = [row["params"].get(key) for row in rows] if key else None
    flagged = [i for i, row in enumerate(rows) if set(row.get("flags") or ()) - {RELATIVE}]
    safe = [None if i in flagged else s for i, s in enumerate(scores)]
    compared = safe if sweep.spec.selection.exclude_unsafe and any(map(finite, safe)) else scores
    if rule in R.RULES and runs:
        local = R.apply(rule, [run for _, run in runs])[1]
        pick = None if local is None else runs[local][0]
    else:
        pick = sel.select(compared, values, "highest" if rule in R.RULES else rule, tol, prefer, direction)
    selection = {
        "rule": rule,
        "tol": tol if rule == "threshold" else None,
        "prefer": prefer if rule == "threshold" else None,
        "key": key if rule == "threshold" else None,
        "pick": _brief(rows[pick]) if pick is not None else None,
        "excluded": _excluded(rows, flagged, compared is safe),
    }
    if rule in R.RULES and not runs:
        selection["fallback"] = f"highest: no run records to apply {rule} to"
    if rule == "threshold":
        cands = sel.threshold_candidates(compared, tol, direction)
        selection["candidates"] = [rows[i]["trial"] for i in cands]
    return pick, selection


def _excluded(rows: list[dict], flagged: list[int], applied: bool) -> dict[str, Any]:
    """The flagged runs, how many per flag, and whether they were left out of the pick (not when the
    sweep's selection.exclude_unsafe is off, nor when every run is flagged). The relative collapse is
    counted but reported only (``reported_only``)."""
    by_flag: dict[str, int] = {}
    for row in rows:
        for f in row.get("flags") or ():
            by_flag[f] = by_flag.get(f, 0) + 1
    return {
        "trials": [rows[i]["trial"] for i in flagged],
        "by_flag": by_flag,
        "applied": applied and bool(flagged),
        "reported_only": [RELATIVE] if RELATIVE in by_flag else [],
    }


def flag_cost(rows: list[dict], accuracy: str = "linear_acc") -> dict[str, dict[str, Any]]:
    """What each flag cost, measured with the labels (never used to select): how many runs it flagged,
    whether one of them was the oracle (the best ``accuracy``; a run tied with it counts) and how far below
    the oracle the best flagged run is, in points. A flag that removes good runs is a failure mode too."""
    accs = [row.get(accuracy) for row in rows]
    best = max((a for a in accs if finite(a)), default=None)
    cost: dict[str, dict[str, Any]] = {}
    for row, acc in zip(rows, accs, strict=True):
        for flag in row.get("flags") or []:
            c = cost.setdefault(flag, {"runs": 0, "removed_oracle": False, "best_removed_gap_points": None})
            c["runs"] += 1
            if finite(acc) and best is not None:
                gap = round(100 * (best - acc), 6)
                old = c["best_removed_gap_points"]
                c["best_removed_gap_points"] = gap if old is None else min(old, gap)
                c["removed_oracle"] = c["removed_oracle"] or gap == 0
    return cost


def cost_words(cost: dict[str, Any]) -> str:
    """One flag's cost in words: ``removed the oracle``, or how far below it the best flagged run is."""
    if cost["removed_oracle"]:
        return "removed the oracle"
    gap = cost["best_removed_gap_points"]
    return "no accuracy known" if gap is None else f"best removed run {gap:.2f} points below the oracle"


def _agreement(rows: list[dict], scores: list, pick: int | None) -> tuple[dict, dict]:
    """Per accuracy: rank agreement of the scores with it and the pick's gap to the oracle; the oracles."""
    agreement, oracle = {}, {}
    for a in ACCURACIES:
        accs = [row.get(a) for row in rows]
        g = sel.oracle_gap(pick, accs)
        agreement[a] = {
            **sel.rank_agreement(scores, accs),
            "pick_acc": g["pick_acc"],
            "oracle_acc": g["oracle_acc"],
            "gap_points": g["gap_points"],
            "oracle_trial": rows[g["oracle"]]["trial"] if g["oracle"] is not None else None,
        }
        oracle[a] = _brief(rows[g["oracle"]]) if g["oracle"] is not None else None
    return agreement, oracle


def _per_param(keys: list[str], rows: list[dict], pick: int | None, oracle: dict | None) -> dict[str, dict]:
    """Per swept key: the picked value and, when there are labels (``oracle`` given), each oracle's."""
    per_param = {}
    for k in keys:
        entry = {"pick": rows[pick]["params"].get(k) if pick is not None else None}
        if oracle is not None:
            entry.update({f"oracle_{a}": (oracle[a] or {}).get("params", {}).get(k) for a in ACCURACIES})
        per_param[k] = entry
    return per_param


def _brief(row: dict) -> dict:
    return {k: row.get(k) for k in ("slot", "trial", "params", "score", *ACCURACIES, "run_dir")}


def _fmt(v: Any, pct: bool = False) -> str:
    if v is None:
        return "-"
    if pct and finite(v):
        return f"{100 * v:.2f}"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def tables(summary: dict) -> list[Table]:
    """Rich tables: the trials (pick and oracle marked), then the agreement with the labels."""
    obj = summary["objective"]
    keys = list(summary["space"])
    pick = (summary["selection"]["pick"] or {}).get("trial")
    oracle = ((summary.get("oracle") or {}).get("linear_acc") or {}).get("trial")
    c = summary["counts"]
    t = Table(
        title=f"sweep {summary['name']}: {c['complete']} complete, {c['failed']} failed, "
        f"{c['running']} running, {c['pending']} pending of {c['n_trials']}"
    )
    for col in ["slot", "trial", *keys, f"{obj['metric']} ({obj['layer']})", "linear %", "kNN %", "note"]:
        t.add_column(col, justify="right" if col not in ("note",) else "left")
    for row in summary["trials"]:
        note = []
        if row["trial"] == pick:
            sure = "" if summary["selection"].get("reliable", True) else ", UNRELIABLE"
            note.append(f"pick ({summary['selection']['rule']}{sure})")
        if row["trial"] == oracle:
            note.append("oracle (linear)")
        if row["state"] == "failed":
            note.append(f"FAILED: {row.get('outcome')}")
        if row.get("flags"):
            note.append("unsafe: " + ", ".join(row["flags"]))
        t.add_row(
            str(row["slot"]),
            str(row["trial"]),
            *[_fmt(row["params"].get(k)) for k in keys],
            _fmt(row["score"]),
            _fmt(row.get("linear_acc"), True),
            _fmt(row.get("knn_acc"), True),
            ", ".join(note),
        )
    excluded = summary["selection"].get("excluded") or {}
    if excluded.get("by_flag"):
        flags = ", ".join(f"{n} {f}" for f, n in excluded["by_flag"].items())
        how = (
            "left out of the pick"
            if excluded["applied"]
            else "NOT left out (every run is flagged, or exclude_unsafe is off)"
        )
        t.caption = f"{len(excluded['trials'])} run(s) flagged unsafe ({flags}): {how}"
        if excluded.get("reported_only"):
            t.caption += f" ({', '.join(excluded['reported_only'])}: reported only)"
        if excluded.get("cost"):  # measured with the labels
            t.caption += "; cost: " + "; ".join(f"{f} {cost_words(c)}" for f, c in excluded["cost"].items())
    out = [t]
    if summary.get("agreement"):
        a = Table(title="label-free pick vs labels (labels are never used to select)")
        for col in [
            "accuracy",
            "Kendall tau",
            "Spearman rho",
            "pick %",
            "oracle %",
            "gap (points)",
            "oracle trial",
        ]:
            a.add_column(col, justify="right")
        for name, g in summary["agreement"].items():
            a.add_row(
                name,
                _fmt(g["kendall_tau"]),
                _fmt(g["spearman_rho"]),
                _fmt(g["pick_acc"], True),
                _fmt(g["oracle_acc"], True),
                _fmt(g["gap_points"]),
                _fmt(g["oracle_trial"]),
            )
        out.append(a)
        p = Table(title="per swept hyper-parameter: value picked without labels vs the oracle's")
        for col in ["hyper-parameter", "label-free pick", "oracle (linear)", "oracle (kNN)"]:
            p.add_column(col, justify="right")
        for k, v in summary["per_param"].items():
            p.add_row(k, _fmt(v["pick"]), _fmt(v.get("oracle_linear_acc")), _fmt(v.get("oracle_knn_acc")))
        out.append(p)
    if summary.get("rules"):
        out.append(rules_table(summary["rules"]))
    return out


def rules_table(ev: dict) -> Table:
    """Every candidate rule's pick per seed and, with labels, its gap to the oracle and Kendall tau; the
    caption says which seeds' comparisons cannot be trusted, and what to do."""
    t = Table(title=f"label-free rules over {len(ev['seeds'])} seed(s) (labels only measure)")
    for col in ["rule", "pick per seed", "gap (points)", "Kendall tau", "tau (unflagged)"]:
        t.add_column(col, justify="left" if col in ("rule", "pick per seed") else "right")
    for name, r in ev["rules"].items():
        picks = "; ".join(
            "-" if p is None else ", ".join(f"{k}={_fmt(v)}" for k, v in p.items()) for p in r["pick"]
        )
        t.add_row(
            name, picks, _fmt(r["gap_points"]), _fmt(r["kendall_tau"]), _fmt(r["kendall_tau_unflagged"])
        )
    notes = []
    if ev.get("oracle_seed_std") is not None:
        notes.append(
            f"oracle seed std {ev['oracle_seed_std']:.2f} points" + (" (FLAT sweep)" if ev["flat"] else "")
        )
    for seed, v in ev["verdicts"].items():
        if not v["reliable"]:
            notes.append(f"seed {seed}: pick UNRELIABLE: {'; '.join(v['reasons'])}: {v['advice']}")
    t.caption = "; ".join(notes) or None
    return t


def write(summary: dict, sweep_dir: Path) -> tuple[Path, Path]:
    """``summary.json`` and ``report.html`` in the sweep directory."""
    from selfsup.report.sweep_report import write_sweep_report

    sweep_dir = Path(sweep_dir)
    path = sweep_dir / "summary.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(summary, indent=2, default=str))
    tmp.replace(path)
    return path, write_sweep_report(sweep_dir, summary)
