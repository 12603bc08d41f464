"""SSL on PDE trajectories: pde datasets, the 'pde' view recipe, the pde2d backbone, fit + evaluate."""

from __future__ import annotations

import json
import math

import pytest
import torch

from selfsup.data import load_dataset
from selfsup.errors import ConfigError, SelfsupError, ShapeError
from selfsup.models import build_backbone
from selfsup.pde import generate, residual, write_h5
from selfsup.pde.datasets import to_samples
from selfsup.pde.stepping import SolverSpec
from selfsup.pde.views import PDEViews
from selfsup.views import build_views

TINY = "burgers,n_train=16,n_test=8,nx=32,nt=60,keep=40"
FINE = {  # resolved grids with fine time sampling (as in test_pde_symmetries): small residual floor
    "burgers": dict(nx=256, T=1.0, nt=201, keep=200),
    "kdv": dict(nx=128, L=32.0, T=5.0, nt=201, keep=200),
}
SCALING = {"burgers": (1.0, 2.0), "kdv": (1.0, 3.0)}  # (x, t) exponents


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SELFSUP_CACHE", str(tmp_path / "cache"))
    return tmp_path


def test_views_keep_shapes_and_are_random_per_sample():
    d = generate("burgers", 2, seed=0, nx=32, nt=60, keep=40)
    x = to_samples(d)[[0] * 6]  # the same trajectory six times
    torch.manual_seed(0)
    full = build_views("pde", x.shape[1:], equation="burgers")
    v = full(x)
    assert v.shape == x.shape and v.dtype == x.dtype
    flat = v[:, 0].flatten(1)
    assert all(not torch.allclose(flat[i], flat[j]) for i in range(6) for j in range(i))
    crop = build_views("pde", x.shape[1:], equation="burgers", crop=(16, 24))
    c = crop(x)
    assert c.shape == (6, 3, 16, 24)
    # the coordinates are the window's, rescaled by Burgers' scaling x -> e^e x, t -> e^(2e) t
    t, xc = c[:, 1].double(), c[:, 2].double()
    dt, dx = t[:, 1, 0] - t[:, 0, 0], xc[:, 0, 1] - xc[:, 0, 0]
    assert torch.allclose(t, t[:, :1] + dt[:, None, None] * torch.arange(16.0)[:, None], atol=1e-4)
    assert torch.allclose(xc, xc[:, :, :1] + dx[:, None, None] * torch.arange(24.0), atol=1e-4)
    e = torch.log(dx / d.dx[0])
    assert torch.allclose(torch.log(dt / d.dt[0]), 2 * e, atol=1e-4) and float(e.abs().max()) > 1e-3
    for coord, step, n in ((t[:, 0, 0], dt, 60 - 16), (xc[:, 0, 0], dx, 32 - 24)):
        start = coord / step  # the window's first row / column: an index of the full field
        assert torch.allclose(start, start.round(), atol=1e-3) and bool(((start >= 0) & (start <= n)).all())
    no_sym = build_views("pde", x.shape[1:], equation="burgers", space=0, boost=0, scale=0)
    assert torch.allclose(no_sym(x), x)


@pytest.mark.parametrize("equation", sorted(FINE))
def test_symmetry_view_of_a_solution_is_a_solution(equation):
    d = generate(equation, 3, seed=1, threads=1, **FINE[equation])
    nu = d.coeffs.get("nu")
    x = to_samples(d, torch.float64)
    before = residual(equation, d.u, d.dt, d.dx, nu=nu)
    assert float(before.max()) < 1e-4
    torch.manual_seed(0)
    views = PDEViews(x.shape[1:], equation=equation, crop=(180, d.nx), space=1.0, boost=0.4, scale=0.1)
    v = views(x)
    assert v.dtype == torch.float64 and v.shape == (3, 3, 180, d.nx)
    a, b = SCALING[equation]
    e = torch.log((v[:, 2, 0, 1] - v[:, 2, 0, 0]) / d.dx) / a  # the scaling parameter each sample drew
    assert float(e.abs().max()) > 1e-3
    assert torch.allclose(v[:, 1, 1, 0] - v[:, 1, 0, 0], d.dt * torch.exp(b * e))  # t scaled consistently
    after = residual(equation, v[:, 0], d.dt * torch.exp(b * e), d.dx * torch.exp(a * e), nu=nu)
    assert float(after.max()) < 1e-4 and bool((after <= 2 * before + 1e-8).all())
    # the views really moved the field, and dropping the boost's u + c breaks the solution
    assert float((v[:, 0] - d.u[:, :180]).abs().max()) > 1e-2
    no_scale = PDEViews(x.shape[1:], equation=equation, boost=0.4, space=0.0, scale=0.0)
    w = no_scale(x)
    c = w[:, 0].mean(dim=(1, 2)) - d.u.mean(dim=(1, 2))  # the boost velocity (mean of u is conserved)
    broken = residual(equation, w[:, 0] - c[:, None, None], d.dt, d.dx, nu=nu)
    assert float(broken.min()) > 10 * float(before.max())


def test_pde2d_shapes_layers_and_invariances():
    net = build_backbone("pde2d", (3, 40, 64), width=8).eval()
    assert net.layer_names == ["stem", "layer1", "layer2", "layer3", "pool"]
    assert net.layer_dims == {"stem": 8, "layer1": 8, "layer2": 16, "layer3": 32, "pool": 32}
    x = torch.randn(3, 3, 40, 64)
    with torch.no_grad():
        z = net(x)
        assert z.shape == (3, 32)
        feats = net.forward_layers(x)
        assert {k: v.shape[1] for k, v in feats.items()} == net.layer_dims
        assert torch.allclose(feats["pool"], z)
        x2 = x.clone()
        x2[:, 1:] = 7.0  # the coordinate channels are ignored (fields=1)
        assert torch.allclose(net(x2), z)
        # circular in x: a roll by the total stride (8) leaves the pooled representation unchanged
        assert torch.allclose(net(torch.roll(x, 8, dims=-1)), z, atol=1e-5)
        assert net(torch.randn(2, 3, 20, 48)).shape == (2, 32)  # any field size
    with pytest.raises(ShapeError):
        build_backbone("pde2d", (1, 40))
    with pytest.raises(ConfigError):
        build_backbone("pde2d", (3, 40, 64), fields=4)


def test_pde2d_reads_the_coordinates_with_fields_3():
    """fields=3: the coordinates reach the encoder, batch-normalised (their scale does not matter at the
    start: raw coordinates of ~100 and the same ones / 100 give the same training-mode output)."""
    net = build_backbone("pde2d", (3, 40, 64), width=8, fields=3)
    t = torch.arange(40.0)[:, None].expand(40, 64)
    x = torch.stack(
        [torch.randn(4, 40, 64), t.expand(4, 40, 64) * torch.rand(4, 1, 1) * 3, torch.zeros(4, 40, 64)], 1
    )
    x[:, 2] = torch.arange(64.0) * 2.0
    small = x.clone()
    small[:, 1:] /= 100
    torch.manual_seed(0)
    assert torch.allclose(net(x), net(small), atol=1e-4)
    other = x.clone()
    other[:, 1] *= torch.tensor([1.0, 2.0, 0.5, 1.5])[:, None, None]  # other time steps dt
    assert not torch.allclose(net(other), net(x), atol=1e-3)


def test_datasets_generated_and_from_file(cache):
    a = load_dataset(f"pde-gen:{TINY}")
    assert a.train.x.shape == (16, 3, 40, 32) and a.test.x.shape == (8, 3, 40, 32)
    assert a.train.y is None and a.num_classes is None and a.sample_shape == (3, 40, 32)
    assert set(a.info["coeffs"]["train"]) == {"L", "T", "nu"} and a.info["coeffs"]["test"]["nu"].shape == (8,)
    assert a.info["dt"]["train"].shape == (16,) and a.info["view_args"] == {"equation": "burgers"}
    files = list((cache / "cache" / "pde").glob("*.h5"))
    assert len(files) == 1
    b = load_dataset(f"pde-gen:{TINY}")  # from the cache
    assert torch.equal(a.train.x, b.train.x)
    d = generate("kdv", 3, seed=0, nx=32, L=16.0, T=2.0, nt=30, keep=20, threads=1)
    path = cache / "kdv.h5"
    write_h5(path, d, "train")
    write_h5(path, d[:2], "valid")
    f = load_dataset(f"pde:{path}")
    assert f.train.x.shape == (3, 3, 20, 32) and f.test.x.shape == (2, 3, 20, 32)
    assert torch.allclose(f.info["coeffs"]["train"]["L"], d.coeffs["L"])
    j, i = torch.arange(20.0)[:, None], torch.arange(32.0)  # coordinates t = j dt, x = i dx
    assert torch.allclose(f.train.x[:, 1], d.dt.float()[:, None, None] * j.expand(20, 32))
    assert torch.allclose(f.train.x[:, 2], d.dx.float()[:, None, None] * i.expand(20, 32))


def test_bad_inputs_give_clear_errors(cache):
    with pytest.raises(ConfigError, match="equation"):
        load_dataset("pde-gen:navier")
    with pytest.raises(SelfsupError, match="no such HDF5 file"):
        load_dataset(f"pde:{cache / 'missing.h5'}")
    with pytest.raises(ConfigError, match="unknown parameter"):
        load_dataset("pde-gen:kdv,nxx=3")
    with pytest.raises(ConfigError, match="equation"):
        build_views("pde", (3, 40, 32))
    with pytest.raises(ConfigError, match="no 'add' symmetry"):
        build_views("pde", (3, 40, 32), equation="kdv", add=0.1)
    with pytest.raises(ConfigError, match="crop"):
        build_views("pde", (3, 40, 32), equation="kdv", crop=(50, 8))
    with pytest.raises(ConfigError, match="dt_dx"):
        build_views("pde", (1, 40, 32), equation="kdv")
    with pytest.raises(ShapeError):
        build_views("pde", (1, 32), equation="kdv")
    from selfsup.pde.downstream import evaluate_run

    with pytest.raises(SelfsupError, match="not a run directory"):
        evaluate_run(cache)


@pytest.mark.slow
def test_fit_then_evaluate_tiny(cache):
    from selfsup import config as C
    from selfsup.pde.downstream import evaluate_run
    from selfsup.train import fit

    cfg = C.from_dict(
        {
            "data": {"dataset": f"pde-gen:{TINY}", "view_args": {"crop": [24, 24]}, "monitor_size": 16},
            "model": {"backbone": "pde2d", "backbone_args": {"width": 4}, "projector": "32-32"},
            "method": {"name": "vicreg"},
            "optim": {"lr": 3e-4, "warmup_epochs": 0, "schedule": "constant"},
            "train": {"epochs": 1, "batch_size": 8, "device": "cpu", "lidar_samples": 8},
        }
    )
    fit(cfg, run_dir=cache / "run", progress=False)
    spec = SolverSpec(steps=3, history=5, future=5, start=5, checks=2)
    r = evaluate_run(
        cache / "run", seeds=2, sup_epochs=1, solver=spec, cond_dim=2, diagnostics=("oracle", "random")
    )
    saved = json.loads((cache / "run" / "pde_eval.json").read_text())
    reg = saved["regression"]
    assert reg["targets"] == ["nu"] and reg["log_targets"] == ["nu"]
    for kind in ("ssl_linear", "supervised", "ssl_linear_nmse", "supervised_nmse"):
        v = reg[kind]["nu"]
        assert set(v) == {"mean", "std", "values"} and len(v["values"]) == 2
        assert math.isfinite(v["mean"]) and math.isfinite(v["std"])
    assert math.isfinite(reg["mean"]["nu"]) and math.isfinite(reg["mean_nmse"]["nu"])
    ts = saved["timestepping"]
    assert (
        ts["rollout_steps"] == 30 and ts["solver"]["history"] == 5 and ts["n_valid"] == 2
    )  # 40 - 5 - 5 steps
    for kind in ("baseline", "ssl_conditioned", "oracle", "random"):
        assert len(ts[kind]["nmse_sum"]["values"]) == 2 and math.isfinite(ts[kind]["nmse_global"]["mean"])
        assert all(1 <= s <= 3 for s in ts[kind]["best_step"])
    assert set(ts["fraction_of_oracle_gain"]) == {"ssl_conditioned", "oracle", "random"}
    assert ts["fraction_of_oracle_gain"]["oracle"] in (pytest.approx(1.0), None)
    assert r["equation"] == "burgers" and r["seeds"] == [0, 1]  # the run's training seed (0) and the next
    assert (
        ts["solver"]["dilated"] and ts["solver"]["conditioning"] == "shift" and ts["solver"]["cond_dim"] == 2
    )
    assert ts["solver"]["receptive_field_cells"] == 64
    # the command line's --json prints what it writes to pde_eval.json
    from typer.testing import CliRunner

    from selfsup.cli import app

    args = [
        "pde",
        "evaluate",
        str(cache / "run"),
        "--seeds",
        "1",
        "--sup-epochs",
        "1",
        "--skip",
        "timestepping",
    ]
    res = CliRunner().invoke(app, [*args, "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output) == json.loads((cache / "run" / "pde_eval.json").read_text())
    plain = SolverSpec(steps=2, history=5, future=5, conditioning="film", dilated=False, grid=False)
    r = evaluate_run(cache / "run", seeds=1, solver=plain, diagnostics=(), skip=("regression",))
    assert "regression" not in r and r["timestepping"]["solver"]["conditioning"] == "film"
    assert r["timestepping"]["solver"]["receptive_field_cells"] == 12 and "oracle" not in r["timestepping"]
    few = evaluate_run(
        cache / "run", seeds=1, sup_epochs=1, solver=plain, diagnostics=("oracle",), labelled=8
    )
    assert few["n_train"] == 8 and few["timestepping"]["n_valid"] == 1  # the first 8 of 16 trajectories
    with pytest.raises(ConfigError, match="1..16"):
        evaluate_run(cache / "run", seeds=1, solver=plain, labelled=17)
    sgd = evaluate_run(cache / "run", seeds=1, sup_epochs=1, skip=("timestepping",), head="sgd")["regression"]
    assert sgd["head"] == "sgd" and math.isfinite(sgd["ssl_linear_nmse"]["nu"]["mean"])
    with pytest.raises(ConfigError, match="ridge, sgd"):
        evaluate_run(cache / "run", seeds=1, skip=("timestepping",), head="lasso")
    _sgd_head_fits_a_linear_target(cache / "run")
    with pytest.raises(ConfigError, match="conditioning"):
        SolverSpec(conditioning="concat")
    with pytest.raises(ConfigError, match="oracle, random"):
        evaluate_run(cache / "run", seeds=1, solver=plain, diagnostics=("orcale",), skip=("regression",))
    with pytest.raises(ConfigError, match="start \\+ history \\+ future = 60"):
        evaluate_run(cache / "run", seeds=1, skip=("regression",))  # the default 20 + 20 + 20 > 40 steps


def _sgd_head_fits_a_linear_target(run_dir):
    """Without crops the features are fixed: the head must fit a target that is linear in them."""
    from selfsup.pde.downstream import sgd_head
    from selfsup.train import embed, load_run

    c, _ = load_run(run_dir, device="cpu")
    layer = c.model.layer_names[-1]
    z = embed(c.model, c.data.train.x, c.device, [layer])[layer]
    w = torch.randn(z.shape[1], 2, generator=torch.Generator().manual_seed(0))
    y = (z - z.mean(0)) / z.std(0).clamp_min(1e-6) @ w / z.shape[1] ** 0.5
    pred = sgd_head(c, layer, y, z, crop=None, seed=0, epochs=2000)
    assert float(((pred - y) ** 2).mean()) < 0.01 * float((y**2).mean())


def test_random_window_is_a_translation():
    from selfsup.pde.downstream import random_window

    x = torch.arange(2 * 10 * 8, dtype=torch.float32).reshape(1, 2, 10, 8).expand(5, 2, 10, 8)
    w = random_window(x, (4, 6), torch.Generator().manual_seed(0))
    assert w.shape == (5, 2, 4, 6)
    for i in range(5):
        t0 = int(w[i, 0, 0, 0]) // 8
        x0 = int(w[i, 0, 0, 0]) % 8
        expect = torch.roll(x[i], -x0, dims=-1)[:, t0 : t0 + 4, :6]
        assert torch.equal(w[i], expect)


@pytest.mark.parametrize("dilated, expected", [(True, 64), (False, 12)])
def test_solver_receptive_field(dilated, expected):
    # Analytic: kernel 5 (reach 2 d per layer of dilation d) -> 2 * sum(d) + 2 (output conv) cells each side.
    # Checked empirically: the gradient of one output cell is non-zero exactly within +-receptive_field.
    from selfsup.pde.stepping import CNNSolver

    torch.manual_seed(0)
    net = CNNSolver(history=3, future=2, width=8, depth=5, dilated=dilated)
    torch.nn.init.normal_(net.out.weight)  # the zero-initialised output layer would hide every path
    assert net.receptive_field == expected
    u = torch.randn(1, 3, 256, requires_grad=True)
    net(u)[0, :, 128].sum().backward()
    reach = u.grad[0].abs().sum(0).nonzero().flatten()
    assert int(reach.min()) == 128 - expected and int(reach.max()) == 128 + expected


@pytest.mark.parametrize("conditioning, n_mod", [("shift", 1), ("film", 2)])
def test_solver_conditioning_starts_as_identity_and_uses_the_vector(conditioning, n_mod):
    from selfsup.pde.stepping import CNNSolver

    torch.manual_seed(0)
    plain = CNNSolver(history=4, future=2, width=8, depth=3)
    cond = CNNSolver(history=4, future=2, width=8, depth=3, cond_dim=5, conditioning=conditioning)
    cond.load_state_dict(plain.state_dict(), strict=False)  # same convolutions, zero-initialised modulation
    assert cond.modulation.linear.out_features == n_mod * 8 * 3
    torch.nn.init.normal_(plain.out.weight)
    cond.out.weight.data.copy_(plain.out.weight)
    u, z = torch.randn(3, 4, 32), torch.randn(3, 5)
    torch.testing.assert_close(cond(u, z), plain(u))  # identity at initialisation
    torch.nn.init.normal_(cond.modulation.linear.weight)
    assert not torch.allclose(cond(u, z), plain(u))  # and the vector changes the prediction once trained


def test_solver_conditioning_is_validated():
    from selfsup.pde.stepping import CNNSolver

    with pytest.raises(ConfigError, match="shift, film"):
        CNNSolver(history=4, future=2, conditioning="concat")


def test_pde_views_shard_like_the_whole_batch():
    """Crops and symmetry draws of rows of a batch (several processes) equal the whole batch's rows."""
    from selfsup.views import batch_shard

    d = generate("burgers", 2, seed=0, nx=32, nt=60, keep=40)
    x = to_samples(d)[[0, 1, 0, 1, 1, 0]]
    views = build_views("pde", x.shape[1:], equation="burgers", crop=(16, 24))
    torch.manual_seed(3)
    whole = views(x)
    torch.manual_seed(3)
    with batch_shard(2, 6):
        part = views(x[2:5])
    assert torch.equal(part, whole[2:5])
