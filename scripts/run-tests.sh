#!/usr/bin/env bash
# Install backburner with every extra into .venv, start the services the tests
# need (PostgreSQL on 127.0.0.1:5432, Redis on 127.0.0.1:6379) if they are
# down, and run the whole test suite. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

python3 -m venv .venv
.venv/bin/pip install --quiet --upgrade pip
.venv/bin/pip install --quiet -e '.[all]'

require() {
    command -v "$1" >/dev/null || { echo "$2 is not installed ($1 not found); the tests need it" >&2; exit 1; }
}

start_postgres() {
    require pg_isready PostgreSQL
    if pg_isready -q -h 127.0.0.1 -p 5432; then return; fi
    echo "starting PostgreSQL"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n 1)" main start
    for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && return; sleep 1; done
    echo "PostgreSQL did not start on 127.0.0.1:5432" >&2
    exit 1
}

start_redis() {
    require redis-cli Redis
    if redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then return; fi
    echo "starting Redis"
    mkdir -p /var/lib/redis /var/log/redis
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" \
        --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log
    for _ in $(seq 1 30); do redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && return; sleep 1; done
    echo "Redis did not start on 127.0.0.1:6379" >&2
    exit 1
}

install_chromium() {
    # The browser tests drive Debian's Chromium through Playwright; Playwright's
    # own browser download does not work on these machines.
    # faketime (libfaketime) shifts the clocks of servers in the clock skew test.
    if command -v chromium >/dev/null && command -v faketime >/dev/null; then return; fi
    echo "installing Chromium and faketime"
    apt-get update -q && apt-get install -y -q chromium faketime
}

start_postgres
start_redis
install_chromium

export BACKBURNER_REQUIRE_SERVICES=1
exec .venv/bin/python -m pytest -p no:cacheprovider "$@"
