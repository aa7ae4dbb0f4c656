"""Run the API: `evalkube-api`, or `launch_server(ServerArgs(...))` as with lmms-eval.

ServerArgs keeps lmms-eval's `host` and `port` and adds where the EvalJobs live. lmms-eval's
`max_completed_jobs` and `temp_dir_prefix` are gone on purpose: finished jobs are EvalJobs, kept
or cleaned up by Kubernetes tooling (and the operator), and the API writes no files. Arguments
left None fall back to ApiSettings, i.e. the EVALKUBE_* environment the Helm chart sets.
"""

from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass

import uvicorn

from evalkube.api.app import create_app
from evalkube.api.settings import ApiSettings

#: At shutdown, requests in flight get this long: a POST /merge that is still waiting is then cut
#: (its merge goes on, GET /merges/{id} reads it), within the pod's 30 s grace period.
SHUTDOWN_GRACE_SECONDS = 5


@dataclass
class ServerArgs:
    """Arguments for launching the API server; None means "from the environment, else the default"."""

    host: str | None = None
    port: int | None = None
    namespace: str | None = None
    kubeconfig: str | None = None
    catalog_configmap: str | None = None

    def __post_init__(self) -> None:
        if self.port is not None and (not isinstance(self.port, int) or not 1 <= self.port <= 65535):
            raise ValueError(f"Port must be an integer between 1 and 65535, got {self.port!r}")

    def settings(self) -> ApiSettings:
        """ApiSettings with these arguments over the environment's values."""
        return ApiSettings(**{name: value for name, value in asdict(self).items() if value is not None})


def launch_server(args: ServerArgs) -> None:
    """Serve until interrupted; OpenAPI docs at /docs."""
    settings = args.settings()
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level="info",
        timeout_graceful_shutdown=SHUTDOWN_GRACE_SECONDS,
    )


def main(argv: list[str] | None = None) -> None:
    """Console script `evalkube-api`."""
    parser = argparse.ArgumentParser(prog="evalkube-api", description="The evalkube REST API (lmms-eval's contract).")
    parser.add_argument("--host", help="address to listen on (env EVALKUBE_API_HOST; default 0.0.0.0)")
    parser.add_argument("--port", type=int, help="port to listen on (env EVALKUBE_API_PORT; default 8000)")
    parser.add_argument("--namespace", help="namespace of the EvalJobs (env EVALKUBE_API_NAMESPACE; default default)")
    parser.add_argument("--kubeconfig", help="kubeconfig file (default: in-cluster, else KUBECONFIG or ~/.kube/config)")
    parser.add_argument(
        "--catalog-configmap", help="catalog ConfigMap (env EVALKUBE_CATALOG_CONFIGMAP; default evalkube-catalog)"
    )
    options = parser.parse_args(argv)
    launch_server(ServerArgs(**vars(options)))


if __name__ == "__main__":
    main()
