"""The 2-worker sweep against a real PostgreSQL server, started for this module in a temporary directory.

CI installs Debian's postgresql (.ci/run) and psycopg2 (the dev extra): when either is missing this test
fails with a message saying so; it is never skipped.
"""

import glob
import os
import pwd
import shlex
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from test_select_sweep import GRID, check_finished_sweep, tiny_sweep
from typer.testing import CliRunner

from selfsup.cli import app

runner = CliRunner()


def pg_binary(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    versions = sorted(
        glob.glob(f"/usr/lib/postgresql/*/bin/{name}"),
        key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0,
    )
    return versions[-1] if versions else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_user(user: str | None, cmd: list[str]) -> list[str]:
    """initdb and postgres refuse to run as root: run them as an unprivileged user then."""
    if user is None:
        return cmd
    if shutil.which("runuser"):
        return ["runuser", "-u", user, "--", *cmd]
    return ["su", "-s", "/bin/sh", user, "-c", shlex.join(cmd)]


@pytest.fixture(scope="module")
def postgres_url():
    initdb, postgres, pg_ctl = pg_binary("initdb"), pg_binary("postgres"), pg_binary("pg_ctl")
    if not (initdb and postgres and pg_ctl):
        pytest.fail(
            "PostgreSQL server binaries (initdb, postgres, pg_ctl) not found on PATH or in "
            "/usr/lib/postgresql/*/bin: install Debian's postgresql (apt-get install postgresql; "
            ".ci/run does it)"
        )
    try:
        import psycopg2
    except ImportError:
        pytest.fail("psycopg2 is not installed: pip install -e '.[dev]' (or '.[postgres]')")

    user = None
    if os.geteuid() == 0:
        user = next((u for u in ("postgres", "nobody") if _has_user(u)), None)
        if user is None:
            pytest.fail(
                "running as root, and neither a 'postgres' nor a 'nobody' user exists to run the server as"
            )
    # Not under pytest's tmp_path: it lives in a root-only directory the server user cannot enter.
    root = Path(tempfile.mkdtemp(prefix="selfsup-pg-"))
    data = root / "data"
    if user is not None:
        pw = pwd.getpwnam(user)
        os.chown(root, pw.pw_uid, pw.pw_gid)
    env = {**os.environ, "LC_ALL": "C", "LANG": "C"}
    init = subprocess.run(
        _as_user(
            user,
            [
                initdb,
                "-D",
                str(data),
                "-U",
                "selfsup",
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ],
        ),
        capture_output=True,
        text=True,
        env=env,
        cwd=root,
    )
    assert init.returncode == 0, f"initdb failed: {init.stdout}\n{init.stderr}"
    port = free_port()
    log = root / "server.log"
    log_file = open(log, "w")
    server = subprocess.Popen(
        _as_user(
            user,
            [
                postgres,
                "-D",
                str(data),
                "-k",
                str(root),
                "-p",
                str(port),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
                "-c",
                "max_connections=50",
            ],
        ),
        stdout=log_file,
        stderr=subprocess.STDOUT,
        env=env,
        cwd=root,
        start_new_session=True,
    )
    try:
        deadline = time.time() + 60
        while True:
            try:
                conn = psycopg2.connect(host="127.0.0.1", port=port, user="selfsup", dbname="postgres")
                break
            except psycopg2.OperationalError:
                assert server.poll() is None, f"postgres exited: {log.read_text()}"
                assert time.time() < deadline, f"postgres did not start: {log.read_text()}"
                time.sleep(0.2)
        conn.autocommit = True
        conn.cursor().execute("CREATE DATABASE sweeps")
        conn.close()
        yield f"postgresql+psycopg2://selfsup@127.0.0.1:{port}/sweeps"
    finally:
        subprocess.run(
            _as_user(user, [pg_ctl, "stop", "-D", str(data), "-m", "immediate", "-w"]),
            capture_output=True,
            env=env,
            cwd=root,
        )
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, 9)
            server.wait()
        log_file.close()
        shutil.rmtree(root, ignore_errors=True)


def _has_user(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


@pytest.mark.slow
def test_two_worker_sweep_on_postgresql(tmp_path, monkeypatch, postgres_url):
    monkeypatch.chdir(tmp_path)
    path = tiny_sweep(tmp_path, "pg", storage=postgres_url)
    res = runner.invoke(app, ["sweep", "--quiet", "--config", str(path)])
    assert res.exit_code == 0, res.output
    assert "3 done, 0 running, 0 left, ETA 0 s" in res.output  # the status line after the last trial
    sweep_dir = tmp_path / "sweeps" / "pg"
    assert not (sweep_dir / "study.db").exists()  # the study lives in PostgreSQL
    done = check_finished_sweep(sweep_dir, postgres_url, "pg")
    workers = {t.user_attrs["worker"]["pid"] for t in done}
    assert len(done) == len(GRID) and 1 <= len(workers) <= 2
    logs = sorted((sweep_dir / "logs").glob("worker-*.log"))
    assert len(logs) == 2  # two worker processes shared the server

    res = runner.invoke(app, ["sweep", "summary", str(sweep_dir), "--json"])
    assert res.exit_code == 0, res.output
    assert '"complete": 3' in res.output and "selfsup@127.0.0.1" in res.output
