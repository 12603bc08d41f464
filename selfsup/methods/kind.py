"""What a method is: a :class:`MethodRecipe` (a name, a criterion, head sizes, the paper's defaults) of one
:class:`MethodKind` (how the views' backbone features become the loss, and the heads that takes).

Each kind lives in its own module of this package (``pairwise``, ``distill``, ``moco``, ``dino``, ``swav``,
``classify``, ``lejepa``, ``sie``) with the recipes of that kind; ``ema`` (the EMA teacher) and ``memory``
(queues of past embeddings) are what several kinds share. Nothing outside this package asks which kind a
method is: it asks the recipe or the model (``recipe.needs_transform``, ``model.run_metrics`` ...).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from selfsup.methods.ema import ema_momentum
from selfsup.models import build_mlp, head_output_dim


@dataclass(frozen=True)
class HeadOptions:
    """What a run tells a method about its heads and its data (the keyword arguments of ``SSLModel``)."""

    predictor: str | None = None  # predictor widths ("" or None: the recipe's)
    n_train: int | None = None  # training samples (DIET's classes)
    n_global: int = 2  # the first n_global views are global crops (LeJEPA's prediction target)
    head_batch_norm: bool = True  # BatchNorm in the MLP heads
    transform_identity: torch.Tensor | None = None  # the identity transformation of the pairs views (SIE)
    equivariant_dim: int | None = None  # SIE's equivariant share of the backbone output
    train_labels: torch.Tensor | None = None  # the supervised reference's classes, by sample index
    batch_size: int | None = None  # the global batch (queues hold whole batches)
    steps_per_epoch: int | None = None  # optimiser steps per epoch (schedules given in epochs)


class MethodKind:
    """One way of turning the backbone features of a batch's views into a loss.

    A subclass overrides :meth:`loss` and whatever else differs from these defaults: a projector built by
    :func:`selfsup.models.build_mlp`, no other head, one backbone forward per view, two embeddings as the
    criterion's inputs, no metric of its own on the monitor subset.
    """

    #: The loss uses the transformation between the two views (``data.views=pairs`` gives it).
    needs_transform: bool = False
    #: The method can train on view recipes that pair samples of a dataset (``pairs``).
    accepts_paired_views: bool = True
    #: Global views it needs among ``data.n_views`` (the others are local crops).
    min_global_views: int = 1
    #: Label-free numbers :meth:`monitor_metrics` records per epoch and in ``summary.json``.
    run_metrics: tuple[str, ...] = ()

    @staticmethod
    def options() -> dict:
        """The kind's own options (``method.params`` that are not the criterion's), checked by their
        signature and returned with defaults; a subclass lists them as keyword arguments."""
        return {}

    def build_projector(self, m: nn.Module, spec: str, opts: HeadOptions) -> nn.Module:
        """The projector on the backbone output (``spec``: its widths, ``""`` for none)."""
        return build_mlp(m.backbone.out_dim, spec, batch_norm=opts.head_batch_norm)

    def build_heads(self, m: nn.Module, opts: HeadOptions) -> None:
        """Add the method's other heads to ``m`` (predictor, target network, classifier)."""

    def features(self, m: nn.Module, views: list[torch.Tensor]) -> list[torch.Tensor]:
        """The backbone features of each view."""
        return [m.backbone(v) for v in views]

    def probe_features(self, m: nn.Module, feats: list) -> torch.Tensor:
        """What the online probe trains on, ``B x D`` of the backbone's width: the first view's features."""
        return feats[0]

    def loss(self, m: nn.Module, feats: list[torch.Tensor], views, index, transform) -> torch.Tensor:
        """The scalar loss of one batch: ``feats`` of ``views``, the samples' ``index`` in the training
        set, the ``transform`` between the views (or None)."""
        raise NotImplementedError(f"{type(self).__name__} must define loss()")

    def dummy_inputs(self, g: torch.Generator) -> tuple:
        """One tiny batch of the criterion's positional inputs, to check ``method.params`` before a run."""
        return torch.randn(4, 3, generator=g), torch.randn(4, 3, generator=g)

    def momentum(self, m: nn.Module, step: int, total_steps: int) -> float:
        """The EMA teacher's momentum after ``step`` of ``total_steps`` (with a teacher, ``m.target``):
        BYOL's cosine schedule from ``m.ema_base`` to 1."""
        return ema_momentum(m.ema_base, step, total_steps)

    def after_backward(self, m: nn.Module, step: int) -> None:
        """Called between the backward pass and the optimiser step (gradients averaged over processes):
        e.g. drop the gradients of a head frozen for the first steps."""

    def monitor_metrics(self, m: nn.Module, z: torch.Tensor, batch_size: int) -> dict[str, float]:
        """The :attr:`run_metrics` of the projected monitor views ``z`` (V x N x K), in batches of
        ``batch_size`` samples as in training."""
        return {}


def build_predictor(m: nn.Module, opts: HeadOptions, last_bias: bool = True) -> nn.Module:
    """The predictor MLP on the projector's output (BYOL, SimSiam, MoCo v3, NNCLR): ``model.predictor``'s
    widths, else the recipe's."""
    proj_dim = head_output_dim(m.projector, m.backbone.out_dim)
    spec = opts.predictor or m.recipe.predictor
    return build_mlp(proj_dim, spec, last_bias=last_bias, batch_norm=opts.head_batch_norm)


@dataclass(frozen=True, kw_only=True)
class MethodRecipe:
    """A named method: its kind, its criterion and the paper's defaults."""

    name: str
    kind: MethodKind
    criterion: Callable[..., torch.Tensor]
    projector: str  # projector widths, e.g. "2048-128" ("" for none)
    paper: str  # where the defaults come from
    params: dict = field(default_factory=dict)  # criterion keyword defaults (paper values)
    predictor: str | None = None  # predictor widths (BYOL, SimSiam)
    ema_base: float | None = None  # target-network momentum at step 0 (cosine schedule to 1)

    @property
    def needs_transform(self) -> bool:
        return self.kind.needs_transform

    @property
    def accepts_paired_views(self) -> bool:
        return self.kind.accepts_paired_views

    @property
    def min_global_views(self) -> int:
        return self.kind.min_global_views

    @property
    def run_metrics(self) -> tuple[str, ...]:
        return self.kind.run_metrics
