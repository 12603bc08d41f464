"""Projector / predictor heads built from a spec string such as ``"2048-2048-2048"``.

Convention (VICReg, Barlow Twins, SimCLR v2): every layer but the last is ``Linear -> BatchNorm1d -> ReLU``;
the last layer is a plain ``Linear`` without bias (``last_bias=True`` keeps it).
"""

from __future__ import annotations

import torch
from torch import nn

from selfsup.errors import ConfigError

__all__ = ["build_mlp", "head_depth", "head_layer_outputs", "head_output_dim", "parse_spec"]

# Modules after which a projector "block" ends (its output is one evaluable layer).
_ACTIVATIONS = (nn.ReLU, nn.GELU, nn.SiLU, nn.LeakyReLU, nn.Tanh, nn.ELU)


def parse_spec(spec: str | int | None) -> list[int]:
    """Parse a layer-width spec ``"2048-2048-2048"`` into ``[2048, 2048, 2048]``.

    ``""`` (or ``None``) means no layer: ``[]``. An int means one layer. Widths must be positive integers;
    anything else raises :class:`ConfigError`.
    """
    if spec is None:
        return []
    if isinstance(spec, bool):
        raise ConfigError(f"layer spec must be a string like '2048-2048-2048', got {spec!r}.")
    if isinstance(spec, int):
        spec = str(spec)
    if not isinstance(spec, str):
        raise ConfigError(f"layer spec must be a string like '2048-2048-2048', got {type(spec).__name__}.")
    text = spec.strip()
    if not text:
        return []
    widths = []
    for part in text.split("-"):
        part = part.strip()
        if not part.isdigit() or int(part) <= 0:
            raise ConfigError(
                f"bad layer spec '{spec}': '{part}' is not a positive integer width. "
                "Write widths separated by '-', e.g. '2048-2048-2048', or '' for no layer."
            )
        widths.append(int(part))
    return widths


def build_mlp(
    in_dim: int, spec: str | int | None, last_bias: bool = False, batch_norm: bool = True
) -> nn.Module:
    """Build an MLP head from ``spec`` (``batch_norm=False``: ``Linear -> ReLU`` blocks, no BatchNorm).

    ``build_mlp(512, "2048-2048-2048")`` is ``Linear(512,2048) BN ReLU Linear(2048,2048) BN ReLU
    Linear(2048,2048, bias=False)`` as one flat :class:`nn.Sequential` (state-dict keys ``0.weight``,
    ``1.weight``...). An empty spec gives :class:`nn.Identity` (no projector). The output width is the last
    number of the spec (``in_dim`` for an empty spec).
    """
    if isinstance(in_dim, bool) or not isinstance(in_dim, int) or in_dim <= 0:
        raise ConfigError(f"head input dimension must be a positive integer, got {in_dim!r}.")
    widths = parse_spec(spec)
    if not widths:
        return nn.Identity()
    layers: list[nn.Module] = []
    dims = [in_dim, *widths]
    for i in range(len(widths)):
        last = i == len(widths) - 1
        layers.append(nn.Linear(dims[i], dims[i + 1], bias=last_bias if last else True))
        if not last:
            if batch_norm:
                layers.append(nn.BatchNorm1d(dims[i + 1]))
            layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


def head_output_dim(head: nn.Module, in_dim: int) -> int:
    """Output width of a head built by :func:`build_mlp` (``in_dim`` for an identity head), or its
    ``out_dim`` (a head of several parts)."""
    if hasattr(head, "out_dim"):
        return head.out_dim
    out = in_dim
    for module in head.modules():
        if isinstance(module, nn.Linear):
            out = module.out_features
    return out


def head_layer_outputs(head: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Run ``head`` on ``x`` and return the output of each block: ``{"proj1": ..., "proj2": ..., ...}``.

    A block ends after each activation (ReLU, GELU...) and at the end of the head, so for
    ``build_mlp(d, "2048-2048-2048")`` ``proj1``/``proj2`` are post-ReLU hidden layers and ``proj3`` is the
    final embedding (equal to ``head(x)``). An identity head has no layers and gives ``{}``. A non-sequential
    head is treated as one block (``{"proj1": head(x)}``). Used for layer-wise (guillotine) evaluation.
    """
    if isinstance(head, nn.Identity):
        return {}
    if hasattr(head, "layer_outputs"):  # a head of several parts (SIE's SplitHead) knows its blocks
        return head.layer_outputs(x)
    if not isinstance(head, nn.Sequential):
        return {"proj1": head(x)}
    outputs: dict[str, torch.Tensor] = {}
    modules = list(head)
    h = x
    for i, module in enumerate(modules):
        h = module(h)
        if isinstance(module, _ACTIVATIONS) or i == len(modules) - 1:
            outputs[f"proj{len(outputs) + 1}"] = h
    return outputs


def head_depth(head: nn.Module) -> int:
    """The number of blocks :func:`head_layer_outputs` returns (a part-wise head's ``depth``)."""
    if hasattr(head, "depth"):
        return head.depth
    return sum(isinstance(m, nn.Linear) for m in head.modules())
