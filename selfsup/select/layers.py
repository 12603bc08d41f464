"""Which backbone layer to read a representation from, without labels (``selfsup export --layer auto``).

RankMe (Garrido et al. 2023) compares runs at one layer; across layers of different widths it mostly
measures the width (a 256-wide stage can reach four times the rank of a 64-wide one). The rule divides it
by the width: the fraction of its dimensions a layer's representation spreads over (RankMe / K, the
``rankme_norm`` column of ``selfsup layers``), highest first, among the backbone's layers only (an export
holds the backbone; the projector is the method's, Bordes et al. 2022). Equal scores go to the deeper layer
(a pooled output equal to the stage before it is the same representation, and reading the output needs no
hook). Measured against the linear probe's best layer in docs/results/selection.md.
"""

from __future__ import annotations

import math
from typing import Any

from selfsup.errors import SelfsupError

LAYER_RULE = "highest RankMe / width among the backbone's layers (equal scores: the deeper layer)"


def pick_layer(result: dict[str, Any]) -> dict[str, Any]:
    """The label-free pick among the backbone rows of :func:`selfsup.evaluate.layers.evaluate_layers`'s
    result: ``{rule, pick, scores}`` (``scores``: each backbone layer's RankMe / width)."""
    rows = [r for r in result["layers"] if r["part"] == "backbone"]
    scores = {r["layer"]: r["rankme_norm"] for r in rows}
    finite = [
        i for i, r in enumerate(rows) if r["rankme_norm"] is not None and math.isfinite(r["rankme_norm"])
    ]
    if not finite:
        raise SelfsupError("no backbone layer has a finite RankMe; nothing to choose a layer from")
    best = max(finite, key=lambda i: (rows[i]["rankme_norm"], i))  # ties: the later (deeper) layer
    return {"rule": LAYER_RULE, "pick": rows[best]["layer"], "scores": scores}
