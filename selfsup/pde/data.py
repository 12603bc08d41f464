"""The container for a batch of PDE trajectories and their grids."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import Tensor

from selfsup.errors import NonFiniteError, ShapeError


@dataclass
class PDEData:
    """``n`` trajectories of one equation on periodic grids, each with its own grid and coefficients.

    ``u (n, nt, nx)`` float64 or float32; ``x (n, nx)``; ``t (n, nt)`` (absolute times); ``dx, dt (n,)``;
    ``coeffs``: name -> ``(n,)`` tensor (``L``, ``T``, ``nu`` and the initial-condition amplitudes ``u0_k1``,
    ``u0_k2`` where relevant); ``params``: the generator
    parameters (stored as HDF5 attributes).
    """

    equation: str
    u: Tensor
    x: Tensor
    t: Tensor
    dx: Tensor
    dt: Tensor
    coeffs: dict[str, Tensor] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.u.dim() != 3:
            raise ShapeError(f"u must be (n, nt, nx), got shape {tuple(self.u.shape)}")
        n, nt, nx = self.u.shape
        expected = {"x": (n, nx), "t": (n, nt), "dx": (n,), "dt": (n,)}
        expected.update({f"coeffs['{k}']": (n,) for k in self.coeffs})
        got = {"x": self.x, "t": self.t, "dx": self.dx, "dt": self.dt}
        got.update({f"coeffs['{k}']": v for k, v in self.coeffs.items()})
        for name, shape in expected.items():
            if tuple(got[name].shape) != shape:
                raise ShapeError(
                    f"{name} must have shape {shape} for u of shape {(n, nt, nx)}, "
                    f"got {tuple(got[name].shape)}"
                )

    @property
    def n(self) -> int:
        return self.u.shape[0]

    @property
    def nt(self) -> int:
        return self.u.shape[1]

    @property
    def nx(self) -> int:
        return self.u.shape[2]

    @property
    def L(self) -> Tensor:
        """Per-trajectory period ``nx * dx``."""
        return self.dx * self.nx

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, idx: Any) -> PDEData:
        """Select trajectories (int, slice, index tensor or boolean mask)."""
        if isinstance(idx, int):
            idx = slice(idx, idx + 1 if idx != -1 else None)
        return replace(
            self,
            u=self.u[idx],
            x=self.x[idx],
            t=self.t[idx],
            dx=self.dx[idx],
            dt=self.dt[idx],
            coeffs={k: v[idx] for k, v in self.coeffs.items()},
        )

    def to(self, device: str | torch.device | None = None, dtype: torch.dtype | None = None) -> PDEData:
        """Move every tensor to ``device``; ``dtype`` applies to ``u`` only (grids stay float64)."""
        return replace(
            self,
            u=self.u.to(device=device, dtype=dtype),
            x=self.x.to(device),
            t=self.t.to(device),
            dx=self.dx.to(device),
            dt=self.dt.to(device),
            coeffs={k: v.to(device) for k, v in self.coeffs.items()},
        )

    def check_finite(self, where: str = "data") -> PDEData:
        """Raise :class:`NonFiniteError` when ``u`` or a grid holds NaN or Inf; returns ``self``."""
        for name, v in [
            ("u", self.u),
            ("x", self.x),
            ("t", self.t),
            ("dx", self.dx),
            ("dt", self.dt),
            *self.coeffs.items(),
        ]:
            if not bool(torch.isfinite(v).all()):
                bad = int((~torch.isfinite(v)).sum())
                raise NonFiniteError(
                    f"{where}: '{name}' holds {bad} NaN/Inf value(s); regenerate or clean the data."
                )
        return self

    @staticmethod
    def cat(parts: list[PDEData]) -> PDEData:
        """Concatenate batches of the same equation and grid size along trajectories."""
        first = parts[0]
        return replace(
            first,
            u=torch.cat([p.u for p in parts]),
            x=torch.cat([p.x for p in parts]),
            t=torch.cat([p.t for p in parts]),
            dx=torch.cat([p.dx for p in parts]),
            dt=torch.cat([p.dt for p in parts]),
            coeffs={k: torch.cat([p.coeffs[k] for p in parts]) for k in first.coeffs},
        )
