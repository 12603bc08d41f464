"""Batched SimCLR views vs the usual per-sample torchvision pipeline in a DataLoader, same process.

Both pipelines produce SimCLR views of 32 x 32 RGB images (random uint8 data, float32 in [0, 1] out):
RandomResizedCrop (scale 0.08-1), horizontal flip 0.5, ColorJitter(0.8, 0.8, 0.8, 0.2) with p = 0.8,
grayscale p = 0.2 (no blur: SimCLR's CIFAR setting).

- baseline: ``torchvision.transforms.v2.Compose`` applied per sample in ``Dataset.__getitem__``,
  ``DataLoader(batch_size=256, num_workers=2)`` (persistent workers, warmed up);
- batched: ``selfsup.views.build_views("simclr", (3, 32, 32))`` on whole batches of 256 in the main process
  (vectorised per-sample parameters), timed with torch's default thread count and with one thread;
- for information: the same recipe through stock ``kornia.augmentation`` (``backend="kornia"``).

Rounds alternate between the pipelines (machines are shared; absolute times are noise, the ratio is the
figure); the medians over rounds are reported. Writes ``benchmarks/results/bench_views.json``.
Usage: ``python -m benchmarks.speed.bench_views [--views 4096] [--rounds 3]``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import kornia
import torch
import torchvision
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2

from benchmarks._common import ROOT, write_result
from selfsup.views import build_views

BATCH = 256
SHAPE = (3, 32, 32)
TARGET = 5.0


class PerSampleDataset(Dataset):
    def __init__(self, images: torch.Tensor, transform) -> None:
        self.images, self.transform = images, transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.transform(self.images[i])


def torchvision_simclr() -> v2.Compose:
    return v2.Compose(
        [
            v2.RandomResizedCrop(SHAPE[1:], scale=(0.08, 1.0), antialias=True),
            v2.RandomHorizontalFlip(p=0.5),
            v2.RandomApply([v2.ColorJitter(0.8, 0.8, 0.8, 0.2)], p=0.8),
            v2.RandomGrayscale(p=0.2),
            v2.ToDtype(torch.float32, scale=True),
        ]
    )


def time_loader(loader: DataLoader, n_views: int) -> float:
    """views/s for pulling at least n_views out of the (persistent-worker, warmed-up) loader."""
    done = 0
    t0 = time.perf_counter()
    while done < n_views:
        for batch in loader:
            done += len(batch)
            if done >= n_views:
                break
    return done / (time.perf_counter() - t0)


def time_batched(views, images: torch.Tensor, n_views: int, threads: int) -> float:
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        n = len(images)
        for s in range(0, 2 * BATCH, BATCH):  # warm-up
            views(images[s : s + BATCH].float().div_(255))
        done, start = 0, 0
        t0 = time.perf_counter()
        while done < n_views:
            batch = images[start : start + BATCH].float().div_(255)  # uint8 -> float, as the baseline does
            out = views(batch)
            done += len(out)
            start = (start + BATCH) % n
        return done / (time.perf_counter() - t0)
    finally:
        torch.set_num_threads(old)


def main() -> None:
    parser = argparse.ArgumentParser(prog=f"python -m {__spec__.name}", description=__doc__.splitlines()[0])
    parser.add_argument("--views", type=int, default=4096, help="views timed per pipeline and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("benchmarks/results/bench_views.json"),
        help="result file (relative: to the repository root)",
    )
    args = parser.parse_args()

    torch.manual_seed(0)
    images = torch.randint(0, 256, (4096, *SHAPE), dtype=torch.uint8)
    default_threads = torch.get_num_threads()
    thread_options = sorted({default_threads, 1})

    loader = DataLoader(
        PerSampleDataset(images, torchvision_simclr()),
        batch_size=BATCH,
        shuffle=True,
        num_workers=2,
        persistent_workers=True,
    )
    for _ in loader:  # start the workers and warm up with one full epoch
        pass

    fast = build_views("simclr", SHAPE)
    stock = build_views("simclr", SHAPE, backend="kornia")
    assert fast.blur_p == 0.0 and fast(images[:4].float() / 255).shape == (4, *SHAPE)

    baseline = []
    batched = {t: [] for t in thread_options}
    kornia_stock = {t: [] for t in thread_options}
    for r in range(args.rounds):
        baseline.append(time_loader(loader, args.views))
        for t in thread_options:
            batched[t].append(time_batched(fast, images, args.views, t))
            kornia_stock[t].append(time_batched(stock, images, max(BATCH, args.views // 4), t))
        print(
            f"round {r}: torchvision+DataLoader {baseline[-1]:8.0f} views/s | "
            + " | ".join(f"batched ({t} thr) {batched[t][-1]:8.0f}" for t in thread_options)
            + "".join(f" | stock kornia ({t} thr) {kornia_stock[t][-1]:6.0f}" for t in thread_options)
        )

    med = statistics.median
    best_threads = max(thread_options, key=lambda t: med(batched[t]))
    ratio = med(batched[best_threads]) / med(baseline)
    result = {
        "benchmark": "bench_views",
        "what": "SimCLR views of 32x32 RGB (uint8 -> float32), views per second",
        "versions": {
            "torch": torch.__version__,
            "torchvision": torchvision.__version__,
            "kornia": kornia.__version__,
        },
        "settings": {"batch_size": BATCH, "views_per_round": args.views, "rounds": args.rounds, "workers": 2},
        "baseline_torchvision_dataloader_views_per_s": {"median": med(baseline), "rounds": baseline},
        "batched_views_per_s": {str(t): {"median": med(v), "rounds": v} for t, v in batched.items()},
        "stock_kornia_views_per_s": {
            str(t): {"median": med(v), "rounds": v} for t, v in kornia_stock.items()
        },
        "batched_threads_used_for_ratio": best_threads,
        "ratio": ratio,
        "ratio_default_threads": med(batched[default_threads]) / med(baseline),
        "ratio_stock_kornia": max(med(v) for v in kornia_stock.values()) / med(baseline),
        "target_ratio": TARGET,
        "meets_target": ratio >= TARGET,
    }
    out = write_result(ROOT / args.out, result)  # the machine's torch_threads: the default thread count
    print(
        f"batched {med(batched[best_threads]):.0f} views/s ({best_threads} thread(s)) vs "
        f"torchvision+DataLoader {med(baseline):.0f} views/s: ratio {ratio:.1f}x (target {TARGET:.0f}x); "
        f"stock kornia {max(med(v) for v in kornia_stock.values()):.0f} views/s. -> {out}"
    )


if __name__ == "__main__":
    main()
