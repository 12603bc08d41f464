"""The tables of ``docs/results/*.md`` and the README's headline, generated from the result files.

A results page marks each generated table::

    <!-- render: NAME -->
    ...                  (written by this script: do not edit)
    <!-- /render -->

and :data:`TABLES` maps ``NAME`` to the function that renders it from the result files, followed by a line
naming its source (file, command, date, machine)::

    python -m benchmarks.render            # rewrite every generated table
    python -m benchmarks.render --check    # exit 1 and name the tables a fresh render would change
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
from collections.abc import Callable

from benchmarks._common import RESULTS, ROOT

PAGES = ROOT / "docs" / "results"
MARKER = re.compile(r"(<!-- render: ([\w-]+) -->\n)(.*?)(<!-- /render -->)", re.S)


# ---------------------------------------------------------------------------------------------- helpers


def load(name: str) -> dict:
    """The whole result document ``benchmarks/results/NAME``."""
    return json.loads((RESULTS / name).read_text())


def table(headers: list[str], rows: list[list]) -> str:
    """A Markdown table; ``None`` cells print as ``-``."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join("-" if c is None else str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def source(*names: str) -> str:
    """The provenance line under a table: each file's command, date and machine."""
    parts = []
    for name in names:
        doc = load(name)
        m = doc.get("machine") or {}
        where = ", ".join(str(x) for x in (m.get("cpu"), m.get("gpu")) if x) or "CPU model not recorded"
        cpus = f", {m.get('cpus') or m.get('cpu_count')} cores" if m.get("cpus") or m.get("cpu_count") else ""
        rev = f", code {doc['git_rev']}" if doc.get("git_rev") else ""
        parts.append(f"`{name}`: `{doc['command']}`, {doc['date'][:10]}, {where}{cpus}{rev}")
    return "\n\n*Source: " + "; ".join(parts) + ".*"


def pct(x: float | None, digits: int = 1) -> str | None:
    return None if x is None else f"{100 * x:.{digits}f} %"


def pm(values: list[float], digits: int = 3) -> str:
    """Mean ± standard deviation over seeds (or the one value, marked)."""
    if len(values) == 1:
        return f"{values[0]:.{digits}g} (1 seed)"
    return f"{statistics.mean(values):.{digits}g} ± {statistics.stdev(values):.1g}"


def mean_sd(values: list[float]) -> str | None:
    """``mean +- std`` with one decimal (std 0 for one seed)."""
    if not values:
        return None
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.1f} +- {sd:.1f}"


# ----------------------------------------------------------------------------------------------- speed


def _job_row(name: str, job: dict) -> list:
    runs, base = job["runs"], job.get("baseline") or {}
    accs = ", ".join(f"{100 * r['linear_acc']:.1f}" for r in runs) if len(runs) > 1 else ""
    knn = statistics.fmean(r["knn_acc"] for r in runs) if runs[0].get("knn_acc") is not None else None
    walls = [r["wall_s"] for r in runs]
    wall = f"{job['wall_s_mean']:.1f} s" + (f" ({min(walls):.1f}-{max(walls):.1f})" if len(walls) > 1 else "")
    acc = pct(job["linear_acc_mean"]) + (f" ({accs})" if accs else "") if job["linear_acc_mean"] else None
    before = f"{base['wall_s']:.1f} s, {job['speedup_wall']:.2f}x" if base else None
    mem = f"{job['peak_rss_mb_max'] / 1000:.2f} GB"
    return [name, f"`{job['command']}`", len(runs), acc, pct(knn), wall, mem, before]


def main_job(
    name: str = "bench_main_job.json",
    jobs: tuple[str, ...] = ("main", "main-earlier-run", "main-fp32", "long"),
) -> str:
    res = load(name)["results"]
    rows = [_job_row(j, res["jobs"][j]) for j in jobs if j in res["jobs"]]
    heads = ["job", "command", "seeds", "linear probe", "kNN", "wall time", "peak memory"]
    heads.append("baseline code, same run (wall, speed-up)")
    return table(heads, rows) + source(name)


def precision() -> str:
    return main_job("bench_main_job_precision.json", ("main-fp32", "main-bf16"))


def throughput() -> str:
    res = load("bench_main_job.json")["results"]
    rows = []
    for name, job in res["jobs"].items():
        base = job.get("baseline") or {}
        rows.append(
            [
                name,
                job["gflop_per_step"],
                job["train_gflops"],
                job["train_gflops_over_matmul_fp32"],
                job["train_gflops_over_matmul_bf16"],
                base.get("train_gflops"),
                job.get("speedup_train_steps"),
                job.get("speedup_wall"),
            ]
        )
    heads = [
        "job",
        "GFLOP / step",
        "GFLOP/s (training steps)",
        "/ float32 matmul",
        "/ bfloat16 matmul",
        "baseline GFLOP/s",
        "speed-up, steps",
        "speed-up, wall",
    ]
    mm = res["matmul_gflops"]
    note = (
        f"\n\n2048 x 2048 matmul in the same run: {mm['float32']} GFLOP/s float32, {mm['bfloat16']} bfloat16."
    )
    return table(heads, rows) + note + source("bench_main_job.json")


def recipe_candidate() -> str:
    """A candidate recipe of the main job in float32 steps beside older code, and both jobs' share of the
    matmul limit."""
    job = load("bench_main_job_fp32_candidate.json")["results"]["jobs"]["main-fp32"]
    base = job["baseline"]
    rows = [
        ["before (baseline code)", 1, pct(base["linear_acc"]), f"{base['wall_s']:.1f} s", base["steps"]]
        + [base["gflop_per_step"], base["train_gflops"], base.get("train_gflops_over_matmul_fp32")],
        [
            "candidate (this checkout)",
            len(job["runs"]),
            f"{pct(job['linear_acc_mean'])} ({', '.join(pct(r['linear_acc']) for r in job['runs'])})",
            f"{job['wall_s_mean']:.1f} s",
            job["runs"][0]["steps"],
        ]
        + [job["gflop_per_step"], job["train_gflops"], job["train_gflops_over_matmul_fp32"]],
    ]
    heads = ["code", "seeds", "linear probe", "wall", "steps", "GFLOP / step", "GFLOP/s (steps)", "/ matmul"]
    note = (
        f"\n\nWall time: {job['speedup_wall_mean']:.2f}x faster than the baseline (its wall time over the "
        f"seeds' mean); peak memory {job['peak_rss_mb_max'] / 1000:.2f} GB."
    )
    return table(heads, rows) + note + source("bench_main_job_fp32_candidate.json")


def main_job_recipe() -> str:
    rows: dict[str, list[dict]] = {}
    for r in load("main_job_recipe.json")["results"]["rows"]:
        rows.setdefault(r["candidate"], []).append(r)
    out = []
    for name, runs in rows.items():
        runs = sorted(runs, key=lambda r: r["seed"])
        acc = [r["validation_acc"] for r in runs]
        each = f" ({', '.join(pct(a) for a in acc)})" if len(acc) > 1 else ""
        wall = statistics.mean(r["wall_s"] for r in runs)
        out.append([name, len(runs), pct(statistics.mean(acc)) + each, f"{wall:.0f} s"])
    heads = ["candidate", "seeds", "validation linear probe", "wall (3,000 training signals)"]
    return table(heads, out) + source("main_job_recipe.json")


def main_job_tuning() -> str:
    rows = [
        [
            r["batch_size"],
            r["projector"],
            r["epochs"],
            f"{r['lr']:g} / {r['weight_decay']:g}",
            pct(r["linear_acc"]),
            pct(r["knn_acc"]),
            f"{r['wall_s']:.0f} s",
        ]
        for r in load("main_job_tuning.json")["results"]["rows"]
    ]
    heads = ["batch", "projector", "epochs", "lr / wd", "linear probe", "kNN", "wall"]
    return table(heads, rows) + source("main_job_tuning.json")


def profile() -> str:
    before = load("profile_main_job-before.json")["results"]
    after = load("profile_main_job-after.json")["results"]
    rows = [
        [
            phase.strip(),
            f"{v['seconds']:.1f} s",
            v["calls"],
            f"{after['phases'].get(phase, {}).get('seconds', 0):.1f} s",
        ]
        for phase, v in before["phases"].items()
    ]
    rows.append(["total (wall)", f"{before['wall_s']:.1f} s", "", f"{after['wall_s']:.1f} s"])
    return table(["phase", "before", "calls", "after"], rows) + source(
        "profile_main_job-before.json", "profile_main_job-after.json"
    )


def step() -> str:
    res = load("bench_step.json")["results"]
    rows = [
        [part, variant, f"{ms} ms"]
        for part, key in (
            ("loss forward + backward", "vicreg_loss_fwd_bwd_ms"),
            ("optimiser step", "optimizer_step_ms"),
            ("whole step", "step_ms"),
        )
        for variant, ms in res[key].items()
    ]
    rows += [
        [f"conv layer, {shape}", variant, f"{ms} ms"]
        for shape, d in res["conv_layer_bf16_fwd_bwd_ms"].items()
        for variant, ms in d.items()
    ]
    return table(["part", "variant", "time"], rows) + source("bench_step.json")


def ddp() -> str:
    rows = []
    for name in ("bench_ddp.json", "bench_ddp_main_job.json"):
        doc = load(name)["results"]
        for n, r in doc["results"].items():
            rows.append(
                [
                    doc["config"]["epochs"],
                    n,
                    r["steps_per_s"],
                    r["steps_per_s_ratio_vs_baseline"],
                    f"{r['wall_s']} s",
                    pct(r["linear_acc"]),
                ]
            )
    heads = ["epochs", "processes", "steps/s", "ratio", "wall", "linear probe"]
    return table(heads, rows) + source("bench_ddp.json", "bench_ddp_main_job.json")


def data_loading() -> str:
    res = load("bench_data.json")["results"]
    rows = [
        [
            f"{size} px",
            r["images"],
            f"{r['peer_images_per_s']['median']:.0f}",
            f"{r['selfsup_images_per_s']['median']:.0f}",
            f"{r['ratio']:.2f}x",
        ]
        for size, r in res["sizes"].items()
    ]
    heads = ["JPEG side", "images", "torchvision DataLoader (images/s)", "selfsup (images/s)", "ratio"]
    return table(heads, rows) + f"\n\n{res['what']}" + source("bench_data.json")


def data_memory() -> str:
    res = load("bench_data_memory.json")["results"]
    rows = [
        [
            key.replace("_", " "),
            f"{r['peak_pss_mb']:.0f} MB",
            f"{r['main_process_peak_rss_mb']:.0f} MB",
            f"{r['seconds']:.0f} s",
        ]
        for key, r in res.items()
        if isinstance(r, dict)
    ]
    note = (
        "\n\nGrowth of the streamed run's peak from 5,000 to 50,000 images: "
        f"{res['streamed_growth_mb']:.0f} MB (target <= {res['target_growth_mb']} MB)."
    )
    return (
        table(["run", "peak PSS (all processes)", "peak RSS (main)", "time"], rows)
        + note
        + source("bench_data_memory.json")
    )


def views() -> str:
    res = load("bench_views.json")["results"]
    base = res["baseline_torchvision_dataloader_views_per_s"]["median"]
    rows = [["torchvision transforms in a DataLoader (baseline)", "-", f"{base:.0f}", "1.00x"]]
    for label, key in (
        ("selfsup batched views", "batched_views_per_s"),
        ("kornia", "stock_kornia_views_per_s"),
    ):
        rows += [[label, t, f"{r['median']:.0f}", f"{r['median'] / base:.2f}x"] for t, r in res[key].items()]
    return (
        table(["views", "torch threads", "views/s", "ratio"], rows)
        + f"\n\n{res['what']}"
        + source("bench_views.json")
    )


def quality_speed() -> str:
    res = load("bench_quality.json")["results"]
    rows = [
        [
            r["n"],
            r["k"],
            r["dtype"],
            r["fast_method"],
            f"{r['fast_s']:.2f} s",
            f"{r['baseline_s']:.2f} s",
            f"{r['ratio']:.1f}x",
            f"{r.get('rel_error', abs(r['rankme_fast'] / r['rankme_baseline'] - 1)):.1e}",
        ]
        for r in res["results"]
    ]
    heads = ["N", "K", "dtype", "RankMe path", "time", "float64 SVD", "ratio", "relative error"]
    return table(heads, rows) + source("bench_quality.json")


def pde_solver() -> str:
    res = load("bench_pde.json")["results"]
    rows = []
    for eq in ("kdv", "ks"):
        for variant in ("default", "public_semidiscretisation"):
            r = res[eq][variant]
            rows.append(
                [
                    eq,
                    variant.replace("_", " "),
                    r["n"],
                    f"{r['traj_per_s']:.1f}",
                    f"{r['speedup']:.0f}x",
                    f"{r['error_vs_radau_1e-9']['max']:.1e}",
                ]
            )
        rows.append(
            [
                eq,
                "scipy Radau (rtol 1e-9), the baseline",
                res[eq]["radau"]["n"],
                f"{res[eq]['radau']['traj_per_s']:.2f}",
                "1x",
                "-",
            ]
        )
    heads = ["equation", "solver", "trajectories", "trajectories/s", "speed-up", "max error vs Radau"]
    return table(heads, rows) + source("bench_pde.json")


def objects3d_speed() -> str:
    res = load("objects3d.json")["results"]
    rows = [[k, f"{v['median']:.0f}"] for k, v in res["images_per_s"].items()]
    d = res["default_set"]
    note = f"\n\nThe default set ({d['images']} images of {d['image_size']} px): {d['seconds']:.1f} s."
    return table(["renders", "images/s"], rows) + note + source("objects3d.json")


# ------------------------------------------------------------------------------------------- selection

PICKS = {
    "rankme": "RankMe",
    "rankme_safe": "RankMe, safe runs",
    "rankme_projector": "RankMe of the projector",
    "alpha_req": "alpha-ReQ",
    "lidar": "LiDAR",
    "lejepa_loss": "LeJEPA loss",
}


def _selection(name: str) -> str:
    res = load(name)["results"]
    rows = []
    for r in res["sweeps"]:
        cells = [
            f"{100 * r[m]['pick_acc']:.1f} % ({r[m]['gap_points']:.1f}, {r[m]['kendall_tau']:.2f})"
            if m in r
            else None
            for m in PICKS
        ]
        excluded = ", ".join(f"{v}: {'+'.join(f)}" for v, f in r.get("excluded", {}).items()) or None
        rows.append([r["sweep"], r["n"], pct(r["oracle_acc"]), *cells, excluded])
    heads = ["sweep", "runs", "oracle", *(f"{h} pick (gap, tau)" for h in PICKS.values()), "excluded"]
    means = ", ".join(f"{m} {v:.2f}" for m, v in res["mean_gap_points"].items())
    taus = ", ".join(f"{m} {v:.2f}" for m, v in res.get("median_kendall_tau", {}).items())
    note = f"\n\nMean gap (points): {means}" + (f"; median Kendall tau: {taus}." if taus else ".")
    return table(heads, rows) + note + source(name)


def flag_costs() -> str:
    """Each unsafe-run flag's cost in the full-length sweeps (``selfsup.select.summary.flag_cost`` on their
    stored summaries): runs flagged, the oracle among them, the best flagged run's gap to the oracle."""
    from selfsup.select.summary import flag_cost

    paths = sorted((RESULTS / "selection" / "full").glob("*-full.json"))
    rows = []
    for path in paths:
        for flag, c in flag_cost(json.loads(path.read_text())["trials"]).items():
            gap = c["best_removed_gap_points"]
            rows.append([path.stem, flag, c["runs"], "yes" if c["removed_oracle"] else "no", f"{gap:.1f}"])
    flagged = {r[0] for r in rows}
    quiet = len(paths) - len(flagged)
    heads = [
        "sweep",
        "flag",
        "runs flagged",
        "removed the oracle",
        "best flagged run below the oracle (points)",
    ]
    note = f"\n\nThe other {quiet} sweeps had no flagged run."
    note += " From each sweep's stored summary in `benchmarks/results/selection/full/`, the sweeps of:"
    return table(heads, rows) + note + source("selection/full/summary.json")


def _rule_cell(r: dict | None) -> str | None:
    if not r or r.get("gap_points") is None:
        return None
    tau = r.get("kendall_tau")
    return f"{r['gap_points']:.2f} ({'-' if tau is None else f'{tau:.2f}'})"


def selection_rules(which: str) -> str:
    """Per seeded sweep of ``which`` (development / held-out): every candidate rule's gap to the oracle
    (points, mean over seeds) and Kendall tau over configurations; then each rule over the counted sweeps."""
    from selfsup.select.rules import RULES

    name = f"selection/{which}/summary.json"
    res = load(name)["results"]
    rows = []
    for e in res["sweeps"] + res.get("stored_single_seed_sweeps", []):
        std = e.get("oracle_seed_std")
        flat = {True: "flat", False: "", None: "one seed"}[e.get("flat")]
        spread = f"{std:.2f}" if std is not None else "-"
        cells = [_rule_cell(e.get(r)) for r in RULES]
        rows.append([e["sweep"], e["seeds"], pct(e["oracle_acc"]), spread, flat, *cells])
    heads = ["sweep", "seeds", "oracle", "oracle seed std", "", *RULES]
    agg = res.get("aggregate_with_stored") or res["aggregate"]
    arow = [
        f"{a['mean_gap_points']:.2f} / {a['median_kendall_tau']:.2f} ({a['sweeps']})"
        if a["mean_gap_points"] is not None and a["median_kendall_tau"] is not None
        else None
        for a in agg.values()
    ]
    rows.append(["**mean gap / median tau (sweeps)**", "", "", "", "", *arow])
    note = (
        "\n\nCells: gap to the oracle in points, mean over seeds (Kendall tau of seed-mean score vs "
        f"seed-mean accuracy). Chosen rule: `{res['chosen_rule']}` "
        f"(rules module SHA-256 `{res['rule_sha'][:12]}`)."
    )
    return table(heads, rows) + note + source(name)


def selection_full() -> str:
    return _selection("selection/full/summary.json")


def selection_short() -> str:
    return _selection("selection/summary.json")


def lejepa_correlations() -> str:
    res = load("lejepa_loss_vs_rankme.json")["results"]["correlations"]
    names = {
        "lejepa_loss": "- LeJEPA loss",
        "lejepa_prediction": "- prediction term",
        "lejepa_sigreg": "- SIGReg term",
        "rankme_backbone": "RankMe (backbone)",
    }
    rows = []
    for key, label in names.items():
        lin, knn = res[f"{key}/linear_acc"], res[f"{key}/knn_acc"]
        # the stored correlations are already signed so that + ranks like accuracy (a loss's is of -loss)
        rows.append(
            [
                label,
                f"{lin['spearman_rho']:+.2f} (p {lin['spearman_p']:.2f})",
                f"{knn['spearman_rho']:+.2f}",
            ]
        )
    heads = ["label-free score (sign: + ranks like accuracy)", "Spearman vs linear probe", "Spearman vs kNN"]
    return table(heads, rows) + source("lejepa_loss_vs_rankme.json")


def layers() -> str:
    res = load("layers-mnist1d.json")["results"]
    rows = [
        [
            r["layer"] + (" (backbone output)" if r["layer"] == res["backbone_output"] else ""),
            r["dim"],
            f"{r['rankme']:.1f}",
            pct(r.get("linear_acc")),
            pct(r.get("knn_acc")),
        ]
        for r in res["layers"]
    ]
    return table(["layer", "dim", "RankMe", "linear probe", "kNN"], rows) + source("layers-mnist1d.json")


def layer_rule() -> str:
    res = load("layer_rule.json")["results"]
    rows = []
    for name, s in res["presets"].items():
        acc = {r["layer"]: r["linear_acc"] for r in s["layers"]}
        rule, width = s["rule"], s["rankme_per_width"]
        rows.append(
            [
                name,
                f"{s['best']} ({pct(acc[s['best']])})",
                f"{rule['pick']} ({pct(acc[rule['pick']])})",
                f"{rule['gap_points']:.1f}",
                f"{width['pick']} ({pct(acc[width['pick']])})",
                f"{width['gap_points']:.1f}",
                f"{s['output_gap_points']:.1f}",
            ]
        )
    heads = [
        "preset",
        "best layer (linear probe)",
        "label-free pick",
        "gap (points)",
        "RankMe / width pick (tried first)",
        "its gap",
        "backbone output's gap",
    ]
    return table(heads, rows) + source("layer_rule.json")


# --------------------------------------------------------------------------------------------- methods


def _methods(name: str) -> str:
    res = load(name)["results"]
    ri = res["random_init"]
    rows = [["random init", pct(ri["linear_acc"]), pct(ri["knn_acc"]), f"{ri['rankme_backbone']:.1f}", None]]
    rows += [
        [
            r["method"],
            pct(r["linear_acc"]),
            pct(r["knn_acc"]),
            f"{r['rankme_backbone']:.1f}",
            f"{r['seconds']:.0f} s",
        ]
        for r in res["rows"]
    ]
    extra = res.get("earlier_simsiam_adamw")
    if extra:
        rows.append(
            [
                f"simsiam, {extra['optim']}",
                pct(extra["linear_acc"]),
                pct(extra["knn_acc"]),
                f"{extra['rankme_backbone']:.1f}",
                f"{extra['seconds']:.0f} s",
            ]
        )
    heads = [f"method ({res['epochs']} epochs)", "linear probe", "kNN (k=20)", "RankMe (backbone)", "time"]
    return table(heads, rows) + source(name)


def methods_10() -> str:
    return _methods("methods_table.json")


def methods_30() -> str:
    return _methods("methods_table_30ep.json")


def methods_cookbook() -> str:
    """The queue, teacher and prototype methods at the main job's budget, against VICReg (the main job)
    and the same backbone at random initialisation."""
    name = "methods_table_cookbook.json"
    res = load(name)["results"]
    rand, rows = res["random_init"], {r["method"]: r for r in res["rows"]}
    vicreg = rows.get("vicreg", {}).get("linear_acc")
    out = []
    for method, r in rows.items():
        gap = None if vicreg is None or method == "vicreg" else f"{100 * (r['linear_acc'] - vicreg):+.1f}"
        out.append(
            [
                method,
                pct(r["linear_acc"]),
                pct(r["knn_acc"]),
                f"{r['rankme_backbone']:.1f}",
                f"{100 * (r['linear_acc'] - rand['linear_acc']):+.1f}",
                gap,
                f"{r['seconds']:.0f} s",
            ]
        )
    heads = [
        f"method ({res['epochs']} epochs)",
        "linear probe",
        "kNN (k=20)",
        "RankMe (backbone)",
        "vs random init (points)",
        "vs VICReg (points)",
        "time",
    ]
    note = f"\n\nRandom initialisation: linear probe {pct(rand['linear_acc'])}, "
    note += f"RankMe {rand['rankme_backbone']:.1f}."
    return table(heads, out) + note + source(name)


def vit_objects3d() -> str:
    """A timm ViT and the convnet preset on objects3d, with the ViT at random initialisation."""
    name = "vit_objects3d.json"
    res = load(name)["results"]
    rand = res["random_init_vit"]
    rows = [["ViT at random initialisation", pct(rand["linear_acc"]), pct(rand["knn_acc"]), None, None, None]]
    for model, r in res["runs"].items():
        reach = r["seconds_to_vit_final_online_acc"]
        rows.append(
            [
                f"{model} (`{r['config']}`, {r['epochs']} epochs)",
                pct(r["linear_acc"]),
                pct(r["knn_acc"]),
                f"{r['rankme_backbone']:.1f}",
                f"{r['wall_s']:.0f} s",
                "not reached" if reach is None else f"{reach:.0f} s",
            ]
        )
    heads = [
        "backbone",
        "linear probe",
        "kNN (k=20)",
        "RankMe (backbone)",
        "wall time",
        f"training time to the ViT's final online probe ({pct(res['vit_final_online_acc'])})",
    ]
    return table(heads, rows) + source(name)


def masked_vit() -> str:
    """MAE and I-JEPA on the small ViT against random initialisation, beside DINO and VICReg."""
    name = "masked_vit.json"
    res = load(name)["results"]
    rows = [
        [f"random init, {k}", pct(r["linear_acc"]), pct(r["knn_acc"]), None, None]
        for k, r in res["random_init"].items()
    ]
    for method, r in res["runs"].items():
        rows.append(
            [
                f"{method} (`{r['config']}`, {r['epochs']} epochs)",
                pct(r["linear_acc"]),
                pct(r["knn_acc"]),
                f"{r['rankme_backbone']:.1f}",
                f"{r['wall_s']:.0f} s",
            ]
        )
    heads = ["method", "linear probe", "kNN (k=20)", "RankMe (backbone)", "wall time"]
    return table(heads, rows) + source(name, "vit_objects3d.json")


def lejepa_main() -> str:
    return main_job("bench_main_job.json", ("lejepa", "main", "main-earlier-run"))


def lejepa_tuning() -> str:
    rows = [
        [
            r["views"],
            r["projector"],
            r["lambd"],
            f"{r['lr']:g}, wd {r['weight_decay']:g}",
            r["epochs"],
            pct(r["linear_acc"]),
            pct(r["knn_acc"]),
        ]
        for r in load("lejepa_tuning.json")["results"]["runs"]
    ]
    return table(["views", "projector", "lambda", "lr", "epochs", "linear", "kNN"], rows) + source(
        "lejepa_tuning.json"
    )


# ------------------------------------------------------------------------------------------------- PDE


def _share(cols: dict[str, list[float]], code: str) -> str:
    """The ``code``'s share of the oracle's gain, or why there is none: the oracle does not beat the
    baseline, or beats it by less than the baseline's spread over seeds (a share of noise)."""
    from selfsup.pde.downstream import oracle_fraction

    if not cols.get("oracle"):
        return "-"
    frac = oracle_fraction({k: {"nmse_sum": v} for k, v in cols.items() if v})[code]
    base = cols["baseline"]
    if frac is None:
        return "no gain"
    if len(base) < 2:
        return f"{frac:.0%} (1 seed)"
    gain = statistics.mean(base) - statistics.mean(cols["oracle"])
    return f"{frac:.0%}" if gain > statistics.stdev(base) else "gain < seed spread"


def pde_rollout() -> str:
    """Rollout error per code and solver budget (mean ± std over encoder seeds)."""
    codes = ("baseline", "ssl_conditioned", "oracle", "random")
    rows = []
    for eq, entry in load("pde_ssl.json")["results"]["equations"].items():
        for budget in sorted(entry["budgets"], key=int):
            per = [r["summary"] for r in entry["budgets"][budget].values()]
            col = {k: [p[f"{k}_nmse"] for p in per if f"{k}_nmse" in p] for k in codes}
            rows.append(
                [eq, budget, *(pm(col[k]) if col[k] else None for k in codes), _share(col, "ssl_conditioned")]
            )
    heads = [
        "equation",
        "solver steps",
        "baseline",
        "SSL code",
        "oracle",
        "random code",
        "share of oracle gain",
    ]
    return table(heads, rows) + source("pde_ssl.json")


def pde_regression() -> str:
    """Regression per target (mean ± std over encoder seeds) against the training mean's error."""
    rows = []
    for eq, entry in load("pde_ssl.json")["results"]["equations"].items():
        per = [r["summary"] for r in entry["budgets"][entry["regression_budget"]].values()]
        names = [k[5:-5] for k in per[0] if k.startswith("mean_") and k.endswith("_nmse")]
        for name in names:
            cells = [
                pm([p[f"{kind}_{name}_{m}"] for p in per])
                for m in ("nmse", "rel_err")
                for kind in ("ssl_linear", "supervised")
            ]
            rows.append(
                [eq, name, cells[0], cells[1], f"{per[0][f'mean_{name}_nmse']:.3g}", cells[2], cells[3]]
            )
    heads = [
        "equation",
        "target",
        "SSL + ridge NMSE",
        "supervised NMSE",
        "train mean NMSE",
        "SSL rel. error",
        "supervised rel. error",
    ]
    return table(heads, rows) + source("pde_ssl.json")


def pde_variants() -> str:
    """Each variant beside the preset: RankMe, regression (KdV/KS: the mean NMSE of the two
    initial-condition amplitudes; Burgers: nu's relative error), rollout errors."""
    from benchmarks.studies.pde_ssl_study import headline

    doc = load("pde_ssl.json")["results"]
    rows = []
    for tag, section in {"preset": doc["equations"], **doc.get("variants", {})}.items():
        for eq, h in headline(section).items():
            entry = section[eq]
            solver = [f"--solver {entry['solver']}"] if entry.get("solver", "small") != "small" else []
            changes = " ".join(solver + entry.get("overrides", []) + entry.get("eval_args", [])) or None
            key = "rel_err" if eq == "burgers" else "ic_nmse"
            cols = {
                k: [v for v in h[f"{k}_nmse"] if v is not None] for k in ("baseline", "conditioned", "oracle")
            }
            rows.append(
                [
                    tag,
                    changes,
                    eq,
                    h["solver_steps"] if cols["baseline"] else None,
                    pm(h["rankme"]),
                    f"{pm(h['ssl_' + key])} / {pm(h['supervised_' + key])}",
                    *(pm(v) if v else None for v in cols.values()),
                    _share(cols, "conditioned"),
                ]
            )
    heads = [
        "variant",
        "changes",
        "equation",
        "solver steps",
        "RankMe",
        "regression SSL / supervised",
        "baseline",
        "SSL code",
        "oracle",
        "share of oracle gain",
    ]
    return table(heads, rows) + source("pde_ssl.json")


# ------------------------------------------------------------------------------- SIE and robustness

SIE_COLUMNS = [
    ("acc_invariant", "inv. acc", 100),
    ("acc_whole", "whole acc", 100),
    ("rotation_r2", "rotation R^2", 1),
    ("rotation_r2_equivariant", "R^2 eq. part", 1),
    ("colour_r2", "colour R^2", 1),
    ("mrr_predictor", "MRR predictor", 1),
    ("mrr_identity", "MRR identity", 1),
    ("rankme_invariant", "RankMe inv.", 1),
    ("rankme_equivariant", "RankMe eq.", 1),
]


def sie() -> str:
    rows = []
    for method, entry in load("sie_objects3d.json")["results"]["methods"].items():
        cells = [
            None
            if (s := entry["summary"].get(key)) is None
            else f"{scale * s['mean']:.3g} +- {scale * s['std']:.2g}"
            for key, _, scale in SIE_COLUMNS
        ]
        rows.append([f"{method} ({len(entry['seeds'])} seeds)", *cells])
    return table(["method", *(c[1] for c in SIE_COLUMNS)], rows) + source("sie_objects3d.json")


def robustness_main() -> str:
    """Mean +- std over seeds of each run's (and SIE part's) accuracy per test set, in %."""
    data = load("robustness_objects3d_main.json")["results"]
    first = next(iter(next(iter(data["runs"].values())).values()))["all"]
    rows = []
    for name, seeds in data["runs"].items():
        for part in next(iter(seeds.values())):
            label = name if part == "all" else f"{name}, {part} part"
            rows.append(
                [
                    f"{label} ({len(seeds)} seeds)",
                    *(mean_sd([100 * r[part][key] for r in seeds.values()]) for key in first),
                ]
            )
    return table(["run", *first], rows) + source("robustness_objects3d_main.json")


DIVERSITY = {
    "canonical": "canonical acc",
    "varied": "varied acc",
    "varied_invariant_part": "varied acc, SIE invariant part",
    "seen": "seen classes",
    "unseen": "unseen classes",
    "unseen_as_seen": "unseen as seen",
}


def _diversity(name: str) -> str:
    data = load(name)["results"]
    order = lambda item: ("half" in item[0], float(item[0].split()[0].removeprefix("p=")))  # noqa: E731
    rows = [
        [
            method,
            f"{data['factor']} {tag} ({len(seeds)} seeds)",
            *(mean_sd([100 * r[key] for r in seeds.values() if key in r]) for key in DIVERSITY),
        ]
        for method, entries in data["runs"].items()
        for tag, seeds in sorted(entries.items(), key=order)
    ]
    return table(["method", "training data", *DIVERSITY.values()], rows) + source(name)


def robustness_pose() -> str:
    return _diversity("robustness_objects3d_pose.json")


def robustness_size() -> str:
    return _diversity("robustness_objects3d_size.json")


# -------------------------------------------------------------------------------------------- headline


def headline() -> str:
    """The README's one table: a figure from each results page, linked to it."""
    jobs = load("bench_main_job_precision.json")["results"]["jobs"]
    fp32, bf16 = jobs["main-fp32"], jobs["main-bf16"]
    methods = load("methods_table.json")["results"]["rows"]
    best = max(methods, key=lambda r: r["linear_acc"])
    sel = load("selection/held-out/summary.json")["results"]
    rule, agg = sel["chosen_rule"], sel["aggregate"]
    pde = load("pde_ssl.json")["results"]["headline"]["kdv"]
    sie_ = load("sie_objects3d.json")["results"]["methods"]
    rob = load("robustness_objects3d_pose.json")["results"]["runs"]["vicreg"]
    p0 = statistics.fmean(r["varied"] for r in rob["p=0.0 (all classes)"].values())
    p1 = statistics.fmean(r["varied"] for r in rob["p=1.0 (all classes)"].values())
    r2 = {m: sie_[m]["summary"]["rotation_r2"]["mean"] for m in ("sie", "vicreg")}
    ic = {k: statistics.fmean(pde[f"{k}_ic_nmse"]) for k in ("ssl", "supervised")}
    rows = [
        [
            "[speed](docs/results/speed.md)",
            "the main job on 2 CPU cores (VICReg, MNIST-1D, 3 seeds)",
            f"{pct(fp32['linear_acc_mean'])} linear probe in {fp32['wall_s_mean']:.0f} s (float32 steps), "
            f"{pct(bf16['linear_acc_mean'])} in {bf16['wall_s_mean']:.0f} s (bfloat16)",
        ],
        [
            "[methods](docs/results/methods.md)",
            f"{len(methods)} methods, 10 epochs each, linear probe",
            f"best {best['method']} {pct(best['linear_acc'])}",
        ],
        [
            "[selection](docs/results/selection.md)",
            f"{len(sel['sweeps'])} held-out objects3d sweeps, 3 seeds: the default rule ({rule}) vs RankMe",
            f"{agg[rule]['mean_gap_points']:.1f} vs {agg['rankme']['mean_gap_points']:.1f} points below the "
            "labelled oracle on average",
        ],
        [
            "[PDE](docs/results/pde.md)",
            "KdV initial condition from SSL + ridge vs supervised (NMSE)",
            f"{ic['ssl']:.3f} vs {ic['supervised']:.3f}",
        ],
        [
            "[SIE](docs/results/sie.md)",
            "objects3d: relative rotation R^2, SIE vs VICReg",
            f"{r2['sie']:.2f} vs {r2['vicreg']:.2f}",
        ],
        [
            "[robustness](docs/results/robustness.md)",
            "VICReg on pose-varied renders, trained without / with pose",
            f"{100 * p0:.0f} % / {100 * p1:.0f} %",
        ],
    ]
    return table(["results", "what", "measured"], rows)


TABLES: dict[str, Callable[[], str]] = {
    f.__name__.replace("_", "-"): f
    for f in (
        main_job,
        precision,
        throughput,
        main_job_tuning,
        main_job_recipe,
        recipe_candidate,
        profile,
        step,
        ddp,
        data_loading,
        data_memory,
        views,
        quality_speed,
        pde_solver,
        objects3d_speed,
        selection_full,
        flag_costs,
        selection_short,
        lejepa_correlations,
        layers,
        layer_rule,
        methods_10,
        methods_30,
        methods_cookbook,
        vit_objects3d,
        masked_vit,
        lejepa_main,
        lejepa_tuning,
        pde_rollout,
        pde_regression,
        pde_variants,
        sie,
        robustness_main,
        robustness_pose,
        robustness_size,
        headline,
    )
}
TABLES["selection-rules-development"] = lambda: selection_rules("development")
TABLES["selection-rules-held-out"] = lambda: selection_rules("held-out")


# ------------------------------------------------------------------------------------------------ pages


def render_page(text: str, page: str) -> tuple[str, list[str]]:
    """``text`` with every generated table rendered afresh, and the names of those that changed."""
    changed = []

    def fill(m: re.Match) -> str:
        name = m.group(2)
        if name not in TABLES:
            raise SystemExit(f"error: {page}: unknown table '{name}'; known: {', '.join(TABLES)}")
        fresh = TABLES[name]() + "\n"
        if fresh != m.group(3):
            changed.append(name)
        return m.group(1) + fresh + m.group(4)

    return MARKER.sub(fill, text), changed


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="change nothing; exit 1 if a table is stale")
    args = ap.parse_args(argv)
    stale, used = [], set()
    for path in [ROOT / "README.md", *sorted(PAGES.glob("*.md"))]:
        text = path.read_text()
        used |= {m.group(2) for m in MARKER.finditer(text)}
        fresh, changed = render_page(text, path.name)
        stale += [f"{path.relative_to(ROOT)}: {name}" for name in changed]
        if changed and not args.check:
            path.write_text(fresh)
    unused = sorted(set(TABLES) - used)
    if unused:
        print(f"error: tables no results page shows: {', '.join(unused)}", file=sys.stderr)
        return 1
    if stale:
        verb = "stale (run python -m benchmarks.render)" if args.check else "rewritten"
        print(f"{verb}:\n  " + "\n  ".join(stale), file=sys.stderr if args.check else sys.stdout)
        return 1 if args.check else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
