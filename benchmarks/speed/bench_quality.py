"""Benchmark: RankMe's fast Gram path against the float64 SVD baseline, in the same process.

Embeddings of the paper's size (N = 25,600) with a decaying spectrum (singular values k^-1 in random
orthonormal bases), stored in float32 as a network would produce them (and float64 for K = 512).
Fast path: ``selfsup.quality.rankme(z)`` (method="auto", which also validates the input and decides
whether the Gram path is accurate enough). Baseline: ``torch.linalg.svdvals(z.double())`` followed by
the paper's formula. Runs alternate (fast, baseline, fast, ...) so that load from other processes hits
both; the median of the repeats is reported. Target: >= 5x faster at <= 1e-6 relative error.

Usage: python -m benchmarks.speed.bench_quality [--repeats 3] [--n 25600] [--k 2048 512] [--k64 512]
[--out PATH] (default PATH: benchmarks/results/bench_quality.json)
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import torch

from benchmarks._common import ROOT, machine_info, write_result
from selfsup.quality import rankme_info

EPS = 1e-7
TARGET_RATIO = 5.0
TARGET_REL_ERROR = 1e-6


def make_embeddings(n: int, k: int, decay: float, seed: int, dtype: torch.dtype) -> torch.Tensor:
    """Z = U diag(k^-decay) V^T with random orthonormal U (n x k), V (k x k), cast to ``dtype``."""
    g = torch.Generator().manual_seed(seed)
    u = torch.linalg.qr(torch.randn(n, k, generator=g, dtype=torch.float64)).Q
    v = torch.linalg.qr(torch.randn(k, k, generator=g, dtype=torch.float64)).Q
    s = torch.arange(1, k + 1, dtype=torch.float64) ** -decay
    return ((u * s) @ v.T).to(dtype).contiguous()


def baseline_rankme(z: torch.Tensor) -> float:
    """The reference: float64 singular values by ``torch.linalg.svdvals`` and the paper's formula."""
    s = torch.linalg.svdvals(z.to(torch.float64))
    p = s / s.sum() + EPS
    return float(torch.exp(-(p * torch.log(p)).sum()))


def _timed(fn, *args):
    t0 = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - t0


def blas_machine() -> dict:
    """The machine, with what the timings depend on besides it: the cores this process may use and the
    BLAS / OpenMP libraries with their thread counts (threadpoolctl, when installed)."""
    info = {**machine_info()}
    info["cpu_affinity"] = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    try:
        from threadpoolctl import threadpool_info

        info["blas"] = [
            {k: d.get(k) for k in ("internal_api", "num_threads", "version", "prefix")}
            for d in threadpool_info()
        ]
    except Exception:  # threadpoolctl is optional
        info["blas"] = None
    return info


def run_case(n: int, k: int, dtype: torch.dtype, repeats: int, decay: float = 1.0) -> dict:
    z = make_embeddings(n, k, decay, seed=k, dtype=dtype)
    rankme_info(z[: 4 * 64, :64])  # warm-up (imports, BLAS thread pools)
    fast_times, base_times = [], []
    info = base = None
    for _ in range(repeats):
        info, dt = _timed(rankme_info, z)
        fast_times.append(dt)
        base, dt = _timed(baseline_rankme, z)
        base_times.append(dt)
    fast_s, base_s = statistics.median(fast_times), statistics.median(base_times)
    rel = abs(info.value - base) / base
    ratio = base_s / fast_s
    return {
        "n": n,
        "k": k,
        "dtype": str(dtype).replace("torch.", ""),
        "spectrum": f"sigma_k = k^-{decay:g}, random orthonormal bases",
        "repeats": repeats,
        "fast_method": info.method,
        "fast_error_estimate": info.error_estimate,
        "fast_s": fast_s,
        "baseline_s": base_s,
        "fast_s_all": fast_times,
        "baseline_s_all": base_times,
        "ratio": ratio,
        "rankme_fast": info.value,
        "rankme_baseline": base,
        "rel_error": rel,
        "target_met": bool(ratio >= TARGET_RATIO and rel <= TARGET_REL_ERROR),
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog=f"python -m {__spec__.name}", description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=25_600)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--k", type=int, nargs="*", default=[2048, 512], help="embedding sizes (float32 each)"
    )
    parser.add_argument(
        "--k64", type=int, nargs="*", default=[512], help="embedding sizes also run in float64"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("benchmarks/results/bench_quality.json"),
        help="result file (relative: to the repository root)",
    )
    args = parser.parse_args()
    cases = [(k, torch.float32) for k in args.k] + [(k, torch.float64) for k in args.k64]
    if any(args.n < k for k, _ in cases):
        parser.error(f"--n={args.n} must be at least every K in {[k for k, _ in cases]}")
    load_before = os.getloadavg() if hasattr(os, "getloadavg") else None
    t0 = time.perf_counter()
    results = []
    for k, dtype in cases:
        res = run_case(args.n, k, dtype, args.repeats)
        results.append(res)
        verdict = "met" if res["target_met"] else "NOT met"
        estimate = "n/a" if res["fast_error_estimate"] is None else f"{res['fast_error_estimate']:.1e}"
        print(
            f"RankMe N={res['n']} K={res['k']} {res['dtype']}: fast ({res['fast_method']}) "
            f"{res['fast_s']:.3f} s vs svdvals float64 {res['baseline_s']:.3f} s -> {res['ratio']:.1f}x, "
            f"rel. error {res['rel_error']:.1e} (estimate {estimate}); "
            f"target >= {TARGET_RATIO:g}x at <= {TARGET_REL_ERROR:g}: {verdict}",
            flush=True,
        )
    report = {
        "benchmark": "rankme fast path (selfsup.quality.rankme, method=auto) vs torch.linalg.svdvals float64",
        "load_average_before": load_before,
        "load_average_after": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "total_s": time.perf_counter() - t0,
        "target": {"ratio": TARGET_RATIO, "rel_error": TARGET_REL_ERROR},
        "results": results,
    }
    print(f"wrote {write_result(ROOT / args.out, report, machine=blas_machine())}")


if __name__ == "__main__":
    main()
