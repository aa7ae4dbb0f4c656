"""Run lmms-eval as a child process group: stream its output, keep a tail, stop it on SIGTERM.

Cancelling an EvalJob deletes its pod, so the kubelet sends the runner SIGTERM and, after the
pod's grace period, SIGKILL. lmms-eval may run as several processes (accelerate ranks, dataloader
and vLLM workers), so the child starts in its own session (process group) and the signal goes to
the whole group; whatever is still alive after GRACE_SECONDS is killed. Once the child has exited
the group is killed anyway, so no stray worker outlives the runner holding a GPU.

Output is forwarded byte for byte to our stdout (stderr merged, so order is kept) for `kubectl
logs`, and the last TAIL_BYTES are kept for the termination message. Given `on_progress`, the
pump also reads lmms-eval's progress bars from the output (`progress.ProgressParser`, at most every
PROGRESS_READ_SECONDS) and hands the newest state to a publisher thread (`progress.ProgressPublisher`),
so the callback, however slow, never holds up the pump (a stalled pump would fill the pipe and
stall the child).
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import BinaryIO

from evalkube.runner.progress import PUBLISH_INTERVAL_SECONDS, Progress, ProgressParser, ProgressPublisher

#: Seconds the group gets to exit after SIGTERM; well inside Kubernetes' default 30 s grace.
GRACE_SECONDS = 10.0
TAIL_BYTES = 64 * 1024
READ_BYTES = 64 * 1024
#: Seconds between two reads of progress from the output. Output arriving sooner waits (at most
#: READ_BYTES of it) to be read with the next, or at once when the child falls quiet: a child that
#: redraws a bar per item then costs one parse per interval, not one per redraw.
PROGRESS_READ_SECONDS = 0.1
FORWARDED_SIGNALS = (signal.SIGTERM, signal.SIGINT)
#: Seconds the runner waits, once the child is gone, for the final progress update to be published.
FINAL_PUBLISH_TIMEOUT = 10.0

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outcome:
    returncode: int
    #: The signal that stopped the runner (SIGTERM/SIGINT), if one did.
    signal: int | None
    #: The last TAIL_BYTES of the child's output, decoded.
    tail: str
    #: The newest progress read from the child's output (None without `on_progress`, or no bar seen).
    progress: Progress | None = None


class ProcessGroupRunner:
    """Runs one command to completion; meant for the main thread (it installs signal handlers)."""

    def __init__(
        self,
        grace_seconds: float = GRACE_SECONDS,
        output: BinaryIO | None = None,
        on_progress: Callable[[Progress], None] | None = None,
        progress_interval: float = PUBLISH_INTERVAL_SECONDS,
    ) -> None:
        """`on_progress` is called from a worker thread, at most once per `progress_interval`
        seconds and once more with the final state when the child has ended."""
        self.grace_seconds = grace_seconds
        self.output = output if output is not None else sys.stdout.buffer
        self.on_progress = on_progress
        self.progress_interval = progress_interval
        self._parser: ProgressParser | None = None
        self._publisher: ProgressPublisher | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._signal: int | None = None
        self._deadline: float | None = None
        self._killer: threading.Timer | None = None
        self._tail = bytearray()

    def run(self, argv: Sequence[str], env: Mapping[str, str]) -> Outcome:
        previous = {signum: signal.signal(signum, self._on_signal) for signum in FORWARDED_SIGNALS}
        try:
            if self._signal is None:
                if self.on_progress is not None:
                    self._parser = ProgressParser()
                    self._publisher = ProgressPublisher(self.on_progress, self.progress_interval)
                self._proc = subprocess.Popen(
                    list(argv), env=dict(env), stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
                )  # fmt: skip
                pump = threading.Thread(target=self._pump, args=(self._proc.stdout,), daemon=True)
                pump.start()
                if self._signal is not None:  # arrived while the child was being started
                    self._terminate()
                returncode = self._proc.wait()
                self._kill_rest()
                pump.join(timeout=5)  # only a process that left the group could hold the pipe open
            else:
                returncode = -self._signal
        finally:
            if self._killer is not None:
                self._killer.cancel()
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            if self._publisher is not None and not self._publisher.close(FINAL_PUBLISH_TIMEOUT):
                log.warning("the final progress update was still being published after %ss", FINAL_PUBLISH_TIMEOUT)
        progress = self._parser.latest if self._parser is not None else None
        return Outcome(returncode, self._signal, self._tail.decode(errors="replace"), progress)

    def _on_signal(self, signum: int, _frame: object) -> None:
        if self._signal is None:
            self._signal = signum
        if self._proc is not None:
            self._terminate()

    def _terminate(self) -> None:
        """SIGTERM the group now, SIGKILL it once the grace period is over (first call only)."""
        if self._deadline is not None:
            return
        self._deadline = time.monotonic() + self.grace_seconds
        self._signal_group(signal.SIGTERM)
        self._killer = threading.Timer(self.grace_seconds, self._signal_group, (signal.SIGKILL,))
        self._killer.daemon = True
        self._killer.start()

    def _kill_rest(self) -> None:
        """After the leader exited: when terminating, let the rest of the group finish within the
        grace period; then SIGKILL whatever remains."""
        if self._deadline is not None:
            while self._group_alive() and time.monotonic() < self._deadline:
                time.sleep(0.05)
        self._signal_group(signal.SIGKILL)

    def _group_alive(self) -> bool:
        assert self._proc is not None
        try:
            # Reap members re-parented to us (the runner is PID 1 in its pod): zombies count as alive.
            while os.waitpid(-self._proc.pid, os.WNOHANG)[0]:
                pass
        except ChildProcessError:
            pass
        try:
            os.killpg(self._proc.pid, 0)
        except ProcessLookupError:
            return False
        return True

    def _signal_group(self, signum: int) -> None:
        assert self._proc is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._proc.pid, signum)  # the child leads its own session: pgid == pid

    def _pump(self, stream: BinaryIO) -> None:
        fd = stream.fileno()
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        unread = bytearray()  # output not yet read for progress
        read_at = 0.0  # monotonic time from which progress may be read again
        while True:
            if unread:  # read it once the interval is over, or at once if the child goes quiet first
                wait = read_at - time.monotonic()
                if wait <= 0 or not poller.poll(wait * 1000):
                    read_at = self._read_progress(unread)
                    continue
            chunk = os.read(fd, READ_BYTES)
            if not chunk:
                break
            self.output.write(chunk)
            self.output.flush()
            self._tail += chunk
            del self._tail[:-TAIL_BYTES]
            if self._parser is not None:
                unread += chunk
                if len(unread) >= READ_BYTES or time.monotonic() >= read_at:
                    read_at = self._read_progress(unread)
        if unread:
            self._read_progress(unread)
        stream.close()

    def _read_progress(self, unread: bytearray) -> float:
        """Read progress from `unread` (emptied); returns when progress may be read next."""
        data = bytes(unread)
        unread.clear()
        if self._parser is None or self._publisher is None:
            return 0.0
        try:
            progress = self._parser.feed(data)
        except Exception:  # the parser is built not to raise; if it ever does, the pump must go on
            log.exception("reading progress failed; progress is no longer read for this run")
            self._parser = None
            return 0.0
        if progress is not None:
            self._publisher.offer(progress)
        return time.monotonic() + PROGRESS_READ_SECONDS
