"""The PDEs of Mialon, Garrido et al. (NeurIPS 2023, arXiv 2307.05432), their defaults and their solvers.

All live on a periodic interval ``[0, L)`` sampled at ``x_j = j L / nx``; outputs are taken at
``t_i = i T / (nt - 1)`` and the last ``keep`` of them are returned (the public generator of Brandstetter
et al., LPSDA, does the same).

* ``kdv``: ``u_t + u u_x + u_xxx = 0`` (ETDRK4, ``L ~ U(0.9, 1.1) 128``, ``T ~ U(0.9, 1.1) 100``).
* ``ks``: ``u_t + u u_x + u_xx + u_xxxx = 0`` (ETDRK4, ``L ~ U(0.9, 1.1) 64``, ``T ~ U(0.9, 1.1) 100``;
  ``T0 = 100`` is LPSDA's default end time, which the paper does not restate).
* ``heat``: ``u_t = nu u_xx`` solved exactly in Fourier space, ``u_hat(t) = u_hat(0) exp(-nu k^2 t)``.
* ``burgers``: ``u_t + u u_x = nu u_xx`` solved exactly by the Cole-Hopf map ``u = -2 nu psi_x / psi`` of the
  heat solution ``psi`` with ``psi0 = exp(-Phi / (2 nu))``, ``Phi = int_0^x u0`` (closed form; ``u0`` has zero
  mean so ``psi0`` is periodic).

Initial conditions: ``u0 = sum_{j<=N} A_j sin(2 pi l_j x / L + phi_j)``, ``A ~ U(-0.5, 0.5)``,
``phi ~ U(0, 2 pi)``, ``l`` uniform in ``1..max_mode`` (KdV/KS: ``N = 10``, ``l in {1, 2}``; heat and Burgers:
``N = 20``, ``l in 1..6``). KdV and KS record, besides ``L`` and ``T``, the initial condition's
coefficients ``u0_k1`` and ``u0_k2``: the amplitudes ``|sum_{l_j = k} A_j exp(i phi_j)|`` of its Fourier
modes 1 and 2, which determine ``u0`` up to a translation (the targets of the SSL paper's initial-condition
regression). Heat and Burgers use ``L = 16``, ``T = 2`` and ``nu`` log-uniform in
``[0.2, 1.0]`` (our choice, not the paper's range): at ``nu = 0.2`` the Cole-Hopf field
``psi`` already spans up to ``e^30``, and float64 loses the digits of ``u`` where ``psi`` is small, so
smaller ``nu`` needs a smaller ``amplitude`` (``generate`` refuses a span above ``e^34``).

ETDRK4 step control (see :mod:`selfsup.pde.solver`): ``h * max|u_x| <= cfl`` with ``cfl`` 0.06 for KdV
(measured worst relative L2 error ~3e-5 over 64 default trajectories, ~1900 steps per trajectory) and 0.2
for KS (where the stability bound ``h * max|u| * k_cut <= 1.5`` is the active one; error ~3e-6 up to
t = 20; KS is chaotic, so later differences grow for any solver, Radau included).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from selfsup.errors import ConfigError, SelfsupError, did_you_mean, unknown_name
from selfsup.pde.fourier import derivative_symbol, wavenumbers
from selfsup.pde.solver import etdrk4

_MAX_LOG_SPAN = 34  # psi_min / psi_max >= e^-34 ~ 1.7e-15 keeps u = -2 nu psi_x / psi meaningful
_COMMON: dict[str, Any] = {"nx": 256, "nt": 250, "keep": 140, "amplitude": 0.5}


@dataclass(frozen=True)
class Equation:
    """One registered PDE: its defaults, the coefficients it records and how it is solved."""

    name: str
    pde: str
    defaults: Mapping[str, Any]
    coeffs: tuple[str, ...]
    linear: Callable[[Tensor], Tensor] | None = None  # symbol of the stiff linear part (ETDRK4 equations)
    ic_modes: int = 0  # record the amplitudes of the initial condition's Fourier modes 1..ic_modes

    def resolve(self, overrides: Mapping[str, Any]) -> dict[str, Any]:
        """Defaults updated by ``overrides``; unknown keys or bad values raise :class:`ConfigError`."""
        params = dict(self.defaults)
        for key, value in overrides.items():
            if key not in params:
                raise ConfigError(
                    f"unknown parameter '{key}' for equation '{self.name}'."
                    f"{did_you_mean(key, params)} Valid parameters: {', '.join(sorted(params))}."
                )
            params[key] = value
        _validate(self.name, params)
        return params

    def sample(self, n: int, params: Mapping[str, Any], generator: torch.Generator) -> dict[str, Tensor]:
        """Draw initial-condition and coefficient parameters for ``n`` trajectories (CPU, float64).

        One row of uniforms per trajectory, so trajectory ``i`` depends only on the seed and ``i``:
        ``generate(eq, 16, seed)`` gives the first 16 trajectories of ``generate(eq, 256, seed)``.
        """
        m = params["n_modes"]
        U = torch.rand(n, 3 * m + 3, generator=generator, dtype=torch.float64)
        j = params["jitter"]
        lo, hi = (math.log(v) for v in params.get("nu_range", (1.0, 1.0)))
        draws = {
            "A": (2 * U[:, :m] - 1) * params["amplitude"],
            "phi": 2 * math.pi * U[:, m : 2 * m],
            "l": torch.floor(U[:, 2 * m : 3 * m] * params["max_mode"]) + 1,
            "L": params["L"] * (1 + j * (2 * U[:, 3 * m] - 1)),
            "T": params["T"] * (1 + j * (2 * U[:, 3 * m + 1] - 1)),
        }
        if "nu" in self.coeffs:
            draws["nu"] = torch.exp(lo + (hi - lo) * U[:, 3 * m + 2])
        for k in range(1, self.ic_modes + 1):  # u0's mode k is sum_{l_j = k} A_j sin(2 pi k x / L + phi_j)
            mode = draws["A"] * torch.exp(1j * draws["phi"]) * (draws["l"] == k)
            draws[f"u0_k{k}"] = mode.sum(1).abs()
        return draws

    def solve(
        self, draws: Mapping[str, Tensor], params: Mapping[str, Any], device: str | torch.device
    ) -> Tensor:
        """Solve a chunk of trajectories; returns ``u (b, keep, nx)`` float64 on ``device``."""
        d = {k: v.to(device) for k, v in draws.items()}
        nx, nt, keep = params["nx"], params["nt"], params["keep"]
        u0 = initial_condition(d, nx)
        k = wavenumbers(d["L"], nx)
        dt = d["T"] / (nt - 1)
        if self.linear is not None:
            return etdrk4(
                u0,
                self.linear(k),
                k,
                dt,
                nt,
                keep,
                substeps=params["substeps"],
                cfl=params["cfl"],
                dealias=params["dealias"],
                blowup=params["blowup"],
            )
        t = dt[:, None] * torch.arange(nt - keep, nt, dtype=torch.float64, device=device)
        if self.name == "heat":
            return heat_exact(torch.fft.rfft(u0), k, d["nu"], t, nx)
        return burgers_cole_hopf(d, k, t, nx)


def initial_condition(d: Mapping[str, Tensor], nx: int) -> Tensor:
    """``u0 (b, nx)`` on ``x_j = j L / nx``: ``sum_j A_j sin(2 pi l_j x / L + phi_j)`` (``L``-independent)."""
    s = torch.arange(nx, dtype=torch.float64, device=d["A"].device) / nx
    arg = 2 * math.pi * d["l"][:, :, None] * s + d["phi"][:, :, None]
    return (d["A"][:, :, None] * torch.sin(arg)).sum(dim=1)


def heat_exact(v0: Tensor, k: Tensor, nu: Tensor, t: Tensor, nx: int) -> Tensor:
    """Exact heat solution ``irfft(v0 exp(-nu k^2 t))`` at times ``t (b, nt)``; returns ``(b, nt, nx)``."""
    decay = torch.exp(-nu[:, None, None] * k[:, None, :] ** 2 * t[:, :, None])
    return torch.fft.irfft(v0[:, None, :] * decay, n=nx)


def burgers_cole_hopf(d: Mapping[str, Tensor], k: Tensor, t: Tensor, nx: int) -> Tensor:
    """Exact viscous Burgers by Cole-Hopf: ``u = -2 nu psi_x / psi`` with ``psi`` the exact heat solution."""
    s = torch.arange(nx, dtype=torch.float64, device=k.device) / nx
    mode, phi, amp, L, nu = d["l"][:, :, None], d["phi"][:, :, None], d["A"][:, :, None], d["L"], d["nu"]
    # Phi(x) = int_0^x u0 in closed form
    wave = torch.cos(phi) - torch.cos(2 * math.pi * mode * s + phi)
    primitive = (amp * L[:, None, None] / (2 * math.pi * mode) * wave).sum(dim=1)
    expo = -primitive / (2 * nu[:, None])
    span = (expo.amax(dim=-1) - expo.amin(dim=-1)).max().item()
    if span > _MAX_LOG_SPAN:
        raise SelfsupError(
            f"burgers: the Cole-Hopf field psi spans e^{span:.0f} (more than e^{_MAX_LOG_SPAN}), which "
            "float64 cannot resolve; raise the lower end of 'nu_range' or lower 'amplitude'."
        )
    psi0 = torch.exp(expo - expo.amax(dim=-1, keepdim=True))
    decay = torch.exp(-nu[:, None, None] * k[:, None, :] ** 2 * t[:, :, None])
    v = torch.fft.rfft(psi0)[:, None, :] * decay
    psi = torch.fft.irfft(v, n=nx)
    psi_x = torch.fft.irfft(v * derivative_symbol(k, 1, nx)[:, None, :], n=nx)
    return -2 * nu[:, None, None] * psi_x / psi


def _validate(name: str, p: Mapping[str, Any]) -> None:
    try:
        _check_params(name, p)
    except ConfigError:
        raise
    except (TypeError, ValueError) as err:  # e.g. nx=abc reaching int()
        shown = ", ".join(f"{k}={v!r}" for k, v in p.items() if isinstance(v, str))
        raise ConfigError(f"{name}: a parameter has the wrong type ({shown or err}); give numbers") from None


def _check_params(name: str, p: Mapping[str, Any]) -> None:
    def need(ok: bool, msg: str) -> None:
        if not ok:
            raise ConfigError(f"{name}: {msg}")

    need(
        int(p["nx"]) == p["nx"] and p["nx"] >= 8 and p["nx"] % 2 == 0,
        f"nx must be an even integer >= 8, got {p['nx']}",
    )
    need(int(p["nt"]) == p["nt"] and p["nt"] >= 2, f"nt must be an integer >= 2, got {p['nt']}")
    need(1 <= p["keep"] <= p["nt"], f"keep must be in 1..nt={p['nt']}, got {p['keep']}")
    if "substeps" in p:
        need(
            int(p["substeps"]) == p["substeps"] and p["substeps"] >= 1,
            f"substeps must be >= 1, got {p['substeps']}",
        )
        need(p["cfl"] is None or p["cfl"] >= 0, f"cfl must be None or >= 0, got {p['cfl']}")
    need(p["L"] > 0 and p["T"] > 0, f"L and T must be positive, got L={p['L']}, T={p['T']}")
    need(0 <= p["jitter"] < 1, f"jitter must be in [0, 1), got {p['jitter']}")
    need(p["n_modes"] >= 1 and p["max_mode"] >= 1, "n_modes and max_mode must be >= 1")
    need(p["max_mode"] < p["nx"] // 3, f"max_mode={p['max_mode']} is not resolved by nx={p['nx']}")
    if "nu_range" in p:
        lo, hi = p["nu_range"]
        need(0 < lo <= hi, f"nu_range must satisfy 0 < lo <= hi, got {p['nu_range']}")


def _kdv_symbol(k: Tensor) -> Tensor:
    # u_t = -u_xxx - u u_x  ->  linear symbol -(i k)^3 = i k^3 (purely imaginary: full-circle contour)
    return -derivative_symbol(k, 3, 2 * (k.shape[-1] - 1))


def _ks_symbol(k: Tensor) -> Tensor:
    # u_t = -u_xx - u_xxxx - u u_x  ->  k^2 - k^4 (real)
    return (k**2 - k**4).to(torch.complex128)


_KDV_KS = {
    **_COMMON,
    "n_modes": 10,
    "max_mode": 2,
    "jitter": 0.1,
    "substeps": 1,
    "cfl": 0.06,
    "dealias": True,
    "blowup": 1e3,
}
_HEAT = {**_COMMON, "n_modes": 20, "max_mode": 6, "L": 16.0, "T": 2.0, "jitter": 0.0, "nu_range": (0.2, 1.0)}

EQUATIONS: dict[str, Equation] = {
    "kdv": Equation(
        "kdv",
        "u_t + u u_x + u_xxx = 0",
        {**_KDV_KS, "L": 128.0, "T": 100.0},
        ("L", "T", "u0_k1", "u0_k2"),
        _kdv_symbol,
        ic_modes=2,
    ),
    "ks": Equation(
        "ks",
        "u_t + u u_x + u_xx + u_xxxx = 0",
        {**_KDV_KS, "L": 64.0, "T": 100.0, "nt": 500, "cfl": 0.2},
        ("L", "T", "u0_k1", "u0_k2"),
        _ks_symbol,
        ic_modes=2,
    ),
    "heat": Equation("heat", "u_t = nu u_xx", _HEAT, ("L", "T", "nu")),
    "burgers": Equation("burgers", "u_t + u u_x = nu u_xx", _HEAT, ("L", "T", "nu")),
}


def get_equation(name: str) -> Equation:
    """The registered :class:`Equation` ``name`` (case-insensitive); unknown -> :class:`ConfigError`."""
    key = str(name).lower()
    if key not in EQUATIONS:
        raise unknown_name("equation", str(name), EQUATIONS)
    return EQUATIONS[key]
