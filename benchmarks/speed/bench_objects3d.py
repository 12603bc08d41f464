"""objects3d generation time: the default set (10 classes x 50 instances x 40 views = 20,000 images, 32 x 32)
with torch.set_num_threads(2), against a 120 s target on a 2-core machine; and, in the same process on a
subset of the same images, images per second at 32 x 32 (2 x 2 supersampling, the default), at 64 x 64, and
at 32 x 32 without supersampling (the baseline: plain ray casting, one ray per pixel).

Ratios: ``antialias_cost`` = time with 2 x 2 supersampling / time without (4 rays per pixel instead of 1:
at most 4 if the cost were all per ray; less, as the per-image and per-primitive work is shared);
``size_64_cost`` = time per 64 x 64 image / time per 32 x 32 image (4 times the rays). Rounds alternate
between the settings; medians are reported (shared machines: absolute times are noise, ratios the figure).
Writes ``benchmarks/results/objects3d.json``.
Usage: ``python -m benchmarks.speed.bench_objects3d [--rounds 3]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import torch

from benchmarks._common import ROOT, machine_info, write_result
from selfsup.data.objects3d import generate, make_shapes, render_views, sample_factors

TARGET_S = 120.0
THREADS = 2


def time_subset(shapes, factors, image_size: int, supersample: int) -> float:
    """Images per second rendering ``factors`` (shapes and factors drawn beforehand)."""
    t0 = time.perf_counter()
    render_views(shapes, factors, image_size, supersample=supersample)
    return len(factors["instance"]) / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(prog=f"python -m {__spec__.name}", description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the subset comparisons")
    parser.add_argument("--subset-instances", type=int, default=5, help="instances per class in the subset")
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("benchmarks/results/objects3d.json"),
        help="result file (relative: to the repository root)",
    )
    args = parser.parse_args()
    torch.set_num_threads(THREADS)
    load_start = os.getloadavg()

    t0 = time.perf_counter()
    x, _, _ = generate(progress=False)  # the defaults: 10 x 50 x 40, 32 x 32
    full_s = time.perf_counter() - t0
    print(f"generated {tuple(x.shape)} in {full_s:.1f} s (target {TARGET_S:.0f} s)")

    shapes = make_shapes(10, args.subset_instances, 0)
    factors = sample_factors(10, args.subset_instances, 40, 0)
    settings = {"32px": (32, 2), "64px": (64, 2), "32px_no_supersampling": (32, 1)}
    rates = {k: [] for k in settings}
    for r in range(args.rounds):
        for name, (size, ss) in settings.items():
            rates[name].append(time_subset(shapes, factors, size, ss))
        print(f"round {r}: " + " | ".join(f"{k} {v[-1]:7.0f} images/s" for k, v in rates.items()))

    med = {k: statistics.median(v) for k, v in rates.items()}
    result = {
        "benchmark": "bench_objects3d",
        "what": "objects3d generation (shapes, factors, batched ray casting) on the CPU",
        "default_set": {
            "images": len(x),
            "image_size": 32,
            "seconds": full_s,
            "images_per_s": len(x) / full_s,
        },
        "target_seconds": TARGET_S,
        "meets_target": full_s < TARGET_S,
        "subset": {"images": len(factors["instance"]), "rounds": args.rounds},
        "images_per_s": {k: {"median": med[k], "rounds": v} for k, v in rates.items()},
        "antialias_cost": med["32px_no_supersampling"] / med["32px"],
        "size_64_cost": med["32px"] / med["64px"],
    }
    # the load over the whole run: other processes' share of the 2 cores the target is about
    load = {"loadavg_start": list(load_start), "loadavg_end": list(os.getloadavg())}
    out = write_result(ROOT / args.out, result, machine={**machine_info(), **load})
    print(
        f"20k at 32px: {full_s:.1f} s; 32px {med['32px']:.0f} images/s, 64px {med['64px']:.0f} images/s, "
        f"32px without supersampling {med['32px_no_supersampling']:.0f} images/s; antialias cost "
        f"{result['antialias_cost']:.2f}x, 64px cost {result['size_64_cost']:.2f}x -> {out}"
    )


if __name__ == "__main__":
    main()
