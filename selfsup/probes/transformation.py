"""Equivariance probes of frozen features (SIE, Garrido et al. 2023, section 5, and its public evaluation).

* :func:`transformation_r2`: how well the transformation between two views can be read from their
  representations: an MLP on ``[f(x1), f(x2)]`` regresses the transformation parameters (the relative
  rotation quaternion; or colour shifts), scored by R^2 on held-out pairs. As the public code, the total sum
  of squares is taken around one global mean of all the targets' entries (``r2_global``); the usual
  per-output R^2 averaged over the outputs is reported beside it (``r2_per_output``).
* :func:`retrieval`: how well a predictor maps an embedding to the embedding of the transformed view: the
  L2-normalised prediction ranks the true target among every view of the same object (cosine similarity);
  mean reciprocal rank and Hit@k.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from selfsup.errors import ShapeError
from selfsup.probes._common import standardize
from selfsup.probes._validate import check_features


@dataclass
class R2Result:
    r2_global: float  # SIE's definition: SS_tot around the mean of all target entries
    r2_per_output: float  # mean over the outputs of 1 - SS_res / SS_tot (each around its own mean)
    mse: float
    n_train: int
    n_test: int


def r2_scores(pred: torch.Tensor, target: torch.Tensor) -> tuple[float, float]:
    """(R^2 with one global mean, mean per-output R^2) of ``pred`` against ``target`` (N x D), float64."""
    pred, target = pred.double(), target.double()
    ss_res = (target - pred).pow(2)
    global_r2 = 1 - ss_res.sum() / (target - target.mean()).pow(2).sum()
    per_output = 1 - ss_res.sum(0) / (target - target.mean(0)).pow(2).sum(0).clamp_min(1e-12)
    return float(global_r2), float(per_output.mean())


def transformation_r2(
    pair_train: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    pair_test: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    hidden: int = 256,
    epochs: int = 60,
    batch_size: int = 256,
    lr: float = 1e-3,
    seed: int = 0,
    val_fraction: float = 0.1,
) -> R2Result:
    """R^2 of a 3-layer ReLU MLP (SIE's evaluator: two hidden layers) predicting the transformation ``t``
    from ``[f1, f2]``; each argument is ``(f1, f2, t)`` with ``f`` N x D features and ``t`` N x T. The
    inputs are standardised with the training statistics; Adam on shuffled batches for up to ``epochs``
    passes, keeping the epoch with the lowest error on ``val_fraction`` of the training pairs held out
    (early stopping: an over-fitted MLP would score below the mean predictor, R^2 < 0)."""
    (f1, f2, t), (g1, g2, u) = pair_train, pair_test
    x_tr, x_te = check_features(torch.cat((f1, f2), 1), torch.cat((g1, g2), 1))
    if t.shape[0] != len(x_tr) or u.shape[0] != len(x_te) or t.shape[1:] != u.shape[1:]:
        raise ShapeError(f"targets must have one row per pair: {tuple(t.shape)} vs {len(x_tr)} train pairs")
    x_tr, x_te = standardize(x_tr.float(), x_te.float())
    t, u = t.float().to(x_tr.device), u.float().to(x_te.device)
    gen = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(x_tr), generator=gen).to(x_tr.device)
    n_val = max(1, int(val_fraction * len(x_tr)))
    val, fit = order[:n_val], order[n_val:]
    mlp = _mlp(x_tr.shape[1], hidden, t.shape[1], seed).to(x_tr.device)
    opt = torch.optim.Adam(mlp.parameters(), lr=lr)
    best = (float("inf"), None)
    for _ in range(epochs):
        with torch.enable_grad():
            for rows in fit[torch.randperm(len(fit), generator=gen).to(fit.device)].split(batch_size):
                loss = nn.functional.mse_loss(mlp(x_tr[rows]), t[rows])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
        with torch.no_grad():
            val_loss = float(nn.functional.mse_loss(mlp(x_tr[val]), t[val]))
        if val_loss < best[0]:
            best = (val_loss, {k: v.clone() for k, v in mlp.state_dict().items()})
    mlp.load_state_dict(best[1])
    with torch.no_grad():
        pred = mlp(x_te)
    r2_global, r2_per_output = r2_scores(pred, u)
    return R2Result(r2_global, r2_per_output, float((pred - u).pow(2).mean()), len(fit), len(x_te))


def _mlp(d_in: int, hidden: int, d_out: int, seed: int) -> nn.Module:
    """Two hidden ReLU layers, initialised from ``seed`` (the global RNG is left as it was)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return nn.Sequential(
            nn.Linear(d_in, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, d_out)
        )


@dataclass
class RetrievalResult:
    mrr: float
    hits: dict[int, float]  # k -> fraction of queries whose target ranks in the top k
    n_queries: int
    mean_candidates: float  # views of the same object each target is ranked among


def retrieval(
    pred: torch.Tensor,
    target_index: torch.Tensor,
    candidates: torch.Tensor,
    groups: torch.Tensor,
    ks: tuple[int, ...] = (1, 5),
    source_index: torch.Tensor | None = None,
    chunk: int = 1024,
) -> RetrievalResult:
    """Rank each prediction's true target among the candidates of the same group (object instance).

    ``pred``: Q x K predicted embeddings; ``target_index``: Q indices into ``candidates`` (M x K), the true
    targets; ``groups``: M group ids of the candidates (a query's group is its target's); ``source_index``:
    the candidates the predictions were made from, left out of their ranking (else the identity baseline,
    whose prediction is its source, could never rank the target first). Cosine similarity; rank = 1 + the
    number of competing candidates strictly more similar than the target (ties favour it).
    """
    if pred.ndim != 2 or candidates.ndim != 2 or pred.shape[1] != candidates.shape[1]:
        raise ShapeError(
            f"pred (Q x K) and candidates (M x K) must share K; got {tuple(pred.shape)} and "
            f"{tuple(candidates.shape)}"
        )
    if target_index.shape != (len(pred),) or groups.shape != (len(candidates),):
        raise ShapeError("target_index needs one entry per prediction and groups one per candidate")
    p = nn.functional.normalize(pred.double(), dim=1)
    c = nn.functional.normalize(candidates.double(), dim=1)
    ranks, sizes = [], []
    for rows in torch.arange(len(p), device=p.device).split(chunk):
        sim = p[rows] @ c.T
        same = groups[None, :] == groups[target_index[rows]][:, None]
        if source_index is not None:
            same[torch.arange(len(rows), device=p.device), source_index[rows]] = False
        true = sim.gather(1, target_index[rows, None])
        ranks.append(1 + ((sim > true) & same).sum(1))
        sizes.append(same.sum(1))
    rank = torch.cat(ranks).double()
    return RetrievalResult(
        mrr=float((1 / rank).mean()),
        hits={k: float((rank <= k).double().mean()) for k in ks},
        n_queries=len(rank),
        mean_candidates=float(torch.cat(sizes).double().mean()),
    )
