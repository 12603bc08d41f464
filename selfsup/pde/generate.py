"""``generate``: batched, seeded data generation for the equations of :mod:`selfsup.pde.equations`."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from rich.progress import Progress

from selfsup.errors import ConfigError
from selfsup.pde.data import PDEData
from selfsup.pde.equations import get_equation, initial_condition


def parse_options(items: list[str], usage: str) -> dict[str, Any]:
    """``["nx=128", "nu_range=[0.1, 1]"]`` -> ``{"nx": 128, "nu_range": (0.1, 1)}``: generator options given
    as text (values read as JSON, else kept as strings; lists become tuples). ``usage`` shows the form."""
    options: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{usage}, got '{item}'")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        options[key.strip()] = tuple(value) if isinstance(value, list) else value
    return options


@contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Temporarily set torch's intra-op CPU threads (``None``: leave them alone)."""
    old = torch.get_num_threads()
    if n:
        torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(old)


def generate(
    equation: str,
    n: int,
    seed: int = 0,
    device: str | torch.device = "cpu",
    progress: bool = False,
    batch_size: int = 256,
    dtype: torch.dtype = torch.float64,
    threads: int | None = None,
    **overrides: Any,
) -> PDEData:
    """Generate ``n`` trajectories of ``equation`` (``kdv``, ``ks``, ``heat``, ``burgers``).

    Every random draw (initial conditions, ``L``, ``T``, ``nu``) is made up front on the CPU from ``seed``, so
    the initial conditions and coefficients do not depend on ``batch_size`` or ``device``. The solver then
    runs ``batch_size`` trajectories at a time in float64 (``u`` is cast to ``dtype`` at the end); ETDRK4
    chunks are formed after sorting by initial amplitude, because a chunk's step size follows its largest
    solution (so the solution may differ by the solver tolerance across batch sizes). ``overrides`` replace
    the equation's defaults (see ``selfsup.pde.EQUATIONS[name].defaults``): ``nx, nt, keep, L, T, jitter,
    amplitude, n_modes, max_mode``; ``substeps, cfl, dealias, blowup`` (KdV, KS); ``nu_range`` (heat,
    Burgers). ``threads`` sets torch's CPU threads during the solve (1 is fastest on a busy machine).
    With ``progress`` a rich progress bar counts trajectories.
    """
    eq = get_equation(equation)
    params = eq.resolve(overrides)
    if int(n) != n or n < 1:
        raise ConfigError(f"n must be a positive integer, got {n}")
    if int(batch_size) != batch_size or batch_size < 1:
        raise ConfigError(f"batch_size must be a positive integer, got {batch_size}")
    draws = eq.sample(int(n), params, torch.Generator().manual_seed(int(seed)))
    order = torch.arange(n)
    if eq.linear is not None:
        order = torch.argsort(initial_condition(draws, params["nx"]).abs().amax(dim=-1), stable=True)
    chunks = []
    with torch_threads(threads), Progress(disable=not progress) as bar:
        task = bar.add_task(f"{eq.name}: solving", total=n)
        for lo in range(0, n, batch_size):
            idx = order[lo : lo + batch_size]
            chunks.append(eq.solve({k: v[idx] for k, v in draws.items()}, params, device).to(dtype))
            bar.advance(task, len(idx))
    u = torch.empty_like(torch.cat(chunks))
    u[order.to(u.device)] = torch.cat(chunks)
    dev = u.device
    nx, nt, keep = params["nx"], params["nt"], params["keep"]
    L, T = draws["L"].to(dev), draws["T"].to(dev)
    dx, dt = L / nx, T / (nt - 1)
    x = dx[:, None] * torch.arange(nx, dtype=torch.float64, device=dev)
    t = dt[:, None] * torch.arange(nt - keep, nt, dtype=torch.float64, device=dev)
    record = {k: (list(v) if isinstance(v, tuple) else v) for k, v in params.items()}
    record.update(seed=int(seed), n=int(n))
    return PDEData(eq.name, u, x, t, dx, dt, {k: draws[k].to(dev) for k in eq.coeffs}, record)
