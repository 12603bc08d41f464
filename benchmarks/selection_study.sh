#!/usr/bin/env bash
# The label-free selection study (issue: RankMe-driven sweeps): five one-hyper-parameter sweeps on MNIST-1D
# (VICReg covariance weight, learning rate, weight decay; SimCLR temperature, learning rate), 26 runs in all.
# Each sweep's summary (Kendall tau, Spearman rho, label-free pick vs labelled oracle) and plots are copied to
# benchmarks/results/selection/.  Usage: bash benchmarks/selection_study.sh   (about 20 minutes on 2 cores)
set -euo pipefail
cd "$(dirname "$0")/.."
SELFSUP=${SELFSUP:-.venv/bin/selfsup}
OUT=benchmarks/results/selection
mkdir -p "$OUT"
for f in configs/sweeps/*-mnist1d.yaml; do
  name=$(basename "$f" .yaml)
  "$SELFSUP" sweep --config "$f" --quiet
  "$SELFSUP" sweep summary "sweeps/$name" --json > "$OUT/$name.json"
  cp "sweeps/$name/report.html" "$OUT/$name.html"
done
.venv/bin/python benchmarks/selection_table.py "$OUT"
