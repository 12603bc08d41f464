"""Downstream evaluation of a PDE SSL run (Mialon, Garrido et al., NeurIPS 2023, arXiv 2307.05432).

:func:`evaluate_run` loads a run trained on ``pde:``/``pde-gen:`` data and measures, over ``seeds``:

(a) **coefficient regression** (:func:`coefficient_regression`): every coefficient that varies across the
    training trajectories (Burgers ``nu``; KdV/KS ``L`` and ``T``) is regressed, as ``log(coeff)``
    standardised, by

    * ``ssl_linear``: :func:`selfsup.probes.ridge_probe` on the frozen representation of the whole
      (uncropped) trajectories; the ridge penalty is the one of :data:`ALPHAS` with the lowest validation
      MSE on a seeded 80/20 split of the training set, then the probe is refit on all of it (so the spread
      over seeds only reflects the penalty choice). The probe standardises the features with the mean and
      population std of the samples it is fitted on (the 80 % part while the penalty is picked);
    * ``supervised``: an encoder of the same architecture and options plus a linear head, trained end to
      end (AdamW lr 1e-3, MSE, batch 32, ``sup_epochs`` epochs) on the same labelled training set, seeded,
      on random windows of the run's crop size (time and circular x translations: label-preserving; no
      other augmentation), predicting from the whole test fields;
    * ``mean``: predicting the training mean (the floor any useful model must beat).

    Metric: relative error ``|pred - true| / true`` averaged over the test trajectories.

(b) **time-stepping** (:func:`time_stepping`): a small 1-D CNN (circular in x) maps ``history`` steps to the
    next ``future`` steps (as ``u_last + net(history)``), trained on random windows of the training
    trajectories with MSE, then rolled out autoregressively on the test trajectories from their first
    ``history`` steps to the end. ``baseline``: no conditioning; ``ssl_conditioned``: a per-channel shift of
    every hidden layer (or FiLM scale and shift, ``conditioning="film"``) computed linearly from the frozen,
    standardised representation of the first ``history`` steps, i.e. of data the solver already has. The
    solver's convolutions are dilated (see :class:`CNNSolver`). Metric:
    ``NMSE = mean((pred - target)^2) / mean(target^2)`` over the whole rollout.

Results (mean, std and per-seed values) are written to ``RUN_DIR/pde_eval.json``.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from selfsup.errors import ConfigError, SelfsupError
from selfsup.methods import resolve_layer
from selfsup.probes import RegressionResult, ridge_probe
from selfsup.train import Components, embed, load_run


def _stats(values: list[float]) -> dict[str, Any]:
    t = torch.tensor(values, dtype=torch.float64)
    std = float(t.std(unbiased=True)) if len(values) > 1 else 0.0
    return {"mean": float(t.mean()), "std": std, "values": [float(v) for v in values]}


# ---------------------------------------------------------------------------- (a) coefficient regression

#: Ridge penalties the ``ssl_linear`` probe picks from.
ALPHAS = (1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0, 1e3)


def tuned_ridge(
    z_tr: torch.Tensor, y_tr: torch.Tensor, z_te: torch.Tensor, y_te: torch.Tensor, seed: int
) -> RegressionResult:
    """:func:`ridge_probe` of ``y`` from ``z`` with the penalty of :data:`ALPHAS` that has the lowest MSE on
    a seeded 20 % validation part of the training set, refit on the whole training set. The penalty is in
    ``details["alpha"]``, the test predictions in ``predictions``."""
    y_tr = y_tr.double()
    n = len(z_tr)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_val = max(1, n // 5)
    val, fit = perm[:n_val], perm[n_val:]
    if len(fit) < 2:
        fit = val = perm
    errs = []
    for alpha in ALPHAS:
        res = ridge_probe(z_tr[fit], y_tr[fit], z_tr[val], y_tr[val], alpha)
        errs.append(float(((res.predictions - y_tr[val]) ** 2).mean()))
    alpha = ALPHAS[min(range(len(ALPHAS)), key=errs.__getitem__)]
    return ridge_probe(z_tr, y_tr, z_te, y_te, alpha)


class _Targets:
    """The coefficients to regress, as ``log`` (when all are positive) standardised with the training mean
    and std; :meth:`rel_error` maps standardised predictions back and scores them on the test split."""

    def __init__(self, y_tr: torch.Tensor, y_te: torch.Tensor):
        self.use_log = bool((y_tr > 0).all() and (y_te > 0).all())
        t_tr, t_te = (y.log() if self.use_log else y for y in (y_tr, y_te))
        self.mu, self.sd = t_tr.mean(0), t_tr.std(0).clamp_min(1e-12)
        self.train, self.test = (t_tr - self.mu) / self.sd, (t_te - self.mu) / self.sd
        self.y_te = y_te

    def rel_error(self, pred_s: torch.Tensor) -> torch.Tensor:
        """Per-coefficient ``|pred - true| / true``, averaged over the test trajectories."""
        pred = pred_s * self.sd + self.mu
        pred = torch.exp(pred) if self.use_log else pred
        return ((pred - self.y_te).abs() / self.y_te.abs().clamp_min(1e-12)).mean(0)


def coefficient_regression(c: Components, layer: str, seeds: list[int], sup_epochs: int) -> dict:
    """Task (a) of the module docstring for the loaded run ``c``: the result's ``"regression"`` section."""
    cfg, data = c.cfg, c.data
    coeffs_tr, coeffs_te = data.info["coeffs"]["train"], data.info["coeffs"]["test"]
    names = [k for k, v in coeffs_tr.items() if len(v) > 1 and float(v.std()) > 1e-9 * float(v.abs().mean())]
    reg: dict[str, Any] = {"targets": names, "metric": "relative error |pred - true| / true"}
    if not names:
        reg["note"] = "no coefficient varies across the training trajectories"
        return reg
    y = _Targets(*(torch.stack([coeffs[k] for k in names], 1) for coeffs in (coeffs_tr, coeffs_te)))
    reg["log_target"] = y.use_log
    z_tr = embed(c.model, data.train.x, c.device, [layer])[layer].cpu()
    z_te = embed(c.model, data.test.x, c.device, [layer])[layer].cpu()
    crop = cfg.data.view_args.get("crop") if (cfg.data.views or "pde") == "pde" else None
    runs: dict[str, list[torch.Tensor]] = {"ssl_linear": [], "supervised": []}
    alphas = []
    for s in seeds:
        ridge = tuned_ridge(z_tr, y.train, z_te, y.test, s)
        alphas.append(ridge.details["alpha"])
        runs["ssl_linear"].append(y.rel_error(ridge.predictions))
        pred = supervised_regression(
            cfg.model.backbone,
            cfg.model.backbone_args,
            data.sample_shape,
            data.train.x,
            y.train,
            data.test.x,
            s,
            sup_epochs,
            c.device,
            crop=crop,
        )
        runs["supervised"].append(y.rel_error(pred))
    for kind, vals in runs.items():
        reg[kind] = {k: _stats([float(v[j]) for v in vals]) for j, k in enumerate(names)}
    mean_err = y.rel_error(torch.zeros(1, len(names), dtype=torch.float64))
    reg["mean"] = {k: float(mean_err[j]) for j, k in enumerate(names)}
    reg["ridge_alpha"] = alphas
    reg["supervised_epochs"] = sup_epochs
    reg["supervised_crop"] = list(crop) if crop else None
    return reg


def supervised_regression(
    backbone_name: str,
    backbone_args: dict,
    sample_shape: tuple,
    x_tr: torch.Tensor,
    y_tr: torch.Tensor,
    x_te: torch.Tensor,
    seed: int,
    epochs: int,
    device: torch.device,
    batch_size: int = 32,
    lr: float = 1e-3,
    crop: tuple[int, int] | None = None,
) -> torch.Tensor:
    """Train ``backbone + Linear`` end to end on (x_tr, y_tr) with MSE; return test predictions.

    With ``crop = (t, x)`` each training sample is a random window (time window and circular x-window, both
    label-preserving translations); test predictions use the whole fields, as for the frozen representation.
    """
    from selfsup.models import build_backbone

    torch.manual_seed(seed)
    enc = build_backbone(backbone_name, sample_shape, **backbone_args)
    net = nn.Sequential(enc, nn.Linear(enc.out_dim, y_tr.shape[1])).to(device)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    y = y_tr.float().to(device)
    n = len(x_tr)
    bs = min(batch_size, n)
    gen = torch.Generator().manual_seed(seed)
    net.train()
    for _ in range(epochs):
        perm = torch.randperm(n, generator=gen)
        for i in range(0, n - bs + 1, bs):
            idx = perm[i : i + bs]
            xb = x_tr[idx]
            if crop is not None:
                xb = random_window(xb, crop, gen)
            loss = F.mse_loss(net(xb.to(device)), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    net.eval()
    with torch.no_grad():
        return torch.cat([net(x_te[i : i + 256].to(device)).cpu() for i in range(0, len(x_te), 256)]).double()


def random_window(x: torch.Tensor, crop: tuple[int, int], gen: torch.Generator) -> torch.Tensor:
    """Per-sample random ``crop = (t, x)`` window of ``x (B, C, nt, nx)``; circular in x."""
    b, ch, nt, nx = x.shape
    ct, cx = min(int(crop[0]), nt), min(int(crop[1]), nx)
    t0 = torch.randint(0, nt - ct + 1, (b,), generator=gen)
    x0 = torch.randint(0, nx, (b,), generator=gen)
    rows = (t0[:, None] + torch.arange(ct))[:, None, :, None].expand(b, ch, ct, nx)
    cols = ((x0[:, None] + torch.arange(cx)) % nx)[:, None, None, :].expand(b, ch, ct, cx)
    return torch.gather(torch.gather(x, 2, rows), 3, cols)


# ------------------------------------------------------------------------------------- (b) time-stepping


#: How the time-stepper uses the representation (see :class:`CNNSolver`).
CONDITIONING = ("shift", "film")


class CNNSolver(nn.Module):
    """``history`` steps ``(B, history, nx)`` -> next ``future`` steps, as ``u_last + net(.)``; circular in x.

    ``depth`` convolutions (kernel 5, GELU) then an output convolution. With ``dilated=True`` (default) the
    i-th hidden convolution has dilation ``2^i``, so the receptive field is ``+-(2 (2^depth - 1) + 2)`` cells
    (+-64 for depth 5) instead of ``+-(2 depth + 2)`` (+-12): on the KdV/KS data the solution moves by tens
    of cells within the predicted steps, which a plain stack cannot see.

    With ``cond_dim > 0`` a linear map of the conditioning vector modulates every hidden layer, initialised
    to the identity: ``conditioning="shift"`` (default) adds a per-channel shift, ``"film"`` computes
    ``(1 + scale) * h + shift`` (FiLM).
    """

    def __init__(
        self,
        history: int,
        future: int,
        width: int = 32,
        depth: int = 5,
        cond_dim: int = 0,
        dilated: bool = True,
        conditioning: str = "shift",
    ):
        super().__init__()
        if conditioning not in CONDITIONING:
            raise ConfigError(f"conditioning must be one of {', '.join(CONDITIONING)}, got '{conditioning}'")
        chans = [history] + [width] * depth
        dil = [2**i if dilated else 1 for i in range(depth)]
        self.convs = nn.ModuleList(
            nn.Conv1d(a, b, 5, padding=2 * d, dilation=d, padding_mode="circular")
            for a, b, d in zip(chans[:-1], chans[1:], dil, strict=True)
        )
        self.receptive_field = 2 * sum(dil) + 2  # cells on each side
        self.out = nn.Conv1d(width, future, 5, padding=2, padding_mode="circular")
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        self.n_mod = 2 if conditioning == "film" else 1  # (scale, shift) or (shift,)
        self.modulation = nn.Linear(cond_dim, self.n_mod * width * depth) if cond_dim else None
        if self.modulation is not None:
            nn.init.zeros_(self.modulation.weight)
            nn.init.zeros_(self.modulation.bias)
        self.width = width

    def forward(self, u: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        h = u
        mods = None
        if self.modulation is not None:
            mods = self.modulation(cond).view(len(u), -1, self.n_mod, self.width)
        for i, conv in enumerate(self.convs):
            h = conv(h)
            if mods is not None:
                if self.n_mod == 2:
                    h = h * (1 + mods[:, i, 0, :, None])
                h = h + mods[:, i, -1, :, None]
            h = F.gelu(h)
        return u[:, -1:] + self.out(h)


def train_solver(
    u_tr: torch.Tensor,
    cond_tr: torch.Tensor | None,
    history: int,
    future: int,
    steps: int,
    seed: int,
    device: torch.device,
    batch_size: int = 32,
    lr: float = 1e-3,
    width: int = 32,
    depth: int = 5,
    dilated: bool = True,
    conditioning: str = "shift",
) -> CNNSolver:
    torch.manual_seed(seed)
    n, nt, _ = u_tr.shape
    cond_dim = 0 if cond_tr is None else cond_tr.shape[1]
    model = CNNSolver(history, future, width, depth, cond_dim, dilated, conditioning).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    u_tr = u_tr.float().to(device)
    for _ in range(steps):
        traj = torch.randint(0, n, (batch_size,), generator=gen)
        start = torch.randint(0, nt - history - future + 1, (batch_size,), generator=gen)
        rows = start[:, None] + torch.arange(history + future)
        win = u_tr[traj.to(device)[:, None], rows.to(device)]  # (B, history + future, nx)
        cond = None if cond_tr is None else cond_tr[traj].to(device)
        loss = F.mse_loss(model(win[:, :history], cond), win[:, history:])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return model.eval()


@torch.no_grad()
def rollout_nmse(
    model: CNNSolver, u_te: torch.Tensor, cond_te: torch.Tensor | None, history: int, future: int, device
) -> tuple[float, int]:
    """Autoregressive rollout from the first ``history`` steps; returns (NMSE, number of predicted steps)."""
    u = u_te.float().to(device)
    n_blocks = (u.shape[1] - history) // future
    cur = u[:, :history]
    cond = None if cond_te is None else cond_te.to(device)
    preds = []
    for _ in range(n_blocks):
        nxt = model(cur, cond)
        preds.append(nxt)
        cur = torch.cat([cur, nxt], 1)[:, -history:]
    pred = torch.cat(preds, 1)
    target = u[:, history : history + n_blocks * future]
    return float(((pred - target) ** 2).mean() / (target**2).mean()), n_blocks * future


def _standardise(train: torch.Tensor, *others: torch.Tensor) -> list[torch.Tensor]:
    """Scale every tensor with the mean and (sample) std of ``train``; for the solver's conditioning."""
    mu, sd = train.mean(0), train.std(0).clamp_min(1e-8)
    return [(a - mu) / sd for a in (train, *others)]


def time_stepping(
    c: Components,
    layer: str,
    seeds: list[int],
    steps: int,
    history: int,
    future: int,
    dilated: bool = True,
    conditioning: str = "shift",
) -> dict:
    """Task (b) of the module docstring for the loaded run ``c``, ``steps`` training steps per solver: the
    result's ``"timestepping"`` section."""
    data = c.data
    u_tr, u_te = data.train.x[:, 0], data.test.x[:, 0]
    nt = u_tr.shape[1]
    if nt < history + future:
        raise ConfigError(
            f"time-stepping needs trajectories of at least history + future = {history + future} steps, "
            f"got {nt}; lower --history/--future"
        )
    z0_tr = embed(c.model, data.train.x[:, :, :history], c.device, [layer])[layer].cpu()
    z0_te = embed(c.model, data.test.x[:, :, :history], c.device, [layer])[layer].cpu()
    z0_tr, z0_te = _standardise(z0_tr, z0_te)
    solver = {"depth": None, "dilated": dilated, "conditioning": conditioning, "receptive_field_cells": None}
    ts: dict[str, Any] = {"history": history, "future": future, "train_steps": steps, "solver": solver}
    vals: dict[str, list[float]] = {"baseline": [], "ssl_conditioned": []}
    for s in seeds:
        for kind, (cond_tr, cond_te) in {"baseline": (None, None), "ssl_conditioned": (z0_tr, z0_te)}.items():
            model = train_solver(
                u_tr, cond_tr, history, future, steps, s, c.device, dilated=dilated, conditioning=conditioning
            )
            solver.update(depth=len(model.convs), receptive_field_cells=model.receptive_field)
            nmse, n_pred = rollout_nmse(model, u_te, cond_te, history, future, c.device)
            vals[kind].append(nmse)
    ts["rollout_steps"] = n_pred
    ts["metric"] = "NMSE = mean((pred - target)^2) / mean(target^2) over the rollout"
    ts.update({k: _stats(v) for k, v in vals.items()})
    return ts


# ------------------------------------------------------------------------------------------------ driver


def evaluate_run(
    run_dir: str | Path,
    seeds: int = 3,
    sup_epochs: int = 20,
    solver_steps: int = 300,
    history: int = 20,
    future: int = 20,
    layer: str | None = None,
    device: str = "cpu",
    skip: tuple[str, ...] = (),
    solver_dilated: bool = True,
    conditioning: str = "shift",
) -> dict:
    """Run (a) :func:`coefficient_regression` and (b) :func:`time_stepping` for a trained PDE run on the
    representation of ``layer`` (default: the backbone output); write ``pde_eval.json`` and return it.

    ``skip`` may hold ``"regression"`` and/or ``"timestepping"``; ``solver_dilated=False`` uses the plain
    (undilated) convolution stack for the time-stepper; ``conditioning`` is ``"shift"`` or ``"film"`` (see
    :class:`CNNSolver`). See the module docstring for the protocol.
    """
    if int(seeds) < 1:
        raise ConfigError(f"--seeds must be >= 1, got {seeds}")
    if conditioning not in CONDITIONING:
        raise ConfigError(f"--conditioning must be one of {', '.join(CONDITIONING)}, got '{conditioning}'")
    t_start = time.perf_counter()
    run_dir = Path(run_dir)
    c, _ = load_run(run_dir, device=device)
    if "coeffs" not in c.data.info or c.data.test is None:
        raise SelfsupError(
            f"'{c.cfg.data.dataset}' is not a PDE dataset with a test split (pde:PATH.h5 with train and "
            "test/valid splits, or pde-gen:EQUATION)"
        )
    layer = resolve_layer(layer, c.model.layer_names)
    seed_list = list(range(int(seeds)))
    result: dict[str, Any] = {
        "run_dir": str(run_dir),
        "dataset": c.cfg.data.dataset,
        "equation": c.data.info.get("equation"),
        "layer": layer,
        "n_train": len(c.data.train),
        "n_test": len(c.data.test),
        "seeds": seed_list,
    }
    if "regression" not in skip:
        result["regression"] = coefficient_regression(c, layer, seed_list, sup_epochs)
    if "timestepping" not in skip:
        result["timestepping"] = time_stepping(
            c, layer, seed_list, solver_steps, history, future, solver_dilated, conditioning
        )
    result["seconds"] = time.perf_counter() - t_start
    for section in ("regression", "timestepping"):
        for v in result.get(section, {}).values():
            if isinstance(v, dict) and "mean" in v and not math.isfinite(v["mean"]):
                raise SelfsupError(f"non-finite {section} result: {v}")
    (run_dir / "pde_eval.json").write_text(json.dumps(result, indent=2))
    return result
