"""Batched exponential time differencing (ETDRK4) for ``u_t = lin(u) - (u^2 / 2)_x`` on periodic grids.

Cox & Matthews (J. Comput. Phys. 2002) fourth-order scheme with the coefficients evaluated by the contour
integrals of Kassam & Trefethen (SIAM J. Sci. Comput. 2005). The contour is the FULL circle and the
coefficients stay complex: the half-circle/real-part shortcut is only valid for a real linear operator (KS,
heat), not for KdV's ``i k^3``. Every tensor is per trajectory (``B x M``), so one batch mixes periods ``L``
and steps ``h``. This generates the KdV and KS data of Mialon, Garrido et al. (NeurIPS 2023, arXiv
2307.05432).

Step control: the linear part is exact, so the step is limited by the explicit quadratic term. Each output
interval ``dt_b`` of trajectory ``b`` is split into ``s_b`` substeps of ``h_b = dt_b / s_b``, ``s_b`` the
smallest value of a geometric ladder (1, 2, 3, 4, 5, 6, 7, 8, 10, 11, 13, 16, ...) with ``s_b >= substeps``,
``h_b * max|u_x| <= cfl`` (accuracy: ``1 / max|u_x|`` is the steepening time of ``u_t + u u_x``) and
``h_b * max|u| * k_cut <= 1.5`` (stability of the explicit stages at the largest resolved wavenumber),
both measured at the start of the interval. The strain-rate criterion spreads the error evenly over
trajectories of different amplitudes: for KdV it reaches a given worst-case error with about 25% fewer
steps than a criterion on ``max|u| * k_cut`` alone. Trajectories are stepped in groups, each at the largest
``s_b`` it holds (few groups, to amortise the per-step overhead), so small solutions are not slowed down
much by large ones. With dealiasing (2/3 rule) the state holds only the resolved modes
``m <= (nx - 1) // 3``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from selfsup.errors import SelfsupError

_STABLE = 1.5  # h * max|u| * k_cut above ~2.8 makes the explicit RK4 part unstable: keep a margin
# substep counts grow by ~2^(1/4): 1, 2, 3, 4, 5, 6, 7, 8, 10, 11, 13, 16, 19, 23, 27, 32, ...
_LADDER = sorted({max(1, round(2 ** (j / 4))) for j in range(0, 80)})


def etdrk4_coefficients(lin: Tensor, h: Tensor, n_contour: int = 32) -> tuple[Tensor, ...]:
    """Return ``(E, E2, Q, f1, f2, f3)`` for linear symbols ``lin (B, M)`` and steps ``h (B,)``.

    The ``phi``-functions are averaged over ``n_contour`` points of the unit circle around each ``h * lin``
    (full circle, complex result), which avoids the cancellation of the direct formulas near zero.
    """
    h = h.to(torch.float64).reshape(-1, 1)
    hl = lin.to(torch.complex128) * h
    j = torch.arange(n_contour, dtype=torch.float64, device=lin.device)
    r = torch.exp(2j * math.pi * (j + 0.5) / n_contour)
    lr = hl[..., None] + r
    e_half = torch.exp(lr / 2)
    elr = e_half * e_half
    inv = 1 / lr
    inv3 = inv * inv * inv
    lr2 = lr * lr
    q = h * torch.mean((e_half - 1) * inv, dim=-1)
    f1 = h * torch.mean((-4 - lr + elr * (4 - 3 * lr + lr2)) * inv3, dim=-1)
    f2 = h * torch.mean((2 + lr + elr * (lr - 2)) * inv3, dim=-1)
    f3 = h * torch.mean((-4 - 3 * lr - lr2 + elr * (4 - lr)) * inv3, dim=-1)
    return torch.exp(hl), torch.exp(hl / 2), q, f1, f2, f3


class _Stepper:
    """ETDRK4 steps of ``v_t = lin v + N(v)`` on the spectrum ``v`` of ``u``.

    Dealiased (state truncated to the 2/3 band): ``N = -i k/2 FFT(u^2)``. Not dealiased (all modes):
    ``N = -FFT(u u_x)``, the collocation product form of the public generator (LPSDA), so its data are
    reproduced up to the time-stepping error.
    """

    def __init__(self, lin: Tensor, k: Tensor, dt: Tensor, nx: int, n_modes: int, n_contour: int = 32):
        self.lin, self.dt, self.nx, self.m, self.n_contour = lin[:, :n_modes], dt, nx, n_modes, n_contour
        self.aliased = n_modes == nx // 2 + 1
        ik = 1j * k[:, :n_modes].to(torch.complex128)
        if self.aliased:
            ik[:, -1] = 0  # the Nyquist mode of an odd derivative is zero
        self.g = ik if self.aliased else -0.5 * ik
        self.cache: dict[int, tuple[Tensor, Tensor]] = {}

    def coefficients(self, s: int, rows: Tensor | None) -> list[Tensor]:
        """``[g, E, E2, Q, f1, 2 f2, f3]`` of ``rows`` (all when None) for ``s`` substeps per output step.

        Computed lazily per trajectory (the contour integrals cost as much as a few steps).
        """
        B, M = self.lin.shape
        if s not in self.cache:
            coef = torch.empty(6, B, M, dtype=torch.complex128, device=self.lin.device)
            self.cache[s] = (coef, torch.zeros(B, dtype=torch.bool, device=self.lin.device))
        coef, done = self.cache[s]
        need = ~done if rows is None else torch.zeros_like(done).index_fill_(0, rows, True) & ~done
        if bool(need.any()):
            idx = torch.nonzero(need).flatten()
            E, E2, Q, f1, f2, f3 = etdrk4_coefficients(self.lin[idx], self.dt[idx] / s, self.n_contour)
            coef[:, idx] = torch.stack([E, E2, Q, f1, 2 * f2, f3])
            done[idx] = True
        if rows is None:
            return [self.g, *coef]
        return [self.g[rows], *coef[:, rows]]

    def advance(self, v: Tensor, s: int, rows: Tensor | None = None) -> Tensor:
        """``s`` ETDRK4 steps of the trajectories ``rows`` (all when None) whose spectra are ``v``."""
        g, E, E2, Q, f1, f2x2, f3 = self.coefficients(s, rows)
        nx, m = self.nx, self.m

        def N(w: Tensor) -> Tensor:
            u = torch.fft.irfft(w, n=nx)
            if self.aliased:
                return -torch.fft.rfft(u * torch.fft.irfft(g * w, n=nx))
            return g * torch.fft.rfft(u * u)[:, :m]

        for _ in range(s):
            nv = N(v)
            e2v = E2 * v
            a = e2v + Q * nv
            na = N(a)
            b = e2v + Q * na
            nb = N(b)
            c = E2 * a + Q * (2 * nb - nv)
            v = E * v + f1 * nv + f2x2 * (na + nb) + f3 * N(c)
        return v


def etdrk4(
    u0: Tensor,
    lin: Tensor,
    k: Tensor,
    dt: Tensor,
    nt: int,
    keep: int,
    substeps: int = 1,
    cfl: float | None = None,
    dealias: bool = True,
    blowup: float = 1e3,
    max_substeps: int = 10_000,
    group_cost: float | None = None,
) -> Tensor:
    """Integrate ``nt - 1`` output steps of size ``dt (B,)`` from ``u0 (B, nx)``; return the last ``keep``.

    ``lin`` and ``k`` are ``(B, nx // 2 + 1)`` (linear symbol and wavenumbers). ``substeps`` is the minimum
    number of ETDRK4 steps per output step, ``cfl`` (None or 0: exactly ``substeps``) the Courant bound of
    the module docstring. After every output step a non-finite value or ``max |u| > blowup * (1 + max |u0|)``
    raises a :class:`SelfsupError` suggesting a smaller step. ``group_cost`` is the fixed cost of stepping a
    group, in trajectories (default 16 on CPU, 1024 on GPU where launches dominate); it decides how the
    per-trajectory substep counts are merged into groups. Returns ``u (B, keep, nx)`` in float64.
    """
    B, nx = u0.shape
    if group_cost is None:
        group_cost = 16.0 if u0.device.type == "cpu" else 1024.0
    n_modes = (nx - 1) // 3 + 1 if dealias else nx // 2 + 1
    dt = dt.to(torch.float64).reshape(-1)
    stepper = _Stepper(lin, k, dt, nx, n_modes)
    k_cut = k[:, n_modes - 1]
    ik = 1j * k[:, :n_modes]
    limit = blowup * (1.0 + u0.abs().amax().item())
    ladder = torch.tensor(_LADDER, device=u0.device)
    out = torch.empty(B, keep, nx, dtype=torch.float64, device=u0.device)
    v = torch.fft.rfft(u0.to(torch.float64))[:, :n_modes]
    u = u0.to(torch.float64)
    s = torch.full((B,), substeps, dtype=torch.long, device=u0.device)
    for i in range(nt):
        if i > 0:
            if cfl:
                strain = torch.fft.irfft(v * ik, n=nx).abs().amax(dim=-1)
                need = torch.maximum(dt * strain / cfl, dt * u.abs().amax(dim=-1) * k_cut / _STABLE)
                s = _substeps(need, substeps, max_substeps, ladder, i, nt)
            groups = _groups(s, group_cost)
            if len(groups) == 1:
                v = stepper.advance(v, groups[0][0])
            else:
                v = v.clone()
                for level, rows in groups:
                    v[rows] = stepper.advance(v[rows], level, rows)
            u = torch.fft.irfft(v, n=nx)
            _check(u, limit, i, nt, s, dt)
        if i >= nt - keep:
            out[:, i - nt + keep] = u
    return out


def _groups(s: Tensor, overhead: float) -> list[tuple[int, Tensor]]:
    """Merge trajectories into groups stepped together, each group at the largest substep count it holds.

    Minimises ``sum_g s_g * (overhead + n_g)`` over groups of consecutive levels (dynamic programming over
    the few distinct values of ``s``); merging never lowers a trajectory's substep count.
    """
    levels, counts = torch.unique(s, return_counts=True)
    levels, counts = levels.tolist(), counts.tolist()
    if len(levels) == 1:
        return [(levels[0], torch.arange(s.numel(), device=s.device))]
    best, cut = [0.0] * (len(levels) + 1), [0] * (len(levels) + 1)
    for j in range(1, len(levels) + 1):
        best[j], cut[j] = min((best[i] + levels[j - 1] * (overhead + sum(counts[i:j])), i) for i in range(j))
    groups, j = [], len(levels)
    while j > 0:
        i = cut[j]
        rows = torch.nonzero((s >= levels[i]) & (s <= levels[j - 1])).flatten()
        groups.append((levels[j - 1], rows))
        j = i
    return groups


def _substeps(need: Tensor, lo: int, hi: int, ladder: Tensor, i: int, nt: int) -> Tensor:
    """Per-trajectory substeps: the smallest ladder value >= max(lo, need)."""
    worst = need.max().item()
    if not math.isfinite(worst) or worst > hi:
        raise SelfsupError(
            f"the solver needs {worst:.3g} > {hi} substeps for output step {i}/{nt - 1}: the solution is "
            "too large or too steep for the grid, or the output step is too big; raise 'nt', lower 'T' or "
            "the initial 'amplitude'."
        )
    need = torch.clamp(torch.ceil(need - 1e-9), min=lo).to(ladder.dtype)
    return ladder[torch.searchsorted(ladder, need)]


def _check(u: Tensor, limit: float, i: int, nt: int, s: Tensor, dt: Tensor) -> None:
    """Raise a helpful error when the integration blew up."""
    peak = u.abs().amax(dim=-1)
    bad = ~torch.isfinite(peak) | (peak > limit)
    if bool(bad.any()):
        idx = torch.nonzero(bad).flatten()[:5].tolist()
        h = (dt[bad] / s[bad]).max().item()
        raise SelfsupError(
            f"the solver blew up at output step {i}/{nt - 1} (trajectories {idx}: non-finite or "
            f"|u| > {limit:.3g}) with steps h up to {h:.3g}; use a smaller step: raise 'substeps' "
            "(or lower 'cfl'), raise 'nt' or lower 'T'."
        )
