"""The reports in a real browser: headless Chromium opens a run report and a sweep report, and the test
reads what it logged and what it drew. A copy of each page gets a probe script (the reports have none)
that logs, once the page has loaded, how wide the page is against the window and the body, and how many
pictures failed to decode; any other console line fails the test. A page with a script that throws proves
that the console is read at all.

Chromium is Debian's ``chromium`` package; ``.ci/run`` installs it where it is missing."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread

from selfsup.report import write_run_report
from selfsup.report.sweep_report import write_sweep_report
from selfsup.select import load_sweep
from selfsup.select.study import TrialRecord
from selfsup.select.summary import summarize

WIDTH, HEIGHT = 1280, 2000
pytestmark = pytest.mark.slow  # each test starts Chromium (about 1 to 3 s)

PROBE = """<script>addEventListener("load", () => {
  const d = document.documentElement, b = document.body;
  const broken = [...document.images].filter((i) => !i.complete || i.naturalWidth === 0).length;
  console.log(`selfsup-probe page ${d.scrollWidth} window ${innerWidth} body ${b.scrollWidth} `
    + `${b.clientWidth} images ${document.images.length} broken ${broken}`);
});</script>"""
PROBE_LINE = re.compile(r"selfsup-probe page (\d+) window (\d+) body (\d+) (\d+) images (\d+) broken (\d+)")


def chromium() -> str:
    path = shutil.which("chromium")
    if path is None:
        pytest.fail("chromium is not installed: .ci/run installs it (Debian: apt-get install chromium)")
    return path


def open_in_chromium(page: Path, out: Path) -> tuple[list[str], np.ndarray]:
    """Chromium's console lines for ``page`` and its screenshot (H x W x RGB in [0, 1])."""
    png = out / f"{page.stem}.png"
    cmd = [
        chromium(),
        "--headless",
        "--no-sandbox",  # root in CI containers
        "--disable-gpu",
        f"--user-data-dir={out / 'profile'}",
        f"--window-size={WIDTH},{HEIGHT}",
        "--enable-logging=stderr",
        "--v=0",
        f"--screenshot={png}",
        page.as_uri(),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and png.is_file(), proc.stderr[-3000:]
    console = [line for line in proc.stderr.splitlines() if ":CONSOLE" in line]
    return console, imread(png)[..., :3]


def check_in_browser(report: Path, tmp_path: Path) -> np.ndarray:
    """The report loads with no console message but the probe's, as wide as its body, every picture
    decoded; its screenshot is not blank. Returns the screenshot."""
    page = tmp_path / f"probed-{report.parent.name}.html"
    page.write_text(report.read_text().replace("</body>", PROBE + "</body>"))
    console, shot = open_in_chromium(page, tmp_path)
    probe = [m for line in console if (m := PROBE_LINE.search(line))]
    assert len(probe) == 1, console  # the probe ran: the console is read
    others = [line for line in console if not PROBE_LINE.search(line)]
    assert not others, others  # no error, no warning
    page_w, window_w, body_scroll, body_w, n_images, broken = map(int, probe[0].groups())
    assert page_w <= window_w == WIDTH, "the page is wider than the window"
    assert body_scroll <= body_w, "something is wider than the page's body (a table or a picture)"
    assert n_images == report.read_text().count("<img") and broken == 0, f"{broken} broken of {n_images}"
    assert shot.shape[:2] == (HEIGHT, WIDTH)
    ink = (shot < 0.9).any(axis=2)  # pixels that are not white
    assert 0.01 < ink.mean() < 0.6 and shot.std() > 0.05, "a blank (or all dark) screenshot"
    colour = shot.max(axis=2) - shot.min(axis=2) > 0.25  # the plots' lines and points (the text is grey)
    assert colour.mean() > 1e-3, "no coloured pixel: the pictures are not drawn"
    return shot


def test_a_throwing_script_is_caught(tmp_path):
    """The detector can fail: a script that throws and one that logs an error both reach the console."""
    page = tmp_path / "throws.html"
    page.write_text(
        "<!doctype html><html><body><p>hello</p><script>console.error('an error');"
        "throw new Error('boom');</script></body></html>"
    )
    console, shot = open_in_chromium(page, tmp_path)
    assert any("an error" in line for line in console), console
    assert any("Uncaught Error: boom" in line for line in console), console
    assert shot.shape[:2] == (HEIGHT, WIDTH)


def test_the_run_report_in_a_browser(digits_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(digits_run, run, ignore=shutil.ignore_patterns("checkpoints"))
    report = write_run_report(run)
    assert report.read_text().count("<img") == 3  # training, spectrum, embeddings
    check_in_browser(report, tmp_path)


def _trial(number, state, params, score=None, lin=None, knn=None, reason=None):
    return TrialRecord(
        number=number,
        trial_id=number,
        state=state,
        slot=number,
        params=params,
        score=score,
        metrics={"linear_acc": lin, "knn_acc": knn},
        outcome="diverged" if state == "failed" else None,
        reason=reason,
        run_dir=str(Path("trials") / str(number)),
    )


def test_the_sweep_report_in_a_browser(tmp_path):
    """A hand-made two-key sweep (no training) with a failed trial's long reason: the widest table."""
    base = {
        "data": {"dataset": "digits"},
        "model": {"backbone": "mlp", "backbone_args": {"hidden": "64-64"}, "projector": "64-64"},
    }
    space = {
        "method.params.cov_coeff": {"type": "float", "low": 0.01, "high": 100.0, "log": True},
        "optim.lr": {"type": "categorical", "values": [0.001, 0.01]},
    }
    sweep_dir = tmp_path / "sweeps" / "two-keys"
    sweep = load_sweep(
        data={"name": "two-keys", "base": base, "space": space, "n_trials": 5, "sampler": "random"},
        sweep_dir=sweep_dir,
    )
    why = "training diverged at epoch 3: the loss is nan " + "(a very long reason, " * 12
    recs = [
        _trial(0, "complete", {"method.params.cov_coeff": 0.03, "optim.lr": 0.001}, 31.5, 0.71, 0.74),
        _trial(1, "complete", {"method.params.cov_coeff": 0.4, "optim.lr": 0.01}, 44.0, 0.83, 0.82),
        _trial(2, "failed", {"method.params.cov_coeff": 90.0, "optim.lr": 0.01}, reason=why),
        _trial(3, "complete", {"method.params.cov_coeff": 2.5, "optim.lr": 0.001}, 52.25, 0.86, 0.88),
        _trial(4, "complete", {"method.params.cov_coeff": 11.0, "optim.lr": 0.01}, 49.0, 0.9, 0.87),
    ]
    summary = summarize(sweep, recs)
    (sweep_dir / "trials" / "0").mkdir(parents=True)
    (sweep_dir / "trials" / "0" / "report.html").write_text("<html></html>")  # the trials table links it
    report = write_sweep_report(sweep_dir, summary)
    assert 'href="trials/0/report.html"' in report.read_text()
    assert report.read_text().count("<img") == 2  # one plot per hyper-parameter
    check_in_browser(report, tmp_path)
