"""Output for pipes and logs: plain full-width tables, --json beside every table, one line per epoch."""

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from selfsup.cli import app

runner = CliRunner()
BOX = set("│┃━─┏┓┗┛┡┩╇╈")  # Rich's table rules


def _selfsup(*args, cwd=None, stdout=subprocess.PIPE):
    cmd = [sys.executable, "-m", "selfsup.cli", *args]
    return subprocess.run(cmd, cwd=cwd, stdout=stdout, stderr=subprocess.PIPE, text=True, check=True)


@pytest.mark.slow
def test_a_table_in_a_pipe_is_plain_text_with_full_names():
    out = _selfsup("datasets").stdout
    assert not BOX & set(out)
    rows = [line for line in out.splitlines() if line.startswith("objects3d ")]
    assert len(rows) == 1 and "one factor varied for a fraction of the images" in rows[0]  # not cut at 80
    header = next(line for line in out.splitlines() if line.startswith("name "))
    assert rows[0].index("image") == header.index("modality")  # aligned columns


def test_datasets_json_lists_every_dataset():
    res = runner.invoke(app, ["datasets", "--json"])
    assert res.exit_code == 0, res.output
    names = [d["name"] for d in json.loads(res.output)]
    assert {"mnist1d", "digits", "objects3d"} <= set(names)


def test_pde_info_json_and_table(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert runner.invoke(app, ["pde", "generate", "heat", "--n", "4", "-o", "h.h5"]).exit_code == 0
    res = runner.invoke(app, ["pde", "info", "h.h5", "--json"])
    assert res.exit_code == 0, res.output
    (row,) = json.loads(res.output)
    assert row["split"] == "train" and row["equation"] == "heat" and row["u_shape"] == [4, 140, 256]
    lo, hi = row["coefficients"]["nu"]
    assert lo <= hi and row["dx"][0] == row["dx"][1]
    table = runner.invoke(app, ["pde", "info", "h.h5"])
    assert table.exit_code == 0 and "4x140x256" in table.output and f"{row['dx'][0]:.4g}" in table.output


@pytest.mark.slow
def test_epoch_lines_in_a_log_file_are_one_line_each(tmp_path):
    log = tmp_path / "train.log"
    with log.open("w") as f:
        args = ["data.dataset=digits", "model.backbone=mlp", "train.epochs=2", "train.name=r"]
        _selfsup("train", *args, f"train.out_dir={tmp_path}", cwd=tmp_path, stdout=f)
    epochs = [line for line in log.read_text().splitlines() if line.startswith("epoch")]
    assert len(epochs) == 2 and all(line.endswith("s") for line in epochs)
    assert "RankMe backbone" in epochs[1] and "online probe" in epochs[1]  # the monitored epoch, unwrapped
