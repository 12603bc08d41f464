"""Spectral helpers on periodic 1-D grids, batched over trajectories with per-trajectory periods.

Every function works on real fields of shape ``(B, ..., nx)`` sampled at ``x_j = j L / nx`` and uses the
``rfft`` layout (``nx // 2 + 1`` non-negative wavenumbers ``k_m = 2 pi m / L``). Odd-order derivatives and
shifts treat the Nyquist mode as the real cosine ``cos(pi nx x / L)`` of the trigonometric interpolant.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def wavenumbers(L: Tensor, nx: int) -> Tensor:
    """Angular wavenumbers ``2 pi m / L`` of the rfft modes: ``(B, nx // 2 + 1)`` for periods ``(B,)``."""
    m = torch.arange(nx // 2 + 1, dtype=torch.float64, device=L.device)
    return 2.0 * math.pi * m[None, :] / L.to(torch.float64)[:, None]


def derivative_symbol(k: Tensor, order: int, nx: int) -> Tensor:
    """Fourier symbol ``(i k)^order`` (complex), with the Nyquist mode zeroed for odd orders."""
    sym = (1j * k.to(torch.complex128)) ** order
    if order % 2 == 1 and nx % 2 == 0:
        sym[..., -1] = 0
    return sym


def _expand(v: Tensor, like: Tensor) -> Tensor:
    """Right-pad a per-trajectory tensor with singleton dims so it broadcasts against ``like``."""
    v = torch.as_tensor(v, dtype=torch.float64, device=like.device)
    return v.reshape(v.shape + (1,) * (like.dim() - v.dim()))


def spectral_derivative(u: Tensor, dx: Tensor, order: int) -> Tensor:
    """``order``-th x-derivative of ``u (B, ..., nx)`` with spacing ``dx (B,)`` (float64)."""
    nx = u.shape[-1]
    L = torch.as_tensor(dx, dtype=torch.float64, device=u.device).reshape(-1) * nx
    k = wavenumbers(L, nx)
    sym = derivative_symbol(k, order, nx).reshape((k.shape[0],) + (1,) * (u.dim() - 2) + (k.shape[1],))
    return torch.fft.irfft(torch.fft.rfft(u.to(torch.float64), dim=-1) * sym, n=nx, dim=-1)


def fourier_shift(u: Tensor, shift: Tensor, L: Tensor) -> Tensor:
    """Translate periodic fields: ``u(x - shift)`` sampled on the same grid (exact for any real shift).

    ``u`` is ``(B, ..., nx)``; ``shift`` broadcasts against ``u.shape[:-1]`` (e.g. ``(B,)`` or ``(B, nt)``);
    ``L`` is ``(B,)``. Exact for band-limited data without Nyquist content (the generated data is dealiased).
    """
    nx = u.shape[-1]
    k = wavenumbers(torch.as_tensor(L, dtype=torch.float64, device=u.device).reshape(-1), nx)
    k = k.reshape((k.shape[0],) + (1,) * (u.dim() - 2) + (k.shape[1],))
    s = _expand(shift, u[..., 0])[..., None]
    phase = torch.exp(-1j * k * s)
    return torch.fft.irfft(torch.fft.rfft(u.to(torch.float64), dim=-1) * phase, n=nx, dim=-1)
