"""selfsup.pde symmetries and residual: transformed trajectories stay solutions; group laws hold."""

from __future__ import annotations

import pytest
import torch

from selfsup.errors import ConfigError, NonFiniteError, ShapeError
from selfsup.pde import generate, get_symmetry, residual, symmetries
from selfsup.pde.fourier import fourier_shift

# resolved grids with fine time sampling, so the residual floor (time differences, spectral tail) is small
FINE = {
    "kdv": dict(nx=128, L=32.0, T=5.0, nt=201, keep=200),
    "ks": dict(nx=128, L=32.0, T=5.0, nt=201, keep=200),
    "heat": dict(nx=64, T=1.0, nt=201, keep=200),
    "burgers": dict(nx=256, T=1.0, nt=201, keep=200),
}
EXPECTED = {
    "kdv": {"space", "time", "boost", "scale"},
    "ks": {"space", "time", "boost"},
    "heat": {"space", "time", "add", "amplitude", "scale"},
    "burgers": {"space", "time", "boost", "scale"},
}
ABS_BOUND = 1e-4  # every original and transformed residual stays below this
# "within 2x" is checked as r_new <= 2 r_old + FLOOR: the floor covers round-off and the time-difference
# error, which a boost raises a little by adding c k to the time frequency of mode k
FLOOR = 1e-8


@pytest.fixture(scope="module", params=sorted(FINE))
def fine(request):
    return generate(request.param, 4, seed=0, threads=1, **FINE[request.param])


def res(d):
    return residual(d.equation, d.u, d.dt, d.dx, nu=d.coeffs.get("nu"))


def close(a, b, atol=1e-10):
    return (a.u.shape == b.u.shape) and (a.u - b.u).abs().max().item() <= atol


def test_generated_data_are_solutions_and_the_residual_detects_non_solutions(fine):
    r = res(fine)
    assert r.shape == (4,) and r.max() < ABS_BOUND
    noise = torch.randn(fine.u.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    noisy = fine.u + 1e-2 * noise
    assert (residual(fine.equation, noisy, fine.dt, fine.dx, nu=fine.coeffs.get("nu")) > 0.1).all()


def test_each_equation_has_its_symmetries():
    for equation, names in EXPECTED.items():
        assert set(symmetries(equation)) == names
    strengths = {k: s.strength for k, s in symmetries("kdv").items()}
    assert strengths == {"time": 1, "space": 1.0, "boost": 0.4, "scale": 0.05}  # LPSDA's U(-0.05, 0.05)
    assert {k: s.strength for k, s in symmetries("ks").items()} == {"time": 1, "space": 1.0, "boost": 0.4}


def test_symmetries_map_solutions_to_solutions(fine, strength_factor=2.0):
    """Parameters drawn at twice the public strengths (and 3-step time shifts)."""
    r0 = res(fine)
    gen = torch.Generator().manual_seed(1)
    for name, sym in symmetries(fine.equation).items():
        if name == "time":
            sym = sym.with_margin(3)
            params = sym.sample(fine.n, strength=3, generator=gen)
        else:
            params = sym.sample(fine.n, strength=sym.strength * strength_factor, generator=gen)
        out = sym.apply(fine, params)
        r = res(out)
        assert (r <= 2 * r0 + FLOOR).all() and r.max() < ABS_BOUND, (name, r0, r)
        assert out.u.dtype == fine.u.dtype and torch.isfinite(out.u).all()


def test_boost_sign_is_checked_by_the_residual(fine):
    """u(t, x - c t) + c solves u_t + u u_x + ... = 0; the opposite shift does not (heat has no boost)."""
    assert ("boost" in symmetries(fine.equation)) == (fine.equation != "heat")
    if fine.equation == "heat":
        return
    c = 0.4
    wrong = fourier_shift(fine.u, -c * fine.t, fine.L) + c
    assert (residual(fine.equation, wrong, fine.dt, fine.dx, nu=fine.coeffs.get("nu")) > 0.1).all()
    assert (res(symmetries(fine.equation)["boost"].apply(fine, c)) < ABS_BOUND).all()


def test_parameter_zero_is_the_identity(fine):
    for name, sym in symmetries(fine.equation).items():
        sym = sym.with_margin(0) if name == "time" else sym
        out = sym.apply(fine, sym.identity(fine.n))
        assert close(out, fine, atol=1e-12), name
        for grid in ("x", "t", "dx", "dt"):
            torch.testing.assert_close(getattr(out, grid), getattr(fine, grid))


def test_composition_adds_parameters(fine):
    gen = torch.Generator().manual_seed(2)
    for name, sym in symmetries(fine.equation).items():
        if name == "time":
            continue
        a, b = sym.sample(fine.n, generator=gen), sym.sample(fine.n, generator=gen)
        two = sym.apply(sym.apply(fine, a), b)
        one = sym.apply(fine, a + b)
        assert close(two, one, atol=1e-10), name
        torch.testing.assert_close(two.dx, one.dx)
        torch.testing.assert_close(two.dt, one.dt)
        torch.testing.assert_close(two.t, one.t)


def test_time_translation_slides_the_window(fine):
    time = symmetries(fine.equation)["time"]
    assert time.margin == 1
    k = torch.tensor([0.0, 1.0, 0.0, 1.0])
    out = time.apply(fine, k)
    assert out.nt == fine.nt - 1
    torch.testing.assert_close(out.u[1], fine.u[1, 1:])
    torch.testing.assert_close(out.u[0], fine.u[0, :-1])
    torch.testing.assert_close(out.t, fine.t[:, :-1])
    # time[m1](a) o time[m2](b) == time[m1 + m2](a + b)
    a, b = torch.tensor([1.0, 0.0, 1.0, 1.0]), torch.tensor([2.0, 2.0, 0.0, 1.0])
    two = time.with_margin(2).apply(time.with_margin(1).apply(fine, a), b)
    assert close(two, time.with_margin(3).apply(fine, a + b), atol=0)
    with pytest.raises(ConfigError, match="integer steps"):
        time.apply(fine, torch.tensor([0.5, 0.0, 0.0, 0.0]))
    with pytest.raises(ConfigError, match="margin"):
        time.sample(4, strength=3)


def test_space_translation_by_a_whole_grid_step_is_a_roll(fine):
    space = symmetries(fine.equation)["space"]
    out = space.apply(fine, torch.full((fine.n,), 3.0 / fine.nx))
    torch.testing.assert_close(out.u, torch.roll(fine.u, 3, dims=-1), rtol=0, atol=1e-12)


def test_kdv_scaling_changes_grids_not_samples():
    d = generate("kdv", 2, seed=0, threads=1, **FINE["kdv"])
    eps = torch.tensor([0.1, -0.05], dtype=torch.float64)
    out = symmetries("kdv")["scale"].apply(d, eps)
    torch.testing.assert_close(out.dx, d.dx * eps.exp())
    torch.testing.assert_close(out.dt, d.dt * (3 * eps).exp())
    torch.testing.assert_close(out.u, d.u * (-2 * eps).exp()[:, None, None])
    torch.testing.assert_close(out.coeffs["L"], d.coeffs["L"] * eps.exp())
    torch.testing.assert_close(out.coeffs["T"], d.coeffs["T"] * (3 * eps).exp())
    for k in ("u0_k1", "u0_k2"):  # the initial condition scales with u
        torch.testing.assert_close(out.coeffs[k], d.coeffs[k] * (-2 * eps).exp())


def test_sampler_ranges_and_determinism():
    sym = symmetries("kdv")
    boost = sym["boost"].sample(1000, generator=torch.Generator().manual_seed(0))
    assert boost.shape == (1000,) and boost.abs().max() <= 0.4 and boost.min() < -0.35 and boost.max() > 0.35
    again = sym["boost"].sample(1000, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(boost, again, rtol=0, atol=0)
    steps = sym["time"].sample(200, generator=torch.Generator().manual_seed(0))
    assert set(steps.tolist()) == {0.0, 1.0}
    assert sym["scale"].sample(100, strength=0.0).abs().max() == 0


def test_symmetry_errors(fine):
    sym = symmetries(fine.equation)["space"]
    with pytest.raises(ShapeError, match="params must have shape"):
        sym.apply(fine, torch.zeros(fine.n + 1))
    with pytest.raises(NonFiniteError):
        sym.apply(fine, torch.full((fine.n,), float("nan")))
    with pytest.raises(ConfigError, match="Did you mean 'boost'"):
        get_symmetry("kdv", "bost")
    with pytest.raises(ConfigError, match="strength"):
        sym.sample(3, strength=-1.0)


def test_residual_arguments():
    d = generate("burgers", 2, seed=0, nx=64, nt=20, keep=20, nu_range=(0.5, 1.0))
    with pytest.raises(ConfigError, match="nu"):
        residual("burgers", d.u, d.dt, d.dx)
    with pytest.raises(ConfigError, match="order"):
        residual("burgers", d.u, d.dt, d.dx, nu=d.coeffs["nu"], order=5)
    with pytest.raises(ShapeError):
        residual("burgers", d.u[0], d.dt, d.dx, nu=d.coeffs["nu"])
    with pytest.raises(ShapeError, match="time steps"):
        residual("burgers", d.u[:, :5], d.dt, d.dx, nu=d.coeffs["nu"])
    with pytest.raises(ConfigError, match="Did you mean"):
        residual("burger", d.u, d.dt, d.dx)
    # scalar dt, dx and nu broadcast
    r = residual("heat", torch.zeros(1, 10, 8), 0.1, 0.5, nu=1.0)
    assert r.shape == (1,) and r.item() == 0.0
