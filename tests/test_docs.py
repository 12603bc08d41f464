"""The user documents: the README is short, its commands run, and no document narrates project history.

Shell blocks fenced as ``bash`` in the README and the guides are run (every line a ``selfsup`` command,
in-process); expensive or data-dependent examples are fenced as ``console`` and only read.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from typer.testing import CliRunner

from selfsup.cli import app

ROOT = Path(__file__).resolve().parents[1]
USER_DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
FENCE = re.compile(r"```(\w+)\n(.*?)```", re.S)


def _blocks(path: Path, lang: str) -> list[str]:
    return [body for fence, body in FENCE.findall(path.read_text()) if fence == lang]


def _commands() -> list[tuple[str, str]]:
    out = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs" / "guide").glob("*.md"))]:
        for body in _blocks(path, "bash"):
            for line in body.splitlines():
                line = line.split("  #")[0].strip()
                if line and not line.startswith("#"):
                    out.append((path.relative_to(ROOT).as_posix(), line))
    return out


def test_the_readme_fits_in_250_lines():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 250


@pytest.mark.parametrize("where,command", _commands(), ids=lambda v: v if "/" not in v else None)
def test_every_bash_command_of_the_user_docs_runs(where, command, tmp_path, monkeypatch):
    args = shlex.split(command)
    assert args[0] == "selfsup", f"{where}: a bash block runs selfsup commands only: {command}"
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(app, args[1:])
    assert res.exit_code == 0, f"{where}: {command}\n{res.output}"


@pytest.mark.slow
def test_the_readme_python_example_runs(tmp_path, monkeypatch):
    (block,) = _blocks(ROOT / "README.md", "python")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "configs").symlink_to(ROOT / "configs")
    exec(compile(block, "README.md", "exec"), {})


HISTORY = re.compile(r"\bissue \d+|\bsession\b|\.\./shared|\bwas lent\b|git history|\b[0-9a-f]{7}'s code")


@pytest.mark.parametrize("path", USER_DOCS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_user_documents_tell_no_project_history(path):
    hits = [line for line in path.read_text().splitlines() if HISTORY.search(line)]
    assert hits == []
