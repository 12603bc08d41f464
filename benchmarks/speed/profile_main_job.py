"""Where the main job's wall time goes, start-up to report: a phase table for one `selfsup train`.

The library's phase functions are wrapped with timers from outside (nothing in selfsup knows about this
script), then the same code path as `selfsup train` runs in this process. Training steps are the epochs'
time minus the monitor; "other" is what no timer covers (rich output, process exit is not counted).

    python -m benchmarks.speed.profile_main_job [--label NAME] [overrides ...]     # e.g. train.epochs=4
    python -m benchmarks.speed.profile_main_job --label before --code OLD_CHECKOUT  # older code, same script

Writes benchmarks/results/profile_main_job[-NAME].json (phase -> seconds, calls) and prints the table.
"""

from __future__ import annotations

import argparse
import functools
import shutil
import sys
import time
from collections import defaultdict
from pathlib import Path

from benchmarks._common import ROOT, write_result

T_START = time.perf_counter()
PHASES: dict[str, list[float]] = defaultdict(lambda: [0.0, 0])


def timed(module, name: str, phase: str) -> None:
    """Replace ``module.name`` by a wrapper adding its wall time to ``PHASES[phase]``."""
    fn = getattr(module, name)

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            PHASES[phase][0] += time.perf_counter() - t0
            PHASES[phase][1] += 1

    setattr(module, name, wrapper)


def main() -> None:
    ap = argparse.ArgumentParser(prog=f"python -m {__spec__.name}", description=__doc__.splitlines()[0])
    ap.add_argument("--label", help="result file profile_main_job-LABEL.json, run directory profile-LABEL")
    ap.add_argument(
        "--code",
        type=Path,
        help="profile the selfsup package of this checkout (older code) instead of this one",
    )
    ap.add_argument("overrides", nargs="*", help="config overrides, e.g. train.epochs=4")
    args = ap.parse_args()
    if args.code is not None:  # ahead of this checkout, which `python -m` puts first on the path
        sys.path.insert(0, str(args.code.resolve()))
    import torch  # noqa: F401  (import time is its own phase)

    import selfsup
    import selfsup.cli  # noqa: F401
    from selfsup import config as C
    from selfsup.report import write_run_report
    from selfsup.train import checkpoint as ckpt
    from selfsup.train import loop
    from selfsup.train import measure as evaluate

    PHASES["import torch + selfsup"] = [time.perf_counter() - T_START, 1]
    timed(loop, "load_dataset", "load data")
    timed(loop, "build", "build model + views")
    timed(loop, "train_epoch", "epochs: training steps")
    timed(loop, "monitor", "epochs: monitor (RankMe, LiDAR, ...)")
    timed(loop, "_online_probe_test_acc", "epochs: online probe test accuracy")
    timed(ckpt, "save_checkpoint", "epochs: checkpoint")
    timed(evaluate, "embed", "  of which: embed (monitor and final)")
    timed(evaluate, "quality_report", "  of which: quality reports (monitor and final)")
    timed(evaluate, "linear_probe", "  of which: final linear probe (L-BFGS)")
    timed(evaluate, "knn_probe", "  of which: final kNN probe")
    name = f"profile-{args.label or 'now'}"
    cfg = C.resolve(None, [*args.overrides, "train.out_dir=runs/bench", f"train.name={name}"])
    shutil.rmtree(ROOT / "runs" / "bench" / name, ignore_errors=True)
    t0 = time.perf_counter()
    summary = loop.fit(cfg, progress=False)
    PHASES["fit (total)"] = [time.perf_counter() - t0, 1]
    t0 = time.perf_counter()
    write_run_report(summary["run_dir"])
    PHASES["report"] = [time.perf_counter() - t0, 1]
    wall = time.perf_counter() - T_START
    rows = {k: {"seconds": round(v[0], 2), "calls": v[1]} for k, v in PHASES.items()}
    print(f"{'phase':<48}{'s':>8}{'calls':>7}")
    for k, v in rows.items():
        print(f"{k:<48}{v['seconds']:>8.2f}{v['calls']:>7}")
    print(f"{'wall (this process)':<48}{wall:>8.2f}")
    result = {
        "benchmark": "profile_main_job",
        "overrides": args.overrides,
        "code": str(Path(selfsup.__file__).resolve().parent.parent),
        "wall_s": round(wall, 2),
        "linear_acc": summary.get("linear_acc"),
        "phases": rows,
        "note": "'of which' rows are parts of the rows above them (monitor or fit), not extra time",
    }
    write_result(f"profile_main_job{'-' + args.label if args.label else ''}.json", result)


if __name__ == "__main__":
    main()
