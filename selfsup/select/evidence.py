"""How close each label-free rule comes to the labelled oracle on a seeded sweep (labels only measure).

A seeded sweep runs every configuration (the swept values but the seed) once per seed (``train.seed``).
The statistics are those noise can neither meet nor miss:

- the *oracle* is the configuration with the best seed-mean accuracy (ties to the first in sweep order);
- for each seed a rule picks among that seed's runs only (:func:`selfsup.select.rules.apply`);
- a rule's *gap* is the oracle's seed-mean accuracy minus the picked configuration's, in points, averaged
  over seeds;
- its *tau* is Kendall's tau-b between its seed-mean score and the seed-mean accuracy over the
  configurations (and over the configurations none of whose runs is flagged);
- a sweep is *flat* when its configurations' seed-mean accuracies span less than 3 times the oracle's seed
  standard deviation: no rule can be told from another there, and it is reported, not counted.

A sweep without a seed key is one seed: the gap is then the single-run gap of ``selfsup sweep summary``.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Sequence
from typing import Any

from selfsup.select import rules as R
from selfsup.select.selection import rank_agreement
from selfsup.select.spec import finite

SEED_KEY = "train.seed"
#: A sweep whose accuracy range is under this many oracle seed standard deviations is flat.
FLAT_STDS = 3.0


def _config_id(params: dict, seed_key: str) -> str:
    return json.dumps({k: v for k, v in params.items() if k != seed_key}, sort_keys=True, default=str)


def group(runs: Sequence[R.Run], seed_key: str = SEED_KEY) -> tuple[list[str], dict[Any, list[int]]]:
    """The configurations in sweep order, and per seed the indices of its runs (in sweep order)."""
    configs = list(dict.fromkeys(_config_id(run.params, seed_key) for run in runs))
    by_seed: dict[Any, list[int]] = {}
    for i, run in enumerate(runs):
        by_seed.setdefault(run.params.get(seed_key), []).append(i)
    return configs, by_seed


def _mean(values: list) -> float | None:
    known = [float(v) for v in values if finite(v)]
    return statistics.fmean(known) if known else None


def evaluate(
    runs: Sequence[R.Run],
    accs: Sequence[float | None],
    rules: Sequence[str] = tuple(R.RULES),
    seed_key: str = SEED_KEY,
) -> dict[str, Any]:
    """Per rule: gap (points, mean over seeds), Kendall tau (all configurations / unflagged ones), the picked
    configuration per seed and each seed's verdict; the oracle, its seed standard deviation, flatness."""
    configs, by_seed = group(runs, seed_key)
    cid = [_config_id(run.params, seed_key) for run in runs]
    per_config: dict[str, list[int]] = {c: [i for i in range(len(runs)) if cid[i] == c] for c in configs}
    acc_mean = [_mean([accs[i] for i in per_config[c]]) for c in configs]
    flagged = {c for c in configs if any(runs[i].flags for i in per_config[c])}
    out: dict[str, Any] = {
        "configs": [json.loads(c) for c in configs],
        "seeds": list(by_seed),
        "acc_mean": acc_mean,
        **_oracle(acc_mean, [[accs[i] for i in per_config[c]] for c in configs]),
        "verdicts": {str(seed): R.verdict([runs[i] for i in idx]) for seed, idx in by_seed.items()},
        "rules": {},
    }
    oracle = out["oracle"]
    out["oracle_config"] = None if oracle is None else out["configs"][oracle]
    for rule in rules:
        scores = [None] * len(runs)
        picks, gaps = [], []
        for idx in by_seed.values():
            seed_runs = [runs[i] for i in idx]
            seed_scores, pick = R.apply(rule, seed_runs)
            for i, s in zip(idx, seed_scores, strict=True):
                scores[i] = s
            if pick is None:
                picks.append(None)
                continue
            j = configs.index(cid[idx[pick]])
            picks.append(json.loads(configs[j]))
            if oracle is not None and acc_mean[j] is not None:
                gaps.append(100 * (acc_mean[oracle] - acc_mean[j]))
        score_mean = [_mean([scores[i] for i in per_config[c]]) for c in configs]
        clean = [j for j, c in enumerate(configs) if c not in flagged]
        out["rules"][rule] = {
            "gap_points": statistics.fmean(gaps) if gaps else None,
            "kendall_tau": rank_agreement(score_mean, acc_mean)["kendall_tau"],
            "kendall_tau_unflagged": rank_agreement(
                [score_mean[j] for j in clean], [acc_mean[j] for j in clean]
            )["kendall_tau"],
            "pick": picks,
        }
    return out


def _oracle(acc_mean: list[float | None], accs: list[list[float | None]]) -> dict[str, Any]:
    """The oracle configuration (best seed-mean accuracy, ties to the first; None without labels), its
    accuracy and seed standard deviation (points), the accuracy span (points) and whether it is flat."""
    known = [j for j, a in enumerate(acc_mean) if a is not None]
    if not known:
        return {
            "oracle": None,
            "oracle_acc": None,
            "oracle_seed_std": None,
            "acc_span_points": None,
            "flat": None,
        }
    oracle = max(known, key=lambda j: (acc_mean[j], -j))
    span = 100 * (max(acc_mean[j] for j in known) - min(acc_mean[j] for j in known))
    seeds = [100 * a for a in accs[oracle] if finite(a)]
    std = statistics.stdev(seeds) if len(seeds) > 1 else None
    return {
        "oracle": oracle,
        "oracle_acc": acc_mean[oracle],
        "oracle_seed_std": std,
        "acc_span_points": span,
        "flat": std is not None and span < FLAT_STDS * std,
    }
