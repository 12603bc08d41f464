"""The ``pde`` view recipe: random (t, x) crops and random Lie point symmetries of PDE trajectories.

Plugged into :mod:`selfsup.views` through the ``selfsup.views`` entry points (:mod:`selfsup.plugins`) as
:data:`PDE_VIEWS`. Samples are ``(3, nt, nx)``: the field and its ``t``, ``x`` coordinate channels (see
:mod:`selfsup.pde.datasets`), or ``(1, nt, nx)`` with ``dt_dx`` given explicitly.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from selfsup.errors import ConfigError, ShapeError
from selfsup.pde.equations import get_equation
from selfsup.pde.symmetries import symmetries
from selfsup.views import ViewRecipe
from selfsup.views import randomness as R

__all__ = ["PDE_VIEWS", "PDEViews", "pde_views"]


# (x, t, u) exponents of the scaling symmetry per equation: x -> e^(a e) x, t -> e^(b e) t, u -> e^(c e) u
_SCALING = {"kdv": (1.0, 3.0, -2.0), "burgers": (1.0, 2.0, -1.0), "heat": (1.0, 2.0, 0.0)}
_SYMS = ("space", "boost", "scale", "add", "amplitude")


class PDEViews(nn.Module):
    """Random crops and Lie point symmetries of a batch of PDE samples ``(B, C, nt, nx)``, per sample.

    ``C`` is 3 (field + ``t``, ``x`` coordinates, see the module docstring; ``dt / dx`` is read from them)
    or 1 (then ``dt_dx`` must be given when ``boost > 0``). Each sample gets, in this order:

    1. a random time window of ``crop[0]`` steps (time translation; start uniform in ``0..nt - crop[0]``);
    2. one Fourier shift per row on the full periodic grid: ``g * nx`` grid points (space translation,
       ``g ~ U(-space, space)``) plus ``c * i * dt / dx`` (Galilean boost, ``c ~ U(-boost, boost)``, ``i``
       the row index within the window; a boost about the window start differs from one about ``t = 0``
       by a space translation, also a symmetry), then ``u -> u + c``;
    3. scaling (KdV, Burgers, heat) ``e ~ U(-scale, scale)``: ``u -> e^(c e) u`` on the same grid indices,
       the coordinates ``t -> e^(b e) t``, ``x -> e^(a e) x`` (so ``dt / dx`` becomes ``e^((b - a) e)`` times
       itself); heat also ``add`` (``u + g``) and ``amplitude`` (``e^g u``);
    4. a random window of ``crop[1]`` grid points in x.

    Steps 1-3 map exact solutions to exact solutions (checked with :func:`selfsup.pde.residual` in the
    tests). Translations and the boost resample the field on the same grid, so they leave the coordinates
    as they are (the new field is sampled at the old points); the crops take the coordinates of the
    window. The x-crop makes the window non-periodic (``pde2d`` still pads circularly). The output is
    ``(B, C, crop[0], crop[1])``: the input shape when ``crop`` is ``None`` (the default: no cropping).
    Default strengths are the public ones of :func:`selfsup.pde.symmetries` (KdV space 1.0, boost 0.4,
    scale 0.05; KS space 1.0, boost 0.4); a strength for a symmetry the equation lacks raises ConfigError.
    """

    def __init__(
        self,
        sample_shape: Sequence[int],
        equation: str | None = None,
        crop: Sequence[int] | None = None,
        space: float | None = None,
        boost: float | None = None,
        scale: float | None = None,
        add: float | None = None,
        amplitude: float | None = None,
        dt_dx: float | None = None,
    ) -> None:
        super().__init__()
        shape = tuple(int(s) for s in sample_shape)
        if len(shape) != 3 or shape[0] not in (1, 3):
            raise ShapeError(
                f"view recipe 'pde' takes samples (C, nt, nx) with C = 3 (field, t, x) or 1 (field), "
                f"got sample shape {shape}"
            )
        if equation is None:
            raise ConfigError(
                "view recipe 'pde' needs the equation: set data.view_args.equation (kdv, ks, heat, burgers)"
            )
        self.equation = get_equation(equation).name
        _, nt, nx = shape
        self.coords = shape[0] == 3
        crop = (nt, nx) if crop is None else tuple(int(c) for c in crop)
        if len(crop) != 2 or not (1 <= crop[0] <= nt and 1 <= crop[1] <= nx):
            raise ConfigError(
                f"pde views: crop must be (t, x) with 1 <= t <= {nt}, 1 <= x <= {nx}, got {crop}"
            )
        self.crop = crop
        table = symmetries(self.equation)
        given = {"space": space, "boost": boost, "scale": scale, "add": add, "amplitude": amplitude}
        self.strength: dict[str, float] = {}
        for name in _SYMS:
            s = given[name]
            if s is None:
                s = table[name].strength if name in table else 0.0
            s = float(s)
            if s < 0:
                raise ConfigError(f"pde views: strength '{name}' must be >= 0, got {s}")
            if s > 0 and name not in table:
                raise ConfigError(
                    f"pde views: '{self.equation}' has no '{name}' symmetry; "
                    f"its symmetries: {', '.join(table)}"
                )
            self.strength[name] = s
        if not self.coords and self.strength["boost"] > 0 and dt_dx is None:
            raise ConfigError(
                "pde views: samples without coordinate channels need dt_dx=... for the boost (or boost=0)"
            )
        self.dt_dx = None if dt_dx is None else float(dt_dx)

    def extra_repr(self) -> str:
        s = ", ".join(f"{k}={v:g}" for k, v in self.strength.items() if v)
        return f"equation={self.equation}, crop={self.crop}, {s}"

    def _dt_dx(self, x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """Per sample ``dt / dx``: from the coordinate channels (their end points), else ``dt_dx``."""
        b, _, nt, nx = x.shape
        if not self.coords:
            return torch.full((b,), self.dt_dx or 0.0, dtype=dtype, device=x.device)
        t, xs = x[:, 1].to(dtype), x[:, 2].to(dtype)
        dt = (t[:, -1, 0] - t[:, 0, 0]) / max(nt - 1, 1)
        dx = (xs[:, 0, -1] - xs[:, 0, 0]) / max(nx - 1, 1)
        return torch.where(dx > 0, dt / dx.where(dx > 0, 1.0), 0.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ch = 3 if self.coords else 1
        if x.dim() != 4 or x.shape[1] != ch:
            raise ShapeError(f"pde views expect a batch (B, {ch}, nt, nx), got {tuple(x.shape)}")
        b, _, nt, nx = x.shape
        ct, cx = self.crop
        dev, dtype = x.device, x.dtype
        wdtype = torch.float64 if dtype == torch.float64 else torch.float32

        def uniform(s: float) -> torch.Tensor:
            return (2 * R.rand(b, device=dev, dtype=wdtype) - 1) * s

        # 1. time window (of the field and its coordinates)
        t0 = R.randint(0, nt - ct + 1, b, device=dev)
        rows = t0[:, None] + torch.arange(ct, device=dev)
        w = torch.gather(x, 2, rows[:, None, :, None].expand(b, ch, ct, nx)).to(wdtype)
        u, coords = w[:, 0], w[:, 1:]
        # 2. space translation + Galilean boost: one Fourier shift per row, then u + c
        g, c = uniform(self.strength["space"]), uniform(self.strength["boost"])
        ratio = self._dt_dx(x, wdtype)
        shift = g[:, None] * nx + c[:, None] * ratio[:, None] * torch.arange(ct, device=dev, dtype=wdtype)
        if self.strength["space"] or self.strength["boost"]:
            m = torch.arange(nx // 2 + 1, device=dev, dtype=wdtype)
            phase = torch.polar(
                torch.ones_like(shift[..., None] * m), -2 * math.pi / nx * shift[..., None] * m
            )
            u = torch.fft.irfft(torch.fft.rfft(u, dim=-1) * phase, n=nx, dim=-1)
        u = u + c[:, None, None]
        # 3. scaling of u and of the coordinates; heat's u + g and e^g u
        if self.strength["scale"]:
            a, bt, cu = _SCALING[self.equation]
            e = uniform(self.strength["scale"])
            u = u * torch.exp(cu * e)[:, None, None]
            if self.coords:
                coords = coords * torch.exp(torch.stack([bt * e, a * e], 1))[:, :, None, None]
        if self.strength["add"]:
            u = u + uniform(self.strength["add"])[:, None, None]
        if self.strength["amplitude"]:
            u = u * torch.exp(uniform(self.strength["amplitude"]))[:, None, None]
        # 4. x window
        out = torch.cat([u[:, None], coords], dim=1)
        if cx < nx:
            x0 = R.randint(0, nx - cx + 1, b, device=dev)
            cols = x0[:, None] + torch.arange(cx, device=dev)
            out = torch.gather(out, 3, cols[:, None, None, :].expand(b, ch, ct, cx))
        return out.to(dtype)


def pde_views(sample_shape: Sequence[int], view_index: int = 0, **overrides) -> PDEViews:
    """PDE trajectories: random (t, x) crops and random Lie point symmetries per sample (:class:`PDEViews`).

    Options: ``equation`` (required; filled in by the ``pde:``/``pde-gen:`` datasets), ``crop`` (t, x)
    (default: none), strengths ``space``, ``boost``, ``scale``, ``add``, ``amplitude`` (default: the public
    ones of the equation), ``dt_dx`` for samples without coordinate channels. Symmetric in the views.
    """
    return PDEViews(sample_shape, **overrides)


PDE_VIEWS = ViewRecipe(pde_views, PDEViews)
