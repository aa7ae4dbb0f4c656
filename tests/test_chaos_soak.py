"""Nothing lost, nothing duplicated, nothing stuck: EvalJobs through REST and kubectl with cancels,
while the operator is SIGKILLed, the API restarts and the apiserver fails in every way it can
(tests/harness/chaos.py does the work; bench/chaos_soak.py runs it larger)."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.chaos import Soak, SoakConfig

pytestmark = [pytest.mark.heavy, pytest.mark.timeout(240)]


def test_chaos_soak_loses_duplicates_and_strands_nothing(tmp_path: Path) -> None:
    config = SoakConfig(jobs=30, operator_kills=10, api_restarts=3, seconds=20.0, seed=11)
    report = Soak(config, tmp_path).run()
    print(report.lines())
    assert (report.kills, report.restarts) == (10, 3)
    kinds = {"error", "throttle", "timeout", "slow", "watch_cut", "watch_expired", "conflict", "lost_response"}
    assert kinds <= set(report.faults), f"not every fault kind was injected: {report.faults}"
    assert not report.problems(), "\n".join([report.lines(), *report.problems()])
