"""Neural time-stepping on PDE trajectories, with or without a per-trajectory conditioning code.

The protocol follows the public code of Brandstetter et al. 2022 (LPSDA, ``experiments/train_helper.py`` and
``experiments/models_cnn.py``; read, not copied; see ``docs/pde-protocol.md``), which the time-stepping
experiment of Mialon, Garrido et al. (NeurIPS 2023) builds on:

* **Inputs.** ``history`` steps of ``u`` plus the trajectory's grid, ``log dx`` and ``log dt``, as two
  constant input channels (LPSDA's CNN appends the raw ``dx`` and ``dt`` to every grid point; we standardise
  them with the training mean and std, a constant channel becoming zero). ``grid=False`` drops them.
* **Rollout** (:func:`rollout`). Input steps ``[start, start + history)``, then autoregressive blocks of
  ``future`` steps to the end (LPSDA: ``start = 20``, input 20-39, predicted 40-139: 100 steps).
* **Metrics.** ``nmse_sum``: LPSDA's normalised unrolled loss, per trajectory and predicted step
  ``mean_x (pred - u)^2 / mean_x u^2``, summed over the predicted steps and averaged over trajectories;
  ``nmse_global``: ``sum (pred - u)^2 / sum u^2`` over everything (about ``nmse_sum / steps``).
* **Training** (:func:`train_solver`). MSE on random windows of the training trajectories (LPSDA's time
  shift), with the ``optimizer`` of :func:`make_optimizer` (``adam``: ours; ``lpsda``: LPSDA's AdamW and
  step schedule, the default of the ``lpsda`` architecture); every ``steps // checks`` steps the solver is
  rolled out on held-out validation trajectories and the state with the lowest validation ``nmse_sum`` is
  kept (LPSDA keeps its best validation epoch), so a conditioning that only overfits is caught by the same
  rule as the baseline.
* **Architectures.** ``small`` (:class:`CNNSolver`, ours: 5 dilated convolutions, width 32, predicting the
  change from the last input step) and ``lpsda`` (:class:`LPSDASolver`: LPSDA's CNN, width 128, 8 residual
  circular convolutions with kernels 3, 5, 5, 7, 7, 9, 9, 15, ELU, direct output; about 1 M parameters).
* **Conditioning.** A code vector per trajectory modulates every hidden layer through a zero-initialised
  linear map (the conditioned solver starts as the unconditioned one): a per-channel shift, or FiLM scale and
  shift.
  :func:`bottleneck` reduces a representation to its top principal components first; ``cond_dropout``
  zeroes the whole code of a training sample with that probability (the solver also learns to do without
  it; a code carries a trajectory's identity, which a solver can otherwise memorise).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from selfsup.errors import ConfigError

#: How the time-stepper uses the conditioning code.
CONDITIONING = ("shift", "film")
#: Time-stepper architectures (see the module docstring).
ARCHS = ("small", "lpsda")
#: Solver optimisers (:func:`make_optimizer`) and their default learning rates.
OPTIMIZERS = {"adam": 1e-3, "lpsda": 1e-4}


@dataclass(frozen=True)
class SolverSpec:
    """Everything that defines one time-stepper and its training (defaults: the ``small`` CPU protocol).
    ``optimizer`` and ``batch_size`` None are the architecture's own (``small``: ``adam``, 32; ``lpsda``:
    ``lpsda``, 16 as LPSDA's ``train.py``), ``lr`` None the optimiser's (:data:`OPTIMIZERS`)."""

    arch: str = "small"
    steps: int = 1000  # training steps
    history: int = 20
    future: int = 20
    start: int = 20  # first input step of the test rollout (LPSDA: 20)
    batch_size: int | None = None
    optimizer: str | None = None
    lr: float | None = None
    grid: bool = True  # log dx, log dt as input channels
    dilated: bool = True  # small: dilated convolutions
    conditioning: str = "shift"
    cond_dropout: float = 0.0
    checks: int = 10  # validation rollouts during training (0: keep the last state)

    def __post_init__(self):
        if self.arch not in ARCHS:
            raise ConfigError(f"solver architecture must be one of {', '.join(ARCHS)}, got '{self.arch}'")
        _check_conditioning(self.conditioning)
        if self.batch_size is None:
            object.__setattr__(self, "batch_size", 16 if self.arch == "lpsda" else 32)
        if min(self.steps, self.history, self.future, self.batch_size) < 1 or self.start < 0:
            raise ConfigError("solver steps, history, future and batch size must be >= 1, start >= 0")
        if not 0 <= self.cond_dropout < 1:
            raise ConfigError(f"cond_dropout must be in [0, 1), got {self.cond_dropout}")
        if self.optimizer is None:
            object.__setattr__(self, "optimizer", "lpsda" if self.arch == "lpsda" else "adam")
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(
                f"solver optimizer must be one of {', '.join(OPTIMIZERS)}, got '{self.optimizer}'"
            )
        if self.lr is None:
            object.__setattr__(self, "lr", OPTIMIZERS[self.optimizer])
        if self.lr <= 0:
            raise ConfigError(f"solver lr must be > 0, got {self.lr}")


class _Modulation(nn.Module):
    """Per-layer ``(scale, shift)`` or ``(shift,)`` of ``width`` channels from a code, zero-initialised."""

    def __init__(self, cond_dim: int, width: int, depth: int, conditioning: str):
        super().__init__()
        self.n_mod, self.width = (2 if conditioning == "film" else 1), width
        self.linear = nn.Linear(cond_dim, self.n_mod * width * depth)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(self, cond: torch.Tensor) -> torch.Tensor:
        return self.linear(cond).view(len(cond), -1, self.n_mod, self.width)


def _check_conditioning(conditioning: str) -> None:
    if conditioning not in CONDITIONING:
        raise ConfigError(f"conditioning must be one of {', '.join(CONDITIONING)}, got '{conditioning}'")


def _modulate(h: torch.Tensor, mods: torch.Tensor | None, i: int) -> torch.Tensor:
    if mods is None:
        return h
    if mods.shape[2] == 2:
        h = h * (1 + mods[:, i, 0, :, None])
    return h + mods[:, i, -1, :, None]


def _inputs(u: torch.Tensor, grid: torch.Tensor | None) -> torch.Tensor:
    """``u (B, history, nx)`` with ``grid (B, g)`` appended as ``g`` constant channels."""
    if grid is None or grid.shape[1] == 0:
        return u
    return torch.cat([u, grid[:, :, None].to(u.dtype).expand(-1, -1, u.shape[-1])], 1)


class CNNSolver(nn.Module):
    """``history`` steps ``(B, history, nx)`` -> next ``future`` steps, as ``u_last + net(.)``; circular in x.

    ``depth`` convolutions (kernel 5, GELU) then an output convolution (zero-initialised). With
    ``dilated=True`` the i-th hidden convolution has dilation ``2^i``, so the receptive field is
    ``+-(2 (2^depth - 1) + 2)`` cells (+-64 for depth 5) instead of ``+-(2 depth + 2)`` (+-12): on the KdV/KS
    data the solution moves by tens of cells within the predicted steps. ``n_grid`` extra constant input
    channels carry the grid; ``cond_dim > 0`` adds the conditioning (module docstring).
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
        n_grid: int = 0,
    ):
        super().__init__()
        _check_conditioning(conditioning)
        chans = [history + n_grid] + [width] * depth
        dil = [2**i if dilated else 1 for i in range(depth)]
        self.convs = nn.ModuleList(
            nn.Conv1d(a, b, 5, padding=2 * d, dilation=d, padding_mode="circular")
            for a, b, d in zip(chans[:-1], chans[1:], dil, strict=True)
        )
        self.receptive_field = 2 * sum(dil) + 2  # cells on each side
        self.out = nn.Conv1d(width, future, 5, padding=2, padding_mode="circular")
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        self.modulation = _Modulation(cond_dim, width, depth, conditioning) if cond_dim else None

    def forward(self, u, cond=None, grid=None):
        mods = None if self.modulation is None else self.modulation(cond)
        h = _inputs(u, grid)
        for i, conv in enumerate(self.convs):
            h = F.gelu(_modulate(conv(h), mods, i))
        return u[:, -1:] + self.out(h)


class LPSDASolver(nn.Module):
    """LPSDA's 1-D CNN time-stepper (Brandstetter et al. 2022, ``experiments/models_cnn.py``, read via
    search): a pointwise lift of the ``history + n_grid`` inputs to ``width`` channels, 8 residual circular
    convolutions (``h = ELU(h + conv(h))``, kernels 3, 5, 5, 7, 7, 9, 9, 15: reach +-26 cells), then pointwise
    ``width -> width -> future`` with ELU; Xavier-uniform weights; the ``future`` steps are predicted
    directly.
    """

    KERNELS = (3, 5, 5, 7, 7, 9, 9, 15)

    def __init__(
        self, history: int, future: int, width: int = 128, cond_dim: int = 0, conditioning="shift", n_grid=0
    ):
        super().__init__()
        _check_conditioning(conditioning)
        self.lift = nn.Conv1d(history + n_grid, width, 1)
        self.convs = nn.ModuleList(
            nn.Conv1d(width, width, k, padding=k // 2, padding_mode="circular") for k in self.KERNELS
        )
        self.head = nn.Sequential(nn.Conv1d(width, width, 1), nn.ELU(), nn.Conv1d(width, future, 1))
        for m in self.modules():
            if isinstance(m, nn.Conv1d):
                nn.init.xavier_uniform_(m.weight)
        self.receptive_field = sum(k // 2 for k in self.KERNELS)
        self.modulation = _Modulation(cond_dim, width, len(self.KERNELS), conditioning) if cond_dim else None

    def forward(self, u, cond=None, grid=None):
        mods = None if self.modulation is None else self.modulation(cond)
        h = self.lift(_inputs(u, grid))
        for i, conv in enumerate(self.convs):
            h = F.elu(h + _modulate(conv(h), mods, i))
        return self.head(h)


def build_solver(spec: SolverSpec, cond_dim: int, n_grid: int) -> nn.Module:
    if spec.arch == "lpsda":
        return LPSDASolver(
            spec.history, spec.future, cond_dim=cond_dim, conditioning=spec.conditioning, n_grid=n_grid
        )
    return CNNSolver(
        spec.history,
        spec.future,
        cond_dim=cond_dim,
        dilated=spec.dilated,
        conditioning=spec.conditioning,
        n_grid=n_grid,
    )


@dataclass
class Trajectories:
    """Fields ``u (n, nt, nx)`` with their grid features ``(n, g)`` and conditioning codes ``(n, d)``."""

    u: torch.Tensor
    grid: torch.Tensor | None = None
    cond: torch.Tensor | None = None

    def to(self, device) -> Trajectories:
        move = lambda a: None if a is None else a.float().to(device)  # noqa: E731
        return Trajectories(move(self.u), move(self.grid), move(self.cond))


@torch.no_grad()
def rollout(model: nn.Module, data: Trajectories, spec: SolverSpec, device, batch: int = 128) -> dict:
    """Autoregressive rollout from input steps ``[start, start + history)`` to the end: ``nmse_sum``
    (LPSDA's metric), ``nmse_global`` and ``steps`` (predicted steps), see the module docstring."""
    d = data.to(device)
    s0, h, f = spec.start, spec.history, spec.future
    n_blocks = (d.u.shape[1] - s0 - h) // f
    if n_blocks < 1:
        raise ConfigError(
            f"a rollout from step {s0} needs at least start + history + future = {s0 + h + f} steps, "
            f"got {d.u.shape[1]}; lower --start, --history or --future"
        )
    per_step, err2, u2 = [], 0.0, 0.0
    for i in range(0, len(d.u), batch):
        u = d.u[i : i + batch]
        cond = None if d.cond is None else d.cond[i : i + batch]
        grid = None if d.grid is None else d.grid[i : i + batch]
        cur, preds = u[:, s0 : s0 + h], []
        for _ in range(n_blocks):
            preds.append(model(cur, cond, grid))
            cur = torch.cat([cur, preds[-1]], 1)[:, -h:]
        pred, target = torch.cat(preds, 1).double(), u[:, s0 + h : s0 + h + n_blocks * f].double()
        e = (pred - target) ** 2
        per_step.append(e.mean(-1) / (target**2).mean(-1).clamp_min(1e-30))
        err2, u2 = err2 + float(e.sum()), u2 + float((target**2).sum())
    nmse_sum = float(torch.cat(per_step).sum(1).mean())
    return {"nmse_sum": nmse_sum, "nmse_global": err2 / max(u2, 1e-30), "steps": n_blocks * f}


def drop_codes(cond: torch.Tensor, p: float, gen: torch.Generator) -> torch.Tensor:
    """Zero each row (a sample's whole code) with probability ``p``; the solver also learns to do without."""
    if not p:
        return cond
    return cond * (torch.rand(len(cond), 1, generator=gen) >= p).to(cond)


def make_optimizer(model: nn.Module, spec: SolverSpec) -> tuple[torch.optim.Optimizer, object]:
    """The solver's optimiser and per-step learning-rate schedule. ``adam``: Adam at ``lr``, constant.
    ``lpsda``: LPSDA's ``train.py`` (AdamW, torch's default weight decay 0.01, ``MultiStepLR(milestones=
    [0, 5, 10, 15] epochs of 20, gamma=0.4)``, whose milestone 0 fires when it is built): ``0.4 lr`` from
    the start, times 0.4 again at 25, 50 and 75 % of the steps."""
    if spec.optimizer == "adam":
        opt = torch.optim.Adam(model.parameters(), lr=spec.lr)
        return opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0)
    opt = torch.optim.AdamW(model.parameters(), lr=0.4 * spec.lr, weight_decay=0.01)
    marks = sorted({max(1, spec.steps * k // 4) for k in (1, 2, 3)})
    return opt, torch.optim.lr_scheduler.MultiStepLR(opt, milestones=marks, gamma=0.4)


def train_solver(
    train: Trajectories, valid: Trajectories | None, spec: SolverSpec, seed: int, device
) -> tuple[nn.Module, dict]:
    """Train one time-stepper (module docstring); returns the kept model and
    ``{"best_step", "valid_nmse"}``."""
    torch.manual_seed(seed)
    d = train.to(device)
    n, nt, _ = d.u.shape
    n_grid = 0 if d.grid is None else d.grid.shape[1]
    model = build_solver(spec, 0 if d.cond is None else d.cond.shape[1], n_grid).to(device)
    opt, schedule = make_optimizer(model, spec)
    gen = torch.Generator().manual_seed(seed)  # the same windows for every code
    drop_gen = torch.Generator().manual_seed(seed + 1)
    every = max(1, spec.steps // spec.checks) if spec.checks and valid is not None else 0
    best = {"best_step": spec.steps, "valid_nmse": None}
    best_state = None
    span = spec.history + spec.future
    for step in range(1, spec.steps + 1):
        traj = torch.randint(0, n, (spec.batch_size,), generator=gen).to(device)
        start = torch.randint(0, nt - span + 1, (spec.batch_size,), generator=gen).to(device)
        win = d.u[traj[:, None], start[:, None] + torch.arange(span, device=device)]
        cond = None if d.cond is None else drop_codes(d.cond[traj], spec.cond_dropout, drop_gen)
        grid = None if d.grid is None else d.grid[traj]
        loss = F.mse_loss(model(win[:, : spec.history], cond, grid), win[:, spec.history :])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        schedule.step()
        if every and (step % every == 0 or step == spec.steps):
            model.eval()
            score = rollout(model, valid, spec, device)["nmse_sum"]
            model.train()
            if best["valid_nmse"] is None or score < best["valid_nmse"]:
                best, best_state = {"best_step": step, "valid_nmse": score}, copy.deepcopy(model.state_dict())
    if best_state is not None:
        model.load_state_dict(best_state)
    return model.eval(), best


def standardise(train: torch.Tensor, *others: torch.Tensor) -> list[torch.Tensor]:
    """Scale every tensor with the per-column mean and (sample) std of ``train``; a constant column -> 0."""
    mu, sd = train.mean(0), train.std(0)
    sd = torch.where(sd > 1e-8 * mu.abs().clamp_min(1.0), sd, torch.full_like(sd, float("inf")))
    return [(a - mu) / sd for a in (train, *others)]


def bottleneck(train: torch.Tensor, *others: torch.Tensor, dim: int | None = None) -> list[torch.Tensor]:
    """Standardised codes; with ``dim``, their top-``dim`` principal components (fitted on ``train``,
    each component standardised). ``dim`` of None or >= the number of columns keeps every column."""
    parts = standardise(train.double(), *(o.double() for o in others))
    if dim is None or dim >= train.shape[1]:
        return [p.float() for p in parts]
    if dim < 1:
        raise ConfigError(f"--cond-dim must be >= 1, got {dim}")
    _, _, vh = torch.linalg.svd(parts[0], full_matrices=False)
    proj = [p @ vh[:dim].T for p in parts]
    return [p.float() for p in standardise(*proj)]
