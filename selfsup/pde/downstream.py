"""Downstream evaluation of a PDE SSL run (Mialon, Garrido et al., NeurIPS 2023, arXiv 2307.05432).

:func:`evaluate_run` loads a run trained on ``pde:``/``pde-gen:`` data and measures, over ``seeds``:

(a) **coefficient regression** (:func:`coefficient_regression`): every coefficient that varies across the
    training trajectories (Burgers ``nu``; KdV/KS the initial condition's mode amplitudes ``u0_k1``,
    ``u0_k2`` and the domain ``L``, ``T``) is regressed, standardised (as ``log`` for :data:`LOG_COEFFS`), by

    * ``ssl_linear``: a linear head on the frozen representation, by ``head``: ``ridge`` (default)
      :func:`selfsup.probes.ridge_probe` on the whole (uncropped) trajectories, the penalty the one of
      :data:`ALPHAS` with the lowest validation MSE on a seeded 80/20 split of the training set, then refit on
      all of it (so the spread over seeds only reflects the penalty choice; the probe standardises the
      features with the mean and population std of the samples it is fitted on); or ``sgd``
      (:func:`sgd_head`, the public SSL code's protocol: Adam on the features of random crops);
    * ``supervised``: an encoder of the same architecture and options plus a linear head, trained end to
      end (AdamW lr 1e-3, MSE, batch 32, ``sup_epochs`` epochs) on the same labelled training set, seeded,
      on random windows of the run's crop size (time and circular x translations: label-preserving; no
      other augmentation), predicting from the whole test fields;
    * ``mean``: predicting the training mean (the floor any useful model must beat).

    Metrics over the test trajectories: relative error ``|pred - true| / |true|`` (the paper's Burgers
    metric) and ``NMSE = mean (pred - true)^2 / mean true^2`` (its KdV/KS metric).

(b) **time-stepping** (:func:`time_stepping`, the solvers and metrics of :mod:`selfsup.pde.stepping`): a
    neural solver maps ``history`` steps and the grid (``log dx``, ``log dt``) to the next ``future`` steps;
    it is trained on random windows of 7/8 of the training trajectories, kept at its best validation rollout
    on the other 1/8, and rolled out on the test trajectories from input steps ``[start, start + history)``
    to the end (LPSDA: input 20-39, predicted 40-139). Codes (:func:`conditioning_codes`): ``baseline``
    none; ``ssl_conditioned`` the frozen representation of the solver's first input window, reduced to
    ``cond_dim`` principal components; diagnostics ``oracle`` (the true coefficients) and ``random``.
    Metrics: LPSDA's ``nmse_sum`` and our ``nmse_global``; ``fraction_of_oracle_gain`` per code.

Results (mean, std and per-seed values) are written to ``RUN_DIR/pde_eval.json``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from selfsup.data import ArrayDataset, DataSplits
from selfsup.errors import ConfigError, SelfsupError
from selfsup.methods import resolve_layer
from selfsup.pde.stepping import SolverSpec, Trajectories, bottleneck, rollout, standardise, train_solver
from selfsup.probes import RegressionResult, ridge_probe
from selfsup.train import Components, embed, load_run

#: Principal components of the representation kept as the solver's conditioning code (``--cond-dim``).
DEFAULT_COND_DIM = 8


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


#: Scale coefficients, regressed as ``log(coeff)``; the others (initial-condition amplitudes) as they are.
LOG_COEFFS = ("L", "T", "nu")


def varying_coefficients(coeffs: dict[str, torch.Tensor]) -> list[str]:
    """Names of the coefficients that vary across the given trajectories (the regression targets)."""
    return [k for k, v in coeffs.items() if len(v) > 1 and float(v.std()) > 1e-9 * float(v.abs().mean())]


class _Targets:
    """The coefficients to regress (``log`` for :data:`LOG_COEFFS`), standardised with the training mean and
    std; :meth:`errors` maps standardised predictions back and scores them on the test split."""

    def __init__(self, names: list[str], y_tr: torch.Tensor, y_te: torch.Tensor):
        self.log = torch.tensor([k in LOG_COEFFS for k in names])
        t_tr, t_te = (torch.where(self.log, y.log(), y) for y in (y_tr, y_te))
        self.mu, self.sd = t_tr.mean(0), t_tr.std(0).clamp_min(1e-12)
        self.train, self.test = (t_tr - self.mu) / self.sd, (t_te - self.mu) / self.sd
        self.y_te = y_te

    def errors(self, pred_s: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per coefficient, over the test trajectories: ``rel_error`` = mean ``|pred - true| / |true|`` and
        ``nmse`` = ``mean (pred - true)^2 / mean true^2``."""
        pred = pred_s * self.sd + self.mu
        pred = torch.where(self.log, torch.exp(pred), pred)
        err = pred - self.y_te
        return {
            "rel_error": (err.abs() / self.y_te.abs().clamp_min(1e-12)).mean(0),
            "nmse": (err**2).mean(0) / (self.y_te**2).mean(0).clamp_min(1e-30),
        }


#: Linear heads on the frozen representation (``--head``).
HEADS = ("ridge", "sgd")


def sgd_head(
    c: Components, layer: str, y_tr: torch.Tensor, z_te: torch.Tensor, crop, seed: int, epochs: int = 30
) -> torch.Tensor:
    """``head="sgd"``: the linear-head protocol of the public SSL code (``eval_coeff``): every epoch embeds
    a fresh random ``crop`` window of each training trajectory with the frozen encoder (eval mode; once,
    without a crop), and a linear layer is fitted to the standardised targets by Adam (lr 7e-4, batch 32,
    MSE, ``epochs`` 30). Returns the test predictions from ``z_te`` (the whole test fields, as the ridge's).
    Differences: the features are standardised with the first epoch's mean and std (only the optimiser's
    conditioning changes), and the head has a bias; the public one has none and a sigmoid onto the
    coefficient's range."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    head = nn.Linear(z_te.shape[1], y_tr.shape[1])
    opt = torch.optim.Adam(head.parameters(), lr=7e-4)
    x, y, z, scale = c.data.train.x, y_tr.float(), None, None
    for _ in range(epochs):
        if z is None or crop:
            z = embed(c.model, random_window(x, crop, gen) if crop else x, c.device, [layer])[layer].cpu()
            scale = scale or (z.mean(0), z.std(0).clamp_min(1e-6))
            z = (z - scale[0]) / scale[1]
        perm = torch.randperm(len(z), generator=gen)
        for i in range(0, len(z), 32):
            idx = perm[i : i + 32]
            loss = F.mse_loss(head(z[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    with torch.no_grad():
        return head((z_te.float() - scale[0]) / scale[1]).double()


def coefficient_regression(
    c: Components, layer: str, seeds: list[int], sup_epochs: int, head: str = "ridge"
) -> dict:
    """Task (a) of the module docstring for the loaded run ``c``: the result's ``"regression"`` section.
    ``ssl_linear``, ``supervised`` and ``mean`` hold the relative error per target, ``*_nmse`` the NMSE."""
    cfg, data = c.cfg, c.data
    coeffs_tr, coeffs_te = data.info["coeffs"]["train"], data.info["coeffs"]["test"]
    names = varying_coefficients(coeffs_tr)
    reg: dict[str, Any] = {"targets": names, "metric": "relative error |pred - true| / true; NMSE in *_nmse"}
    if not names:
        reg["note"] = "no coefficient varies across the training trajectories"
        return reg
    y = _Targets(names, *(torch.stack([coeffs[k] for k in names], 1) for coeffs in (coeffs_tr, coeffs_te)))
    reg["log_targets"] = [k for k in names if k in LOG_COEFFS]
    z_tr = embed(c.model, data.train.x, c.device, [layer])[layer].cpu()
    z_te = embed(c.model, data.test.x, c.device, [layer])[layer].cpu()
    crop = cfg.data.view_args.get("crop") if (cfg.data.views or "pde") == "pde" else None
    runs: dict[str, list[dict[str, torch.Tensor]]] = {"ssl_linear": [], "supervised": []}
    alphas = []
    for s in seeds:
        if head == "sgd":
            runs["ssl_linear"].append(y.errors(sgd_head(c, layer, y.train, z_te, crop, s)))
        else:
            ridge = tuned_ridge(z_tr, y.train, z_te, y.test, s)
            alphas.append(ridge.details["alpha"])
            runs["ssl_linear"].append(y.errors(ridge.predictions))
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
        runs["supervised"].append(y.errors(pred))
    for kind, vals in runs.items():
        reg[kind] = {k: _stats([float(v["rel_error"][j]) for v in vals]) for j, k in enumerate(names)}
        reg[f"{kind}_nmse"] = {k: _stats([float(v["nmse"][j]) for v in vals]) for j, k in enumerate(names)}
    mean_err = y.errors(torch.zeros(1, len(names), dtype=torch.float64))
    reg["mean"] = {k: float(mean_err["rel_error"][j]) for j, k in enumerate(names)}
    reg["mean_nmse"] = {k: float(mean_err["nmse"][j]) for j, k in enumerate(names)}
    reg["head"] = head
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

#: Diagnostic conditioning codes :func:`time_stepping` can add beside the SSL one.
DIAGNOSTICS = ("oracle", "random")


def true_coefficients(info: dict, split: str) -> torch.Tensor:
    """The recorded coefficients of ``split`` that vary across the training trajectories, as ``(n, k)``
    float64 (``log`` for the scale coefficients of :data:`LOG_COEFFS`)."""
    names = varying_coefficients(info["coeffs"]["train"])
    cols = [info["coeffs"][split][k].double() for k in names]
    return torch.stack([v.log() if k in LOG_COEFFS else v for k, v in zip(names, cols, strict=True)], 1)


def conditioning_codes(
    c: Components, layer: str, spec: SolverSpec, cond_dim: int | None, diagnostics: tuple[str, ...]
) -> dict[str, tuple[torch.Tensor | None, torch.Tensor | None]]:
    """Per kind, the (train, test) codes: ``baseline`` none; ``ssl_conditioned`` the frozen representation of
    the window the test rollout starts from (steps ``[start, start + history)``: the data the solver has),
    standardised and reduced to ``cond_dim`` principal components by :func:`bottleneck`; ``oracle`` the true
    coefficients (initial-condition amplitudes for KdV/KS, with L and T; ``nu`` for Burgers), standardised.
    The ``random`` diagnostic depends on the seed: :func:`random_code`."""
    data, win = c.data, slice(spec.start, spec.start + spec.history)
    z = [embed(c.model, x[:, :, win], c.device, [layer])[layer].cpu() for x in (data.train.x, data.test.x)]
    codes: dict[str, tuple] = {
        "baseline": (None, None),
        "ssl_conditioned": tuple(bottleneck(*z, dim=cond_dim)),
    }
    if "oracle" in diagnostics:
        oracle = [true_coefficients(data.info, split) for split in ("train", "test")]
        if oracle[0].shape[1]:
            codes["oracle"] = tuple(a.float() for a in standardise(*oracle))
    return codes


def random_code(like: tuple[torch.Tensor, torch.Tensor], seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A Gaussian (train, test) code per trajectory of the shapes of ``like`` (the SSL code), seeded."""
    gen = torch.Generator().manual_seed(10_000 + seed)
    return tuple(torch.randn(a.shape, generator=gen) for a in like)


def _grid_features(info: dict) -> list[torch.Tensor]:
    """``(log dx, log dt)`` per trajectory, standardised with the training trajectories' statistics."""
    feats = [
        torch.stack([info["dx"][s].double().log(), info["dt"][s].double().log()], 1)
        for s in ("train", "test")
    ]
    return [f.float() for f in standardise(*feats)]


def oracle_fraction(vals: dict[str, dict[str, list[float]]]) -> dict[str, float | None]:
    """``(baseline - kind) / (baseline - oracle)`` of the mean ``nmse_sum``: each code's share of the
    oracle's gain; ``None`` for every code when the oracle does not beat the baseline (no gain to share)."""
    mean = {k: sum(v["nmse_sum"]) / len(v["nmse_sum"]) for k, v in vals.items()}
    gain = mean["baseline"] - mean["oracle"]
    return {
        k: (mean["baseline"] - m) / gain if gain > 0 else None for k, m in mean.items() if k != "baseline"
    }


def time_stepping(
    c: Components,
    layer: str,
    seeds: list[int],
    spec: SolverSpec,
    cond_dim: int | None = None,
    diagnostics: tuple[str, ...] = ("oracle",),
) -> dict:
    """Task (b) of the module docstring for the loaded run ``c``: the result's ``"timestepping"`` section.
    One eighth of the training trajectories (a fixed seeded draw) is held out to select each solver's
    state."""
    data = c.data
    if data.train.x.shape[2] < spec.start + spec.history + spec.future:
        raise ConfigError(
            f"time-stepping needs trajectories of at least start + history + future = "
            f"{spec.start + spec.history + spec.future} steps, got {data.train.x.shape[2]}; lower --start, "
            "--history or --future"
        )
    grid_tr, grid_te = _grid_features(data.info) if spec.grid else (None, None)
    u_tr, u_te = data.train.x[:, 0], data.test.x[:, 0]
    perm = torch.randperm(len(u_tr), generator=torch.Generator().manual_seed(0))
    va, fit = perm[: max(1, len(u_tr) // 8)], perm[max(1, len(u_tr) // 8) :]
    pick = lambda a, idx: None if a is None else a[idx]  # noqa: E731
    vals: dict[str, dict[str, list]] = {}
    codes = conditioning_codes(c, layer, spec, cond_dim, diagnostics)  # embedded once, used by every seed
    for s in seeds:
        if "random" in diagnostics:
            codes["random"] = random_code(codes["ssl_conditioned"], s)
        for kind, (z_tr, z_te) in codes.items():
            train = Trajectories(u_tr[fit], pick(grid_tr, fit), pick(z_tr, fit))
            valid = Trajectories(u_tr[va], pick(grid_tr, va), pick(z_tr, va))
            model, kept = train_solver(train, valid, spec, s, c.device)
            res = rollout(model, Trajectories(u_te, grid_te, z_te), spec, c.device)
            v = vals.setdefault(kind, {"nmse_sum": [], "nmse_global": [], "best_step": []})
            for key in v:
                v[key].append(kept[key] if key == "best_step" else res[key])
    solver = {
        **dataclasses.asdict(spec),
        "receptive_field_cells": model.receptive_field,
        "cond_dim": cond_dim,
    }
    ts: dict[str, Any] = {"solver": solver, "rollout_steps": res["steps"], "n_valid": len(va)}
    ts["metric"] = {
        "nmse_sum": "LPSDA: per trajectory and step mean_x err^2 / mean_x u^2, summed over steps, mean over "
        "trajectories",
        "nmse_global": "sum err^2 / sum u^2 over trajectories, steps and x",
    }
    for kind, v in vals.items():
        ts[kind] = {
            "nmse_sum": _stats(v["nmse_sum"]),
            "nmse_global": _stats(v["nmse_global"]),
            "best_step": v["best_step"],
        }
    if "oracle" in vals:
        ts["fraction_of_oracle_gain"] = oracle_fraction(vals)
    return ts


# ------------------------------------------------------------------------------------------------ driver


def first_trajectories(data: DataSplits, n: int) -> DataSplits:
    """``data`` with only its first ``n`` training trajectories (and their coefficients and grids): the
    downstream (labelled, solver) set, when the encoder was trained on more unlabelled trajectories."""
    if not 1 <= n <= len(data.train):
        raise ConfigError(f"--labelled must be in 1..{len(data.train)} (the training trajectories), got {n}")
    info = dict(data.info)
    for key in ("coeffs", "dx", "dt"):
        train = info[key]["train"]
        cut = {k: v[:n] for k, v in train.items()} if isinstance(train, dict) else train[:n]
        info[key] = {**info[key], "train": cut}
    return dataclasses.replace(data, train=ArrayDataset(data.train.x[:n]), info=info)


def _check_finite(section: str, node: Any) -> None:
    """Raise on any non-finite ``mean`` in a result section (nested dicts)."""
    if isinstance(node, dict):
        if "values" in node and not math.isfinite(node["mean"]):  # a _stats entry
            raise SelfsupError(f"non-finite {section} result: {node}")
        for v in node.values():
            _check_finite(section, v)


def evaluate_run(
    run_dir: str | Path,
    seeds: int = 3,
    sup_epochs: int = 20,
    solver: SolverSpec | None = None,
    cond_dim: int | None = DEFAULT_COND_DIM,
    diagnostics: tuple[str, ...] = ("oracle",),
    layer: str | None = None,
    device: str = "cpu",
    skip: tuple[str, ...] = (),
    labelled: int | None = None,
    head: str = "ridge",
) -> dict:
    """Run (a) :func:`coefficient_regression` and (b) :func:`time_stepping` for a trained PDE run on the
    representation of ``layer`` (default: the backbone output); write ``pde_eval.json`` and return it.

    ``solver`` defines the time-steppers (:class:`~selfsup.pde.stepping.SolverSpec`; default: the CPU
    protocol); ``cond_dim`` the principal components of the representation kept as the code (None: all);
    ``diagnostics`` the extra codes (``oracle``, ``random``); ``skip`` may hold ``"regression"`` and/or
    ``"timestepping"``. The evaluation seeds (ridge split, supervised encoder, solvers) are the run's
    training seed and the ``seeds - 1`` after it. ``labelled`` keeps only the first N training trajectories
    for the probes and solvers (the encoder may have seen more); ``head`` the linear head of the regression
    (:data:`HEADS`). See the module docstring for the protocol.
    """
    if int(seeds) < 1:
        raise ConfigError(f"--seeds must be >= 1, got {seeds}")
    unknown = set(diagnostics) - set(DIAGNOSTICS)
    if unknown:
        raise ConfigError(f"unknown diagnostic {sorted(unknown)}; choose from {', '.join(DIAGNOSTICS)}")
    if head not in HEADS:
        raise ConfigError(f"--head must be one of {', '.join(HEADS)}, got '{head}'")
    solver = solver or SolverSpec()
    t_start = time.perf_counter()
    run_dir = Path(run_dir)
    c, _ = load_run(run_dir, device=device)
    if "coeffs" not in c.data.info or c.data.test is None:
        raise SelfsupError(
            f"'{c.cfg.data.dataset}' is not a PDE dataset with a test split (pde:PATH.h5 with train and "
            "test/valid splits, or pde-gen:EQUATION)"
        )
    layer = resolve_layer(layer, c.model.layer_names)
    if labelled is not None:
        c = dataclasses.replace(c, data=first_trajectories(c.data, int(labelled)))
    base = int(c.cfg.train.seed)  # runs trained with other seeds are evaluated with other seeds too
    seed_list = list(range(base, base + int(seeds)))
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
        result["regression"] = coefficient_regression(c, layer, seed_list, sup_epochs, head)
    if "timestepping" not in skip:
        result["timestepping"] = time_stepping(c, layer, seed_list, solver, cond_dim, tuple(diagnostics))
    result["seconds"] = time.perf_counter() - t_start
    for section in ("regression", "timestepping"):
        _check_finite(section, result.get(section, {}))
    (run_dir / "pde_eval.json").write_text(json.dumps(result, indent=2))
    return result
