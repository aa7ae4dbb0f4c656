"""`python -m kubeemu --port 0 --kubeconfig PATH [--crd FILE ...]`: run standalone until SIGTERM/SIGINT.

Run from tests/ (or with tests/ on PYTHONPATH) so that `kubeemu` is importable.
"""

from __future__ import annotations

import argparse
import signal
import threading

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
    args = parser.parse_args()

    emu = KubeEmulator(args.host, args.port, enforce_rbac=args.enforce_rbac).start()
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
    stopped.wait()
    emu.stop()


if __name__ == "__main__":
    main()
