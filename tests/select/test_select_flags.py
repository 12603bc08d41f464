"""Unsafe-run flags: each on a small synthetic history, and the pick made among the safe runs."""

import json
from pathlib import Path

import pytest
from test_select import BASE, _rec

from selfsup.errors import ConfigError
from selfsup.report.sweep_report import write_sweep_report
from selfsup.select.flags import not_converged, rank_inflation, read_run_flags, run_flags
from selfsup.select.spec import load_sweep
from selfsup.select.summary import check_rule, summarize, tables

LAYERS = {"pool": {"n": 2048, "k": 64}, "proj1": {"n": 2048, "k": 256}}


def _history(losses, rankmes):
    return [
        {"epoch": i + 1, "loss": loss, "backbone/rankme": r}
        for i, (loss, r) in enumerate(zip(losses, rankmes, strict=True))
    ]


PLATEAU = [10.0, 6.0, 4.0, 3.2, 3.05, 3.0, 2.99, 2.98, 2.98, 2.97]
RISING_RANK = [50.0, 30.0, 20.0, 22.0, 25.0, 27.0, 28.0, 29.0, 29.5, 30.0]


def test_not_converged_is_a_loss_still_falling_at_the_end():
    assert not not_converged(PLATEAU)  # the last fifth: 2.99 -> 2.97, 0.3 % of the 7.03 decrease
    falling = [10.0, 9.0, 8.0, 7.0, 6.0, 5.0, 4.0, 3.0, 2.0, 1.0]
    assert not_converged(falling)  # the last fifth: 3 -> 1, 22 % of the decrease
    assert not not_converged([5.0, 5.0]) and not not_converged([1.0, 2.0, 3.0])  # too short; rising


@pytest.mark.parametrize(
    "losses, rankmes, summary, flags",
    [
        (PLATEAU, RISING_RANK, {"rankme_backbone": 30.0, "layers": LAYERS}, []),
        ([10.0 - i for i in range(10)], RISING_RANK, {"rankme_backbone": 30.0}, ["not converged"]),
        (PLATEAU, [1.5] * 10, {"rankme_backbone": 1.2, "layers": LAYERS}, ["collapsed"]),
        (PLATEAU, [60.0 - 3 * i for i in range(10)], {"rankme_backbone": 33.0}, ["rank inflation"]),
        (PLATEAU, RISING_RANK, {"rankme_backbone": 30.0, "layers": {"pool": {"n": 32, "k": 64}}}, ["N < K"]),
    ],
    ids=["safe", "not-converged", "collapsed", "rank-inflation", "N<K"],
)
def test_each_flag(losses, rankmes, summary, flags):
    assert run_flags(_history(losses, rankmes), summary, "rankme", "backbone", "maximize") == flags


def test_rank_inflation_is_a_score_not_back_from_the_bottom_of_its_descent():
    # a run of the VICReg learning-rate sweep at 1e-4 (RankMe per monitor): flat at its lowest, 101 of 101-134
    plateau = [134, 124, 118, 113, 110, 107, 105, 104, 102, 102, 101, 101, 101, 101]
    assert rank_inflation(plateau, "maximize")
    # 1e-3: down from 104 to 82, back to 85: 3 of 22 above the bottom, more than 10 %
    recovered = [104, 93, 88, 85, 83, 83, 82, 83, 84, 85, 86, 86, 86, 85]
    assert not rank_inflation(recovered, "maximize")
    assert not rank_inflation([19, 24, 24, 26, 42], "maximize")  # 1e-2: never fell, rising from the start
    assert rank_inflation([-s for s in plateau], "minimize")  # a loss still rising: mirrored
    assert not rank_inflation([5.0], "maximize")


def _run(tmp_path, name, losses, rankmes, rankme):
    d = tmp_path / name
    d.mkdir()
    (d / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in _history(losses, rankmes)))
    (d / "summary.json").write_text(json.dumps({"rankme_backbone": rankme, "layers": LAYERS}))
    return str(d)


def test_the_pick_is_made_among_safe_runs_and_says_what_it_left_out(tmp_path):
    sweep = load_sweep(
        data={
            "name": "t",
            "base": BASE,
            "space": {"method.params.cov_coeff": {"type": "grid", "values": [0.1, 1.0, 10.0]}},
        },
        sweep_dir=tmp_path,
    )
    early = [60.0 - 3 * i for i in range(10)]  # RankMe still falling: the highest score, inflated
    dirs = [
        _run(tmp_path, "a", PLATEAU, early, 33.0),
        _run(tmp_path, "b", PLATEAU, RISING_RANK, 30.0),
        _run(tmp_path, "c", PLATEAU, RISING_RANK, 30.0),
    ]
    recs = [
        _rec(i, i, "complete", v, score=s, lin=acc)
        for i, (v, s, acc) in enumerate([(0.1, 33.0, 0.80), (1.0, 30.0, 0.90), (10.0, 30.0, 0.92)])
    ]
    for r, d in zip(recs, dirs, strict=True):
        r.run_dir = str(Path(d).relative_to(tmp_path))  # as a sweep records it: relative to its folder
    s = summarize(sweep, recs)
    assert s["trials"][0]["flags"] == ["rank inflation"]
    assert s["selection"]["pick"]["trial"] == 1  # tie 30 = 30 among the safe runs: the first in order
    cost = {"rank inflation": {"runs": 1, "removed_oracle": False, "best_removed_gap_points": 12.0}}
    assert s["selection"]["excluded"] == {
        "trials": [0],
        "by_flag": {"rank inflation": 1},
        "applied": True,
        "cost": cost,  # the labels measure each flag: it removed a run 12 points below the oracle
        "reported_only": [],
    }
    rules = s["rules"]["rules"]  # every candidate rule, one seed: the default's pick is the sweep's
    assert rules["rankme-safe"]["pick"] == [{"method.params.cov_coeff": 1.0}]
    assert rules["rankme"]["pick"] == [{"method.params.cov_coeff": 0.1}]  # the inflated run
    assert rules["rankme"]["gap_points"] == pytest.approx(12.0)
    assert "rankme-safe" in tables(s)[-1].columns[0]._cells
    named = summarize(sweep, recs, rule="rankme")  # a named rule as the sweep's selection rule
    assert named["selection"]["rule"] == "rankme" and named["selection"]["pick"]["trial"] == 0
    assert named["agreement"]["linear_acc"]["gap_points"] == pytest.approx(12.0)
    with pytest.raises(ConfigError, match="Did you mean 'rankme-relative'"):
        check_rule("rankme-relatve")
    assert s["agreement"]["linear_acc"]["gap_points"] == pytest.approx(2.0)
    caption = tables(s)[0].caption
    assert "1 run(s) flagged unsafe (1 rank inflation): left out of the pick" in caption
    assert "cost: rank inflation best removed run 12.00 points below the oracle" in caption
    report = write_sweep_report(tmp_path, s).read_text()
    assert "<h2>Unsafe-run flags</h2>" in report and "rank inflation" in report
    assert "<h2>Label-free rules</h2>" in report and "rankme-relative" in report
    # with every run flagged the pick is made among all of them, and the summary says so
    for d in dirs[1:]:
        (tmp_path / d / "summary.json").write_text(json.dumps({"rankme_backbone": 1.0, "layers": LAYERS}))
    s = summarize(sweep, recs)
    assert s["selection"]["pick"]["trial"] == 0 and s["selection"]["excluded"]["applied"] is False
    assert s["selection"]["excluded"]["cost"]["collapsed"] == {  # the oracle (0.92) among the flagged
        "runs": 2,
        "removed_oracle": True,
        "best_removed_gap_points": 0.0,
    }
    assert read_run_flags(tmp_path / "missing", "rankme", "backbone", "maximize") is None


def test_a_misspelt_rule_stops_the_sweep_before_any_trial(tmp_path):
    from selfsup.select.run import run_sweep

    path = tmp_path / "s.yaml"
    path.write_text(
        json.dumps(
            {
                "base": BASE,
                "out_dir": str(tmp_path / "sweeps"),
                "space": {"optim.lr": {"type": "grid", "values": [1e-3, 1e-2]}},
                "selection": {"rule": "loss-rankm"},
            }
        )
    )
    with pytest.raises(ConfigError, match="Did you mean 'loss-rankme'"):
        run_sweep(path, progress=False)
    assert not (tmp_path / "sweeps").exists()  # nothing was started
