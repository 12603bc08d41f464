"""Method recipes: a name -> criterion, heads and the paper's default hyper-parameters.

A recipe is data; :class:`SSLModel` turns it into a module whose ``loss(views, index)`` is the whole
method. Projector specs are the papers' ImageNet values; the MNIST-1D presets in ``configs/`` shrink them
for a CPU.
"""

from __future__ import annotations

import copy
import inspect
import itertools
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from selfsup import criteria
from selfsup.errors import ConfigError, SelfsupError, unknown_name
from selfsup.models import (
    Backbone,
    ConcatPredictor,
    HyperPredictor,
    SplitHead,
    build_mlp,
    head_depth,
    head_layer_outputs,
    head_output_dim,
)
from selfsup.options import check_options


@dataclass(frozen=True)
class MethodRecipe:
    name: str
    criterion: Callable[..., torch.Tensor]
    kind: (
        str  # "pair" (two embeddings' loss), "byol", "simsiam", "diet", "lejepa", "sie", "equi", "supervised"
    )
    projector: str
    paper: str
    params: dict = field(default_factory=dict)  # criterion keyword defaults (paper values)
    predictor: str | None = None
    ema_base: float | None = None  # target-network momentum at step 0 (cosine schedule to 1)


METHODS: dict[str, MethodRecipe] = {
    r.name: r
    for r in [
        MethodRecipe(
            "simclr",
            criteria.simclr_loss,
            "pair",
            "2048-128",
            "Chen et al. 2020, arXiv 2002.05709 (NT-Xent, tau 0.1 at batch 4096, 0.5 on CIFAR)",
            {"temperature": 0.1},
        ),
        MethodRecipe(
            "simclr-abs",
            criteria.simclr_loss,
            "pair",
            "2048-128",
            "Garrido et al. 2022, arXiv 2206.02574 (negatives enter as |cos|)",
            {"temperature": 0.1, "variant": "abs"},
        ),
        MethodRecipe(
            "simclr-sq",
            criteria.simclr_loss,
            "pair",
            "2048-128",
            "Garrido et al. 2022, arXiv 2206.02574 (negatives enter as cos^2)",
            {"temperature": 0.1, "variant": "sq"},
        ),
        MethodRecipe(
            "dcl",
            criteria.dcl_loss,
            "pair",
            "2048-128",
            "Yeh et al. 2022, arXiv 2110.06848 (decoupled contrastive loss)",
            {"temperature": 0.1},
        ),
        MethodRecipe(
            "spectral",
            criteria.spectral_contrastive_loss,
            "pair",
            "2048-2048-128",
            "HaoChen et al. 2021, arXiv 2106.04156 (spectral contrastive loss)",
        ),
        MethodRecipe(
            "vicreg",
            criteria.vicreg_loss,
            "pair",
            "8192-8192-8192",
            "Bardes et al. 2022, arXiv 2105.04906 (official code: 25/25/1)",
            {"sim_coeff": 25.0, "std_coeff": 25.0, "cov_coeff": 1.0},
        ),
        MethodRecipe(
            "vicreg-exp",
            criteria.vicreg_exp_loss,
            "pair",
            "8192-8192-8192",
            "Garrido et al. 2022, arXiv 2206.02574 (VICReg with exponential covariance term)",
        ),
        MethodRecipe(
            "vicreg-ctr",
            criteria.vicreg_ctr_loss,
            "pair",
            "8192-8192-8192",
            "Garrido et al. 2022, arXiv 2206.02574 (VICReg-exp on the transposed embeddings)",
        ),
        MethodRecipe(
            "barlow",
            criteria.barlow_twins_loss,
            "pair",
            "8192-8192-8192",
            "Zbontar et al. 2021, arXiv 2103.03230 (lambda 0.0051)",
            {"lambd": 0.0051},
        ),
        MethodRecipe(
            "byol",
            criteria.byol_loss,
            "byol",
            "4096-256",
            "Grill et al. 2020, arXiv 2006.07733 (EMA target, momentum 0.996 -> 1, cosine)",
            predictor="4096-256",
            ema_base=0.99,
        ),
        MethodRecipe(
            "simsiam",
            criteria.byol_loss,
            "simsiam",
            "2048-2048-2048",
            "Chen & He 2021, arXiv 2011.10566 (stop-gradient, no EMA)",
            predictor="512-2048",
        ),
        MethodRecipe(
            "diet",
            criteria.diet_loss,
            "diet",
            "",
            "Ibrahim et al. 2023, arXiv 2302.10260 (sample index as class, label smoothing 0.8)",
            {"label_smoothing": 0.8},
        ),
        MethodRecipe(
            "lejepa",
            criteria.lejepa_loss,
            "lejepa",
            "2048-2048-128",
            "Balestriero & LeCun 2025, arXiv 2511.08544 ((1 - lambda) prediction + lambda SIGReg, lambda "
            "0.05, 1024 directions; 2 global + 6 local views; authors' MINIMAL.md: 2048-2048 MLP, AdamW)",
            {"lambd": 0.05},
        ),
        MethodRecipe(
            "supervised",
            criteria.diet_loss,
            "supervised",
            "",
            "a labelled reference (as in Ibrahim et al. 2022): cross-entropy of a linear head on the "
            "backbone for every view; needs labels",
            {"label_smoothing": 0.0},
        ),
        MethodRecipe(
            "sie",
            criteria.sie_loss,
            "sie",
            "2048-2048-2048",
            "Garrido, Najman & LeCun 2023, arXiv 2302.02964 (split invariant | equivariant halves, "
            "hypernetwork predictor; public config: sim 10, equivariant 0.45 x sim, std 10 (+ on the "
            "predictor), cov 1)",
        ),
        MethodRecipe(
            "sie-nosplit",
            criteria.sie_loss,
            "equi",
            "2048-2048-2048",
            "SIE's baseline without a split: every dimension equivariant, predictor an MLP of [z, t] "
            "(EquiMod-style, Devillers & Lefort 2023); SIE's loss without the invariance term, the "
            "prediction term at full weight (public code, SIEOnlyEqui)",
            {"equi_factor": 1.0},
        ),
    ]
}

#: Methods whose loss needs the transformation between the views (the ``pairs`` views give it).
TRANSFORM_KINDS = ("sie", "equi")

#: Run-level label-free numbers a method records on the monitor subset (``metrics.jsonl``, ``summary.json``)
#: besides the per-layer quality metrics; a sweep may optimise them (``objective: {metric: lejepa_loss}``).
LOSS_METRICS = {"lejepa": ("lejepa_loss", "lejepa_prediction", "lejepa_sigreg")}
RUN_METRICS = tuple(name for names in LOSS_METRICS.values() for name in names)


def get_method(name: str) -> MethodRecipe:
    if name not in METHODS:
        raise unknown_name("method", name, METHODS)
    return METHODS[name]


def check_method_params(recipe: MethodRecipe, params: dict) -> None:
    """``method.params`` must be keyword options of the recipe's criterion, with values of the right type."""
    fn = recipe.criterion
    params_ = inspect.signature(fn).parameters.values()
    inputs = [p.name for p in params_ if p.default is inspect.Parameter.empty]  # the tensors
    check_options(f"method '{recipe.name}'", params, fn, skip=(*inputs, "gather_distributed", "seed"))
    gen = torch.Generator().manual_seed(0)  # not the global RNG: checking must not change a run's randomness
    try:  # the criterion checks its own ranges (lambd in [0, 1], n_slices >= 1 ...): once, on a dummy batch
        fn(*_DUMMY_INPUTS[recipe.kind](gen), **params)
    except SelfsupError as err:
        raise ConfigError(f"method '{recipe.name}': {err}") from None


#: One tiny batch of the criterion's inputs per kind of method, for :func:`check_method_params`.
def _two_embeddings(g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.randn(4, 3, generator=g), torch.randn(4, 3, generator=g)


_DUMMY_INPUTS: dict[str, Callable] = {
    "pair": _two_embeddings,
    "byol": _two_embeddings,
    "simsiam": _two_embeddings,
    "diet": lambda g: (torch.randn(4, 4, generator=g), torch.arange(4)),
    "supervised": lambda g: (torch.randn(4, 4, generator=g), torch.arange(4)),
    "lejepa": lambda g: (torch.randn(2, 4, 3, generator=g), 2),
    "sie": lambda g: (*_two_embeddings(g), torch.randn(4, 2, generator=g), 1),
    "equi": lambda g: (*_two_embeddings(g), torch.randn(4, 2, generator=g), 1),
}


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


def ema_momentum(base: float, step: int, total_steps: int) -> float:
    """BYOL's cosine schedule: tau_k = 1 - (1 - base) (cos(pi k / K) + 1) / 2 (Grill et al., sec. 3.2)."""
    return 1.0 - (1.0 - base) * (math.cos(math.pi * min(step, total_steps) / max(total_steps, 1)) + 1) / 2


# How each kind of method turns the backbone features of the views into a loss. Each returns a scalar.


def _symmetric_pairs(m: SSLModel, feats: list[torch.Tensor], views, index, transform) -> torch.Tensor:
    """``criterion(z_i, z_j)`` of the projected views, averaged over the unordered pairs of views."""
    z = [m.projector(h) for h in feats]
    pairs = list(itertools.combinations(range(len(z)), 2))
    return sum(m.recipe.criterion(z[i], z[j], **m.criterion_options) for i, j in pairs) / len(pairs)


def _predict_target(m: SSLModel, feats: list[torch.Tensor], views, index, transform) -> torch.Tensor:
    """``criterion(p_i, z_j)``: the predictor's output of view i against the (stop-gradient) target
    projection of view j: the EMA target network's for BYOL, the online one's for SimSiam. Both
    directions of every pair are summed, as BYOL's symmetrised loss ``L + L~`` (Grill et al. 2020, eq. 2),
    then averaged over the unordered pairs; for SimSiam this is 4 x its loss + 4, a constant rescaling."""
    z = [m.projector(h) for h in feats]
    preds = [m.predictor(zi) for zi in z]
    if m.target is not None:
        with torch.no_grad():
            z = [m.target["projector"](m.target["backbone"](v)) for v in views]
    pairs = list(itertools.permutations(range(len(z)), 2))
    n_unordered = len(pairs) // 2
    return sum(m.recipe.criterion(preds[i], z[j], **m.criterion_options) for i, j in pairs) / n_unordered


def _global_local(m: SSLModel, feats: list[torch.Tensor], views, index, transform) -> torch.Tensor:
    """LeJEPA: the criterion of the stacked projections of all views (V, N, K), the first ``n_global``
    global; SIGReg's directions are seeded with the model's step counter (the same on every process)."""
    z = torch.stack([m.projector(h) for h in feats])
    seed = int(m.sigreg_step)  # a host sync of one scalar per step on an accelerator
    if m.training and torch.is_grad_enabled():
        m.sigreg_step += 1
    return m.recipe.criterion(z, m.n_global, seed=seed, **m.criterion_options)


def _instance_classes(m: SSLModel, feats: list[torch.Tensor], views, index, transform) -> torch.Tensor:
    """DIET: every view is classified into its sample's index by a linear head; the supervised reference:
    into its sample's class. Averaged over the views."""
    target = index if m.recipe.kind == "diet" else m.train_labels[index.to(m.train_labels.device)]
    return sum(m.recipe.criterion(m.diet_head(h), target, **m.criterion_options) for h in feats) / len(feats)


def _predict_transformed(m: SSLModel, feats: list[torch.Tensor], views, index, transform) -> torch.Tensor:
    """SIE and its no-split baseline: the predictor maps view 1's equivariant embedding and the
    transformation ``t`` to view 2's (one direction, as the public code); the first ``n_inv`` embedding
    dimensions (0 without a split) are invariant."""
    z1, z2 = m.projector(feats[0]), m.projector(feats[1])
    pred = m.predictor(z1[:, m.n_inv :], transform)
    return m.recipe.criterion(z1, z2, pred, m.n_inv, **m.criterion_options)


PAIRINGS = {
    "pair": _symmetric_pairs,
    "byol": _predict_target,
    "simsiam": _predict_target,
    "diet": _instance_classes,
    "supervised": _instance_classes,
    "lejepa": _global_local,
    "sie": _predict_transformed,
    "equi": _predict_transformed,
}


def _equivariant_dim(eq_dim: int | None, out_dim: int) -> int:
    """SIE's equivariant share of the representation: ``model.equivariant_dim``, default half (paper)."""
    eq_dim = out_dim // 2 if eq_dim is None else eq_dim
    if not 1 <= eq_dim < out_dim:
        raise ConfigError(
            f"model.equivariant_dim={eq_dim} must leave both parts non-empty: 1 to {out_dim - 1} of the "
            f"backbone's {out_dim} dimensions (default half)"
        )
    return eq_dim


def _transform_predictor(recipe: MethodRecipe, dim: int, t_identity, hidden: str | None) -> nn.Module:
    """SIE's hypernetwork predictor, or the no-split baseline's MLP of ``[z, t]``, for ``dim``-wide
    embeddings."""
    if t_identity is None:
        raise ConfigError(
            f"method '{recipe.name}' needs the transformation between its two views: use data.views=pairs on "
            "a dataset that records it (data.dataset=objects3d)"
        )
    if recipe.kind == "sie":
        return HyperPredictor(dim, t_identity, hidden or "")
    return ConcatPredictor(dim, len(t_identity), hidden or "")


def _class_head(m: SSLModel, out_dim: int, n_train: int | None, labels: torch.Tensor | None) -> nn.Linear:
    """The linear head of the classifying methods: DIET's over the training samples (bias-free), the
    supervised reference's over the classes (the training labels become a buffer, indexed by sample).
    Both classify backbone features: a projector the config gives is kept for the layer metrics but never
    trained (DDP requires every trainable parameter to get a gradient)."""
    m.projector.requires_grad_(False)
    if m.recipe.kind == "diet":
        if not n_train:
            raise ConfigError("method 'diet' needs n_train, the number of training samples")
        return nn.Linear(out_dim, n_train, bias=False)
    if labels is None:
        raise ConfigError(f"method '{m.recipe.name}' trains on labels; this dataset has none")
    m.register_buffer("train_labels", labels.clone(), persistent=False)
    return nn.Linear(out_dim, int(labels.max()) + 1)


class SSLModel(nn.Module):
    """Backbone + projector (+ predictor, EMA target or DIET head) and the method's loss."""

    def __init__(
        self,
        recipe: MethodRecipe,
        backbone: Backbone,
        projector: str | None = None,
        predictor: str | None = None,
        params: dict | None = None,
        n_train: int | None = None,
        ema_base: float | None = None,
        n_global: int = 2,
        head_batch_norm: bool = True,
        transform_identity: torch.Tensor | None = None,
        equivariant_dim: int | None = None,
        train_labels: torch.Tensor | None = None,
    ):
        super().__init__()
        check_method_params(recipe, params or {})
        self.recipe = recipe
        self.params = {**recipe.params, **(params or {})}
        self.pairing = PAIRINGS[recipe.kind]
        self.backbone = backbone
        spec = recipe.projector if projector is None else projector
        self.n_inv = 0  # SIE: the invariant width of the embedding
        if recipe.kind == "sie":
            eq_dim = _equivariant_dim(equivariant_dim, backbone.out_dim)
            self.projector = SplitHead(backbone.out_dim, eq_dim, spec, batch_norm=head_batch_norm)
            self.n_inv = self.projector.inv_out
        else:
            self.projector = build_mlp(backbone.out_dim, spec, batch_norm=head_batch_norm)
        proj_dim = head_output_dim(self.projector, backbone.out_dim)
        self.predictor = None
        if recipe.kind in TRANSFORM_KINDS:
            self.predictor = _transform_predictor(
                recipe, proj_dim - self.n_inv, transform_identity, predictor
            )
        if recipe.kind in ("byol", "simsiam"):
            spec = predictor or recipe.predictor
            self.predictor = build_mlp(proj_dim, spec, last_bias=True, batch_norm=head_batch_norm)
        self.ema_base = ema_base if ema_base is not None else recipe.ema_base
        self.target = None
        if recipe.kind == "byol":
            self.target = nn.ModuleDict(
                {"backbone": copy.deepcopy(backbone), "projector": copy.deepcopy(self.projector)}
            ).requires_grad_(False)
        self.diet_head = None
        if recipe.kind in ("diet", "supervised"):
            self.diet_head = _class_head(self, backbone.out_dim, n_train, train_labels)
        self.n_global = n_global  # LeJEPA: the first n_global views are the global ones
        if recipe.kind == "lejepa":
            self.register_buffer("sigreg_step", torch.zeros((), dtype=torch.long))
        # Several processes (torchrun + DDP): the criterion's batch statistics gather every process's rows
        # (set by the training loop; criteria without batch statistics, BYOL's and DIET's, need nothing).
        self.gather_distributed = False
        self._criterion_gathers = "gather_distributed" in inspect.signature(recipe.criterion).parameters

    @property
    def criterion_options(self) -> dict:
        """The criterion's keyword arguments: the method's parameters, and ``gather_distributed`` when the
        criterion has batch statistics and the model trains in several processes."""
        if self.gather_distributed and self._criterion_gathers:
            return {**self.params, "gather_distributed": True}
        return self.params

    def forward(
        self, views: list[torch.Tensor], index: torch.Tensor, transform: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The method's loss (:meth:`loss`), as ``forward`` so that DistributedDataParallel can wrap it."""
        return self.loss(views, index, transform)

    def loss(
        self, views: list[torch.Tensor], index: torch.Tensor, transform: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (loss, detached backbone features of the first view) for one batch of views
        (``transform``: the transformations between the views, for SIE; :mod:`selfsup.views.pairs`)."""
        if self.recipe.kind == "lejepa":  # one forward of all views, as the authors' code
            feats = list(self.backbone(torch.cat(views)).chunk(len(views)))
        else:
            feats = [self.backbone(v) for v in views]
        return self.pairing(self, feats, views, index, transform), feats[0].detach()

    @torch.no_grad()
    def update_target(self, step: int, total_steps: int) -> None:
        """EMA update of the BYOL target network (no-op for other methods)."""
        if self.target is None:
            return
        tau = ema_momentum(self.ema_base, step, total_steps)
        online = list(self.backbone.parameters()) + list(self.projector.parameters())
        target = list(self.target["backbone"].parameters()) + list(self.target["projector"].parameters())
        torch._foreach_lerp_(target, online, 1.0 - tau)
        for t, o in zip(
            self.target.buffers(),
            itertools.chain(self.backbone.buffers(), self.projector.buffers()),
            strict=True,
        ):
            t.copy_(o)

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
