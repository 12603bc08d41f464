"""The error boundary: every user mistake is one ``error:`` line (plus at most one indented hint), exit 2, no
traceback, and nothing written or lost; the run lock; resume that protects the first epoch and survives a
half-written ``metrics.jsonl``.

The battery runs the real console entry point (:func:`selfsup.cli.main`, click's usage errors included) in
process, on a tree of files it snapshots before and after each case.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from selfsup.cli import main

_HELD: list[int] = []  # descriptors of locks held for the whole module
TINY = [
    "data.dataset=digits",
    "model.backbone=mlp",
    "model.backbone_args={hidden: '32'}",
    "model.projector=32-32",
    "train.batch_size=128",
    "data.monitor_size=256",
    "train.lidar_samples=0",
]


def run_cli(args: list[str], cwd: Path, monkeypatch, capsys) -> tuple[int, str]:
    monkeypatch.chdir(cwd)
    monkeypatch.setattr(sys, "argv", ["selfsup", *args])
    with pytest.raises(SystemExit) as exit_info:
        main()
    out = capsys.readouterr()
    return exit_info.value.code, out.out + out.err


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) if p.is_file() else (-1, 0)
        for p in sorted(root.rglob("*"))
    }


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    """A finished 2-epoch run and the bad files of the battery."""
    root = tmp_path_factory.mktemp("world")
    old = Path.cwd()
    os.chdir(root)
    try:
        with pytest.raises(SystemExit) as e:
            sys.argv = ["selfsup", "train", "--quiet", *TINY, "train.epochs=2", "train.name=base"]
            main()
        assert e.value.code == 0
    finally:
        os.chdir(old)
    run = root / "runs" / "base"
    (root / "afile").write_text("not a directory\n")
    (root / "adir").mkdir()
    (root / "bin.yaml").write_bytes(b"\xff\xfe\x00binary\x00")
    (root / "latin1.yaml").write_bytes("train:\n  name: caf\xe9\n".encode("latin-1"))
    (root / "syntax.yaml").write_text("train:\n  epochs: [1,\n")
    (root / "garbage.pt").write_bytes(b"garbage" * 20)
    (root / "garbage.npy").write_bytes(b"\x93NUMPY garbage")
    np.save(root / "big.npy", np.random.default_rng(0).normal(size=(64, 8)) * 1e200)
    np.save(root / "emb.npy", np.random.default_rng(0).normal(size=(64, 8)))
    x = np.random.default_rng(0).normal(size=(40, 1, 16)).astype(np.float32)
    np.savez(root / "biglabel.npz", x=x, y=np.r_[np.zeros(39, np.int64), 10**12])
    for name, edit in {
        "binconf": lambda p: p.write_bytes(b"\xff\xfe binary"),
        "emptyconf": lambda p: p.write_text(""),
        "editlr": lambda p: _edit(p, "optim", "lr", 0.5),
        "editproj": lambda p: _edit(p, "model", "projector", "64-64"),
    }.items():
        shutil.copytree(run, root / "runs" / name)
        edit(root / "runs" / name / "config.yaml")
    for name, text in {"badsum": "{garbage", "halfsum": (run / "summary.json").read_text()[:300]}.items():
        shutil.copytree(run, root / "runs" / name)
        (root / "runs" / name / "summary.json").write_text(text)
    shutil.copytree(run, root / "runs" / "badmetrics")
    lines = (run / "metrics.jsonl").read_text().splitlines()
    (root / "runs" / "badmetrics" / "metrics.jsonl").write_text("{oops\n" + "\n".join(lines) + "\n")
    shutil.copytree(run, root / "runs" / "locked")
    lock = root / "runs" / "locked" / ".lock"
    lock.write_text(f"{socket.gethostname()} {os.getpid()}")
    fd = os.open(lock, os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # held by this test process: another writer, alive
    _HELD.append(fd)
    return root


def _edit(path: Path, section: str, key: str, value) -> None:
    cfg = yaml.safe_load(path.read_text())
    cfg[section][key] = value
    path.write_text(yaml.safe_dump(cfg))


PDE = ["pde", "generate", "heat", "--n", "4"]
CASES = {
    # 1. output locations
    "out_dir-proc": (["train", *TINY, "train.out_dir=/proc/x"], "cannot write in '/proc'"),
    "out_dir-file": (["train", *TINY, "train.out_dir=afile"], "is a file, not a directory"),
    "embed-o-proc": (["embed", "runs/base", "-o", "/proc/x.npy"], "cannot write in '/proc'"),
    "embed-o-dir": (["embed", "runs/base", "-o", "adir"], "is a directory"),
    "embed-o-suffix": (
        ["embed", "runs/base", "-o", "emb.txt"],
        "must end in .npz (embeddings with their ids) or .npy",
    ),
    "embed-o-no-parent": (["embed", "runs/base", "-o", "nodir/e.npy"], "does not exist"),
    "pde-o-proc": ([*PDE, "-o", "/proc/x.h5"], "cannot write in '/proc'"),
    "pde-o-dir": ([*PDE, "-o", "adir"], "is a directory"),
    # 2. files that are not what they claim
    "config-binary": (["train", "--config", "bin.yaml"], "not a UTF-8 text file"),
    "config-latin1": (["train", "--config", "latin1.yaml"], "not a UTF-8 text file"),
    "config-syntax": (["train", "--config", "syntax.yaml"], "not valid YAML"),
    "sweep-binary": (["sweep", "--config", "bin.yaml"], "not a UTF-8 text file"),
    "resume-binary-config": (["train", "--resume", "runs/binconf"], "not a UTF-8 text file"),
    "embed-binary-config": (["embed", "runs/binconf", "-o", "e.npy"], "not a UTF-8 text file"),
    "resume-empty-config": (["train", "--resume", "runs/emptyconf"], "is empty"),
    "probe-empty-config": (["probe", "runs/emptyconf"], "is empty"),
    "report-garbage-summary": (["report", "runs/badsum"], "damaged"),
    "report-half-summary": (["report", "runs/halfsum"], "damaged"),
    "report-damaged-metrics": (["report", "runs/badmetrics"], "line 1 is not JSON"),
    "quality-garbage-pt": (["quality", "garbage.pt"], "refused by the safe loader"),
    "quality-garbage-npy": (["quality", "garbage.npy"], "cannot read"),
    "report-not-a-run": (["report", "adir"], "no summary.json"),
    # 3. devices
    "device-cuda": (["train", *TINY, "train.device=cuda"], "no usable CUDA GPU"),
    "device-cuda7": (["train", *TINY, "train.device=cuda:7"], "no usable CUDA GPU"),
    "device-banana": (["train", *TINY, "train.device=banana"], "unknown device"),
    "pde-device-banana": ([*PDE, "-o", "d.h5", "--device", "banana"], "unknown device"),
    "pde-device-cuda": ([*PDE, "-o", "d.h5", "--device", "cuda"], "no usable CUDA GPU"),
    # 4. numbers and options out of range
    "pde-param-type": ([*PDE, "-o", "p.h5", "-p", "nx=abc"], "wrong type"),
    "pde-threads-negative": ([*PDE, "-o", "p.h5", "--threads", "-1"], "--threads"),
    "pde-threads-zero": ([*PDE, "-o", "p.h5", "--threads", "0"], "--threads"),
    "pde-split-empty": ([*PDE, "-o", "p.h5", "--split", ""], "--split must be"),
    "embed-split-empty": (["embed", "runs/base", "--split", "", "-o", "e.npy"], "split '' is not available"),
    "lr-inf": (["train", *TINY, "optim.lr=inf"], "finite number"),
    "lidar-one": (["train", *TINY, "train.lidar_samples=1"], "at least 2 samples"),
    "labels-huge": (["train", *TINY, "data.dataset=arrays:biglabel.npz"], "class indices"),
    "quality-overflow": (["quality", "big.npy"], "too large"),
    "quality-n-views-type": (["quality", "emb.npy", "--n-views", "abc"], "--n-views"),
    "batch-too-large": (["train", *TINY, "train.batch_size=100000"], "larger than the training set"),
    # 5. resume
    "resume-edited-lr": (["train", "--resume", "runs/editlr"], "optim.lr"),
    "resume-edited-projector": (["train", "--resume", "runs/editproj"], "model.projector"),
    "resume-fewer-epochs": (["train", "--resume", "runs/base", "train.epochs=1"], "has trained 2 epochs"),
    "resume-other-config": (["train", "--resume", "runs/base", "optim.lr=0.5"], "optim.lr"),
    "resume-locked": (["train", "--resume", "runs/locked", "train.epochs=3"], "is in use by process"),
    "resume-not-a-run": (["train", "--resume", "adir"], "not a run directory"),
    # 7. litter and surprises
    "unknown-dataset": (["train", *TINY, "data.dataset=nope"], "unknown dataset"),
    "missing-arrays-file": (["train", *TINY, "data.dataset=arrays:missing.npz"], "does not exist"),
    "name-escapes": (["train", *TINY, "train.name=../../x"], "plain directory name"),
    "name-absolute": (["train", *TINY, "train.name=/tmp/x"], "plain directory name"),
    "click-unknown-option": (["train", "--bogus"], "No such option"),
    "click-missing-argument": (["embed"], "Missing argument"),
    "two-bad-keys": (["train", "model.bogus=1", "optim.nope=2"], "unknown config key 'model.bogus'"),
    "override-not-yaml": (["train", "optim.lr=[1,"], "not YAML"),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_is_one_clean_line(name, world, monkeypatch, capsys):
    args, message = CASES[name]
    before = snapshot(world)
    code, output = run_cli(args, world, monkeypatch, capsys)
    assert code == 2, output
    assert "Traceback" not in output
    lines = [line for line in output.splitlines() if line.strip()]
    assert lines[0].startswith("error: "), output
    assert len(lines) <= 2 and all(line.startswith("  ") for line in lines[1:]), output
    assert message in output, output
    assert snapshot(world) == before  # nothing written, nothing lost


def test_the_battery_covers_the_seven_classes():
    assert len(CASES) >= 40


@pytest.mark.slow
def test_an_unexpected_exception_is_a_bug_in_one_line(world, monkeypatch, capsys, tmp_path):
    import selfsup.embeddings

    def boom(*args, **kwargs):
        raise ZeroDivisionError("simulated bug")

    monkeypatch.setattr(selfsup.embeddings, "load_embeddings", boom)
    monkeypatch.setenv("SELFSUP_LOG_DIR", str(tmp_path))
    code, output = run_cli(["quality", "emb.npy"], world, monkeypatch, capsys)
    assert code == 1 and "Traceback" not in output
    assert output.startswith("error: internal error") and "ZeroDivisionError: simulated bug" in output
    logs = list(tmp_path.glob("selfsup-error-*.log"))
    assert len(logs) == 1 and "Traceback" in logs[0].read_text()


@pytest.mark.slow
def test_stale_lock_is_taken_over_and_released(world, tmp_path, monkeypatch, capsys):
    shutil.copytree(world / "runs" / "base", tmp_path / "runs" / "stale")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / "runs" / "stale" / ".lock").write_text(f"{socket.gethostname()} {dead.pid}")
    code, output = run_cli(
        ["train", "--quiet", "--resume", "runs/stale", "train.epochs=3"], tmp_path, monkeypatch, capsys
    )
    assert code == 0, output
    assert not (tmp_path / "runs" / "stale" / ".lock").exists()
    assert len((tmp_path / "runs" / "stale" / "metrics.jsonl").read_text().splitlines()) == 3


@pytest.mark.slow
def test_half_written_metrics_line_then_resume(world, tmp_path, monkeypatch, capsys):
    run = tmp_path / "runs" / "torn"
    shutil.copytree(world / "runs" / "base", run)
    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"epoch": 3, "loss": 0.4')  # a kill while appending
    code, output = run_cli(
        ["train", "--quiet", "--resume", "runs/torn", "train.epochs=3"], tmp_path, monkeypatch, capsys
    )
    assert code == 0, output
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2, 3]


@pytest.mark.slow
def test_failed_validation_leaves_no_run_dir_and_temp_files_are_cleaned(world, tmp_path, monkeypatch, capsys):
    code, _ = run_cli(["train", *TINY, "train.device=cuda"], tmp_path, monkeypatch, capsys)
    assert code == 2 and not (tmp_path / "runs").exists()
    run = tmp_path / "runs" / "tmpfiles"
    shutil.copytree(world / "runs" / "base", run)
    orphan = run / "checkpoints" / ".epoch-00002.ckpt.tmp-99999"
    orphan.write_bytes(b"half a checkpoint")
    code, output = run_cli(
        ["train", "--quiet", "--resume", "runs/tmpfiles", "train.epochs=3"], tmp_path, monkeypatch, capsys
    )
    assert code == 0, output and not orphan.exists()


@pytest.mark.slow
def test_too_few_samples_or_one_class_still_ends_with_a_summary(tmp_path, monkeypatch, capsys):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 1, 16)).astype(np.float32)
    np.savez(tmp_path / "small.npz", x=x, y=np.arange(16) % 2, x_test=x[:8], y_test=np.arange(8) % 2)
    np.savez(tmp_path / "one.npz", x=x, y=np.zeros(16, np.int64), x_test=x[:8], y_test=np.zeros(8, np.int64))
    common = ["train", "--quiet", "model.backbone=mlp", "model.projector=16-16", "train.batch_size=8"]
    common += ["train.epochs=1", "train.lidar_samples=0", "data.monitor_size=16"]
    code, output = run_cli(
        [*common, "data.dataset=arrays:small.npz", "train.name=s"], tmp_path, monkeypatch, capsys
    )
    assert code == 0, output
    summary = json.loads((tmp_path / "runs" / "s" / "summary.json").read_text())
    assert summary["knn_k"] == 16 and 0 <= summary["knn_acc"] <= 1  # k = 20 > 16 samples: all of them vote
    code, output = run_cli(
        [*common, "data.dataset=arrays:one.npz", "train.name=o"], tmp_path, monkeypatch, capsys
    )
    assert code == 0, output
    summary = json.loads((tmp_path / "runs" / "o" / "summary.json").read_text())
    assert "single class" in summary["probes_skipped"] and (tmp_path / "runs" / "o" / "report.html").is_file()


def _train_process(args: list[str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "selfsup", *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


@pytest.mark.slow
def test_kill_in_the_first_epoch_then_resume_equals_uninterrupted(tmp_path, monkeypatch):
    args = ["train", "--quiet", *TINY, "model.backbone_args={hidden: '512-512'}", "train.batch_size=16"]
    args += ["train.epochs=1", "train.deterministic=true", "train.seed=5"]
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the uninterrupted run beside the killed one, a core each
    full = _train_process([*args, "train.name=full"], tmp_path)
    killed = _train_process([*args, "train.name=killed"], tmp_path)
    run = tmp_path / "runs" / "killed"
    deadline = time.time() + 120
    while not (run / "config.yaml").exists():  # training has started: the first epoch is under way
        assert time.time() < deadline and killed.poll() is None, killed.communicate()[0]
        time.sleep(0.005)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert not list((run / "checkpoints").glob("*.ckpt")) if (run / "checkpoints").exists() else True

    resumed = _train_process(["train", "--quiet", "--resume", "runs/killed"], tmp_path)
    out, _ = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, out
    assert "starting it over" in out
    out, _ = full.communicate(timeout=300)
    assert full.returncode == 0, out
    a, b = (json.loads((tmp_path / "runs" / r / "summary.json").read_text()) for r in ("full", "killed"))
    assert (a["linear_acc"], a["knn_acc"], a["rankme_backbone"]) == (
        b["linear_acc"],
        b["knn_acc"],
        b["rankme_backbone"],
    )
    la, lb = (
        [json.loads(x)["loss"] for x in (tmp_path / "runs" / r / "metrics.jsonl").open()]
        for r in ("full", "killed")
    )
    assert la == lb and len(la) == 1
