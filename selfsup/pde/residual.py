"""PDE residuals of trajectory batches: the check that a (transformed) field still solves its equation.

Used to verify the Lie point symmetries of Mialon, Garrido et al. (NeurIPS 2023, arXiv 2307.05432): a
symmetry maps solutions to solutions, so a transformed trajectory must have the same (small) residual.
"""

from __future__ import annotations

import torch
from torch import Tensor

from selfsup.errors import ConfigError, NonFiniteError, ShapeError
from selfsup.pde.equations import get_equation
from selfsup.pde.fourier import spectral_derivative

# central first-derivative stencils (offsets 1..p; the weights are antisymmetric)
_STENCILS = {
    2: [1 / 2],
    4: [2 / 3, -1 / 12],
    6: [3 / 4, -3 / 20, 1 / 60],
    8: [4 / 5, -1 / 5, 4 / 105, -1 / 280],
}


def time_derivative(u: Tensor, dt: Tensor, order: int = 6) -> Tensor:
    """Central finite difference ``u_t`` of ``u (n, nt, nx)`` on the interior times ``p .. nt - 1 - p``."""
    if order not in _STENCILS:
        raise ConfigError(f"time-derivative order must be one of {sorted(_STENCILS)}, got {order}")
    w, p, nt = _STENCILS[order], len(_STENCILS[order]), u.shape[1]
    if nt < 2 * p + 1:
        raise ShapeError(f"order-{order} time differences need at least {2 * p + 1} time steps, got {nt}")
    du = sum(
        wj * (u[:, p + j + 1 : nt - p + j + 1] - u[:, p - j - 1 : nt - p - j - 1]) for j, wj in enumerate(w)
    )
    return du / dt.reshape(-1, 1, 1)


def residual(
    equation: str,
    u: Tensor,
    dt: Tensor | float,
    dx: Tensor | float,
    nu: Tensor | float | None = None,
    order: int = 6,
    reduce: bool = True,
) -> Tensor:
    """Relative PDE residual of each trajectory of ``u (n, nt, nx)`` (float64 result of shape ``(n,)``).

    Writing the equation as ``u_t + S(u) = 0`` (KdV ``S = u u_x + u_xxx``, KS ``S = u u_x + u_xx + u_xxxx``,
    heat ``S = -nu u_xx``, Burgers ``S = u u_x - nu u_xx``), x-derivatives are spectral (periodic grid of
    spacing ``dx``) and ``u_t`` is an ``order``-th order central difference on the interior times. The result
    is ``||u_t + S|| / (||u_t|| + ||S||)`` (L2 norms over the interior points of a trajectory): 0 for an exact
    solution, at most 1, invariant to the scalings of u, x and t; for data the floor is the time-difference
    error ``O(dt^order)``. ``reduce=False`` returns the pointwise residual ``u_t + S`` instead.
    """
    eq = get_equation(equation)
    if u.dim() != 3:
        raise ShapeError(f"u must be (n, nt, nx), got shape {tuple(u.shape)}")
    n = u.shape[0]
    u = u.to(torch.float64)
    dt, dx = (torch.as_tensor(v, dtype=torch.float64, device=u.device).expand(n).clone() for v in (dt, dx))
    if "nu" in eq.coeffs:
        if nu is None:
            raise ConfigError(f"{eq.name}: the residual needs the viscosity 'nu'")
        nu = torch.as_tensor(nu, dtype=torch.float64, device=u.device).expand(n).reshape(n, 1, 1)
    for name, v in (("u", u), ("dt", dt), ("dx", dx)):
        if not bool(torch.isfinite(v).all()):
            raise NonFiniteError(f"residual: '{name}' holds NaN/Inf values")
    ut = time_derivative(u, dt, order)
    p = len(_STENCILS[order])
    ui = u[:, p : u.shape[1] - p]
    d = {o: spectral_derivative(ui, dx, o) for o in (1, 2, 3, 4)}
    if eq.name == "kdv":
        s = ui * d[1] + d[3]
    elif eq.name == "ks":
        s = ui * d[1] + d[2] + d[4]
    elif eq.name == "heat":
        s = -nu * d[2]
    else:
        s = ui * d[1] - nu * d[2]
    r = ut + s
    if not reduce:
        return r
    norm = ut.flatten(1).norm(dim=1) + s.flatten(1).norm(dim=1)
    return r.flatten(1).norm(dim=1) / norm.clamp_min(torch.finfo(torch.float64).tiny)
