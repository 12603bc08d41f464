"""Batched ETDRK4 PDE solver vs the public approach (scipy Radau, one trajectory at a time), same process.

For KdV and KS at the default sizes (nx = 256; KdV nt = 250 over T ~ 100, KS nt = 500 over T ~ 100, the last
140 steps kept; L and T jittered per trajectory as in the public generator of Brandstetter et al., LPSDA):

- batched: ``selfsup.pde.generate(equation, n)`` solves ``n`` trajectories at once (float64, CPU), in two
  modes: ``default`` (2/3-rule dealiasing, the library's step control) and ``public_semidiscretisation``
  (``dealias=False``: all modes and the collocation product ``u u_x`` of the public solver, a finer step);
- public: ``scipy.integrate.solve_ivp(method="Radau", rtol=atol=1e-9)`` with a pseudo-spectral right-hand
  side (numpy FFT derivatives, no dealiasing), one trajectory at a time, on the first few of the same
  trajectories (same initial condition, L and T).

Reported per mode: trajectories per second and the ratio to Radau (target >= 100); the relative L2 error
against the Radau solution on the timed trajectories (kept window); the time-stepping error (same solver
with a 4x smaller step bound, on a subset). KdV: the error of Radau and of both modes against a 3x finer
grid (nx = 768) on the timed trajectories, because at nx = 256 the largest solutions are resolved only to
~1e-4 and dealiased and aliased discretisations differ by that much. KS: the error against Radau with
rtol = atol = 1e-10 up to t = 20 (KS is chaotic: over the full horizon any two solvers drift apart, Radau
at 1e-9 included). Threads: torch and BLAS are limited to ``--threads`` (default 1) for both, since a shared
machine makes multi-threaded small FFTs erratic. Absolute times are noise on shared machines; the ratio is
the figure. Writes ``benchmarks/results/bench_pde.json``.
Usage: ``python -m benchmarks.speed.bench_pde [--n-kdv 256] [--n-ks 128] [--radau-kdv 3] [--radau-ks 2]``.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import scipy
import torch
from scipy.integrate import solve_ivp

from benchmarks._common import ROOT, machine_info, write_result
from selfsup.pde import generate, get_equation
from selfsup.pde.equations import initial_condition

TARGET = 100.0
SEED = 0


def radau_rhs(equation: str, L: float, nx: int):
    """The public approach's right-hand side: pseudo-spectral derivatives, no dealiasing."""
    k = 2 * np.pi * np.fft.rfftfreq(nx, d=L / nx)
    sym = {o: (1j * k) ** o for o in (1, 2, 3, 4)}
    sym[1][-1] = sym[3][-1] = 0

    def d(v, order):
        return np.fft.irfft(v * sym[order], n=nx)

    def rhs(_t, u):
        v = np.fft.rfft(u)
        if equation == "kdv":
            return -u * d(v, 1) - d(v, 3)
        return -u * d(v, 1) - d(v, 2) - d(v, 4)

    return rhs


def radau(
    equation: str, u0: np.ndarray, L: float, t_eval: np.ndarray, tol: float
) -> tuple[np.ndarray, float]:
    rhs = radau_rhs(equation, L, u0.size)
    t0 = time.perf_counter()
    sol = solve_ivp(rhs, (0.0, t_eval[-1]), u0, method="Radau", t_eval=t_eval, rtol=tol, atol=tol)
    elapsed = time.perf_counter() - t0
    if not sol.success:
        raise RuntimeError(sol.message)
    return sol.y.T, elapsed


def rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


MODES = {
    # the library defaults: 2/3-rule dealiasing (Galerkin), strain-rate step control
    "default": {"kdv": {}, "ks": {}},
    # the public semi-discretisation (all modes, collocation product u u_x); KdV with a finer step bound:
    # reproduces the public Radau data up to the time-stepping error
    "public_semidiscretisation": {"kdv": {"dealias": False, "cfl": 0.03}, "ks": {"dealias": False}},
}


def errors(u: torch.Tensor, refs: list[np.ndarray]) -> list[float]:
    return [rel(u[b, : len(r)].numpy(), r) for b, r in enumerate(refs)]


def bench(equation: str, n: int, n_radau: int, n_conv: int, threads: int) -> dict:
    eq = get_equation(equation)
    params = eq.resolve({})
    # trajectory i depends only on (seed, i): generate(eq, k, SEED) gives the first k of generate(eq, n, SEED)
    draws = eq.sample(n, params, torch.Generator().manual_seed(SEED))
    u0 = initial_condition(draws, params["nx"]).numpy()
    L = [float(v) for v in draws["L"]]

    out: dict = {"config": {k: params[k] for k in ("nx", "nt", "keep", "L", "T", "jitter", "cfl", "dealias")}}
    generate(equation, 4, seed=1, threads=threads)  # warm-up
    runs = {}
    modes = {m: v[equation] for m, v in MODES.items()}
    for mode, kw in modes.items():
        t0 = time.perf_counter()
        runs[mode] = generate(equation, n, seed=SEED, batch_size=n, threads=threads, **kw)
        el = time.perf_counter() - t0
        out[mode] = {"overrides": kw, "n": n, "seconds": el, "traj_per_s": n / el}
        print(f"  {equation} {mode}: {n / el:.2f} traj/s", flush=True)

    radau_s, refs = [], []
    t_kept = runs["default"].t
    for b in range(n_radau):
        ref, el = radau(equation, u0[b], L[b], t_kept[b].numpy(), 1e-9)
        radau_s.append(el)
        refs.append(ref)
        print(f"  {equation} radau trajectory {b}: {el:.1f} s", flush=True)
    out["radau"] = {
        "n": n_radau,
        "rtol": 1e-9,
        "atol": 1e-9,
        "seconds": radau_s,
        "traj_per_s": n_radau / sum(radau_s),
    }
    for mode in MODES:
        errs = errors(runs[mode].u, refs)
        out[mode]["speedup"] = out[mode]["traj_per_s"] / out["radau"]["traj_per_s"]
        out[mode]["error_vs_radau_1e-9"] = {"per_trajectory": errs, "max": max(errs)}

    # time-stepping error: the same solver with a 4x smaller step bound, on the first n_conv trajectories
    for mode, kw in modes.items():
        cfl = kw.get("cfl", params["cfl"]) / 4
        fine = generate(equation, n_conv, seed=SEED, threads=threads, **{**kw, "cfl": cfl}).u
        e = (runs[mode].u[:n_conv] - fine).flatten(1).norm(dim=1) / fine.flatten(1).norm(dim=1)
        out[mode]["time_stepping_error"] = {"n": n_conv, "max": float(e.max()), "median": float(e.median())}

    if equation == "kdv":
        # spatial resolution: a 3x finer grid (dealiased, half the step) on the timed trajectories
        conv = generate(
            equation, n_radau, seed=SEED, threads=threads, nx=3 * params["nx"], cfl=params["cfl"] / 2
        )
        fine_u = conv.u[:, :, ::3]
        out["error_vs_nx768"] = {
            "radau": [rel(r, fine_u[b].numpy()) for b, r in enumerate(refs)],
            **{m: [rel(runs[m].u[b].numpy(), fine_u[b].numpy()) for b in range(n_radau)] for m in MODES},
        }
    else:
        # KS is chaotic: compare with Radau at rtol = atol = 1e-10 up to t = 20 only
        early = {
            m: generate(equation, n_radau, seed=SEED, threads=threads, keep=params["nt"], **kw)
            for m, kw in modes.items()
        }
        refs20 = []
        for b in range(n_radau):
            t = early["default"].t[b].numpy()
            refs20.append(radau(equation, u0[b], L[b], t[t <= 20.0 + 1e-9], 1e-10)[0])
        for m in MODES:
            errs = errors(early[m].u, refs20)
            out[m]["error_vs_radau_1e-10_t_le_20"] = {"per_trajectory": errs, "max": max(errs)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(prog=f"python -m {__spec__.name}", description=__doc__.splitlines()[0])
    parser.add_argument("--n-kdv", type=int, default=256)
    parser.add_argument("--n-ks", type=int, default=128)
    parser.add_argument("--radau-kdv", type=int, default=3)
    parser.add_argument("--radau-ks", type=int, default=2)
    parser.add_argument("--n-conv", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("benchmarks/results/bench_pde.json"),
        help="result file (relative: to the repository root)",
    )
    args = parser.parse_args()

    try:
        from threadpoolctl import threadpool_limits

        limits = threadpool_limits(args.threads)
    except ImportError:  # pragma: no cover
        limits = None
    torch.set_num_threads(args.threads)
    load_start = os.getloadavg()
    results = {
        "benchmark": "batched ETDRK4 (selfsup.pde.generate) vs scipy Radau one trajectory at a time",
        "torch": torch.__version__,
        "scipy": scipy.__version__,
        "numpy": np.__version__,
        "threads": {"torch": torch.get_num_threads(), "blas_limited": limits is not None},
        "target_speedup": TARGET,
    }
    for equation, n, n_radau in (("kdv", args.n_kdv, args.radau_kdv), ("ks", args.n_ks, args.radau_ks)):
        print(f"{equation}: batched n={n}, radau n={n_radau}", flush=True)
        results[equation] = bench(equation, n, n_radau, min(args.n_conv, n), args.threads)
        r = results[equation]
        for mode in MODES:
            print(
                f"  {equation} {mode}: speedup {r[mode]['speedup']:.0f}x, "
                f"error vs radau {r[mode]['error_vs_radau_1e-9']['max']:.2e}",
                flush=True,
            )
    results["meets_target"] = {
        m: all(results[e][m]["speedup"] >= TARGET for e in ("kdv", "ks")) for m in MODES
    }
    # the load at start and end: how much of the machine other processes took during the timings
    load = {"loadavg_start": list(load_start), "loadavg_end": list(os.getloadavg())}
    print(f"wrote {write_result(ROOT / args.out, results, machine={**machine_info(), **load})}")


if __name__ == "__main__":
    main()
