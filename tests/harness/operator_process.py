"""The real operator, as a separate process (`evalkube-operator`), against the emulator.

A subprocess, not kopf.operator() in pytest's loop: kopf's shutdown would cancel pytest-asyncio's
teardown, and a process is what a restart test must kill anyway.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

OPERATOR = str(Path(sys.executable).parent / "evalkube-operator")
#: "2026-01-01 00:00:00,000 ERROR logger: ..." (the operator's log format)
_ERROR_LINE = re.compile(r"^\S+ \S+ (ERROR|CRITICAL) ")


class OperatorProcess:
    """`evalkube-operator --namespace NS`, with EVALKUBE_* settings from `settings`."""

    def __init__(self, kubeconfig: str, namespaces: list[str], log_path: Path, settings: dict[str, str] | None = None,
                 peering: str | None = None) -> None:  # fmt: skip
        self.kubeconfig = kubeconfig
        self.namespaces = namespaces
        self.log_path = log_path
        self.settings = settings or {}
        self.peering = peering
        self.process: subprocess.Popen[bytes] | None = None
        self.liveness_url = f"http://127.0.0.1:{_free_port()}/healthz"

    def start(self) -> OperatorProcess:
        env = {
            **os.environ,
            "KUBECONFIG": self.kubeconfig,
            **{f"EVALKUBE_{k.upper()}": v for k, v in self.settings.items()},
        }
        args = [
            OPERATOR,
            *(["--peering", self.peering] if self.peering else ["--standalone"]),
            "--liveness",
            self.liveness_url,
        ]
        for namespace in self.namespaces:
            args += ["--namespace", namespace]
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT)
        return self

    def stop(self, kill: bool = False) -> None:
        """SIGTERM (kopf's graceful exit) or SIGKILL (a crash, for restart tests)."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def restart(self, kill: bool = True) -> None:
        self.stop(kill=kill)
        self.start()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def problems(self) -> list[str]:
        """Tracebacks and unexpected errors the operator logged (a healthy run has none).

        One block is left out: kopf's own watch generator may fail to close when SIGTERM lands
        while a watch stream is being opened ("generator didn't stop after athrow()", logged by
        asyncio after "Operator is stopping"). It is kopf's shutdown, not the operator's work:
        nothing is left undone, and a loaded machine makes it likely.
        """
        log = self.log()
        stopping = log.find("Operator is stopping")
        if stopping >= 0:
            head, tail = log[:stopping], log[stopping:]
            tail = _KOPF_SHUTDOWN_NOISE.sub("", tail)
            log = head + tail
        return [line for line in log.splitlines() if line.startswith("Traceback") or _ERROR_LINE.match(line)]

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Until the operator's own liveness endpoint answers 200, as a kubelet probe would see it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process and self.process.poll() is not None:
                raise RuntimeError(f"operator exited with {self.process.returncode}:\n{self.log()[-3000:]}")
            try:
                with urllib.request.urlopen(self.liveness_url, timeout=1) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"operator not ready after {timeout}s:\n{self.log()[-3000:]}")


#: kopf's infinite_watch failing to close at shutdown: the ERROR line and its traceback, up to the
#: RuntimeError that ends it.
_KOPF_SHUTDOWN_NOISE = re.compile(
    r"^\S+ \S+ ERROR asyncio: an error occurred during closing of asynchronous generator "
    r"<async_generator object infinite_watch[^\n]*\n(?:(?!\d{4}-\d\d-\d\d ).*\n)*?"
    r"RuntimeError: generator didn't stop after athrow\(\)\n",
    re.MULTILINE,
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
