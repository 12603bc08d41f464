"""Lie point symmetries of the PDEs as batched transforms of trajectories (Mialon, Garrido et al., NeurIPS
2023, arXiv 2307.05432; Brandstetter, Welling & Worrall, ICML 2022, for LPSDA).

A :class:`Symmetry` maps a :class:`~selfsup.pde.data.PDEData` batch and one group parameter per trajectory
to a new batch that solves the same equation (check it with :func:`selfsup.pde.residual.residual`).
Parameter 0 is the identity (``time`` with ``margin`` 0). Acting on the field ``u(t, x)``:

* ``space`` (all): ``x -> x + g L``, ``g`` a fraction of the period; a Fourier shift, exact for any real ``g``
  on band-limited data. ``space(a) o space(b) = space(a + b)``.
* ``time`` (all): ``t -> t - k dt`` for an integer ``k`` in ``0..margin``: the new field at the grid time
  ``t_i`` is the old one at ``t_{i+k}`` (the kept window slides by ``k`` steps; the result has
  ``nt - margin`` steps). ``time[m1](a) o time[m2](b) = time[m1 + m2](a + b)``.
* ``boost`` (KdV, KS, Burgers): Galilean ``x -> x + c t``, ``u -> u + c``, i.e.
  ``u'(t, x) = u(t, x - c t) + c`` (sign checked with the residual: ``u_t + u u_x`` is invariant); each
  time row ``i`` is Fourier-shifted by ``c t_i`` with ``t_i`` the stored (absolute) times.
  ``boost(a) o boost(b) = boost(a + b)``.
* ``scale`` KdV: ``x -> e^e x``, ``t -> e^{3e} t``, ``u -> e^{-2e} u``; Burgers: ``x -> e^e x``,
  ``t -> e^{2e} t``, ``u -> e^{-e} u``; heat: ``x -> e^e x``, ``t -> e^{2e} t``. Samples keep their indices:
  ``x, t, dx, dt`` and the recorded ``L, T`` are rescaled (``nu`` is unchanged).
* ``add`` (heat): ``u -> u + g`` (superposition with a constant solution);
  ``amplitude`` (heat): ``u -> e^g u`` (linearity).

Projective symmetries of heat and Burgers are left out: they change the domain length over time and do
not map a fixed periodic grid to itself. Default strengths, drawn from ``U(-s, s)`` (``time``: integers
``0..s``): KdV time 1, space 1.0, boost 0.4, scale 0.05; KS time 1, space 1.0, boost 0.4 (heat and Burgers:
ours). They are the public ones of LPSDA (``common/augmentation.py``), which draws the boost from ``U(-s, s)``
but space and scale from ``U(-s/2, s/2)``: its KdV scale ``s = 0.1`` is our 0.05, its space ``s = 1.0`` (half
a period either way) is equivalent to ours; its ``time 1`` is an on/off flag for random start times.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import torch
from torch import Tensor

from selfsup.errors import ConfigError, NonFiniteError, ShapeError, unknown_name
from selfsup.pde.data import PDEData
from selfsup.pde.equations import get_equation
from selfsup.pde.fourier import fourier_shift


@dataclass(frozen=True)
class Symmetry:
    """One-parameter group of point transformations, applied per trajectory.

    ``apply(batch, params)`` takes ``params`` of shape ``(n,)`` (a scalar is broadcast); ``sample(n, strength,
    generator)`` draws parameters uniformly in ``[-strength, strength]`` (``time``: integers ``0..strength``).
    """

    name: str
    strength: float
    action: Callable[[PDEData, Tensor, Symmetry], PDEData]
    integer: bool = False
    margin: int = 0  # time translation only: steps dropped at the end of the window

    def sample(
        self, n: int, strength: float | None = None, generator: torch.Generator | None = None
    ) -> Tensor:
        """Draw ``n`` group parameters (float64, CPU)."""
        s = self.strength if strength is None else strength
        if s < 0:
            raise ConfigError(f"symmetry '{self.name}': strength must be >= 0, got {s}")
        if self.integer:
            if int(s) > self.margin:
                raise ConfigError(
                    f"time translation by up to {int(s)} steps needs margin >= {int(s)}: "
                    f"use symmetry.with_margin({int(s)})"
                )
            return torch.randint(0, int(s) + 1, (n,), generator=generator).to(torch.float64)
        return (2 * torch.rand(n, generator=generator, dtype=torch.float64) - 1) * s

    def identity(self, n: int) -> Tensor:
        """The parameters of the identity map (zeros)."""
        return torch.zeros(n, dtype=torch.float64)

    def with_margin(self, margin: int) -> Symmetry:
        """A copy with another time-translation ``margin`` (ignored by the other symmetries)."""
        return replace(self, margin=int(margin))

    def apply(self, batch: PDEData, params: Tensor | float) -> PDEData:
        """Transform every trajectory ``b`` of ``batch`` by the group element ``params[b]``."""
        p = torch.as_tensor(params, dtype=torch.float64, device=batch.u.device)
        p = p.expand(batch.n).clone() if p.dim() == 0 else p
        if p.shape != (batch.n,):
            raise ShapeError(
                f"symmetry '{self.name}': params must have shape ({batch.n},), got {tuple(p.shape)}"
            )
        if not bool(torch.isfinite(p).all()):
            raise NonFiniteError(f"symmetry '{self.name}': params hold NaN/Inf")
        return self.action(batch, p, self)


def _with_u(batch: PDEData, u: Tensor, **kw) -> PDEData:
    return replace(batch, u=u.to(batch.u.dtype), **kw)


def _space(batch: PDEData, g: Tensor, _: Symmetry) -> PDEData:
    return _with_u(batch, fourier_shift(batch.u, g * batch.L, batch.L))


def _time(batch: PDEData, k: Tensor, sym: Symmetry) -> PDEData:
    steps = k.round().long()
    if not torch.equal(steps.to(k.dtype), k) or bool((steps < 0).any()) or bool((steps > sym.margin).any()):
        raise ConfigError(f"time translation takes integer steps in 0..margin={sym.margin}, got {k.tolist()}")
    nt = batch.nt - sym.margin
    if nt < 1:
        raise ShapeError(f"time translation with margin {sym.margin} needs more than {sym.margin} steps")
    idx = steps[:, None] + torch.arange(nt, device=k.device)
    u = torch.gather(batch.u, 1, idx[:, :, None].expand(-1, -1, batch.nx))
    return _with_u(batch, u, t=batch.t[:, :nt])


def _boost(batch: PDEData, c: Tensor, _: Symmetry) -> PDEData:
    u = fourier_shift(batch.u, c[:, None] * batch.t, batch.L) + c[:, None, None]
    return _with_u(batch, u)


def _scaling(x_pow: float, t_pow: float, u_pow: float) -> Callable[[PDEData, Tensor, Symmetry], PDEData]:
    def act(batch: PDEData, e: Tensor, _: Symmetry) -> PDEData:
        sx, st, su = torch.exp(x_pow * e), torch.exp(t_pow * e), torch.exp(u_pow * e)
        coeffs = dict(batch.coeffs)
        for key in coeffs:  # the domain, and the initial condition's mode amplitudes (u0_k*) with u
            f = {"L": sx, "T": st}.get(key, su if key.startswith("u0_") else None)
            if f is not None:
                coeffs[key] = coeffs[key] * f
        return _with_u(
            batch,
            batch.u.to(torch.float64) * su[:, None, None],
            x=batch.x * sx[:, None],
            t=batch.t * st[:, None],
            dx=batch.dx * sx,
            dt=batch.dt * st,
            coeffs=coeffs,
        )

    return act


def _add(batch: PDEData, g: Tensor, _: Symmetry) -> PDEData:
    return _with_u(batch, batch.u.to(torch.float64) + g[:, None, None])


def _amplitude(batch: PDEData, g: Tensor, _: Symmetry) -> PDEData:
    return _with_u(batch, batch.u.to(torch.float64) * torch.exp(g)[:, None, None])


def _common(time: float = 1, space: float = 1.0) -> dict[str, Symmetry]:
    return {"space": Symmetry("space", space, _space), "time": Symmetry("time", time, _time, True, int(time))}


_TABLE: dict[str, Callable[[], dict[str, Symmetry]]] = {
    "kdv": lambda: {
        **_common(),
        "boost": Symmetry("boost", 0.4, _boost),
        "scale": Symmetry("scale", 0.05, _scaling(1.0, 3.0, -2.0)),  # LPSDA's U(-0.05, 0.05)
    },
    "ks": lambda: {**_common(), "boost": Symmetry("boost", 0.4, _boost)},
    "heat": lambda: {
        **_common(),
        "add": Symmetry("add", 0.5, _add),
        "amplitude": Symmetry("amplitude", 0.1, _amplitude),
        "scale": Symmetry("scale", 0.1, _scaling(1.0, 2.0, 0.0)),
    },
    "burgers": lambda: {
        **_common(),
        "boost": Symmetry("boost", 0.4, _boost),
        "scale": Symmetry("scale", 0.1, _scaling(1.0, 2.0, -1.0)),
    },
}


def symmetries(equation: str) -> dict[str, Symmetry]:
    """The Lie point symmetries of ``equation`` by name, with the public strengths as defaults."""
    return _TABLE[get_equation(equation).name]()


def get_symmetry(equation: str, name: str) -> Symmetry:
    """One symmetry of ``equation``; an unknown name raises :class:`ConfigError` with a suggestion."""
    table = symmetries(equation)
    if name not in table:
        raise unknown_name(f"{equation} symmetry", name, table)
    return table[name]
