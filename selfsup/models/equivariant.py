"""Heads of the equivariant methods: SIE's split projector and the two transformation-conditioned predictors.

* :class:`SplitHead`: the representation ``[h_inv | h_eq]`` (the last ``eq_dim`` dimensions equivariant),
  each part through its own projector, the outputs concatenated ``[z_inv | z_eq]``. As SIE's public code,
  each projector is the run's projector spec scaled by its part's share of the representation.
* :class:`HyperPredictor`: SIE's predictor. A hypernetwork maps the transformation ``t`` to the weights
  of a linear map ``W(t)`` (``eq x eq``), applied to ``z_eq`` of view 1 by a batched matrix product.
  The public code's hypernetwork is ``Linear(t -> eq^2)``; ours is ``W(t) = I + H(t - t_id)`` with ``H``
  that linear map (or an MLP) without bias and ``t_id`` the identity transformation, so the predictor of
  the identity transformation is the identity map: a group action's ``rho(e) = I``, which equivariance
  ``f(g x) = rho(g) f(x)`` demands at ``g = e``. ``W`` stays affine in ``t`` as the public (linear) one.
* :class:`ConcatPredictor`: the "no split" baseline (EquiMod-style, Devillers & Lefort 2023): an MLP on
  the concatenation ``[z, t]``.
"""

from __future__ import annotations

import torch
from torch import nn

from selfsup.models.heads import build_mlp, head_layer_outputs, parse_spec


def scaled_spec(spec: str, share: float) -> str:
    """A projector spec with every width scaled by ``share`` (at least 1), as SIE's code splits its MLP."""
    return "-".join(str(max(1, round(w * share))) for w in parse_spec(spec))


class SplitHead(nn.Module):
    """``[proj_inv(h[:, :inv_dim]) | proj_eq(h[:, inv_dim:])]``; ``inv_out`` is the width of its
    invariant output. Its blocks (``proj1``...) are the two projectors' blocks concatenated."""

    def __init__(self, in_dim: int, eq_dim: int, spec: str, batch_norm: bool = True):
        super().__init__()
        self.inv_dim = in_dim - eq_dim
        self.inv = build_mlp(self.inv_dim, scaled_spec(spec, self.inv_dim / in_dim), batch_norm=batch_norm)
        self.eq = build_mlp(eq_dim, scaled_spec(spec, eq_dim / in_dim), batch_norm=batch_norm)
        self.inv_out = _out_dim(self.inv, self.inv_dim)
        self.eq_out = _out_dim(self.eq, eq_dim)
        self.out_dim = self.inv_out + self.eq_out

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return torch.cat((self.inv(h[:, : self.inv_dim]), self.eq(h[:, self.inv_dim :])), 1)

    @property
    def depth(self) -> int:
        """Blocks per part (both parts have the spec's depth)."""
        return sum(isinstance(m, nn.Linear) for m in self.inv.modules())

    def layer_outputs(self, h: torch.Tensor) -> dict[str, torch.Tensor]:
        """Block ``i`` of the head: block ``i`` of both projectors, concatenated."""
        inv = head_layer_outputs(self.inv, h[:, : self.inv_dim])
        eq = head_layer_outputs(self.eq, h[:, self.inv_dim :])
        return {name: torch.cat((inv[name], eq[name]), 1) for name in inv}


def _out_dim(head: nn.Module, in_dim: int) -> int:
    linears = [m for m in head.modules() if isinstance(m, nn.Linear)]
    return linears[-1].out_features if linears else in_dim


class HyperPredictor(nn.Module):
    """``pred = W(t) z`` with ``W(t) = I + H(t - t_id)`` reshaped ``dim x dim`` (module docstring).

    ``hidden``: the hypernetwork's hidden widths (``""``: linear, the public default; ``"64-64"``: SIE's
    3-layer MLP option). The last layer starts at zero scale ``init_scale``-times the default, so that
    ``W(t)`` starts near the identity and the predictor near VICReg's invariance."""

    def __init__(self, dim: int, t_identity: torch.Tensor, hidden: str = "", init_scale: float = 0.1):
        super().__init__()
        self.dim = dim
        self.register_buffer("t_identity", t_identity.float().clone(), persistent=False)
        widths = [*parse_spec(hidden), dim * dim]
        layers: list[nn.Module] = []
        for i, w in enumerate(widths):
            layers.append(nn.Linear(widths[i - 1] if i else len(t_identity), w, bias=False))
            if i < len(widths) - 1:
                layers.append(nn.ReLU())
        self.hypernet = nn.Sequential(*layers)
        with torch.no_grad():
            self.hypernet[-1].weight.mul_(init_scale)

    def weights(self, t: torch.Tensor) -> torch.Tensor:
        """``W(t)``: B x dim x dim."""
        eye = torch.eye(self.dim, device=t.device, dtype=t.dtype)
        return eye + self.hypernet(t - self.t_identity).view(-1, self.dim, self.dim)

    def forward(self, z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        w = self.weights(t.to(z.dtype))
        return torch.bmm(w, z.unsqueeze(2)).squeeze(2)


class ConcatPredictor(nn.Module):
    """``pred = MLP([z, t])``: hidden widths ``hidden`` (default one layer of ``2 dim``), output ``dim``."""

    def __init__(self, dim: int, t_dim: int, hidden: str = "", batch_norm: bool = True):
        super().__init__()
        hidden = hidden or str(2 * dim)
        self.mlp = build_mlp(dim + t_dim, f"{hidden}-{dim}", last_bias=True, batch_norm=batch_norm)

    def forward(self, z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.mlp(torch.cat((z, t.to(z.dtype)), 1))
