"""SIGReg and LeJEPA against independent references: scipy's adaptive quadrature of the Epps-Pulley integral,
the analytic null expectation, rotation invariance, monotone growth away from the isotropic Gaussian."""

import numpy as np
import pytest
import torch
from scipy.integrate import quad

from selfsup.criteria import lejepa_loss, lejepa_terms, sigreg_loss
from selfsup.errors import SelfsupError


def _epps_pulley_scipy(x: np.ndarray, t_max: float = 3.0) -> float:
    """N * integral_{-t_max}^{t_max} |phi_N(t) - exp(-t^2/2)|^2 exp(-t^2/2) dt by scipy.integrate.quad."""

    def integrand(t):
        phi = np.exp(-t * t / 2)
        return ((np.cos(t * x).mean() - phi) ** 2 + np.sin(t * x).mean() ** 2) * phi

    return len(x) * quad(integrand, -t_max, t_max, epsabs=0, epsrel=1e-12, limit=500)[0]


@pytest.mark.parametrize("t_max", [3.0, 5.0])
def test_trapezoid_matches_scipy_quadrature(t_max):
    x = np.random.default_rng(0).standard_t(4, size=50)  # heavy tails: far from the null
    z = torch.tensor(x)[:, None]  # one dimension: the only unit directions are +-1, same statistic
    reference = _epps_pulley_scipy(x, t_max)
    fine = float(sigreg_loss(z, n_slices=1, t_max=t_max, n_points=1001))
    assert fine == pytest.approx(reference, rel=1e-6)
    default = float(sigreg_loss(z, n_slices=1, t_max=t_max))  # 17 nodes: 1.4e-4 relative at t_max 3
    assert default == pytest.approx(reference, rel=2e-3)


def test_isotropic_gaussian_is_near_the_null_expectation():
    # E |phi_N(t) - phi(t)|^2 = (1 - exp(-t^2)) / N for a N(0, 1) sample, so E[T] does not depend on N
    null = quad(lambda t: (1 - np.exp(-t * t)) * np.exp(-t * t / 2), -3, 3)[0]  # 1.0527
    g = torch.Generator().manual_seed(0)
    stats = [float(sigreg_loss(torch.randn(256, 16, generator=g), n_slices=256, seed=s)) for s in range(40)]
    assert np.mean(stats) == pytest.approx(null, rel=0.08)


def test_grows_monotonically_away_from_the_isotropic_gaussian():
    z = torch.randn(1024, 32, generator=torch.Generator().manual_seed(1))
    null = float(sigreg_loss(z, seed=0))
    anisotropic = []
    for s in (0.8, 0.6, 0.4, 0.2, 0.05):  # half of the dimensions shrink
        scaled = z.clone()
        scaled[:, :16] *= s
        anisotropic.append(float(sigreg_loss(scaled, seed=0)))
    assert null < anisotropic[0] and np.all(np.diff(anisotropic) > 0), (null, anisotropic)
    collapsed = [float(sigreg_loss((1 - a) * z + a * z.mean(0), seed=0)) for a in (0.2, 0.5, 0.8, 0.95)]
    assert null < collapsed[0] and np.all(np.diff(collapsed) > 0), (null, collapsed)


def test_rotation_invariance_in_expectation():
    g = torch.Generator().manual_seed(2)
    z = torch.randn(512, 16, generator=g)
    z[:, :8] *= 0.5
    q, _ = torch.linalg.qr(torch.randn(16, 16, generator=g))
    a = float(sigreg_loss(z, n_slices=4096, seed=3))
    b = float(sigreg_loss(z @ q, n_slices=4096, seed=3))
    assert a == pytest.approx(b, rel=0.04)  # sampling error of 4096 directions: about 1 %
    assert a > 5  # and the anisotropy is seen in both


@pytest.mark.parametrize(
    "z",
    [
        torch.zeros(64, 8),  # collapsed to the origin
        torch.full((64, 8), 3.0),  # to a point
        torch.randn(64, 1) * torch.ones(1, 8),  # to a line
    ],
    ids=["origin", "point", "line"],
)
def test_gradients_finite_for_collapsed_inputs(z):
    z = z.clone().requires_grad_()
    loss = lejepa_loss(torch.stack([z, z, z]), n_global=2)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(z.grad).all()


def test_directions_are_seeded_and_per_view():
    z = torch.randn(3, 64, 8)
    assert float(sigreg_loss(z, seed=5)) == float(sigreg_loss(z, seed=5))
    assert float(sigreg_loss(z, seed=5)) != float(sigreg_loss(z, seed=6))
    per_view = [float(sigreg_loss(z[v], seed=5)) for v in range(3)]
    assert float(sigreg_loss(z, seed=5)) == pytest.approx(np.mean(per_view), rel=1e-5)


def test_lejepa_terms_and_mix():
    g = torch.Generator().manual_seed(4)
    z = torch.randn(4, 32, 8, generator=g)
    prediction, sigreg = lejepa_terms(z, n_global=2, seed=1)
    center = z[:2].mean(0)
    assert float(prediction) == pytest.approx(float(((z - center) ** 2).mean()), rel=1e-6)
    assert float(lejepa_loss(z, 2, lambd=0.1, seed=1)) == pytest.approx(
        0.9 * float(prediction) + 0.1 * float(sigreg), rel=1e-6
    )


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda z: sigreg_loss(z, n_slices=0), "n_slices must be an integer >= 1"),
        (lambda z: sigreg_loss(z, n_slices=2.5), "n_slices must be an integer"),
        (lambda z: sigreg_loss(z, t_max=0), "t_max must be a finite number > 0"),
        (lambda z: sigreg_loss(z, t_max=-1.0), "t_max must be a finite number > 0"),
        (lambda z: sigreg_loss(z, n_points=1), "n_points must be an integer >= 2"),
        (lambda z: sigreg_loss(z[0, :1]), "needs a batch of at least 2"),
        (lambda z: sigreg_loss(z[:, :1]), "1 sample(s) per view"),
        (lambda z: sigreg_loss(z[0, 0]), "(batch, dim) or (views, batch, dim)"),
        (lambda z: lejepa_loss(z, n_global=1), "at least 2 global views"),
        (lambda z: lejepa_loss(z, n_global=4), "at least 2 global views among the 3 views"),
        (lambda z: lejepa_loss(z[0], n_global=2), ">= 2 views"),
        (lambda z: lejepa_loss(z, n_global=2, lambd=1.5), "must lie in [0, 1]"),
        (lambda z: lejepa_loss(z * float("nan"), n_global=2), "NaN or Inf"),
    ],
)
def test_bad_arguments_fail_clearly(call, message):
    with pytest.raises(SelfsupError) as err:
        call(torch.randn(3, 16, 4))
    assert message in str(err.value)
