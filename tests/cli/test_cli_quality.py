"""`selfsup quality FILE`: .npy / .npz / .pt input, a table or JSON, and exit 2 on bad input."""

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from selfsup.cli import app

runner = CliRunner()


def _rankme_reference(z: np.ndarray) -> float:
    """RankMe by the paper's formula (Garrido et al. 2023, eq. 1), float64 SVD via numpy."""
    s = np.linalg.svd(z.astype(np.float64), compute_uv=False)
    p = s / s.sum() + 1e-7
    return float(np.exp(-(p * np.log(p)).sum()))


@pytest.fixture
def z():
    rng = np.random.default_rng(0)
    return (rng.standard_normal((500, 32)) * (np.arange(1, 33) ** -1.0)).astype(np.float32)


@pytest.mark.parametrize("suffix", [".npy", ".npz", ".pt"])
def test_json_matches_reference(tmp_path, z, suffix):
    path = tmp_path / f"emb{suffix}"
    if suffix == ".npy":
        np.save(path, z)
    elif suffix == ".npz":
        np.savez(path, emb=z, other=z[:, :4])
    else:
        torch.save(torch.from_numpy(z), path)
    args = ["quality", str(path), "--json"] + (["--key", "emb"] if suffix == ".npz" else [])
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    rep = json.loads(res.output)
    assert (rep["n"], rep["k"]) == (500, 32)
    assert rep["rankme"] == pytest.approx(_rankme_reference(z), rel=1e-6)


def test_table_output_and_fp16(tmp_path, z):
    np.save(tmp_path / "h.npy", z.astype(np.float16))
    res = runner.invoke(app, ["quality", str(tmp_path / "h.npy")])
    assert res.exit_code == 0, res.output
    assert "rankme" in res.output and "alpha_req" in res.output
    res = runner.invoke(app, ["quality", str(tmp_path / "h.npy"), "--json"])
    assert json.loads(res.output)["rankme"] == pytest.approx(
        _rankme_reference(z.astype(np.float16)), rel=1e-5
    )


def test_n_views_adds_lidar(tmp_path, z):
    np.save(tmp_path / "v.npy", z)
    res = runner.invoke(app, ["quality", str(tmp_path / "v.npy"), "--json", "--n-views", "2"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["lidar"] > 1


def test_bad_input_exit_2(tmp_path, z):
    bad_nan = z.copy()
    bad_nan[3, 4] = np.nan
    bad_inf = z.copy()
    bad_inf[0, 0] = np.inf
    np.save(tmp_path / "nan.npy", bad_nan)
    np.save(tmp_path / "inf.npy", bad_inf)
    np.save(tmp_path / "one_d.npy", z[:, 0])
    np.save(tmp_path / "one_row.npy", z[:1])
    np.save(tmp_path / "rows500.npy", z)  # 500 rows are not 3 views per sample
    np.savez(tmp_path / "multi.npz", a=z, b=z)
    (tmp_path / "empty.npy").write_bytes(b"")
    (tmp_path / "junk.npy").write_bytes(b"not numpy")
    cases = [
        (["nan.npy"], "nan"),
        (["inf.npy"], "inf"),
        (["one_d.npy"], "2-d"),
        (["one_row.npy"], "at least 2"),
        (["multi.npz"], "--key"),
        (["multi.npz", "--key", "c"], "key 'c' not found"),
        (["empty.npy"], "empty"),
        (["junk.npy"], "cannot read"),
        (["missing.npy"], "does not exist"),
        (["rows500.npy", "--n-views", "3"], "500"),
    ]
    for args, msg in cases:
        res = runner.invoke(app, ["quality", str(tmp_path / args[0]), *args[1:]])
        assert res.exit_code == 2, (args, res.output)
        assert msg.lower() in res.output.lower(), (args, res.output)
        assert "Traceback" not in res.output
