"""Tests for selfsup.quality: every metric against a closed form, a numpy reference or a planted value."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from selfsup.errors import NonFiniteError, SelfsupError, ShapeError
from selfsup.quality import (
    alpha_req,
    collapse_std,
    covariance_eigenvalues,
    lidar,
    nesum,
    participation_ratio,
    quality_report,
    rankme,
    rankme_info,
    rankme_spectrum,
    stable_rank,
)


def _orthonormal(rng: np.random.Generator, n: int, k: int, centred: bool = False) -> np.ndarray:
    """n x k matrix with orthonormal columns (orthogonal to the ones vector when ``centred``)."""
    a = rng.standard_normal((n, k))
    if centred:
        a -= a.mean(axis=0)
    q, _ = np.linalg.qr(a)
    return q


def _with_spectrum(n: int, k: int, sigma: np.ndarray, seed: int = 0, dtype=np.float64) -> np.ndarray:
    """Z = U diag(sigma) V^T with random orthonormal U (n x k) and V (k x k): singular values ``sigma``."""
    rng = np.random.default_rng(seed)
    u = _orthonormal(rng, n, k)
    v = _orthonormal(rng, k, k)
    return ((u * sigma) @ v.T).astype(dtype)


def _rankme_numpy(z: np.ndarray, eps: float = 1e-7) -> float:
    """Naive reference: RankMe as written in the paper, numpy float64 SVD."""
    s = np.linalg.svd(np.asarray(z, dtype=np.float64), compute_uv=False)
    p = s / s.sum() + eps
    return float(np.exp(-np.sum(p * np.log(p))))


# ------------------------------------------------------------------------------------------------ RankMe
@pytest.mark.parametrize("method", ["auto", "gram", "svd"])
def test_rankme_equal_singular_values_is_k(method):
    # Reference: k equal non-zero singular values -> p = 1/k on k entries -> exp(entropy) = k exactly (eps=0).
    k, big_k = 10, 32
    sigma = np.r_[np.full(k, 3.0), np.zeros(big_k - k)]
    z = _with_spectrum(600, big_k, sigma)
    assert rankme(z, eps=0.0, method=method) == pytest.approx(k, rel=1e-6)
    # Full rank, all equal: with the paper's eps the closed form is exp(-K (1/K + eps) log(1/K + eps)).
    z = _with_spectrum(600, k, np.full(k, 2.0))
    p = 1.0 / k + 1e-7
    assert rankme(z, method=method) == pytest.approx(math.exp(-k * p * math.log(p)), rel=1e-9)


@pytest.mark.parametrize("method", ["auto", "svd"])
def test_rankme_rank_one_is_one(method):
    # Reference: a rank-one matrix has a single non-zero singular value -> RankMe = 1 (eps=0).
    rng = np.random.default_rng(1)
    z = np.outer(rng.standard_normal(500), rng.standard_normal(16))
    assert rankme(z, eps=0.0, method=method) == pytest.approx(1.0, abs=1e-6)
    # With eps=1e-7 the 15 zero singular values add 15 * 1e-7 * |log 1e-7| ~ 2.4e-5 to the entropy.
    assert rankme(z, method=method) == pytest.approx(1.0, abs=1e-4)


def test_rankme_isotropic_gaussian_close_to_k():
    # Reference: N >> K isotropic Gaussian has nearly equal singular values (Marchenko-Pastur) -> ~K.
    z = torch.randn(4000, 64, generator=torch.Generator().manual_seed(0))
    value = rankme(z)
    assert 0.95 * 64 < value <= 64


def test_rankme_matches_naive_numpy_reference():
    # Reference: the naive numpy float64 implementation above (paper formula), on both orientations.
    rng = np.random.default_rng(2)
    z = rng.standard_normal((700, 48)) * np.linspace(1.0, 0.05, 48)
    assert rankme(z) == pytest.approx(_rankme_numpy(z), rel=1e-9)
    assert rankme(z.T) == pytest.approx(_rankme_numpy(z.T), rel=1e-9)  # K >> N: Gram of the N side
    assert rankme(z, eps=1e-3, method="svd") == pytest.approx(_rankme_numpy(z, eps=1e-3), rel=1e-12)


@pytest.mark.parametrize("decay", [0.5, 1.0, 1.5, 2.0])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_rankme_gram_path_matches_svd_on_decaying_spectra(decay, dtype):
    # Reference: float64 SVD (method="svd"); the Gram path must agree to 1e-6 relative, and its observed
    # error must be below its own error estimate.
    k = 128
    z = _with_spectrum(1000, k, np.arange(1, k + 1.0) ** -decay, seed=3, dtype=dtype)
    ref = rankme(z, method="svd")
    gram = rankme_info(z, method="gram")
    assert gram.method == "gram"
    rel = abs(gram.value - ref) / ref
    assert rel <= 1e-6
    assert rel <= gram.error_estimate
    auto = rankme_info(z)
    if auto.method == "gram":
        assert auto.error_estimate <= 1e-7
        assert auto.value == gram.value
    else:
        assert auto.error_estimate > 1e-7
        assert auto.value == pytest.approx(ref, rel=1e-12)


def test_rankme_gram_path_taken_for_mild_decay():
    # Reference: the error estimate for sigma_k = k^-1 (K=128, N=1000) is ~1e-11 << 1e-7 -> fast path.
    z = _with_spectrum(1000, 128, np.arange(1, 129.0) ** -1.0, seed=4, dtype=np.float32)
    info = rankme_info(z)
    assert info.method == "gram"
    assert info.value == pytest.approx(rankme(z, method="svd"), rel=1e-9)


def test_rankme_auto_falls_back_on_steep_spectrum():
    # Reference: sigma_k = k^-3 puts sigma_min^2 / sigma_max^2 ~ 2e-13 near the float64 noise floor of
    # the Gram matrix: the estimate (~1e-6) exceeds rtol, auto must use the SVD (equal to it to 1e-12).
    z = _with_spectrum(1000, 128, np.arange(1, 129.0) ** -3.0, seed=5)
    info = rankme_info(z)
    assert info.method == "svd"
    assert info.error_estimate > 1e-7
    assert "fell back" in info.reason
    assert info.value == pytest.approx(rankme(z, method="svd"), rel=1e-12)


def test_rankme_auto_uses_svd_for_square_matrices():
    # Reference: N < 2K gives no speed-up, so auto runs the SVD (same value as method="svd").
    z = np.random.default_rng(6).standard_normal((300, 256))
    info = rankme_info(z)
    assert info.method == "svd" and info.error_estimate is None
    assert info.value == rankme(z, method="svd")


def test_rankme_zero_matrix_input_types_and_overflow():
    # Reference: an all-zero matrix has rank 0; numpy and torch inputs give the same value.
    assert rankme(np.zeros((50, 8))) == 0.0
    z = np.random.default_rng(7).standard_normal((200, 12))
    assert rankme(torch.from_numpy(z)) == rankme(z)
    with pytest.raises(SelfsupError, match="unknown RankMe method"):
        rankme(z, method="qr")
    # RankMe is scale-invariant: a finite matrix whose float64 Gram overflows must fall back to the SVD.
    info = rankme_info(z * 1e160)
    assert info.method == "svd" and "overflowed" in info.reason
    assert info.value == pytest.approx(rankme(z), rel=1e-9)


def test_fp16_and_bf16_inputs_work():
    # Reference: fp16/bf16 values are exact in float64, so the result equals that of the upcast array.
    z16 = torch.randn(500, 32, generator=torch.Generator().manual_seed(8)).half()
    assert rankme(z16) == pytest.approx(rankme(z16.double()), rel=1e-12)
    assert rankme(z16.numpy()) == pytest.approx(rankme(z16.double()), rel=1e-12)
    zb = z16.float().bfloat16()
    assert nesum(zb) == pytest.approx(nesum(zb.double()), rel=1e-12)
    report = quality_report(z16)
    assert report["rankme"] == pytest.approx(rankme(z16.double()), rel=1e-12)


@pytest.mark.parametrize("device", ["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
def test_every_device_matches_numpy_reference(device):
    # Reference: numpy float64 SVD and the paper's formula (CUDA is added when a GPU is present).
    z = torch.randn(4000, 128, generator=torch.Generator().manual_seed(9)) * torch.linspace(1, 0.01, 128)
    s = np.linalg.svd(z.double().numpy(), compute_uv=False)
    p = s / s.sum() + 1e-7
    ref = float(np.exp(-(p * np.log(p)).sum()))
    assert rankme(z.to(device)) == pytest.approx(ref, rel=1e-9)
    assert rankme(z.to(device), method="svd") == pytest.approx(ref, rel=1e-9)
    lam = np.linalg.eigvalsh(np.cov(z.double().numpy(), rowvar=False))[::-1]
    assert nesum(z.to(device)) == pytest.approx(lam.sum() / lam[0], rel=1e-9)
    assert lidar(z.to(device), n_views=4) == pytest.approx(lidar(z, n_views=4), rel=1e-7)


# ------------------------------------------------------------------------------------------------ alpha-ReQ
@pytest.mark.parametrize("alpha", [0.8, 1.0, 1.5])
def test_alpha_req_recovers_exact_power_law(alpha):
    # Reference: centred Z built so that its sample covariance has eigenvalues exactly i^-alpha.
    rng = np.random.default_rng(10)
    n, k = 400, 120
    lam = np.arange(1, k + 1.0) ** -alpha
    u = _orthonormal(rng, n, k, centred=True)
    v = _orthonormal(rng, k, k)
    z = (u * np.sqrt((n - 1) * lam)) @ v.T + 5.0  # a shift: alpha-ReQ centres
    np.testing.assert_allclose(covariance_eigenvalues(z).numpy(), lam, rtol=1e-8)
    a, r2 = alpha_req(z)
    assert a == pytest.approx(alpha, abs=1e-6)
    assert r2 == pytest.approx(1.0, abs=1e-9)


@pytest.mark.parametrize("alpha", [0.8, 1.0, 1.5])
def test_alpha_req_recovers_sampled_power_law(alpha):
    # Reference: Gaussian samples whose population covariance has eigenvalues i^-alpha -> alpha +- 0.05.
    rng = np.random.default_rng(11)
    k = 128
    lam = np.arange(1, k + 1.0) ** -alpha
    v = _orthonormal(rng, k, k)
    z = (rng.standard_normal((4000, k)) * np.sqrt(lam)) @ v.T
    a, r2 = alpha_req(z)
    assert a == pytest.approx(alpha, abs=0.05)
    assert r2 > 0.99


def test_alpha_req_needs_three_eigenvalues():
    # Reference: N=6 samples give at most 5 positive covariance eigenvalues -> ranks 4..5 only -> error.
    z = np.random.default_rng(12).standard_normal((6, 32))
    with pytest.raises(SelfsupError, match="at least 3"):
        alpha_req(z)


# ------------------------------------------------------------------------------------------------ LiDAR
def _lidar_numpy(z3: np.ndarray, delta: float = 1e-4, eps: float = 1e-8) -> float:
    """Naive reference: the paper's formulas with explicit loops and an eigh-based Sw^-1/2."""
    n, q, k = z3.shape
    mu_i = z3.mean(axis=1)
    mu = mu_i.mean(axis=0)
    sb = sum(np.outer(m - mu, m - mu) for m in mu_i) / (n - 1)
    sw = np.zeros((k, k))
    for i in range(n):
        for j in range(q):
            d = z3[i, j] - mu_i[i]
            sw += np.outer(d, d)
    sw = sw / (n * (q - 1)) + delta * np.eye(k)
    w, v = np.linalg.eigh(sw)
    inv_sqrt = (v / np.sqrt(w)) @ v.T
    lam = np.linalg.eigvalsh(inv_sqrt @ sb @ inv_sqrt)
    p = (lam + eps) / (lam + eps).sum()
    return float(np.exp(-np.sum(p * np.log(p))))


def test_lidar_matches_numpy_reference_and_layouts():
    # Reference: the naive numpy implementation; the 3-D and sample-major 2-D layouts agree exactly.
    rng = np.random.default_rng(13)
    n, q, k = 60, 3, 8
    z3 = rng.standard_normal((n, 1, k)) * np.linspace(2, 0.2, k) + 0.3 * rng.standard_normal((n, q, k))
    expected = _lidar_numpy(z3)
    assert lidar(z3) == pytest.approx(expected, rel=1e-9)
    assert lidar(z3.reshape(n * q, k), n_views=q) == pytest.approx(expected, rel=1e-9)
    assert lidar(torch.from_numpy(z3).float(), n_views=q) == pytest.approx(
        _lidar_numpy(torch.from_numpy(z3).float().double().numpy()), rel=1e-9
    )


def test_lidar_grows_when_views_agree_and_samples_differ():
    # Reference: samples differing in all K=16 directions with tight views -> ~K; views that disagree in
    # 3/4 of the directions -> ~K/4; samples that differ in only 4 directions -> ~4.
    rng = np.random.default_rng(14)
    n, q, k = 300, 4, 16
    mu = rng.standard_normal((n, 1, k))
    noise = rng.standard_normal((n, q, k))
    tight = lidar(mu + 0.05 * noise)
    scale = np.full(k, 0.05)
    scale[k // 4 :] = 2.0
    noisy = lidar(mu + scale * noise)
    few = mu.copy()
    few[..., 4:] = 0.0
    similar = lidar(few + 0.05 * noise)
    assert tight > 0.9 * k
    assert noisy < 0.35 * k
    assert similar < 5.0
    assert tight > noisy and tight > similar


def test_lidar_bad_input():
    # Reference: the documented errors for missing/mismatched n_views and too few views or samples.
    z = np.random.default_rng(15).standard_normal((12, 4))
    with pytest.raises(ShapeError, match="n_views"):
        lidar(z)
    with pytest.raises(ShapeError, match="multiple"):
        lidar(z, n_views=5)
    with pytest.raises(ShapeError, match="2 views"):
        lidar(z, n_views=1)
    with pytest.raises(ShapeError, match="2 source samples"):
        lidar(z, n_views=12)
    with pytest.raises(ShapeError, match="n_views=3"):
        lidar(z.reshape(6, 2, 4), n_views=3)
    z[3, 1] = np.nan
    with pytest.raises(NonFiniteError, match="NaN"):
        lidar(z, n_views=2)


# ------------------------------------------------------------------------------------------------ others
@pytest.mark.parametrize("shape", [(400, 24), (20, 60)])
def test_nesum_stable_rank_participation_ratio_match_numpy(shape):
    # Reference: numpy formulas on np.cov eigenvalues (centred, N-1) and on the Frobenius/spectral norms.
    rng = np.random.default_rng(16)
    z = rng.standard_normal(shape) * np.linspace(3, 0.1, shape[1]) + 1.0
    lam = np.sort(np.linalg.eigvalsh(np.cov(z, rowvar=False)))[::-1]
    lam = np.clip(lam, 0, None)
    assert nesum(z) == pytest.approx(lam.sum() / lam[0], rel=1e-9)
    assert participation_ratio(z) == pytest.approx(lam.sum() ** 2 / (lam**2).sum(), rel=1e-9)
    expected_sr = np.linalg.norm(z, "fro") ** 2 / np.linalg.norm(z, 2) ** 2
    assert stable_rank(z) == pytest.approx(expected_sr, rel=1e-9)
    # the spectrum RankMe computed (Gram or SVD path) gives the same stable rank and numpy's singular values
    info, sigma = rankme_spectrum(z)
    assert stable_rank(z, singular_values=sigma) == pytest.approx(expected_sr, rel=1e-9)
    np.testing.assert_allclose(sigma.numpy(), np.linalg.svd(z, compute_uv=False), rtol=1e-7)
    report = quality_report(z, singular_values=True)
    assert report["stable_rank"] == pytest.approx(expected_sr, rel=1e-9)
    assert report["singular_values"] == pytest.approx(sigma.tolist(), rel=1e-12)


def test_collapse_std():
    # Reference: collapsed rows (one direction, varying scale) -> 0; isotropic -> 1/sqrt(K).
    rng = np.random.default_rng(17)
    direction = rng.standard_normal(64)
    collapsed = rng.uniform(0.5, 2.0, size=(300, 1)) * direction
    assert collapse_std(collapsed) == pytest.approx(0.0, abs=1e-12)
    iso = rng.standard_normal((5000, 64))
    assert collapse_std(iso) == pytest.approx(1 / math.sqrt(64), rel=0.02)


@pytest.mark.parametrize("fn", [rankme, alpha_req, nesum, stable_rank, participation_ratio, collapse_std])
def test_bad_input_errors_name_the_problem(fn):
    # Reference: the validation contract: NaN/Inf -> NonFiniteError, wrong rank / N < 2 -> ShapeError.
    z = np.random.default_rng(18).standard_normal((50, 8))
    bad = z.copy()
    bad[3, 2] = np.nan
    with pytest.raises(NonFiniteError, match=r"1 NaN.*\(3, 2\).*finite"):
        fn(bad)
    bad[3, 2] = np.inf
    with pytest.raises(NonFiniteError, match="1 Inf"):
        fn(torch.from_numpy(bad).half())
    with pytest.raises(ShapeError, match="2-D.*reshape"):
        fn(z[0])
    with pytest.raises(ShapeError, match="2-D"):
        fn(z.reshape(5, 10, 8))
    with pytest.raises(ShapeError, match="N=1.*at least 2"):
        fn(z[:1])
    with pytest.raises(SelfsupError, match="complex"):
        fn(torch.randn(10, 4, dtype=torch.complex64))


# ------------------------------------------------------------------------------------------------ report
def test_quality_report_is_json_and_warns_when_n_below_k():
    # Reference: each field equals its metric function; N < K adds the capped-rank warning.
    rng = np.random.default_rng(19)
    z = rng.standard_normal((40, 64)).astype(np.float32)
    report = quality_report(z)
    assert json.loads(json.dumps(report)) == report
    assert report["n"] == 40 and report["k"] == 64
    assert report["rankme"] == rankme(z)
    assert report["nesum"] == nesum(z)
    assert report["collapse_std_reference"] == pytest.approx(0.125)
    assert "lidar" not in report
    assert any("capped at N=40" in w for w in report["warnings"])
    assert any("only N=40" in w for w in report["warnings"])


def test_quality_report_with_views_and_degenerate_input():
    # Reference: lidar present only with n_views (equal to lidar()); alpha_req None + warning when N tiny;
    # all-zero input reported as complete collapse.
    rng = np.random.default_rng(20)
    z = rng.standard_normal((600, 16))
    report = quality_report(z, n_views=3)
    assert report["lidar"] == lidar(z, n_views=3)
    assert report["n_views"] == 3 and report["warnings"] == []
    assert report["alpha_req"] == alpha_req(z)[0]
    small = quality_report(z[:5])
    assert small["alpha_req"] is None and any("alpha_req not computed" in w for w in small["warnings"])
    zero = quality_report(np.zeros((200, 8)))
    assert zero["rankme"] == 0.0 and any("complete collapse" in w for w in zero["warnings"])
    json.dumps(zero, allow_nan=False)
