"""Selection rules on hand-made score tables, the summary's statistics against scipy / by-hand values,
the sweep file's validation, and bad input exiting 2 (no training here: all fast)."""

from datetime import datetime, timedelta
from pathlib import Path

import pytest
import yaml
from scipy import stats
from typer.testing import CliRunner

from selfsup.cli import app
from selfsup.errors import ConfigError, SelfsupError
from selfsup.select import (
    load_sweep,
    oracle_gap,
    pick_highest,
    pick_threshold,
    rank_agreement,
    threshold_candidates,
)
from selfsup.select.progress import eta_seconds, format_duration, status_line, sweep_status
from selfsup.select.study import TrialRecord, slot_table
from selfsup.select.summary import summarize
from selfsup.select.worker import resolve_layer

runner = CliRunner()
SWEEPS = sorted((Path(__file__).parents[2] / "configs" / "sweeps").glob("*.yaml"))
BASE = {
    "data": {"dataset": "digits", "monitor_size": 256},
    "model": {"backbone": "mlp", "backbone_args": {"hidden": "64-64"}, "projector": "64-64"},
    "train": {"batch_size": 128, "lidar_samples": 0, "epochs": 1},
}


# --- selection rules -------------------------------------------------------------------------------------


def test_highest_ties_go_to_the_first_in_sweep_order():
    assert pick_highest([3.0, 1.0, 3.0, 2.0]) == 0
    assert pick_highest([1.0, 5.0, 5.0]) == 1
    assert pick_highest([None, float("nan"), 2.0, float("inf")]) == 2  # non-finite never wins
    assert pick_highest([None, None]) is None and pick_highest([]) is None
    assert pick_highest([3.0, 1.0, 1.0], direction="minimize") == 1


def test_threshold_rule_on_a_saturated_score():
    scores = [50.0, 99.0, 100.0, 99.5, None]
    values = [0.01, 0.1, 1.0, 10.0, 100.0]
    assert threshold_candidates(scores, 0.01) == [1, 2, 3]  # >= (1 - 0.01) * 100 = 99
    assert pick_threshold(scores, values, tol=0.01, prefer="min") == 1  # smallest value reaching it
    assert pick_threshold(scores, values, tol=0.01, prefer="max") == 3  # largest (the failed run never)
    assert pick_threshold(scores, values, tol=0.0) == 2  # exact ties only: the highest
    assert pick_threshold(scores, values, tol=0.6, prefer="min") == 0  # 50 >= 0.4 * 100
    # equal hyper-parameter values among the candidates: the first in sweep order
    assert pick_threshold([10.0, 10.0, 9.0], [1.0, 1.0, 2.0], tol=0.0, prefer="min") == 0
    # minimise: the bound mirrors (<= best + tol * |best|)
    assert threshold_candidates([1.0, 1.005, 1.02], 0.01, "minimize") == [0, 1]
    with pytest.raises(SelfsupError, match="numeric"):
        pick_threshold([1.0, 1.0], ["a", "b"], tol=0.0)


def test_agreement_against_scipy_and_by_hand():
    scores, accs = [1.0, 2.0, 3.0, 4.0], [0.1, 0.3, 0.2, 0.4]
    a = rank_agreement(scores, accs)
    # 5 concordant pairs, 1 discordant: tau = (5 - 1) / 6; rank differences (0, 1, 1, 0): rho = 1 - 6*2/60
    assert a["kendall_tau"] == pytest.approx(4 / 6) and a["spearman_rho"] == pytest.approx(0.8)
    assert a["kendall_tau"] == pytest.approx(stats.kendalltau(scores, accs).statistic)
    assert a["spearman_rho"] == pytest.approx(stats.spearmanr(scores, accs).statistic)
    # failed runs (None) are left out pairwise; constant accuracies have no rank order
    assert rank_agreement([1.0, None, 2.0], [0.5, 0.9, 0.6])["n"] == 2
    assert rank_agreement([1.0, 2.0, 3.0], [0.5, 0.5, 0.5])["kendall_tau"] is None
    g = oracle_gap(pick_highest([3.0, 1.0, 2.0]), [0.80, 0.85, 0.90])
    assert (g["pick"], g["oracle"]) == (0, 2) and g["gap_points"] == pytest.approx(10.0)


def _rec(number, slot, state, value, score=None, lin=None, knn=None, outcome=None):
    return TrialRecord(
        number=number,
        trial_id=number,
        state=state,
        slot=slot,
        params={"method.params.cov_coeff": value},
        score=score,
        metrics={"linear_acc": lin, "knn_acc": knn},
        outcome=outcome,
        run_dir=f"trials/{number}",
    )


def test_summary_statistics_on_a_hand_made_sweep(tmp_path):
    sweep = load_sweep(
        data={
            "name": "t",
            "base": BASE,
            "space": {"method.params.cov_coeff": {"type": "grid", "values": [0.1, 1.0, 10.0, 100.0]}},
        },
        sweep_dir=tmp_path,
    )
    recs = [  # trial numbers deliberately not in slot order; trial 1 was interrupted and resumed as 4
        _rec(0, 1, "complete", 1.0, score=60.0, lin=0.90, knn=0.91),
        _rec(1, 0, "interrupted", 0.1),
        _rec(2, 2, "complete", 10.0, score=60.0, lin=0.93, knn=0.92),
        _rec(3, 3, "failed", 100.0, outcome="diverged"),
        _rec(4, 0, "complete", 0.1, score=30.0, lin=0.50, knn=0.55),
    ]
    slots = slot_table(recs, 4)
    assert sorted(slots.done) == [0, 1, 2, 3] and slots.all_done and not slots.free
    s = summarize(sweep, recs)
    assert s["counts"] == {
        "n_trials": 4,
        "complete": 3,
        "failed": 1,
        "running": 0,
        "pending": 0,
        "interrupted": 1,
        "surplus": 0,
    }
    assert [r["trial"] for r in s["trials"]] == [4, 0, 2, 3]  # sweep order = slot order
    assert s["selection"]["pick"]["trial"] == 0  # tie 60 = 60: the first in sweep order (slot 1)
    lin = s["agreement"]["linear_acc"]
    assert lin["oracle_trial"] == 2 and lin["gap_points"] == pytest.approx(3.0)
    assert lin["kendall_tau"] == pytest.approx(stats.kendalltau([30, 60, 60], [0.5, 0.9, 0.93]).statistic)
    assert s["per_param"]["method.params.cov_coeff"] == {
        "pick": 1.0,
        "oracle_linear_acc": 10.0,
        "oracle_knn_acc": 10.0,
    }
    t = summarize(sweep, recs, rule="threshold", tol=0.0, prefer="max")
    assert t["selection"]["pick"]["trial"] == 2 and t["selection"]["candidates"] == [0, 2]
    # unfinished: an interrupted slot is free again, a running one busy
    part = slot_table(recs[:2] + [_rec(5, 2, "running", 10.0)], 4)
    assert part.free == [0, 3] and part.inherit[0].number == 1 and list(part.busy) == [2]
    # the report's trials table links a trial's own report.html, relative, only where the worker wrote one
    from selfsup.report.sweep_report import _trials_table

    (tmp_path / "trials" / "0").mkdir(parents=True)
    (tmp_path / "trials" / "0" / "report.html").write_text("<html></html>")
    html = _trials_table(s, tmp_path)
    assert '<a href="trials/0/report.html">trials/0</a>' in html
    assert ">trials/2<" in html and 'href="trials/2' not in html  # no report there: plain text


# --- progress while a sweep runs -------------------------------------------------------------------------


def test_eta_by_hand():
    assert eta_seconds([], [5.0], left=3, workers=2) is None  # no finished trial yet: "ETA -"
    assert eta_seconds([10.0], [], left=4, workers=2) == 20.0  # ceil(4 / 2) * 10
    assert eta_seconds([10.0], [], left=3, workers=2) == 20.0  # ceil(3 / 2) * 10
    assert eta_seconds([10.0], [4.0], left=2, workers=1) == 26.0  # 6 s left of the running one, then 2 * 10
    # two running trials (6 s and 2 s left), two slots to go: the last worker frees at 6 + 10
    assert eta_seconds([10.0], [4.0, 8.0], left=2, workers=2) == 16.0
    assert eta_seconds([5.0, 100.0, 10.0], [], left=3, workers=3) == 10.0  # the median, not the mean
    assert eta_seconds([10.0], [30.0], left=0, workers=1) == 0.0  # running past the median: nothing more
    # more trials running than workers here (another machine joined): each keeps its own worker
    assert eta_seconds([10.0], [0.0, 0.0, 0.0], left=0, workers=1) == 10.0
    assert [format_duration(x) for x in (None, 40.4, 59.6, 240.0, 7500.0)] == [
        "-",
        "40 s",
        "1 min",
        "4 min",
        "2 h 05 min",
    ]


def test_status_line_from_trial_records():
    t0 = datetime(2025, 1, 1, 12, 0, 0)

    def timed(rec, start, end):
        rec.datetime_start = t0 + timedelta(seconds=start)
        rec.datetime_complete = None if end is None else t0 + timedelta(seconds=end)
        return rec

    recs = [
        timed(_rec(0, 0, "complete", 0.1, score=5.0), 0, 100),
        timed(_rec(1, 1, "failed", 1.0, outcome="diverged"), 0, 300),
        timed(_rec(2, 2, "running", 10.0), 250, None),
    ]
    # median 200 s; the running trial has 150 s left, the free slot goes to the idle worker: 200 s
    s = sweep_status(recs, 4, "maximize", workers=2, now=t0 + timedelta(seconds=300))
    assert (s.done, s.failed, s.running, s.left, s.best.number, s.eta) == (2, 1, 1, 1, 0, 200.0)
    assert status_line(s) == "2 done (1 failed), 1 running, 1 left, ETA 3 min"
    first = sweep_status(recs[2:], 4, "maximize", workers=2, now=t0 + timedelta(seconds=300))
    assert status_line(first) == "0 done, 1 running, 3 left, ETA -"


# --- the sweep file ---------------------------------------------------------------------------------------


def test_example_sweeps_validate():
    assert {p.name for p in SWEEPS} >= {
        "vicreg-cov-mnist1d.yaml",
        "vicreg-lr-mnist1d.yaml",
        "vicreg-wd-mnist1d.yaml",
        "simclr-temp-mnist1d.yaml",
        "simclr-lr-mnist1d.yaml",
        "barlow-lambda-mnist1d-full.yaml",  # the full-length study: >= 6 sweeps, 3 method families
        "simclr-temp-mnist1d-full.yaml",
        "simclr-lr-mnist1d-full.yaml",
        "vicreg-proj-mnist1d-full.yaml",
    }
    for path in SWEEPS:
        sw = load_sweep(path)
        if path.name == "lejepa-study-mnist1d.yaml":  # LeJEPA's loss-vs-accuracy claim: 4 keys at random
            assert len(sw.keys) == 4 and sw.spec.n_trials >= 8 and sw.objective.metric == "lejepa_loss"
            continue
        if path.name == "ks-boost-pde.yaml":  # selection without labels: a PDE preset as it is
            assert sw.keys == ["data.view_args.boost"] and sw.base["data"]["dataset"].startswith("pde-gen:ks")
            continue
        assert len(sw.keys) == 1 and 4 <= sw.n_trials <= 6, path  # one hyper-parameter at a time
        if path.stem.endswith("-full"):  # the full-length study: the preset's own training, unchanged
            preset_file = path.parent / yaml.safe_load(path.read_text())["base"]["preset"]
            preset = yaml.safe_load(preset_file.read_text())
            assert sw.base["train"]["epochs"] == preset["train"]["epochs"] >= 20
            conv1d = [
                {"width": 64, **m.get("backbone_args", {})} for m in (sw.base["model"], preset["model"])
            ]
            assert conv1d[0] == conv1d[1]  # the same backbone (64: conv1d's default width)
            assert sw.base["train"]["monitor_every"] <= 4
        else:
            assert sw.base["train"]["epochs"] == 8  # shortened for the 26-run study on 2 cores
        assert sw.sweep_dir == Path("sweeps") / path.stem
        cfg = sw.trial_config(sw.grid()[0], "0")
        assert cfg.train.out_dir == str(Path("sweeps") / path.stem / "trials") and cfg.train.name == "0"


def test_grid_order_and_trial_config(tmp_path):
    sw = load_sweep(
        data={
            "name": "g",
            "base": BASE,
            "overrides": ["optim.lr=1e-3"],
            "space": {
                "optim.weight_decay": {"type": "grid", "values": ["1e-4", 0.01]},  # YAML 1.1 string -> float
                "method.params.cov_coeff": {"type": "categorical", "values": [1, 2]},
            },
        },
        sweep_dir=tmp_path,
    )
    assert sw.grid() == [
        {"optim.weight_decay": 1e-4, "method.params.cov_coeff": 1},
        {"optim.weight_decay": 1e-4, "method.params.cov_coeff": 2},
        {"optim.weight_decay": 0.01, "method.params.cov_coeff": 1},
        {"optim.weight_decay": 0.01, "method.params.cov_coeff": 2},
    ]
    cfg = sw.trial_config(sw.grid()[3], "7")
    assert cfg.optim.weight_decay == 0.01 and cfg.method.params == {"cov_coeff": 2}
    assert cfg.optim.lr == pytest.approx(1e-3) and cfg.train.out_dir == str(tmp_path / "trials")
    # with train.loggers, every trial is a run of the tracker experiment named after the sweep
    assert cfg.train.experiment == "g" and cfg.train.tracking_dir == str(tmp_path)
    assert sw.storage_url == f"sqlite:///{(tmp_path / 'study.db').resolve()}"


@pytest.mark.parametrize(
    "space, extra, message",
    [
        ({"optim.lrr": {"type": "grid", "values": [1]}}, {}, "Did you mean 'optim.lr'"),
        ({"train.epohcs": {"type": "grid", "values": [1]}}, {}, "Did you mean 'train.epochs'"),
        ({"method.params.cov_coef": {"type": "grid", "values": [1.0]}}, {}, "Did you mean 'cov_coeff'"),
        ({"train.name": {"type": "grid", "values": ["a"]}}, {}, "cannot be swept"),
        ({"optim.lr": {"type": "grid", "values": [-1.0]}}, {}, "invalid run config"),
        ({"optim.lr": {"type": "float", "low": 1e-4, "high": 1e-2}}, {}, "needs a list of values"),
        ({"optim.lr": {"type": "float", "low": 1e-4, "high": 1e-2}}, {"sampler": "tpe"}, "needs n_trials"),
        (
            {"optim.lr": {"type": "float", "low": 0.0, "high": 1.0, "log": True}},
            {"sampler": "random"},
            "low > 0",
        ),
        ({"optim.lr": {"type": "grid", "values": [1.0, 1.0]}}, {}, "duplicates"),
        ({"optim.lr": {"type": "grid", "valeus": [1.0]}}, {}, "Did you mean 'values'"),
        ({"optim.lr": {"type": "grid", "values": [1.0]}}, {"objective": "rankmee"}, "Did you mean 'rankme'"),
        ({"optim.lr": {"type": "grid", "values": [1.0]}}, {"samplr": "grid"}, "Did you mean 'sampler'"),
        ({"optim.lr": {"type": "grid", "values": [1.0]}}, {"n_trials": 3}, "larger than the grid"),
        ({}, {}, "empty search space"),
    ],
)
def test_bad_sweep_files(tmp_path, space, extra, message):
    with pytest.raises(ConfigError, match=message):
        load_sweep(data={"name": "b", "base": BASE, "space": space, **extra}, sweep_dir=tmp_path)


def test_objective_layer_resolution():
    names = ["fc1", "fc2", "proj1", "proj2"]
    assert resolve_layer("backbone", names) == "fc2" and resolve_layer("projector", names) == "proj2"
    assert resolve_layer("proj1", names) == "proj1"
    with pytest.raises(ConfigError, match="unknown layer 'proj3'.*Did you mean"):
        resolve_layer("proj3", names)


def _write(tmp_path, **over):
    data = {
        "name": "bad",
        "out_dir": str(tmp_path / "sweeps"),
        "base": BASE,
        "space": {"optim.lr": {"type": "grid", "values": [1e-3, 1e-2]}},
        **over,
    }
    path = tmp_path / "sweep.yml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize(
    "over, message",
    [
        ({"space": {"optim.lrr": {"type": "grid", "values": [1.0]}}}, "Did you mean 'optim.lr'"),
        ({"space": {}}, "empty search space"),
        ({"storage": "postgresql://nobody@127.0.0.1:1/x"}, "cannot open the sweep storage"),
        ({"storage": "not a url"}, "not a database URL"),
    ],
)
def test_cli_bad_input_exits_2(tmp_path, over, message):
    res = runner.invoke(app, ["sweep", "--quiet", "--config", str(_write(tmp_path, **over))])
    assert res.exit_code == 2, res.output
    assert message in res.output and "Traceback" not in res.output
    assert not (tmp_path / "sweeps" / "bad" / "trials").exists()  # nothing started


def test_cli_other_mistakes_exit_2(tmp_path):
    res = runner.invoke(app, ["sweep"])
    assert res.exit_code == 2 and "pass a sweep file" in res.output
    res = runner.invoke(app, ["sweep", "--config", str(tmp_path / "nope.yaml")])
    assert res.exit_code == 2 and "does not exist" in res.output
    res = runner.invoke(app, ["sweep", "summary", str(tmp_path)])
    assert res.exit_code == 2 and "not a sweep directory" in res.output
    res = runner.invoke(app, ["layers", str(tmp_path)])
    assert res.exit_code == 2 and "not a run directory" in res.output


# --- the worker loop, in process, with a stand-in for training ------------------------------------------


def _worker_sweep(tmp_path, n_values=3, **over):
    from selfsup.select import study as S

    data = {
        "name": "w",
        "base": BASE,
        "heartbeat_interval": 1,
        "grace_period": 2,
        "space": {"method.params.cov_coeff": {"type": "grid", "values": [0.1, 1.0, 10.0][:n_values]}},
        **over,
    }
    tmp_path.mkdir(parents=True, exist_ok=True)
    sweep = load_sweep(data=data, sweep_dir=tmp_path)
    S.ensure_study(S.open_storage(sweep.storage_url), sweep)
    return sweep


def test_worker_records_failures_and_goes_on(tmp_path, monkeypatch):
    import selfsup.train
    from selfsup.errors import DivergenceError
    from selfsup.select import study as S
    from selfsup.select.worker import Worker

    def fake_fit(cfg, run_dir, resume, console, progress, report):
        c = cfg.method.params["cov_coeff"]
        if c == 0.1:
            assert report(run_dir) is None  # what fit does last: the report (none: no run directory)
        if c == 1.0:
            raise DivergenceError("non-finite loss (nan) at epoch 1, step 3")
        if c == 10.0:
            raise RuntimeError("out of memory")
        return {
            "layers": {
                "fc1": {"rankme": 3.0, "k": 8},
                "fc2": {"rankme": 7.5, "k": 8},
                "proj1": {"rankme": 2.0, "k": 8},
            },
            "rankme_backbone": 7.5,
            "linear_acc": 0.5,
        }

    monkeypatch.setattr(selfsup.train, "fit", fake_fit)
    sweep = _worker_sweep(tmp_path)
    Worker(sweep, log=open(tmp_path / "log.txt", "w")).run()  # returns: every slot is done
    recs = {r.slot: r for r in S.records(S.load_study(S.open_storage(sweep.storage_url), "w"))}
    assert [recs[k].state for k in range(3)] == ["complete", "failed", "failed"]
    assert recs[0].score == 7.5 and recs[0].metrics["layer"] == "fc2"  # the backbone's output
    assert recs[1].outcome == "diverged" and "non-finite loss" in recs[1].reason
    assert recs[2].outcome == "crashed" and recs[2].reason == "RuntimeError: out of memory"
    # the stand-in wrote no run directory, so no report.html could be drawn: said in the log, trial complete
    assert f"trial {recs[0].number}: no report.html (SelfsupError" in (tmp_path / "log.txt").read_text()
    s = summarize(sweep, list(recs.values()))
    assert s["counts"]["complete"] == 1 and s["counts"]["failed"] == 2
    assert s["selection"]["pick"]["trial"] == recs[0].number


def test_a_stopped_trial_is_interrupted_and_the_workers_get_the_signal(tmp_path, monkeypatch):
    """The scheduler's signal: the worker whose trial stopped (checkpointed) marks it interrupted, so the next
    claim resumes it; the sweep process passes SIGTERM / SIGUSR1 on to its workers as SIGTERM (Ctrl-C stays
    SIGINT) and stops with the scheduler's exit status."""
    import signal

    import selfsup.train
    from selfsup.errors import Stopped
    from selfsup.select import run as R
    from selfsup.select import study as S
    from selfsup.select.worker import Worker

    def stopped_fit(cfg, run_dir, resume, console, progress, report):
        raise Stopped("stopped by SIGTERM at epoch 1, batch 3 (step 3)")

    monkeypatch.setattr(selfsup.train, "fit", stopped_fit)
    sweep = _worker_sweep(tmp_path)
    with pytest.raises(Stopped):
        Worker(sweep, log=open(tmp_path / "log.txt", "w")).run()
    (rec,) = S.records(S.load_study(S.open_storage(sweep.storage_url), "w"))
    assert rec.state == "interrupted" and rec.slot == 0

    class Proc:
        def __init__(self, running):
            self.running, self.sent = running, []

        def poll(self):
            return None if self.running else 0

        def send_signal(self, sig):
            self.sent.append(sig)

        def wait(self, timeout):
            return 0

    procs = [(Proc(True), None), (Proc(False), None)]
    with pytest.raises(Stopped, match="stopped by SIGUSR1"):
        R._raise_stopped(signal.SIGUSR1, None)
    R._interrupt_workers(procs, signal.SIGTERM)
    R._interrupt_workers(procs)
    assert procs[0][0].sent == [signal.SIGTERM, signal.SIGINT] and procs[1][0].sent == []


def test_claims_are_exclusive_and_dead_workers_are_reaped(tmp_path):
    from optuna.trial import TrialState

    from selfsup.select import study as S
    from selfsup.select.worker import Worker

    sweep = _worker_sweep(tmp_path, n_values=2)
    a, b = Worker(sweep), Worker(sweep)
    ta, tb = a.new_trial(), b.new_trial()
    assert a.claim(ta)[0] == 0 and b.claim(tb)[0] == 1  # claims in trial order, one slot each
    tc = a.new_trial()
    assert a.claim(tc) == (None, None)  # no free slot: a surplus trial
    a._end(tc, state=TrialState.FAIL)

    # the worker of trial ta dies (a pid that is not running here): reaped at once, its slot is free again
    dead = {**S.worker_identity(), "pid": 2**22 + 7, "start": "1"}
    a.storage.set_trial_user_attr(ta._trial_id, "worker", dead)
    (tmp_path / "trials" / str(ta.number) / "checkpoints").mkdir(parents=True)
    a.storage.set_trial_user_attr(ta._trial_id, "run_dir", f"trials/{ta.number}")
    S.reap(a.study, a.storage, sweep.spec.grace_period)
    slots = S.slot_table(S.records(a.study), 2)
    assert slots.free == [0] and slots.inherit[0].number == ta.number and list(slots.busy) == [1]
    td = b.new_trial()
    slot, inherit = b.claim(td)
    assert (slot, inherit.number) == (0, ta.number)
    # nothing to resume (no checkpoint): the interrupted directory is cleared, the slot starts afresh
    assert b.adopt(inherit, tmp_path / "trials" / str(td.number)) is False
    assert not (tmp_path / "trials" / str(ta.number)).exists()


def test_random_sampler_is_seeded_per_slot(tmp_path):
    from selfsup.select.worker import Worker, suggest

    def first_value(d):
        sweep = _worker_sweep(
            d,
            sampler="random",
            n_trials=2,
            seed=3,
            space={"optim.lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True}},
        )
        w = Worker(sweep)
        t = w.new_trial()
        slot, _ = w.claim(t)
        w.sampler.prepare(slot, None)
        return suggest(t, "optim.lr", sweep.spec.space["optim.lr"])

    x, y = first_value(tmp_path / "a"), first_value(tmp_path / "b")
    assert x == y and 1e-4 <= x <= 1e-2  # same seed and slot: same value, whichever worker runs it
