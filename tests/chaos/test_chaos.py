"""The battery's short form: a few kills, one freeze and hostile input on every backend.

The full battery is ``scripts/chaos.py``; these tests run the same scenarios
at a size that fits CI.
"""

from __future__ import annotations

from pathlib import Path

from chaos_scenarios import (
    KNOWN_BROKEN_CASES,
    hostile_cases,
    hostile_values,
    kills_and_freeze,
    open_run,
    payload_sizes,
)


def test_kills_and_freeze(backend_name: str, tmp_path: Path) -> None:
    with open_run(backend_name, tmp_path) as run:
        report = kills_and_freeze(run, kills=3)

    assert report.violations == []
    assert report.metrics["lost"] == 0
    assert report.metrics["kills"] == 3
    assert report.metrics["freezes"] == 1
    assert report.metrics["interrupted_by_kill"] >= 1
    assert report.metrics["interrupted_by_freeze"] >= 1
    assert report.metrics["unexpected_server_exits"] == 0


def test_payload_limits(backend_name: str, tmp_path: Path) -> None:
    with open_run(backend_name, tmp_path) as run:
        report = payload_sizes(run)

    assert report.violations == []
    assert report.metrics["accepted"] == 6
    assert report.metrics["rejected_limit+1"] is True
    assert report.metrics["rejected_10MiB"] is True


def test_hostile_values(backend_name: str, tmp_path: Path) -> None:
    with open_run(backend_name, tmp_path) as run:
        report = hostile_values(run, cases=hostile_cases(run, random_count=20))

    assert report.violations == []
    assert report.metrics["lost"] == 0
    assert report.metrics["outcomes"]["deep-260"].startswith("rejected")
    assert report.metrics["outcomes"]["object"].startswith("rejected")


def test_surrogate_code_points(backend_name: str, tmp_path: Path) -> None:
    with open_run(backend_name, tmp_path) as run:
        report = hostile_values(run, cases=KNOWN_BROKEN_CASES)

    assert report.violations == []
