"""Criteria: pure loss functions of embeddings, one module per family.

Every criterion validates its inputs (raising :class:`~selfsup.errors.ShapeError` /
:class:`~selfsup.errors.SelfsupError` with a message naming the argument), computes in float32 even
under autocast, and returns a scalar tensor. Those with a batch-level statistic take
``gather_distributed=False``; with ``True`` they use the embeddings of all torch.distributed
processes, with gradients such that DDP's averaging gives the single-process gradient of the
loss on the concatenated batch (see :mod:`selfsup.criteria._common`).
"""

from __future__ import annotations

from selfsup.criteria._common import gather
from selfsup.criteria.barlow import barlow_twins_loss
from selfsup.criteria.byol import byol_loss
from selfsup.criteria.clustering import dino_loss, global_batch_mean, sinkhorn, swav_loss
from selfsup.criteria.contrastive import dcl_loss, simclr_loss, spectral_contrastive_loss
from selfsup.criteria.diet import diet_loss
from selfsup.criteria.masked import ijepa_loss, mae_loss
from selfsup.criteria.moco import moco_v2_loss, moco_v3_loss, nearest_neighbour, nnclr_loss
from selfsup.criteria.sie import sie_loss
from selfsup.criteria.sigreg import lejepa_loss, lejepa_mix, lejepa_terms, sigreg_loss
from selfsup.criteria.vicreg import duality_criteria, vicreg_ctr_loss, vicreg_exp_loss, vicreg_loss

__all__ = [
    "ijepa_loss",
    "mae_loss",
    "nnclr_loss",
    "nearest_neighbour",
    "moco_v3_loss",
    "moco_v2_loss",
    "swav_loss",
    "sinkhorn",
    "global_batch_mean",
    "dino_loss",
    "barlow_twins_loss",
    "byol_loss",
    "dcl_loss",
    "diet_loss",
    "duality_criteria",
    "gather",
    "lejepa_loss",
    "lejepa_mix",
    "lejepa_terms",
    "sie_loss",
    "sigreg_loss",
    "simclr_loss",
    "spectral_contrastive_loss",
    "vicreg_ctr_loss",
    "vicreg_exp_loss",
    "vicreg_loss",
]
