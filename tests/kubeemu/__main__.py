"""`python -m kubeemu --port 0 --kubeconfig PATH [--crd FILE ...]`: run standalone until SIGTERM/SIGINT.

Run from tests/ (or with tests/ on PYTHONPATH) so that `kubeemu` is importable.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import threading
from collections import Counter

import yaml

from .emulator import KubeEmulator


def main() -> None:
    parser = argparse.ArgumentParser(prog="kubeemu", description="In-process Kubernetes API emulator")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--kubeconfig", help="write a kubeconfig pointing at the emulator here")
    parser.add_argument("--token", help="bearer token to put in the kubeconfig")
    parser.add_argument("--crd", action="append", default=[], help="CRD YAML file(s) to install")
    parser.add_argument("--enforce-rbac", action="store_true", help="authenticate and authorize every request")
    parser.add_argument(
        "--history-size", type=int, default=5000, help="events kept for watch resumes (older: 410 Gone)"
    )
    parser.add_argument(
        "--request-counts",
        metavar="PATH",
        help="on SIGUSR1 and at exit, write the requests served so far (JSON: total, by verb and resource) here",
    )
    args = parser.parse_args()

    emu = KubeEmulator(args.host, args.port, enforce_rbac=args.enforce_rbac, history_size=args.history_size).start()
    for path in args.crd:
        with open(path) as f:
            for doc in yaml.safe_load_all(f):
                if doc:
                    emu.apply_crd(doc)
    if args.kubeconfig:
        emu.write_kubeconfig(args.kubeconfig, token=args.token)
    print(emu.url, flush=True)
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    signal.signal(signal.SIGINT, lambda *_: stopped.set())
    if args.request_counts:
        signal.signal(signal.SIGUSR1, lambda *_: _write_request_counts(emu, args.request_counts))
    stopped.wait()
    if args.request_counts:
        _write_request_counts(emu, args.request_counts)
    emu.stop()


def _write_request_counts(emu: KubeEmulator, path: str) -> None:
    """The request log summed up, for a process outside (a benchmark): written whole, then renamed."""
    by = Counter(f"{r.verb} {r.resource or r.path}{'/' + r.subresource if r.subresource else ''}" for r in emu.requests)
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump({"total": sum(by.values()), "by": dict(by.most_common())}, f)
    os.replace(tmp, path)


if __name__ == "__main__":
    main()
