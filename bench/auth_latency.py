"""What authentication adds to a read: GET /jobs/{id} with no auth, with cached reviews, with none cached.

    .venv/bin/python bench/auth_latency.py [--requests 300] [--rounds 6]

Starts the Kubernetes API emulator (tests/kubeemu) and three real APIs on uvicorn in this process,
all reading the same EvalJob in the same namespace:

- `none`: `auth="none"`, the baseline (no review at all);
- `cached`: `auth="kubernetes"` with the default `auth_cache_seconds` (10 s), so after the first
  request the TokenReview and the SubjectAccessReview are answered from the API's caches;
- `uncached`: `auth="kubernetes"` with `auth_cache_seconds=0`, so every request makes a
  TokenReview and a SubjectAccessReview against the emulator (a round trip each).

The caller is a user with a namespaced Role and RoleBinding, as in tests/test_api_auth.py. Each
configuration gets --requests sequential requests over one keep-alive connection, split into
--rounds rounds that alternate between the three, so drift (GC, the other processes on the
machine) falls on all of them alike. The rate limit is off on all three, so only authentication
differs. The counts of reviews the emulator received prove which configuration made them.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import httpx
import kubernetes

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from evalkube import EvalClient, kube  # noqa: E402
from evalkube.api.settings import ApiSettings  # noqa: E402

from harness.api_server import ApiServer, apply_crds  # noqa: E402
from kubeemu import KubeEmulator  # noqa: E402

NAMESPACE = "bench-auth"
USER, TOKEN = "alice", "alice-token"
#: What the caller may do: the chart README's tenant Role, as far as this bench needs it.
RULES = [{"apiGroups": ["evalkube.dev"], "resources": ["evaljobs"], "verbs": ["create", "get", "list"]}]
REVIEWS = ("tokenreviews", "subjectaccessreviews")


def grant(emulator: KubeEmulator, admin: kubernetes.client.ApiClient) -> None:
    """A namespace, a token for USER, and a RoleBinding that lets USER read and create EvalJobs there."""
    emulator.add_token(TOKEN, USER, groups=("researchers",))
    kubernetes.client.CoreV1Api(admin).create_namespace({"metadata": {"name": NAMESPACE}})
    rbac = kubernetes.client.RbacAuthorizationV1Api(admin)
    rbac.create_namespaced_role(NAMESPACE, {"metadata": {"name": "submitter"}, "rules": RULES})
    rbac.create_namespaced_role_binding(
        NAMESPACE,
        {
            "metadata": {"name": "alice-submits"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "submitter"},
            "subjects": [{"kind": "User", "name": USER, "apiGroup": "rbac.authorization.k8s.io"}],
        },
    )


def reviews(emulator: KubeEmulator) -> int:
    return sum(1 for r in emulator.requests if r.resource in REVIEWS)


def timed(http: httpx.Client, path: str, count: int) -> list[float]:
    samples = []
    for _ in range(count):
        start = time.perf_counter()
        response = http.get(path)
        samples.append((time.perf_counter() - start) * 1000)
        response.raise_for_status()
    return samples


def p95(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=100)[94]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300, help="requests per configuration")
    parser.add_argument("--rounds", type=int, default=6, help="alternating rounds the requests are split into")
    parser.add_argument("--warmup", type=int, default=20, help="untimed requests per configuration first")
    args = parser.parse_args()

    emulator = KubeEmulator().start()
    apply_crds(emulator)
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        admin_config = str(emulator.write_kubeconfig(Path(tmp) / "admin", token="test"))
        api_config = str(emulator.write_kubeconfig(Path(tmp) / "api", token="api"))
        grant(emulator, kube.api_client(admin_config))

        def settings(**extra: object) -> ApiSettings:
            return ApiSettings(
                namespace=NAMESPACE, kubeconfig=api_config, host="127.0.0.1", rate_limit_per_second=0, **extra
            )

        configs = {
            "none": settings(auth="none"),
            "cached": settings(auth="kubernetes"),
            "uncached": settings(auth="kubernetes", auth_cache_seconds=0),
        }
        servers = {name: stack.enter_context(ApiServer(s)) for name, s in configs.items()}
        headers = {"Authorization": f"Bearer {TOKEN}"}  # sent to the baseline too: same request bytes
        clients = {
            name: stack.enter_context(httpx.Client(base_url=server.url, headers=headers, timeout=30))
            for name, server in servers.items()
        }
        with EvalClient(servers["cached"].url, timeout=30, token=TOKEN) as client:
            job_id = client.evaluate("huggingface", ["mme"], num_gpus=0)["job_id"]
        path = f"/jobs/{job_id}"
        for http in clients.values():  # the job reaches each API's watch cache; connections and caches warm
            deadline = time.monotonic() + 15
            while http.get(path).status_code == 404 and time.monotonic() < deadline:
                time.sleep(0.05)
            timed(http, path, args.warmup)

        samples: dict[str, list[float]] = {name: [] for name in clients}
        made: dict[str, int] = dict.fromkeys(clients, 0)
        per_round = max(1, args.requests // args.rounds)
        for round_ in range(args.rounds):
            order = list(clients) if round_ % 2 == 0 else list(reversed(clients))
            for name in order:
                count = per_round if round_ < args.rounds - 1 else args.requests - per_round * (args.rounds - 1)
                before = reviews(emulator)
                samples[name] += timed(clients[name], path, count)
                made[name] += reviews(emulator) - before

    emulator.stop()
    base = statistics.median(samples["none"])
    print(f"GET /jobs/{{id}}, {args.requests} requests per configuration in {args.rounds} alternating rounds")
    print(f"{'auth':<10} {'median ms':>10} {'p95 ms':>8} {'ratio':>6} {'+ms':>6} {'reviews made':>13}")
    for name, values in samples.items():
        median = statistics.median(values)
        print(
            f"{name:<10} {median:>10.2f} {p95(values):>8.2f} {median / base:>6.2f} {median - base:>+6.2f} "
            f"{made[name]:>13}"
        )


if __name__ == "__main__":
    main()
