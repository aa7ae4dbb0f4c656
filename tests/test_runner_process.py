"""The runner's child process group: output streamed and kept, the whole group stopped on SIGTERM."""

from __future__ import annotations

import io
import os
import signal
import sys
import textwrap
import threading
import time

import psutil
import pytest

from evalkube.runner.process import TAIL_BYTES, ProcessGroupRunner

# A child that starts a grandchild; both ignore SIGTERM, as a wedged CUDA worker might.
STUBBORN = textwrap.dedent(
    """
    import signal, subprocess, sys, time
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    worker = subprocess.Popen([sys.executable, "-c",
                               "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"])
    print("ready", worker.pid, flush=True)
    time.sleep(60)
    """
)
# A child that exits on SIGTERM but leaves a grandchild that ignores it.
LEAVES_A_WORKER = STUBBORN.replace("signal.signal(signal.SIGTERM, signal.SIG_IGN)\n", "", 1)
# A child that exits at once, leaving a worker behind.
EXITS_LEAVING_A_WORKER = textwrap.dedent(
    """
    import subprocess, sys
    worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    print("ready", worker.pid, flush=True)
    """
)


def worker_pid(output: bytes) -> int:
    return int(output.split(b"ready ", 1)[1].split()[0])


def dead(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def all_gone(pids: list[int], timeout: float = 5.0) -> bool:
    """Whether every one of `pids` is dead within `timeout` (SIGKILL is delivered asynchronously)."""
    deadline = time.monotonic() + timeout
    while not all(dead(pid) for pid in pids):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def run_and_signal(script: str, grace: float) -> tuple[list[int], object, float]:
    """Run `script` and SIGTERM the runner once the script's worker is up.

    Returns the pids of the child and its worker, the outcome and the seconds the run took."""
    output = io.BytesIO()
    runner = ProcessGroupRunner(grace_seconds=grace, output=output)

    def signal_when_ready() -> None:
        while b"ready" not in output.getvalue():
            time.sleep(0.02)
        os.kill(os.getpid(), signal.SIGTERM)  # as the kubelet does; the handler runs in the main thread

    threading.Thread(target=signal_when_ready, daemon=True).start()
    started = time.monotonic()
    outcome = runner.run([sys.executable, "-c", script], dict(os.environ))
    elapsed = time.monotonic() - started
    return [runner._proc.pid, worker_pid(output.getvalue())], outcome, elapsed


def test_output_is_forwarded_and_its_tail_kept() -> None:
    output = io.BytesIO()
    script = "import sys; sys.stdout.write('x' * 100000 + 'END'); sys.stderr.write('on stderr')"
    outcome = ProcessGroupRunner(output=output).run([sys.executable, "-c", script], dict(os.environ))
    assert outcome.returncode == 0 and outcome.signal is None
    assert output.getvalue().startswith(b"x" * 1000) and len(output.getvalue()) == 100000 + 3 + 9
    assert len(outcome.tail) == TAIL_BYTES and "END" in outcome.tail and outcome.tail.endswith("on stderr")


def test_the_exit_code_is_reported() -> None:
    outcome = ProcessGroupRunner(output=io.BytesIO()).run(
        [sys.executable, "-c", "raise SystemExit(3)"], dict(os.environ)
    )
    assert outcome.returncode == 3


def test_sigterm_kills_a_stubborn_group_after_the_grace_period() -> None:
    pids, outcome, elapsed = run_and_signal(STUBBORN, grace=1.0)
    assert outcome.signal == signal.SIGTERM
    assert outcome.returncode == -signal.SIGKILL
    assert 1.0 <= elapsed < 10
    assert all_gone(pids)


def test_a_worker_left_behind_by_the_leader_is_killed_too() -> None:
    pids, outcome, elapsed = run_and_signal(LEAVES_A_WORKER, grace=1.0)
    assert outcome.signal == signal.SIGTERM and outcome.returncode == -signal.SIGTERM
    assert elapsed >= 1.0  # the worker ignored SIGTERM, so it had the whole grace period
    assert all_gone(pids)


def test_the_group_is_cleaned_up_after_a_normal_exit_too() -> None:
    output = io.BytesIO()
    outcome = ProcessGroupRunner(output=output).run([sys.executable, "-c", EXITS_LEAVING_A_WORKER], dict(os.environ))
    assert outcome.returncode == 0
    assert all_gone([worker_pid(output.getvalue())])


def test_signal_handlers_are_restored() -> None:
    before = signal.getsignal(signal.SIGTERM)
    ProcessGroupRunner(output=io.BytesIO()).run([sys.executable, "-c", "pass"], dict(os.environ))
    assert signal.getsignal(signal.SIGTERM) is before


@pytest.fixture(autouse=True)
def _no_leftover_sigterm_handler() -> None:
    """A test that fails mid-run must not leave the runner's handler on pytest's SIGTERM."""
    before = signal.getsignal(signal.SIGTERM)
    yield
    signal.signal(signal.SIGTERM, before)
