"""selfsup.pde: solver accuracy against scipy Radau, convergence, conservation, generate API, HDF5, CLI."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch
from scipy.integrate import solve_ivp
from typer.testing import CliRunner

from selfsup.cli.pde_app import pde_app
from selfsup.errors import ConfigError, NonFiniteError, SelfsupError, ShapeError
from selfsup.pde import EQUATIONS, PDEData, generate, list_splits, read_h5, write_h5
from selfsup.pde.solver import etdrk4_coefficients


# ------------------------------------------------------------------------------------- Radau reference
def _rhs(equation: str, L: float, nx: int, nu: float | None, dealias: bool = False):
    """Pseudo-spectral right-hand side with numpy FFT derivatives: the public generator's collocation form
    ``-u u_x + ...``, or with ``dealias`` the 2/3-rule Galerkin form ``-P (u^2 / 2)_x`` with ``u = P u``."""
    k = 2 * np.pi * np.fft.rfftfreq(nx, d=L / nx)
    keep = np.arange(k.size) <= (nx - 1) // 3

    def d(v, order):
        sym = (1j * k) ** order
        if order % 2:
            sym[-1] = 0
        return np.fft.irfft(v * sym, n=nx)

    def rhs(_t, u):
        v = np.fft.rfft(u)
        if dealias:
            w = np.fft.irfft(v * keep, n=nx)
            advection = -0.5 * d(np.fft.rfft(w * w) * keep, 1)
        else:
            advection = -u * d(v, 1)
        if equation == "kdv":
            return advection - d(v, 3)
        if equation == "ks":
            return advection - d(v, 2) - d(v, 4)
        if equation == "burgers":
            return advection + nu * d(v, 2)
        return nu * d(v, 2)

    return rhs


def radau(data: PDEData, b: int, tmax: float | None = None, dealias: bool = False) -> np.ndarray:
    """Radau (rtol = atol = 1e-10) solution of trajectory ``b`` from its first sample, on its time grid."""
    t = data.t[b].numpy()
    t = t[t <= tmax + 1e-9] if tmax is not None else t
    nu = data.coeffs["nu"][b].item() if "nu" in data.coeffs else None
    rhs = _rhs(data.equation, data.L[b].item(), data.nx, nu, dealias)
    u0 = data.u[b, 0].numpy()
    sol = solve_ivp(rhs, (t[0], t[-1]), u0, method="Radau", t_eval=t, rtol=1e-10, atol=1e-10)
    assert sol.success, sol.message
    return sol.y.T


def rel_err(a, b) -> float:
    a, b = np.asarray(a), np.asarray(b)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


# small, resolved grids so that Radau is fast; keep = nt so the first sample is the initial condition
SMALL = {
    "kdv": dict(nx=64, L=32.0, T=20.0, nt=81, keep=81),
    "heat": dict(nx=64, nt=51, keep=51),
    "burgers": dict(nx=64, nt=51, keep=51, nu_range=(0.5, 1.0)),
}


@pytest.mark.parametrize("equation", ["kdv", "kdv-aliased", "heat", "burgers"])
def test_matches_radau(equation):
    """Same semi-discretisation as the reference, so this measures the time stepping (seed 4: u up to 2.4)."""
    aliased = equation == "kdv-aliased"  # no dealiasing: the public collocation form u u_x
    name = "kdv" if aliased else equation
    data = generate(name, 2, seed=4, threads=1, **SMALL[name], **({"dealias": False} if aliased else {}))
    for b in range(data.n):
        ref = radau(data, b, dealias=name in ("kdv", "ks") and not aliased)
        assert rel_err(data.u[b, : len(ref)], ref) <= 1e-4
        assert np.abs(ref).max() > 1.0  # a non-trivial solution


def test_dealiasing_matters_little_on_a_resolved_grid():
    data = generate("kdv", 2, seed=4, threads=1, **SMALL["kdv"])
    for b in range(data.n):
        assert rel_err(data.u[b], radau(data, b, dealias=False)) <= 1e-3


def test_kdv_default_domain_matches_radau_over_full_horizon():
    """Default KdV physics (L ~ 128, T ~ 100, dx = 0.5) with a coarser grid in x: nx = 128 over L = 64."""
    data = generate("kdv", 1, seed=3, threads=1, nx=128, L=64.0, T=100.0, nt=101, keep=101)
    assert rel_err(data.u[0], radau(data, 0, dealias=True)) <= 1e-4


def test_ks_default_matches_radau_up_to_t20():
    data = generate("ks", 1, seed=1, threads=1, nt=101, keep=101, T=20.0, jitter=0.0)
    assert data.nx == 256 and data.L[0] == 64.0
    assert rel_err(data.u[0], radau(data, 0, tmax=20.0, dealias=True)) <= 1e-4


def test_self_convergence_order():
    """Halving the step divides the error by ~16 for KdV (fourth order: full-circle complex coefficients;
    the half-circle real-part shortcut would break this), by >= 6 for stiff KS (mild order reduction)."""
    kw = dict(L=32.0, T=10.0, nt=11, keep=1, cfl=0.0, threads=1)
    for equation, nx, steps, ratio in (("kdv", 64, (8, 16, 32), 12), ("ks", 128, (4, 8, 16), 6)):
        u = {s: generate(equation, 4, seed=5, substeps=s, nx=nx, **kw).u for s in (*steps, 128)}
        err = [(u[s] - u[128]).norm().item() for s in steps]
        assert err[0] / err[1] > ratio and err[1] / err[2] > ratio, (equation, err)


def test_etdrk4_coefficients_full_circle_are_exact_for_imaginary_operators():
    """Contour values match the direct formulas where those are accurate (|z| >= 1) and the Taylor limits
    near 0, for the imaginary symbols of KdV (complex results) and the real ones of KS."""
    z = torch.cat([1j * torch.linspace(1, 40, 9, dtype=torch.float64), torch.linspace(-500, -1, 9) + 0j])
    h = torch.ones(1, dtype=torch.float64)
    _, _, q, f1, f2, f3 = etdrk4_coefficients(z[None, :], h)
    ez = torch.exp(z)
    direct = [
        (torch.exp(z / 2) - 1) / z,
        (-4 - z + ez * (4 - 3 * z + z**2)) / z**3,
        (2 + z + ez * (z - 2)) / z**3,
        (-4 - 3 * z - z**2 + ez * (4 - z)) / z**3,
    ]
    for got, want in zip((q, f1, f2, f3), direct, strict=True):
        torch.testing.assert_close(got[0], want, rtol=1e-12, atol=1e-14)
    assert f1[0, :9].imag.abs().min() > 1e-4  # KdV's coefficients are genuinely complex
    tiny = torch.tensor([[1e-9j, -1e-9 + 0j]], dtype=torch.complex128)
    _, _, q, f1, f2, f3 = etdrk4_coefficients(tiny, h)
    for got, limit in ((q, 0.5), (f1, 1 / 6), (f2, 1 / 6), (f3, 1 / 6)):
        torch.testing.assert_close(got, torch.full_like(got, limit), rtol=1e-9, atol=1e-12)


def test_kdv_conserves_mass_and_energy():
    """The dealiased Galerkin system conserves int u and int u^2 exactly; ETDRK4 drifts as O(h^4)."""
    drift = {}
    for cfl in (0.06, 0.03):
        data = generate("kdv", 4, seed=2, threads=1, nx=128, L=64.0, T=50.0, nt=51, keep=51, cfl=cfl)
        mass, energy = data.u.sum(-1), (data.u**2).sum(-1)
        assert (mass - mass[:, :1]).abs().max() < 1e-12 * data.nx
        drift[cfl] = ((energy - energy[:, :1]).abs().amax(1) / energy[:, 0]).max().item()
    assert drift[0.06] < 1e-5
    assert drift[0.06] / drift[0.03] > 8  # halving the step: time-discretisation drift, not a leak


# ------------------------------------------------------------------------------------------ generate API
@pytest.mark.parametrize("equation", sorted(EQUATIONS))
def test_generate_shapes_grids_and_coefficients(equation):
    kw = dict(nx=32, nt=30, keep=12) if equation != "ks" else dict(nx=32, nt=30, keep=12, L=16.0, T=5.0)
    if equation == "kdv":
        kw.update(L=16.0, T=5.0)
    data = generate(equation, 3, seed=1, threads=1, **kw)
    assert data.u.shape == (3, 12, 32) and data.u.dtype == torch.float64
    assert data.x.shape == (3, 32) and data.t.shape == (3, 12) and data.dx.shape == data.dt.shape == (3,)
    torch.testing.assert_close(data.dx, data.coeffs["L"] / 32)
    torch.testing.assert_close(data.dt, data.coeffs["T"] / 29)
    torch.testing.assert_close(data.t[:, -1], data.coeffs["T"])  # the last kept step is t = T
    torch.testing.assert_close(data.x[:, 1] - data.x[:, 0], data.dx)
    assert set(data.coeffs) == set(EQUATIONS[equation].coeffs)
    assert torch.isfinite(data.u).all()
    if equation in ("heat", "burgers"):
        nu = data.coeffs["nu"]
        assert ((nu >= 0.2) & (nu <= 1.0)).all()
    if equation == "heat":  # zero-mean initial data stay zero-mean
        assert data.u.mean(-1).abs().max() < 1e-12


def test_burgers_default_grid_is_resolved_and_conserves_the_mean():
    data = generate("burgers", 8, seed=0, nu_range=(0.2, 0.2))  # the smallest default viscosity
    assert data.u.mean(-1).abs().max() < 1e-9
    spectrum = torch.fft.rfft(data.u[:, 0]).abs()
    assert (spectrum[:, 100:].amax(1) / spectrum.amax(1)).max() < 1e-5


def test_jitter_of_L_and_T_and_initial_conditions():
    data = generate("kdv", 64, seed=0, threads=1, nx=32, nt=3, keep=2, T=1.0)
    L = data.coeffs["L"]
    assert 0.9 * 128 <= L.min() and L.max() <= 1.1 * 128 and L.std() > 3
    T = data.coeffs["T"]
    assert 0.9 <= T.min() and T.max() <= 1.1
    first = generate("kdv", 64, seed=0, threads=1, nx=32, nt=2, keep=2, T=1e-9)  # u(0) is the initial data
    spectrum = torch.fft.rfft(first.u[:, 0]).abs()
    assert spectrum[:, 3:].max() < 1e-12 and spectrum[:, 1:3].max() > 0.3  # only l in {1, 2}
    assert first.u[:, 0].abs().max() <= 5.0  # at most 10 waves of amplitude 0.5


def test_seed_batch_size_and_prefix():
    kw = dict(nx=32, nt=20, keep=5, L=16.0, T=4.0, threads=1)
    a = generate("kdv", 6, seed=4, batch_size=6, **kw)
    b = generate("kdv", 6, seed=4, batch_size=2, **kw)
    c = generate("kdv", 6, seed=5, batch_size=6, **kw)
    first = generate("kdv", 3, seed=4, **kw)
    torch.testing.assert_close(a.coeffs["L"], b.coeffs["L"], rtol=0, atol=0)
    torch.testing.assert_close(first.coeffs["T"], a.coeffs["T"][:3], rtol=0, atol=0)
    # groups of trajectories may take different substeps, within the solver tolerance
    assert (a.u - b.u).abs().max() < 1e-4 and (a.u[:3] - first.u).abs().max() < 1e-4
    assert (a.u - c.u).abs().max() > 0.1
    assert generate("kdv", 6, seed=4, dtype=torch.float32, **kw).u.dtype == torch.float32


def test_unknown_equation_and_parameter_suggest_names():
    with pytest.raises(ConfigError, match="Did you mean 'burgers'"):
        generate("burger", 2)
    with pytest.raises(ConfigError, match="Did you mean 'nx'"):
        generate("kdv", 2, nxx=64)
    with pytest.raises(ConfigError, match="keep"):
        generate("kdv", 2, nt=10, keep=20)
    with pytest.raises(ConfigError, match="positive integer"):
        generate("heat", 0)


def test_unstable_step_raises_instead_of_nan():
    with pytest.raises(SelfsupError, match="smaller step"):
        generate("kdv", 2, seed=0, threads=1, nx=64, L=32.0, T=400.0, nt=5, keep=2, substeps=1, cfl=0.0)
    with pytest.raises(SelfsupError, match="substeps"):
        generate("kdv", 2, seed=0, threads=1, nx=64, L=32.0, T=1e7, nt=3, keep=2)


def test_burgers_refuses_unresolvable_viscosity():
    with pytest.raises(SelfsupError, match="nu_range"):
        generate("burgers", 4, seed=0, nu_range=(0.01, 0.01))


# ---------------------------------------------------------------------------------------------- HDF5 io
@pytest.fixture(scope="module")
def small_burgers():
    return generate("burgers", 3, seed=0, nx=32, nt=20, keep=8)


def test_h5_round_trip_and_splits(tmp_path, small_burgers):
    path = tmp_path / "b.h5"
    write_h5(path, small_burgers, split="train")
    write_h5(path, small_burgers[:2], split="valid")
    assert sorted(list_splits(path)) == ["train", "valid"]
    back = read_h5(path)
    assert back.equation == "burgers" and back.params["seed"] == 0
    for name in ("u", "x", "t", "dx", "dt"):
        torch.testing.assert_close(getattr(back, name), getattr(small_burgers, name), rtol=0, atol=0)
    for k, v in small_burgers.coeffs.items():
        torch.testing.assert_close(back.coeffs[k], v, rtol=0, atol=0)
    assert read_h5(path, "valid").n == 2
    with h5py.File(path) as f:
        assert f.attrs["equation"] == "burgers"
        assert "created" in f["train"].attrs and "params" in f["train"].attrs
    with pytest.raises(SelfsupError, match="already has a split"):
        write_h5(path, small_burgers, split="train")
    with pytest.raises(SelfsupError, match="holds equation"):
        write_h5(path, generate("heat", 1, nx=32, nt=20, keep=8), split="test")
    with pytest.raises(SelfsupError, match="no split 'test'"):
        read_h5(path, "test")


@pytest.mark.parametrize("shared_grid", [True, False])
def test_reads_public_lpsda_layout(tmp_path, shared_grid):
    n, nt, nx = 4, 140, 64
    rng = np.random.default_rng(0)
    u = rng.standard_normal((n, nt, nx))
    x, t = np.linspace(0, 128, nx, endpoint=False), np.linspace(0, 100, 250)[-nt:]
    path = tmp_path / "KdV_train_4_easy.h5"
    with h5py.File(path, "w") as f:
        g = f.create_group("train")
        g.create_dataset(f"pde_{nt}-{nx}", data=u)
        g.create_dataset("x", data=x if shared_grid else np.tile(x, (n, 1)))
        g.create_dataset("t", data=t if shared_grid else np.tile(t, (n, 1)))
        g.create_dataset("dx", data=np.full(n, x[1]))
        g.create_dataset("dt", data=t[1] - t[0] if shared_grid else np.full(n, t[1] - t[0]))
    data = read_h5(path)
    assert data.equation == "kdv"  # guessed from the file name
    assert data.u.shape == (n, nt, nx) and data.x.shape == (n, nx) and data.t.shape == (n, nt)
    np.testing.assert_array_equal(data.u.numpy(), u)
    np.testing.assert_allclose(data.dt.numpy(), t[1] - t[0])


def test_missing_fields_and_nan_are_clear_errors(tmp_path):
    path = tmp_path / "broken.h5"
    with h5py.File(path, "w") as f:
        g = f.create_group("train")
        g.create_dataset("pde_5-8", data=np.zeros((2, 5, 8)))
        g.create_dataset("x", data=np.zeros(8))
        g.create_dataset("t", data=np.zeros(5))
        g.create_dataset("dx", data=np.ones(2))
    with pytest.raises(SelfsupError, match="missing the dataset 'dt'"):
        read_h5(path)
    with h5py.File(path, "a") as f:
        f["train"].create_dataset("dt", data=np.ones(2))
        f["train"]["pde_5-8"][0, 1, 2] = np.nan
    with pytest.raises(NonFiniteError, match="'u' holds 1 NaN"):
        read_h5(path)
    with h5py.File(path, "a") as f:
        del f["train"]["pde_5-8"]
    with pytest.raises(SelfsupError, match="pde_"):
        read_h5(path)
    with pytest.raises(SelfsupError, match="no such HDF5 file"):
        read_h5(tmp_path / "absent.h5")
    (tmp_path / "junk.h5").write_text("not hdf5")
    with pytest.raises(SelfsupError, match="cannot read"):
        read_h5(tmp_path / "junk.h5")


def test_pdedata_validates_shapes(small_burgers):
    with pytest.raises(ShapeError, match="x must have shape"):
        PDEData(
            "burgers",
            small_burgers.u,
            small_burgers.x[:, :3],
            small_burgers.t,
            small_burgers.dx,
            small_burgers.dt,
        )


# ------------------------------------------------------------------------------------------------- CLI
def test_cli_generate_append_and_info(tmp_path):
    runner = CliRunner()
    out = tmp_path / "heat.h5"
    args = ["generate", "heat", "--n", "3", "-o", str(out), "-p", "nx=32", "-p", "nt=20", "-p", "keep=8"]
    res = runner.invoke(pde_app, args)
    assert res.exit_code == 0, res.output
    res = runner.invoke(pde_app, [*args, "--split", "test", "--batch-size", "2"])
    assert res.exit_code == 0, res.output
    assert sorted(list_splits(out)) == ["test", "train"]
    # default seeds differ per split
    assert not torch.equal(read_h5(out, "train").u, read_h5(out, "test").u)
    res = runner.invoke(pde_app, ["info", str(out)])
    assert res.exit_code == 0 and "heat" in res.output and "3x8x32" in res.output and "nu" in res.output


def test_cli_errors_exit_2(tmp_path):
    runner = CliRunner()
    res = runner.invoke(pde_app, ["generate", "kdb", "--n", "2", "-o", str(tmp_path / "x.h5")])
    assert res.exit_code == 2 and "error:" in res.output and "kdv" in res.output
    res = runner.invoke(pde_app, ["info", str(tmp_path / "absent.h5")])
    assert res.exit_code == 2 and "no such HDF5 file" in res.output
    res = runner.invoke(pde_app, ["generate", "kdv", "-o", str(tmp_path / "x.h5"), "-p", "nx"])
    assert res.exit_code == 2 and "KEY=VALUE" in res.output
    for bad, hint in (
        (["--solver", "lpsd"], "small, lpsda"),
        (["--conditioning", "concat"], "shift, film"),
        (["--cond-dropout", "1.5"], "cond_dropout"),
        (["--diagnostics", "orcale"], "oracle, random"),
        (["--head", "lasso"], "ridge, sgd"),
        (["--solver-optimizer", "sgd"], "adam, lpsda"),
        (["--solver-lr", "-1"], "lr must be > 0"),
    ):
        res = runner.invoke(pde_app, ["evaluate", str(tmp_path), *bad])
        assert res.exit_code == 2 and "error:" in res.output and hint in res.output, (bad, res.output)
