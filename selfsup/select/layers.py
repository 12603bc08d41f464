"""Which backbone layer to read a representation from, without labels (``selfsup export --layer auto``,
and the label-free pick ``selfsup layers`` prints).

The rule: the backbone layer with the highest RankMe (Garrido et al. 2023), where layers whose RankMe is
within ``TIE`` (1 %) of the highest count as tied, the monitor subset's estimation noise, and the deepest
tied layer is taken. Only the backbone's layers compete (an export holds the backbone; the projector is
the method's, Bordes et al. 2022). The rule was chosen on three presets, after RankMe divided by the
layer's width was tried first and failed there (it picks the stem of an image network, whose features
spread over its few channels, 58 points below the best layer): docs/results/selection.md.
"""

from __future__ import annotations

import math
from typing import Any

from selfsup.errors import SelfsupError

TIE = 0.01  # relative RankMe difference counted as a tie
LAYER_RULE = (
    "highest RankMe among the backbone's layers; layers within 1 % of the highest count as tied, the "
    "deepest of them is taken"
)


def pick_layer(result: dict[str, Any]) -> dict[str, Any]:
    """The label-free pick among the backbone rows (in network order) of
    :func:`selfsup.evaluate.layers.evaluate_layers`'s result: ``{rule, pick, scores, tied}`` (``scores``:
    each backbone layer's RankMe)."""
    rows = [r for r in result["layers"] if r["part"] == "backbone"]
    scores = {r["layer"]: r["rankme"] for r in rows}
    finite = [r for r in rows if r["rankme"] is not None and math.isfinite(r["rankme"])]
    if not finite:
        raise SelfsupError("no backbone layer has a finite RankMe; nothing to choose a layer from")
    best = max(r["rankme"] for r in finite)
    tied = [r["layer"] for r in finite if r["rankme"] >= (1 - TIE) * best]
    return {"rule": LAYER_RULE, "pick": tied[-1], "scores": scores, "tied": tied}
