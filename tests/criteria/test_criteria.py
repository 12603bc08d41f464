"""Criteria against plain float64 references written from the papers' formulas, plus invariants.

The references below use Python loops over samples and dimensions (small sizes) and share no code
with selfsup.criteria; they run in float64 with autograd so that gradients are checked too.
"""

from __future__ import annotations

import math
from functools import partial

import pytest
import torch
import torch.nn.functional as F

from selfsup.criteria import (
    barlow_twins_loss,
    byol_loss,
    dcl_loss,
    diet_loss,
    duality_criteria,
    gather,
    simclr_loss,
    spectral_contrastive_loss,
    vicreg_ctr_loss,
    vicreg_exp_loss,
    vicreg_loss,
)
from selfsup.errors import ConfigError, NonFiniteError, SelfsupError, ShapeError

N, K = 6, 4
RTOL = 1e-5


# --------------------------------------------------------------------------------------------------
# plain float64 references
# --------------------------------------------------------------------------------------------------


def _dot(a, b):
    return sum(a[k] * b[k] for k in range(len(a)))


def _cos(a, b):
    return _dot(a, b) / torch.sqrt(_dot(a, a) * _dot(b, b))


def ref_simclr(z1, z2, tau, variant="standard"):
    rows = [z1[i] for i in range(len(z1))] + [z2[i] for i in range(len(z2))]
    n2, n = len(rows), len(z1)
    total = 0.0
    for i in range(n2):
        p = (i + n) % n2
        denom = 0.0
        for j in range(n2):
            if j == i:
                continue
            s = _cos(rows[i], rows[j])
            if j != p and variant == "abs":
                s = s.abs()
            if j != p and variant == "sq":
                s = s * s
            denom = denom + torch.exp(s / tau)
        total = total - _cos(rows[i], rows[p]) / tau + torch.log(denom)
    return total / n2


def ref_dcl(z1, z2, tau):
    rows = [z1[i] for i in range(len(z1))] + [z2[i] for i in range(len(z2))]
    n2, n = len(rows), len(z1)
    total = 0.0
    for i in range(n2):
        p = (i + n) % n2
        denom = sum(torch.exp(_cos(rows[i], rows[j]) / tau) for j in range(n2) if j not in (i, p))
        total = total - _cos(rows[i], rows[p]) / tau + torch.log(denom)
    return total / n2


def ref_spectral(z1, z2):
    n = len(z1)
    pos = sum(_dot(z1[i], z2[i]) for i in range(n)) / n
    neg = sum(_dot(z1[i], z2[j]) ** 2 for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    return -2 * pos + neg


def _column_stats(z):
    """Per column: mean and unbiased variance."""
    n, k = z.shape
    means = [sum(z[i, j] for i in range(n)) / n for j in range(k)]
    var = [sum((z[i, j] - means[j]) ** 2 for i in range(n)) / (n - 1) for j in range(k)]
    return means, var


def _covariance(z):
    n, k = z.shape
    means, _ = _column_stats(z)
    return [
        [sum((z[s, a] - means[a]) * (z[s, b] - means[b]) for s in range(n)) / (n - 1) for b in range(k)]
        for a in range(k)
    ]


def _vic_var(z, eps):
    _, var = _column_stats(z)
    return sum(torch.relu(1 - torch.sqrt(v + eps)) for v in var) / len(var)


def _mse(z1, z2):
    n, k = z1.shape
    return sum((z1[i, j] - z2[i, j]) ** 2 for i in range(n) for j in range(k)) / (n * k)


def ref_vicreg(z1, z2, sim=25.0, std=25.0, cov=1.0, eps=1e-4):
    def c(z):
        cv = _covariance(z)
        k = len(cv)
        return sum(cv[a][b] ** 2 for a in range(k) for b in range(k) if a != b) / k

    v = (_vic_var(z1, eps) + _vic_var(z2, eps)) / 2
    return sim * _mse(z1, z2) + std * v + cov * (c(z1) + c(z2))


def _lse_offdiag(m, tau):
    k = len(m)
    return sum(torch.log(sum(torch.exp(m[i][j] / tau) for j in range(k) if j != i)) for i in range(k)) / k


def ref_vicreg_exp(z1, z2, sim=25.0, std=25.0, cov=1.0, eps=1e-4, tau=0.1):
    v = (_vic_var(z1, eps) + _vic_var(z2, eps)) / 2
    c = _lse_offdiag(_covariance(z1), tau) + _lse_offdiag(_covariance(z2), tau)
    return sim * _mse(z1, z2) + std * v + cov * c


def ref_vicreg_ctr(z1, z2, sim=25.0, std=25.0, cov=1.0, eps=1e-4, tau=0.1):
    # the variance and covariance terms of VICReg-exp applied to the transposed matrices
    zt1, zt2 = z1.T, z2.T
    v = (_vic_var(zt1, eps) + _vic_var(zt2, eps)) / 2
    c = _lse_offdiag(_covariance(zt1), tau) + _lse_offdiag(_covariance(zt2), tau)
    return sim * _mse(z1, z2) + std * v + cov * c


def ref_barlow(z1, z2, lambd=0.0051):
    n, k = z1.shape

    def bn(z):
        out = torch.empty_like(z)
        for j in range(k):
            m = sum(z[i, j] for i in range(n)) / n
            v = sum((z[i, j] - m) ** 2 for i in range(n)) / n  # biased, as BatchNorm in training
            for i in range(n):
                out[i, j] = (z[i, j] - m) / torch.sqrt(v + 1e-5)
        return out

    a, b = bn(z1), bn(z2)
    c = [[sum(a[s, i] * b[s, j] for s in range(n)) / n for j in range(k)] for i in range(k)]
    on = sum((1 - c[i][i]) ** 2 for i in range(k))
    off = sum(c[i][j] ** 2 for i in range(k) for j in range(k) if i != j)
    return on + lambd * off


def ref_byol(p, z):
    z = z.detach()
    return sum(2 - 2 * _cos(p[i], z[i]) for i in range(len(p))) / len(p)


def ref_diet(logits, index, s):
    b, c = logits.shape
    total = 0.0
    for i in range(b):
        lse = torch.log(sum(torch.exp(logits[i, j]) for j in range(c)))
        for j in range(c):
            q = (1 - s) * (1.0 if j == int(index[i]) else 0.0) + s / c
            total = total - q * (logits[i, j] - lse)
    return total / b


# --------------------------------------------------------------------------------------------------
# value and gradient against the references
# --------------------------------------------------------------------------------------------------

PAIR_CASES = [
    ("simclr", lambda a, b: simclr_loss(a, b, 0.1), lambda a, b: ref_simclr(a, b, 0.1)),
    ("simclr_t05", lambda a, b: simclr_loss(a, b, 0.5), lambda a, b: ref_simclr(a, b, 0.5)),
    ("simclr_abs", lambda a, b: simclr_loss(a, b, 0.2, "abs"), lambda a, b: ref_simclr(a, b, 0.2, "abs")),
    ("simclr_sq", lambda a, b: simclr_loss(a, b, 0.2, "sq"), lambda a, b: ref_simclr(a, b, 0.2, "sq")),
    ("dcl", lambda a, b: dcl_loss(a, b, 0.1), lambda a, b: ref_dcl(a, b, 0.1)),
    ("spectral", spectral_contrastive_loss, ref_spectral),
    ("vicreg", vicreg_loss, ref_vicreg),
    (
        "vicreg_custom",
        lambda a, b: vicreg_loss(a, b, 10.0, 5.0, 2.0, 1e-3),
        lambda a, b: ref_vicreg(a, b, 10.0, 5.0, 2.0, 1e-3),
    ),
    ("vicreg_exp", vicreg_exp_loss, ref_vicreg_exp),
    (
        "vicreg_exp_tau",
        lambda a, b: vicreg_exp_loss(a, b, cov_coeff=3.0, tau=0.5),
        lambda a, b: ref_vicreg_exp(a, b, cov=3.0, tau=0.5),
    ),
    ("vicreg_ctr", vicreg_ctr_loss, ref_vicreg_ctr),
    (
        "vicreg_ctr_tau",
        lambda a, b: vicreg_ctr_loss(a, b, std_coeff=2.0, tau=0.7),
        lambda a, b: ref_vicreg_ctr(a, b, std=2.0, tau=0.7),
    ),
    ("barlow", barlow_twins_loss, ref_barlow),
    ("barlow_lambd", lambda a, b: barlow_twins_loss(a, b, 0.3), lambda a, b: ref_barlow(a, b, 0.3)),
    ("byol", byol_loss, ref_byol),
]


def _views(seed=0, n=N, k=K, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    z1 = torch.randn(n, k, generator=g, dtype=torch.float64) * scale
    z2 = z1 + 0.5 * torch.randn(n, k, generator=g, dtype=torch.float64) * scale
    return z1, z2


@pytest.mark.parametrize("name,lib,ref", PAIR_CASES, ids=[c[0] for c in PAIR_CASES])
def test_value_and_gradient_match_float64_reference(name, lib, ref):
    z1, z2 = _views(seed=sum(map(ord, name)))
    a = z1.float().requires_grad_()
    b = z2.float().requires_grad_()
    out = lib(a, b)
    assert out.dtype == torch.float32 and out.ndim == 0
    out.backward()

    r1, r2 = z1.clone().requires_grad_(), z2.clone().requires_grad_()
    expected = ref(r1, r2)
    expected.backward()
    torch.testing.assert_close(out.double(), expected.detach(), rtol=RTOL, atol=1e-6)
    torch.testing.assert_close(a.grad.double(), r1.grad, rtol=1e-4, atol=1e-5)
    if name == "byol":
        assert b.grad is None  # stop-gradient on the target
    else:
        torch.testing.assert_close(b.grad.double(), r2.grad, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    "n,k,dominant",
    [(64, 256, 1.0), (512, 32, 1.0), (128, 1024, 1000.0)],
    ids=["N<K (Gram path)", "N>K (covariance path)", "N<K, one column 1000x the others"],
)
def test_vicreg_covariance_term_on_a_decorrelated_batch_matches_float64(n, k, dominant):
    # the off-diagonal sum is ||Z^T Z||_F^2 - sum diag^2 (float32): check it where it is smallest against the
    # diagonal, on nearly decorrelated embeddings (orthonormal columns + 1 % noise), value and gradient
    g = torch.Generator().manual_seed(n)
    q, _ = torch.linalg.qr(torch.randn(n, min(n, k), generator=g, dtype=torch.float64))
    z = torch.cat([q] * (k // q.shape[1]), 1)[:, :k] if k > n else q
    z1 = z * n**0.5 + 0.01 * torch.randn(n, k, generator=g, dtype=torch.float64)
    z1[:, 0] *= dominant  # the Gram form's difference of sums cancels when one column dominates
    z2 = z1 + 0.01 * torch.randn(n, k, generator=g, dtype=torch.float64)
    a, b = z1.float().requires_grad_(), z2.float().requires_grad_()
    out = vicreg_loss(a, b, sim_coeff=0.0, std_coeff=0.0, cov_coeff=1.0)
    out.backward()
    x, y = z1.clone().requires_grad_(), z2.clone().requires_grad_()
    off = ~torch.eye(k, dtype=torch.bool)
    expected = sum(torch.cov(v.T)[off].pow(2).sum() / k for v in (x, y))
    expected.backward()
    torch.testing.assert_close(out.double(), expected.detach(), rtol=1e-4, atol=1e-7)
    torch.testing.assert_close(a.grad.double(), x.grad, rtol=1e-3, atol=1e-4 * float(x.grad.abs().max()))


def test_vicreg_matches_official_code_transcription():
    # facebookresearch/vicreg main_vicreg.py, VICReg.forward after the projector, single process
    z1, z2 = _views(seed=3, n=16, k=8)
    x, y = z1.clone(), z2.clone()
    repr_loss = F.mse_loss(x, y)
    x = x - x.mean(dim=0)
    y = y - y.mean(dim=0)
    std_x = torch.sqrt(x.var(dim=0) + 0.0001)
    std_y = torch.sqrt(y.var(dim=0) + 0.0001)
    std_loss = torch.mean(F.relu(1 - std_x)) / 2 + torch.mean(F.relu(1 - std_y)) / 2
    cov_x = (x.T @ x) / (16 - 1)
    cov_y = (y.T @ y) / (16 - 1)
    off = ~torch.eye(8, dtype=torch.bool)
    cov_loss = cov_x[off].pow(2).sum() / 8 + cov_y[off].pow(2).sum() / 8
    expected = 25.0 * repr_loss + 25.0 * std_loss + 1.0 * cov_loss
    got = vicreg_loss(z1.float(), z2.float())
    assert got.item() == pytest.approx(expected.item(), rel=RTOL)


def test_barlow_batchnorm_matches_nn_batchnorm():
    z1, z2 = _views(seed=4, n=10, k=5)
    bn = torch.nn.BatchNorm1d(5, affine=False, dtype=torch.float64).train()
    c = bn(z1).T @ bn(z2) / 10
    off = ~torch.eye(5, dtype=torch.bool)
    expected = (torch.diagonal(c) - 1).pow(2).sum() + 0.0051 * c[off].pow(2).sum()
    assert barlow_twins_loss(z1.float(), z2.float()).item() == pytest.approx(expected.item(), rel=RTOL)


def test_diet_matches_reference_and_gradient():
    g = torch.Generator().manual_seed(5)
    logits64 = torch.randn(5, 9, generator=g, dtype=torch.float64)
    index = torch.tensor([0, 8, 3, 3, 7])
    for s in (0.0, 0.8, 0.3):
        a = logits64.float().requires_grad_()
        out = diet_loss(a, index, label_smoothing=s)
        out.backward()
        r = logits64.clone().requires_grad_()
        expected = ref_diet(r, index, s)
        expected.backward()
        assert out.dtype == torch.float32
        assert out.item() == pytest.approx(expected.item(), rel=RTOL)
        torch.testing.assert_close(a.grad.double(), r.grad, rtol=1e-4, atol=1e-6)
    assert diet_loss(logits64.float(), index.int()).item() == pytest.approx(
        diet_loss(logits64.float(), index).item()
    )


def test_simclr_is_symmetric_and_standard_variant_is_default():
    z1, z2 = _views(seed=6)
    a, b = z1.float(), z2.float()
    assert simclr_loss(a, b).item() == pytest.approx(simclr_loss(b, a).item(), rel=RTOL)
    assert simclr_loss(a, b).item() == simclr_loss(a, b, 0.1, "standard").item()
    # SimCLR is invariant to the scale of each embedding; the spectral loss is not
    assert simclr_loss(3 * a, b).item() == pytest.approx(simclr_loss(a, b).item(), rel=RTOL)
    assert spectral_contrastive_loss(a, b).item() == pytest.approx(
        spectral_contrastive_loss(b, a).item(), rel=RTOL
    )


# --------------------------------------------------------------------------------------------------
# invariants
# --------------------------------------------------------------------------------------------------


def test_duality_identity():
    g = torch.Generator().manual_seed(7)
    for m, n in ((5, 7), (8, 3), (4, 4)):
        k = torch.randn(m, n, generator=g, dtype=torch.float64)
        l_c, l_nc = duality_criteria(k)
        rows4 = sum(k[j].pow(2).sum() ** 2 for j in range(m))
        cols4 = sum(k[:, i].pow(2).sum() ** 2 for i in range(n))
        assert (l_nc + rows4).item() == pytest.approx((l_c + cols4).item(), rel=1e-12)
        # and the two criteria themselves, by plain loops
        plain_c = sum(_dot(k[:, i], k[:, j]) ** 2 for i in range(n) for j in range(n) if i != j)
        plain_nc = sum(_dot(k[a], k[b]) ** 2 for a in range(m) for b in range(m) if a != b)
        assert l_c.item() == pytest.approx(plain_c.item(), rel=1e-12)
        assert l_nc.item() == pytest.approx(plain_nc.item(), rel=1e-12)


def test_vicreg_invariance_term_is_zero_on_identical_views():
    z, _ = _views(seed=8)
    z = z.float()
    assert vicreg_loss(z, z, sim_coeff=1.0, std_coeff=0.0, cov_coeff=0.0).item() == 0.0
    assert vicreg_loss(z, z + 1.0, sim_coeff=1.0, std_coeff=0.0, cov_coeff=0.0).item() == pytest.approx(1.0)


def _decorrelated(n=12, k=4, seed=9):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(n, k, generator=g, dtype=torch.float64)
    q, _ = torch.linalg.qr(a - a.mean(dim=0))  # orthonormal, centred columns
    return q * math.sqrt(n)  # biased variance 1 per column, zero cross-correlation


def test_barlow_twins_is_zero_on_decorrelated_standardised_identical_views():
    z = _decorrelated()
    # any per-column affine map is undone by the batch norm
    shifted = z * torch.tensor([1.0, 3.0, 0.5, 2.0], dtype=torch.float64) + 7.0
    for view in (z, shifted):
        loss = barlow_twins_loss(view.float(), view.float())
        # exactly K * (1 - 1/(1 + 1e-5))**2 ~ 4e-10 from the batch norm eps, up to float32 rounding
        assert abs(loss.item()) < 1e-5
    # and far from zero when the views disagree
    assert barlow_twins_loss(z.float(), z.flip(0).float()).item() > 0.1


def test_vicreg_collapsed_batch_gets_full_variance_penalty():
    row = torch.randn(1, K)
    collapsed = row.repeat(N, 1)
    expected = 25.0 * (1.0 - math.sqrt(1e-4))  # relu(1 - sqrt(0 + eps)), averaged over both views
    assert vicreg_loss(collapsed, collapsed).item() == pytest.approx(expected, rel=RTOL)
    # the variance term is the mean of the two views' hinges, not their sum
    assert vicreg_loss(collapsed, collapsed, eps=1e-2).item() == pytest.approx(25.0 * 0.9, rel=RTOL)
    # healthy spread (std well above 1) has no variance penalty
    wide = torch.randn(64, K) * 10
    assert vicreg_loss(wide, wide, sim_coeff=0.0, cov_coeff=0.0).item() == 0.0


#: The two-view criteria, by name, for the parametrised tests.
CRITERIA = {
    "simclr": simclr_loss,
    "simclr_abs": partial(simclr_loss, variant="abs"),
    "simclr_sq": partial(simclr_loss, variant="sq"),
    "dcl": dcl_loss,
    "spectral_contrastive": spectral_contrastive_loss,
    "vicreg": vicreg_loss,
    "vicreg_exp": vicreg_exp_loss,
    "vicreg_ctr": vicreg_ctr_loss,
    "barlow_twins": barlow_twins_loss,
}
TWO_VIEW = list(CRITERIA)


@pytest.mark.parametrize("name", TWO_VIEW)
@pytest.mark.parametrize("kind", ["repeated_row", "zeros"])
def test_gradients_are_finite_on_collapsed_input(name, kind):
    z = torch.randn(1, K).repeat(N, 1) if kind == "repeated_row" else torch.zeros(N, K)
    a = z.clone().requires_grad_()
    b = z.clone().requires_grad_()
    loss = CRITERIA[name](a, b)
    loss.backward()
    assert torch.isfinite(loss)
    assert torch.isfinite(a.grad).all()
    if b.grad is not None:
        assert torch.isfinite(b.grad).all()


@pytest.mark.parametrize("name", TWO_VIEW)
def test_half_precision_and_autocast_compute_in_float32(name):
    z1, z2 = _views(seed=10)
    h1, h2 = z1.half(), z2.half()
    f = CRITERIA[name]
    reference = f(h1.float(), h2.float())
    for dtype in (torch.float16, torch.bfloat16):
        out = f(z1.to(dtype), z2.to(dtype)) if dtype == torch.bfloat16 else f(h1, h2)
        assert out.dtype == torch.float32
        if dtype == torch.float16:
            assert out.item() == reference.item()  # same float32 maths on exactly representable inputs
    leaf = h1.clone().requires_grad_()
    f(leaf, h2).backward()
    assert leaf.grad.dtype == torch.float16 and torch.isfinite(leaf.grad).all()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = f(h1.float(), h2.float())
    assert out.dtype == torch.float32
    assert out.item() == pytest.approx(reference.item(), rel=1e-6)


def test_diet_half_precision_returns_float32():
    logits = torch.randn(4, 10).half()
    out = diet_loss(logits, torch.arange(4))
    assert out.dtype == torch.float32
    assert out.item() == pytest.approx(diet_loss(logits.float(), torch.arange(4)).item(), rel=1e-6)


# --------------------------------------------------------------------------------------------------
# errors
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", TWO_VIEW)
def test_bad_shapes_raise_shape_error(name):
    f = CRITERIA[name]
    good = torch.randn(N, K)
    with pytest.raises(ShapeError, match=r"2-D.*\(6,\)"):
        f(torch.randn(N), good)
    with pytest.raises(ShapeError, match=r"2-D.*\(6, 4, 2\)"):
        f(good, torch.randn(N, K, 2))
    with pytest.raises(ShapeError, match=r"same shape.*\(6, 4\).*\(6, 5\)"):
        f(good, torch.randn(N, K + 1))
    with pytest.raises(ShapeError, match=r"same shape.*\(6, 4\).*\(5, 4\)"):
        f(good, torch.randn(N - 1, K))
    with pytest.raises(SelfsupError, match="floating-point"):
        f(torch.ones(N, K, dtype=torch.long), good)
    with pytest.raises(SelfsupError, match="torch.Tensor"):
        f(good.numpy(), good)
    if name not in ("byol", "simsiam"):
        with pytest.raises(ShapeError, match=r"at least 2.*\(1, 4\)"):
            f(good[:1], good[:1])
    else:
        assert torch.isfinite(f(good[:1], good[:1]))


def test_error_messages_name_the_argument():
    good = torch.randn(N, K)
    with pytest.raises(ShapeError, match="^z2 "):
        simclr_loss(good, torch.randn(N))
    with pytest.raises(ShapeError, match="^p "):
        byol_loss(torch.randn(N), good)


@pytest.mark.parametrize("bad", [0.0, -0.5, float("nan"), float("inf"), "0.1", None, True])
def test_bad_temperature_raises(bad):
    z1, z2 = torch.randn(N, K), torch.randn(N, K)
    with pytest.raises(SelfsupError, match="temperature"):
        simclr_loss(z1, z2, temperature=bad)
    with pytest.raises(SelfsupError, match="temperature"):
        dcl_loss(z1, z2, temperature=bad)
    with pytest.raises(SelfsupError, match="tau"):
        vicreg_exp_loss(z1, z2, tau=bad)
    with pytest.raises(SelfsupError, match="tau"):
        vicreg_ctr_loss(z1, z2, tau=bad)


def test_bad_hyper_parameters_raise():
    z1, z2 = torch.randn(N, K), torch.randn(N, K)
    with pytest.raises(ConfigError, match="Did you mean 'sq'"):
        simclr_loss(z1, z2, variant="sqr")
    with pytest.raises(SelfsupError, match="sim_coeff"):
        vicreg_loss(z1, z2, sim_coeff=-1.0)
    with pytest.raises(SelfsupError, match="eps"):
        vicreg_loss(z1, z2, eps=0.0)
    with pytest.raises(SelfsupError, match="lambd"):
        barlow_twins_loss(z1, z2, lambd=-0.1)
    with pytest.raises(ShapeError, match="at least 2 dimensions"):
        vicreg_exp_loss(z1[:, :1], z2[:, :1])
    with pytest.raises(ShapeError, match="at least 2 dimensions"):
        vicreg_ctr_loss(z1[:, :1], z2[:, :1])
    # zero weights are allowed
    assert vicreg_loss(z1, z2, 0.0, 0.0, 0.0).item() == 0.0


def test_diet_validation():
    logits = torch.randn(4, 10)
    with pytest.raises(SelfsupError, match=r"in \[0, 10\).*\[0, 12\]"):
        diet_loss(logits, torch.tensor([0, 1, 2, 12]))
    with pytest.raises(SelfsupError, match=r"\[-1, 2\]"):
        diet_loss(logits, torch.tensor([0, 1, 2, -1]))
    with pytest.raises(SelfsupError, match="integer"):
        diet_loss(logits, torch.tensor([0.0, 1.0, 2.0, 3.0]))
    with pytest.raises(SelfsupError, match="integer"):
        diet_loss(logits, torch.ones(4, dtype=torch.bool))
    with pytest.raises(ShapeError, match=r"one entry per row.*\(3,\)"):
        diet_loss(logits, torch.arange(3))
    with pytest.raises(ShapeError, match=r"one entry per row.*\(4, 1\)"):
        diet_loss(logits, torch.arange(4).view(4, 1))
    with pytest.raises(SelfsupError, match="torch.Tensor"):
        diet_loss(logits, [0, 1, 2, 3])
    with pytest.raises(ShapeError, match="logits must be 2-D"):
        diet_loss(torch.randn(4), torch.arange(4))
    with pytest.raises(ShapeError, match="at least 2"):
        diet_loss(torch.randn(4, 1), torch.zeros(4, dtype=torch.long))
    for bad in (1.0, -0.1, float("nan"), "0.8"):
        with pytest.raises(SelfsupError, match="label_smoothing"):
            diet_loss(logits, torch.arange(4), label_smoothing=bad)


def test_non_finite_input_raises_unless_disabled():
    z = torch.randn(N, K)
    bad = z.clone()
    bad[2, 1] = float("nan")
    with pytest.raises(NonFiniteError, match="z2 contains NaN"):
        vicreg_loss(z, bad)
    inf = z.clone()
    inf[0, 0] = float("inf")
    with pytest.raises(NonFiniteError, match="logits"):
        diet_loss(inf, torch.arange(N) % K)


def test_gather_is_the_identity_outside_torch_distributed():
    z1, z2 = _views(seed=11)
    a, b = z1.float(), z2.float()
    assert CRITERIA["simclr_sq"](a, b).item() == simclr_loss(a, b, variant="sq").item()
    z = torch.randn(3, 2)
    assert gather(z) is z  # not distributed: identity
    # gather_distributed=True is a no-op outside torch.distributed
    for name in (
        "simclr",
        "dcl",
        "spectral_contrastive",
        "vicreg",
        "vicreg_exp",
        "vicreg_ctr",
        "barlow_twins",
    ):
        f = CRITERIA[name]
        assert f(a, b, gather_distributed=True).item() == f(a, b).item()
