#!/usr/bin/env bash
# Create the venvs for benchmarks/redis_bench.py: the benchmark venv (default
# /work/bench-venv, or $BENCH_VENV) with backburner from this checkout and
# Celery, RQ, Dramatiq and Huey, and a venv of its own for arq (default
# /work/bench-arq-venv, or $BENCH_ARQ_VENV). arq requires redis-py < 6 and
# Celery's kombu requires redis-py >= 6.1, so they cannot share one venv.
# Safe to run again: it only installs what is missing.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${BENCH_VENV:-/work/bench-venv}"
arq_venv="${BENCH_ARQ_VENV:-/work/bench-arq-venv}"

for folder in "$venv" "$arq_venv"; do
    if [ ! -x "$folder/bin/python" ]; then
        python3 -m venv "$folder"
    fi
done
"$venv/bin/pip" install --quiet --disable-pip-version-check -e "$root[redis]" \
    -r "$root/benchmarks/redis_requirements.txt"
"$arq_venv/bin/pip" install --quiet --disable-pip-version-check -r "$root/benchmarks/redis_arq_requirements.txt"
echo "benchmark venvs ready: $venv/bin/python $root/benchmarks/redis_bench.py"
