"""Methods that classify every view with a linear head on the backbone: DIET (the class is the sample's
index) and the supervised reference (the class is the sample's label)."""

from __future__ import annotations

import torch
from torch import nn

from selfsup import criteria
from selfsup.errors import ConfigError
from selfsup.methods.kind import HeadOptions, MethodKind, MethodRecipe


class ClassifyViews(MethodKind):
    """Every view is classified into its sample's index (``by_label=False``, DIET) or its sample's class
    (``by_label=True``) by ``m.class_head``; the loss is averaged over the views.

    The head classifies backbone features: a projector the config gives is kept for the layer metrics but
    never trained (DDP requires every trainable parameter to get a gradient)."""

    def __init__(self, by_label: bool):
        self.by_label = by_label

    def build_heads(self, m, opts: HeadOptions) -> None:
        m.projector.requires_grad_(False)
        out_dim = m.backbone.out_dim
        if not self.by_label:  # DIET: one bias-free output per training sample
            if not opts.n_train:
                raise ConfigError(f"method '{m.recipe.name}' needs n_train, the number of training samples")
            m.class_head = nn.Linear(out_dim, opts.n_train, bias=False)
            return
        if opts.train_labels is None:
            raise ConfigError(f"method '{m.recipe.name}' trains on labels; this dataset has none")
        m.register_buffer("train_labels", opts.train_labels.clone(), persistent=False)
        m.class_head = nn.Linear(out_dim, int(opts.train_labels.max()) + 1)

    def loss(self, m, feats, views, index, transform) -> torch.Tensor:
        target = m.train_labels[index.to(m.train_labels.device)] if self.by_label else index
        criterion, options = m.recipe.criterion, m.criterion_options
        return sum(criterion(m.class_head(h), target, **options) for h in feats) / len(feats)

    def dummy_inputs(self, g: torch.Generator) -> tuple:
        return torch.randn(4, 4, generator=g), torch.arange(4)


RECIPES = [
    MethodRecipe(
        name="diet",
        kind=ClassifyViews(by_label=False),
        criterion=criteria.diet_loss,
        projector="",
        paper="Ibrahim et al. 2023, arXiv 2302.10260 (sample index as class, label smoothing 0.8)",
        params={"label_smoothing": 0.8},
    ),
    MethodRecipe(
        name="supervised",
        kind=ClassifyViews(by_label=True),
        criterion=criteria.diet_loss,
        projector="",
        paper="a labelled reference (as in Ibrahim et al. 2022): cross-entropy of a linear head on the "
        "backbone for every view; needs labels",
        params={"label_smoothing": 0.0},
    ),
]
