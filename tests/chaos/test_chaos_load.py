"""The load scenarios' short form: retry storm, starvation, soak and retention on every backend.

The full sizes run through ``scripts/chaos.py``. These keep each scenario to
a few seconds: the retry storm uses a thirtieth of the default backoff, the
soak lasts 6 s with a 1.5-s retention, and retention runs 200 jobs.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from chaos_checker import Execution
from chaos_load import retry_storm, starvation
from chaos_load_checker import default_delay_bounds, idle_periods, max_window_share
from chaos_scenarios import open_run
from chaos_soak import retention, soak

from backburner.retry import default_delay


@pytest.mark.parametrize("number", range(1, 11))
def test_default_backoff_bounds(number: int) -> None:
    low, high = default_delay_bounds(number)
    delays = {default_delay(number) for _ in range(3_000)}

    assert min(delays) >= low
    assert max(delays) <= high
    assert len(delays) == 30  # random(0..29) * n: thirty distinct delays per retry number


def test_window_share_counts_densest_second() -> None:
    assert max_window_share([0.0, 0.5, 0.9, 5.0]) == 0.75
    assert max_window_share([0.0, 0.5, 1.0, 5.0]) == 0.5
    assert max_window_share([0.0, 2.0, 4.0, 6.0]) == 0.25
    assert max_window_share([]) == 0.0


def test_idle_periods_of_one_server() -> None:
    def execution(start: float, end: float | None) -> Execution:
        return Execution("job", 1, "server", 1, "load.sleep", start, start, end, end)

    busy = [execution(0.0, 10.0), execution(0.0, 3.0), execution(6.0, 10.0)]
    short_gap = [execution(0.0, 10.0), execution(0.0, 3.0), execution(4.0, 10.0)]

    assert idle_periods(busy, workers=2) == [(3.0, 6.0)]
    assert idle_periods(short_gap, workers=2) == []
    assert idle_periods([execution(0.0, None)], workers=1) == []


def test_retry_storm_short(backend_name: str, tmp_path: Path) -> None:
    with open_run(backend_name, tmp_path) as run:
        report = retry_storm(run, jobs=100, outage=1.0, function="load.flaky_fast", scale=30.0)

    assert report.violations == []
    assert report.metrics["lost"] == 0
    assert report.metrics["jobs"] == 100
    assert report.metrics["retry_waves"][1]["jobs"] == 100
    assert report.metrics["retry_wave_max_share_pct"] is not None


def test_starvation_short(backend_name: str, tmp_path: Path) -> None:
    with open_run(backend_name, tmp_path) as run:
        report = starvation(run, seconds=3.0, long_jobs=2, long_seconds=4.0)

    assert report.violations == []
    assert report.metrics["lost"] == 0
    assert report.metrics["b_jobs"] == 3
    assert report.metrics["b_wait_max_s"] is not None
    assert report.metrics["a_backlog_at_feed_end"] > 0


def test_soak_short(backend_name: str, tmp_path: Path) -> None:
    with open_run(backend_name, tmp_path) as run:
        report = soak(run, seconds=6.0, rate=20.0, retention=1.5, expiration_interval=0.5,
                      warmup=3.0, sample_every=0.5, storage_every=1.5)

    assert report.violations == []
    assert report.metrics["lost"] == 0
    assert report.metrics["jobs"] >= 100
    assert report.metrics["rss_samples"] >= 10
    assert report.metrics["storage_samples"] >= 2
    assert report.metrics["rss_growth_pct"] is not None
    assert report.metrics["storage_growth_pct"] is not None
    assert report.metrics["stored_jobs_end"] < report.metrics["jobs"]  # some expired


def test_retention_short(backend_name: str, tmp_path: Path) -> None:
    with open_run(backend_name, tmp_path) as run:
        report = retention(run, jobs=200, fail_share=0.1, retention_s=1.0,
                           expiration_interval=0.5)

    assert report.violations == []
    assert report.metrics["lost"] == 0
    assert report.metrics["failed_kept"] == 20
    assert report.metrics["failed_kept_after_expiry"] == 10
    assert report.metrics["grown"] == {}
