"""End to end on SQLite: a 3-trial, 2-worker grid sweep killed (SIGKILL of its whole process group) after
its first finished trial, then resumed by rerunning the same command: exactly 3 finished trials, one per
grid point, one run directory each; then ``selfsup sweep summary``."""

import json
import os
import re
import signal
import subprocess
import sys
import time

import optuna
import pytest
import yaml
from scipy import stats
from typer.testing import CliRunner

from selfsup.cli import app
from selfsup.select import rules as R
from selfsup.select.flags import RELATIVE, read_run

runner = CliRunner()
GRID = [0.1, 1.0, 10.0]


def tiny_sweep(tmp_path, name, epochs=1, **over):
    """A 3-trial grid over VICReg's covariance weight on digits with a 64-64 MLP, `epochs` per trial."""
    data = {
        "name": name,
        "out_dir": str(tmp_path / "sweeps"),
        "base": {
            "data": {"dataset": "digits", "monitor_size": 256},
            "model": {"backbone": "mlp", "backbone_args": {"hidden": "64-64"}, "projector": "64-64"},
            "train": {"batch_size": 128, "lidar_samples": 0, "epochs": epochs},
        },
        "space": {"method.params.cov_coeff": {"type": "grid", "values": GRID}},
        "workers": 2,
        "threads": 1,
        "heartbeat_interval": 1,
        "grace_period": 5,
        **over,
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def check_finished_sweep(sweep_dir, storage_url, name):
    """Exactly one COMPLETE trial per grid point, each with its own run directory holding its summary."""
    trials = optuna.load_study(study_name=name, storage=storage_url).get_trials()
    done = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(done) == len(GRID), [(t.number, t.state) for t in trials]
    assert sorted(t.params["method.params.cov_coeff"] for t in done) == GRID  # no grid point twice
    assert sorted(t.user_attrs["slot"] for t in done) == [0, 1, 2]
    assert all(t.state == optuna.trial.TrialState.FAIL for t in trials if t not in done)  # interrupted only
    finished_dirs = sorted(p.parent.name for p in (sweep_dir / "trials").glob("*/summary.json"))
    assert finished_dirs == sorted(str(t.number) for t in done)
    for t in done:
        summary = json.loads((sweep_dir / t.user_attrs["run_dir"] / "summary.json").read_text())
        assert t.value == pytest.approx(summary["rankme_backbone"])
        assert t.user_attrs["metrics"]["linear_acc"] == pytest.approx(summary["linear_acc"])
    # every trial wrote its own run report, and the sweep report links each one relatively
    links = re.findall(r'<a href="([^"]+)"', (sweep_dir / "report.html").read_text())
    assert sorted(links) == sorted(f"{t.user_attrs['run_dir']}/report.html" for t in done)
    assert all((sweep_dir / link).is_file() for link in links)
    return done


def _complete(storage_url, name):
    try:
        study = optuna.load_study(study_name=name, storage=storage_url)
    except Exception:  # noqa: BLE001 - not created yet
        return 0
    return sum(t.state == optuna.trial.TrialState.COMPLETE for t in study.get_trials())


@pytest.mark.slow
def test_sweep_killed_then_resumed_finishes_exactly_once(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    # trials long enough that the third cannot finish between the first's end and the kill (with 1-epoch
    # trials all three sometimes finished before the poll below saw the first)
    path = tiny_sweep(tmp_path, "kill", epochs=20)
    sweep_dir = tmp_path / "sweeps" / "kill"
    url = f"sqlite:///{sweep_dir / 'study.db'}"
    cmd = [sys.executable, "-m", "selfsup.cli", "sweep", "--quiet", "--config", str(path)]
    first = subprocess.Popen(
        cmd, cwd=tmp_path, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    deadline = time.time() + 240
    while (sweep_dir / "study.db").exists() is False or _complete(url, "kill") < 1:
        assert first.poll() is None, first.communicate()[0]
        assert time.time() < deadline, "no trial finished in time"
        time.sleep(0.2)
    os.killpg(first.pid, signal.SIGKILL)  # the main process and both workers, mid-sweep
    first.wait()
    assert 1 <= _complete(url, "kill") < len(GRID)

    again = runner.invoke(app, cmd[3:])  # the same command, in this process (saves a start-up)
    assert again.exit_code == 0, again.output
    # --quiet and not a terminal: no bar, a status line after each finished trial (the resumed one at once)
    out = again.output
    assert re.search(r"^[12] done, [0-2] running, [0-2] left, ETA \d+ (s|min)$", out, re.M), out
    assert re.search(r"^3 done, 0 running, 0 left, ETA 0 s$", out, re.M), out
    done = check_finished_sweep(sweep_dir, url, "kill")
    assert (sweep_dir / "report.html").is_file() and (sweep_dir / "summary.json").is_file()

    # Rerunning a finished sweep runs nothing more.
    third = runner.invoke(app, ["sweep", "--quiet", "--config", str(path)])
    assert third.exit_code == 0, third.output
    assert _complete(url, "kill") == len(GRID)

    res = runner.invoke(app, ["sweep", "summary", str(sweep_dir), "--json"])
    assert res.exit_code == 0, res.output
    s = json.loads(res.output)
    assert s["counts"]["complete"] == 3 and s["counts"]["pending"] == 0
    assert [r["params"]["method.params.cov_coeff"] for r in s["trials"]] == GRID  # sweep order
    scores = [r["score"] for r in s["trials"]]
    accs = [r["linear_acc"] for r in s["trials"]]
    assert s["selection"]["rule"] == R.CHOSEN_RULE  # a RankMe sweep naming no rule: the study's choice
    runs = [  # the rule reads the runs' records and their own flags (not the sweep's relative collapse)
        R.Run(
            r["params"], *read_run(sweep_dir / r["run_dir"]), flags=[f for f in r["flags"] if f != RELATIVE]
        )
        for r in s["trials"]
    ]
    best = R.apply(R.CHOSEN_RULE, runs)[1]
    assert s["selection"]["pick"]["trial"] == s["trials"][best]["trial"]
    assert s["selection"]["pick"]["trial"] in {t.number for t in done}
    lin = s["agreement"]["linear_acc"]
    assert lin["gap_points"] == pytest.approx(100 * (max(accs) - accs[best]))
    if len(set(accs)) > 1:
        assert lin["kendall_tau"] == pytest.approx(stats.kendalltau(scores, accs).statistic)
    html = (sweep_dir / "report.html").read_text()
    assert "method.params.cov_coeff" in html and html.count("<img") == 1  # one plot per hyper-parameter
