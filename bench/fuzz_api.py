"""Schemathesis over every operation of the API's OpenAPI document, thousands of cases: prints the
cases per operation and the statuses seen, and exits 1 on any 5xx or any 4xx that does not name
the field and the reason. The real app on uvicorn against the Kubernetes API emulator, as in
tests/test_api_fuzz.py (tests/harness/fuzz.py does the work).

    .venv/bin/python bench/fuzz_api.py --cases 100      # per operation and mode (valid, invalid)
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

import kubernetes  # noqa: E402

from evalkube import kube, resource  # noqa: E402
from evalkube.api.settings import ApiSettings  # noqa: E402

from harness.api_server import ApiServer, apply_crds  # noqa: E402
from harness.fuzz import CATALOG, fuzz  # noqa: E402
from kubeemu import KubeEmulator  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=100, help="most cases per operation and generation mode")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="fuzz-") as workdir, KubeEmulator() as emulator:
        apply_crds(emulator)
        client = kube.api_client(str(emulator.write_kubeconfig(Path(workdir) / "test", token="test")))
        core = kubernetes.client.CoreV1Api(client)
        core.create_namespace({"metadata": {"name": "fuzz"}})
        core.create_namespaced_config_map(
            "fuzz", {"metadata": {"name": "evalkube-catalog"}, "data": {resource.CATALOG_KEY: json.dumps(CATALOG)}}
        )
        settings = ApiSettings(
            namespace="fuzz", kubeconfig=str(emulator.write_kubeconfig(Path(workdir) / "api", token="api"))
        )
        with ApiServer(settings) as server:
            started = time.monotonic()
            report = fuzz(server.url, args.cases, args.seed)
            elapsed = time.monotonic() - started
    print(report.lines())
    print(f"{report.cases / elapsed:.0f} cases/s over {elapsed:.1f} s")
    for line in [*report.server_errors, *report.unexplained][:20]:
        print("PROBLEM", line)
    return 1 if report.server_errors or report.unexplained else 0


if __name__ == "__main__":
    sys.exit(main())
