"""Label-free selection rules and their seeded statistics, on small synthetic runs checked by hand and
against scipy."""

import statistics

import pytest
from scipy import stats

from selfsup.select import evidence as E
from selfsup.select import rules as R

RISING = [50.0, 30.0, 20.0, 22.0, 25.0, 27.0, 28.0, 29.0, 29.5, 30.0]  # inflation, dip, settled rise
PLATEAU = [10.0, 6.0, 4.0, 3.2, 3.05, 3.0, 2.99, 2.98, 2.98, 2.97]


def _run(params, rankmes, losses=PLATEAU, alpha=1.0, lidar=10.0, flags=()):
    rows = [
        {
            "epoch": i + 1,
            "loss": loss,
            "backbone/rankme": r,
            "backbone/alpha_req": alpha,
            "backbone/lidar": lidar,
        }
        for i, (loss, r) in enumerate(zip(losses, rankmes, strict=True))
    ]
    return R.Run(dict(params), rows, {}, list(flags))


def _final(rank, **kw):
    return _run(kw.pop("params", {}), [*RISING[:-1], rank], **kw)


def test_relative_collapse_is_half_the_median_of_the_sweep():
    runs = [_final(r) for r in (70.0, 64.0, 20.0, 79.0)]  # median 67: 20 < 33.5, partial collapse
    assert R.relative_collapse(runs) == [False, False, True, False]
    assert R.relative_collapse(runs[2:]) == [False, False]  # two runs: no median worth the name


def test_each_rule_scores_what_its_docstring_says():
    runs = [
        _final(90.0, flags=["rank inflation"], alpha=1.5, lidar=5.0),  # highest RankMe, flagged
        _final(60.0, alpha=1.3, lidar=30.0),
        _final(70.0, alpha=0.9, lidar=20.0),
        _final(20.0, alpha=1.0, lidar=40.0),  # relative collapse (median 65)
    ]
    pick = {name: R.apply(name, runs)[1] for name in R.RULES}
    assert pick["rankme"] == 0 and pick["rankme-safe"] == 2 and pick["rankme-relative"] == 2
    assert pick["alpha-req"] == 3  # alpha exactly 1: -|alpha - 1| = 0
    assert R.apply("alpha-req", runs)[0] == [None, pytest.approx(-0.3), pytest.approx(-0.1), 0.0]
    assert pick["lidar"] == 3
    # borda: rankme-relative positions (run 2: 0, run 1: 1), alpha-req positions (3: 0, 2: 1, 1: 2)
    assert R.apply("borda", runs)[0] == [None, -1.5, -0.5, None]
    assert pick["borda"] == 2


def test_selected_rule_compares_each_run_at_its_best_epoch_after_the_early_phase():
    peaked = [50.0, 20.0, 40.0, 45.0, 41.0, 35.0, 33.0, 32.0, 31.0, 30.0]  # dip at 20, peak 45, then falls
    runs = [_run({}, peaked), _run({}, RISING)]
    assert R.apply("rankme-selected", runs) == ([45.0, 30.0], 0)
    assert R.apply("rankme", runs)[1] == 0  # tied 30 = 30: the first in sweep order


def test_loss_rule_abstains_when_the_loss_itself_is_swept():
    lower = [x - 1 for x in PLATEAU]
    runs = [_run({"optim.lr": 1e-3}, RISING), _run({"optim.lr": 1e-2}, RISING, losses=lower)]
    assert R.apply("loss", runs)[1] == 1  # the lower final loss
    swept = [_run({"method.params.cov_coeff": v}, RISING) for v in (1.0, 10.0)]
    assert R.apply("loss", swept) == ([None, None], None)
    assert R.apply("loss-rankme", runs)[1] == 1  # the loss where it compares
    falls = [_run({"method.params.cov_coeff": v}, [*RISING[:-1], r]) for v, r in ((1.0, 40.0), (10.0, 45.0))]
    assert R.apply("loss-rankme", falls)[1] == 1  # else RankMe


def test_verdict_says_when_scores_still_move_or_follow_training_progress():
    settled = [_run({}, RISING) for _ in range(3)]
    assert R.verdict(settled) == {"reliable": True, "reasons": [], "advice": None}
    climbing = [20.0 + 5 * i for i in range(10)]  # still rising at the last epoch
    v = R.verdict([_run({}, climbing) for _ in range(3)])
    assert not v["reliable"] and "3 of 3 runs' backbone/rankme still moving" in v["reasons"][0]
    assert "select-epoch" in v["advice"]
    # four runs whose final RankMe is ordered exactly like how far their loss fell
    runs = [
        _run({}, [*RISING[:-1], 30.0 + i], losses=[10.0, *[10.0 - d] * 9]) for i, d in enumerate((1, 2, 3, 4))
    ]
    assert R.progress(runs[0]) == pytest.approx(0.1)
    v = R.verdict(runs)
    assert not v["reliable"] and "ordered exactly like training progress" in v["reasons"][0]
    assert R.verdict(runs[:3])["reliable"]  # three runs ordered alike say little
    backwards = [_run({}, [*RISING[:-1], 34.0 - i], losses=r.series("loss")) for i, r in enumerate(runs)]
    assert "ordered exactly against training progress" in R.verdict(backwards)["reasons"][0]


def test_still_moving_is_the_loss_test_applied_to_the_score():
    assert not R.still_moving(RISING)  # 29.5 -> 30 over the last fifth: 1.7 % of the range 30
    assert R.still_moving([1.0, 2.0, 3.0, 4.0, 5.0])
    assert not R.still_moving([1.0, 1.0, 1.0]) and not R.still_moving([1.0, 2.0])


def test_seeded_statistics_by_hand_and_against_scipy():
    # 3 configurations x 3 seeds; the RankMe order per seed: config c highest for seeds 0 and 1, b for seed 2
    finals = {("a", 0): 40, ("a", 1): 41, ("a", 2): 42, ("b", 0): 50, ("b", 1): 49, ("b", 2): 60}
    finals |= {("c", 0): 55, ("c", 1): 52, ("c", 2): 58}
    accs = {"a": [0.70, 0.71, 0.72], "b": [0.80, 0.82, 0.84], "c": [0.78, 0.79, 0.80]}
    runs, run_accs = [], []
    for cfg in "abc":
        for seed in range(3):
            runs.append(_final(float(finals[cfg, seed]), params={"k": cfg, "train.seed": seed}))
            run_accs.append(accs[cfg][seed])
    ev = E.evaluate(runs, run_accs, rules=["rankme"])
    assert ev["seeds"] == [0, 1, 2] and ev["oracle_config"] == {"k": "b"}
    assert ev["oracle_seed_std"] == pytest.approx(statistics.stdev([80.0, 82.0, 84.0]))
    r = ev["rules"]["rankme"]
    assert r["pick"] == [{"k": "c"}, {"k": "c"}, {"k": "b"}]
    assert r["gap_points"] == pytest.approx((3.0 + 3.0 + 0.0) / 3)  # b's mean 82 - c's 79, per seed
    means = [statistics.fmean(finals[c, s] for s in range(3)) for c in "abc"]
    assert r["kendall_tau"] == pytest.approx(stats.kendalltau(means, [0.71, 0.82, 0.79]).statistic)
    assert not ev["flat"]  # span 11 points > 3 x 2
    noisy = E.evaluate(runs, [0.80 + 0.1 * (i % 3) for i in range(9)], rules=["rankme"])
    assert noisy["flat"] is True  # every configuration's mean 0.9: span 0 < 3 x 10


def test_a_sweep_without_seeds_is_one_seed_and_unlabelled_has_no_gap():
    runs = [_final(r, params={"k": i}) for i, r in enumerate((40.0, 50.0, 45.0))]
    ev = E.evaluate(runs, [0.5, 0.6, 0.7], rules=["rankme"])
    assert ev["seeds"] == [None] and ev["rules"]["rankme"]["gap_points"] == pytest.approx(10.0)
    bare = E.evaluate(runs, [None] * 3, rules=["rankme"])
    assert bare["oracle"] is None and bare["rules"]["rankme"]["gap_points"] is None
    assert bare["rules"]["rankme"]["pick"] == [{"k": 1}]
