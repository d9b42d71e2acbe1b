#!/usr/bin/env bash
# Create the benchmark venv (default /work/bench-venv, or $BENCH_VENV) with backburner
# from this checkout in editable mode and the peers from benchmarks/requirements.txt.
# Safe to run again: it only installs what is missing.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${BENCH_VENV:-/work/bench-venv}"

if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
"$venv/bin/pip" install --quiet --disable-pip-version-check -e "$root" \
    -r "$root/benchmarks/requirements.txt"
echo "benchmark venv ready: $venv/bin/python $root/benchmarks/run.py"
