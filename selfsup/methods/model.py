"""The model of a run: a backbone, the heads of its method and the method's loss (:class:`SSLModel`)."""

from __future__ import annotations

import inspect
import re
from collections.abc import Sequence

import torch
from torch import nn

from selfsup.errors import unknown_name
from selfsup.methods.ema import update_teacher
from selfsup.methods.kind import HeadOptions, MethodRecipe
from selfsup.methods.registry import check_method_params
from selfsup.models import Backbone, head_depth, head_layer_outputs


def resolve_layer(layer: str | None, names: Sequence[str]) -> str:
    """A layer of :attr:`SSLModel.layer_names` from a name or an alias: ``None`` or ``"backbone"`` -> the
    backbone's output, ``"projector"`` -> the projector's output (the backbone's without a projector)."""
    backbone = [n for n in names if not re.fullmatch(r"proj\d+", n)]
    alias = {"backbone": backbone[-1], "projector": names[-1]}
    layer = "backbone" if layer is None else layer
    if layer in alias:
        return alias[layer]
    if layer not in names:
        raise unknown_name("layer", layer, ["backbone", "projector", *names])
    return layer


class SSLModel(nn.Module):
    """Backbone + projector (+ the heads of the method's kind: predictor, EMA target, classifier) and the
    method's loss. The keyword arguments are :class:`HeadOptions`; ``ema_base`` replaces the recipe's."""

    def __init__(
        self,
        recipe: MethodRecipe,
        backbone: Backbone,
        projector: str | None = None,
        predictor: str | None = None,
        params: dict | None = None,
        ema_base: float | None = None,
        **options,
    ):
        super().__init__()
        opts = HeadOptions(predictor=predictor, **options)
        self.recipe, self.kind = recipe, recipe.kind
        self.params = {**recipe.params, **(params or {})}  # the recipe's (paper) values, then the run's
        of_criterion, of_kind = check_method_params(recipe, self.params)
        self._criterion_params, self.options = of_criterion, recipe.kind.options(**of_kind)
        self.backbone = backbone
        self.n_global = opts.n_global  # the first n_global views are the global ones
        self.ema_base = ema_base if ema_base is not None else recipe.ema_base
        self.n_inv = 0  # the invariant width of the embedding (SIE)
        self.predictor = self.target = self.class_head = None  # the heads a kind adds
        spec = recipe.projector if projector is None else projector
        self.projector = self.kind.build_projector(self, spec, opts)
        self.kind.build_heads(self, opts)
        self._register_load_state_dict_pre_hook(_renamed_keys)
        # Several processes (torchrun + DDP): the criterion's batch statistics gather every process's rows
        # (set by the training loop; criteria without batch statistics, BYOL's and DIET's, need nothing).
        self.gather_distributed = False
        self._criterion_gathers = "gather_distributed" in inspect.signature(recipe.criterion).parameters

    @property
    def run_metrics(self) -> tuple[str, ...]:
        """The method's own label-free numbers on the monitor subset (:meth:`monitor_metrics`)."""
        return self.kind.run_metrics

    def monitor_metrics(self, z: torch.Tensor, batch_size: int) -> dict[str, float]:
        """:attr:`run_metrics` of the projected monitor views ``z`` (V x N x K), in batches as in training."""
        return self.kind.monitor_metrics(self, z, batch_size)

    @property
    def criterion_options(self) -> dict:
        """The criterion's keyword arguments: the method's parameters, and ``gather_distributed`` when the
        criterion has batch statistics and the model trains in several processes."""
        if self.gather_distributed and self._criterion_gathers:
            return {**self._criterion_params, "gather_distributed": True}
        return self._criterion_params

    def forward(
        self, views: list[torch.Tensor], index: torch.Tensor, transform: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The method's loss (:meth:`loss`), as ``forward`` so that DistributedDataParallel can wrap it."""
        return self.loss(views, index, transform)

    def loss(
        self, views: list[torch.Tensor], index: torch.Tensor, transform: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (loss, the online probe's detached input: the first view's backbone features, or what the
        kind's ``probe_features`` gives) for one batch of views (``transform``: the transformations between
        the views, for SIE; :mod:`selfsup.views.pairs`)."""
        feats = self.kind.features(self, views)
        loss = self.kind.loss(self, feats, views, index, transform)
        return loss, self.kind.probe_features(self, feats).detach()

    @torch.no_grad()
    def update_target(self, step: int, total_steps: int) -> None:
        """EMA step of the teacher (BYOL, MoCo, DINO: :mod:`selfsup.methods.ema`); no-op without one."""
        if self.target is not None:
            update_teacher(self, self.kind.momentum(self, step, total_steps))

    def after_backward(self, step: int) -> None:
        """The kind's hook between backward and the optimiser step (frozen heads drop their gradients)."""
        self.kind.after_backward(self, step)

    @property
    def layer_names(self) -> list[str]:
        """Backbone named layers, then one name per projector block (``proj1``, ``proj2`` ...)."""
        return list(self.backbone.layer_names) + [f"proj{i + 1}" for i in range(head_depth(self.projector))]

    @torch.no_grad()
    def embed_layers(self, x: torch.Tensor, layers: list[str] | None = None) -> dict[str, torch.Tensor]:
        """Features of the requested layers (default: all of :attr:`layer_names`), each B x D."""
        names = self.layer_names
        layers = names if layers is None else list(layers)
        bad = [name for name in layers if name not in names]
        if bad:
            raise unknown_name("layer", bad[0], names)
        wanted_backbone = [n for n in layers if n in self.backbone.layer_names]
        last = self.backbone.layer_names[-1]
        need_proj = any(n.startswith("proj") for n in layers)
        out = self.backbone.forward_layers(x, sorted(set(wanted_backbone) | ({last} if need_proj else set())))
        if need_proj:
            out.update(head_layer_outputs(self.projector, out[last]))
        return {n: out[n] for n in layers}


def _renamed_keys(state_dict, prefix, *args) -> None:
    """Checkpoints written before the classifier head was named ``class_head`` call it ``diet_head``."""
    for key in [k for k in state_dict if k.startswith(prefix + "diet_head.")]:
        state_dict[prefix + "class_head." + key[len(prefix) + len("diet_head.") :]] = state_dict.pop(key)
