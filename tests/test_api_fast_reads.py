"""GET /jobs/{id} and GET /queue answer the same with and without the fast path, for every caller.

`evalkube.api.fast_reads` answers those two reads before FastAPI's routing when everything is
known from memory, and hands every other request to the route. Two APIs on one namespace, one
with the fast path and one without, must give the same status, body and content type to each
request, asked twice (the first fills the auth caches, the second may take the fast path): valid
and missing tokens, a caller without rights, unknown jobs and namespaces, odd paths.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import kubernetes
import pytest

from evalkube.api.fast_reads import FastReads
from evalkube.api.request_metrics import REQUESTS
from evalkube.api.settings import ApiSettings

from harness.api_server import ApiServer, set_status, wait_until
from kubeemu import KubeEmulator

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def apis(kube_emulator: KubeEmulator, kube_client, api_kubeconfig: str, namespace: str) -> Iterator[tuple[str, str]]:
    kube_emulator.add_token(f"reader-{namespace}", f"reader-{namespace}")
    kube_emulator.add_token(f"nobody-{namespace}", f"nobody-{namespace}")
    rbac = kubernetes.client.RbacAuthorizationV1Api(kube_client)
    rules = [{"apiGroups": ["evalkube.dev"], "resources": ["evaljobs"], "verbs": ["create", "get", "list"]}]
    rbac.create_namespaced_role(namespace, {"metadata": {"name": "reader"}, "rules": rules})
    rbac.create_namespaced_role_binding(
        namespace,
        {
            "metadata": {"name": "reader"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "reader"},
            "subjects": [{"kind": "User", "name": f"reader-{namespace}", "apiGroup": "rbac.authorization.k8s.io"}],
        },
    )
    settings = {"namespace": namespace, "kubeconfig": api_kubeconfig, "auth": "kubernetes"}
    with (
        ApiServer(ApiSettings(**settings, fast_reads=True)) as fast,
        ApiServer(ApiSettings(**settings, fast_reads=False)) as routed,
    ):
        yield fast.url, routed.url


def answer(response: httpx.Response) -> tuple[int, str, bytes]:
    return response.status_code, response.headers.get("content-type", ""), response.content


def test_both_paths_give_every_caller_the_same_answers(apis, kube_client, namespace) -> None:
    fast, routed = apis
    reader = {"Authorization": f"Bearer reader-{namespace}"}
    created = httpx.post(f"{routed}/evaluate", json={"model": "m", "tasks": ["t"]}, headers=reader)
    queued = created.json()["job_id"]
    running = httpx.post(f"{routed}/evaluate", json={"model": "m", "tasks": ["t"]}, headers=reader).json()["job_id"]
    set_status(kube_client, namespace, running, phase="Running", startedAt="2026-01-01T00:00:00Z")
    for url in (fast, routed):
        wait_until(lambda url=url: httpx.get(f"{url}/jobs/{running}", headers=reader).json()["status"] == "running",
                   "both APIs to see the running job")  # fmt: skip

    callers = {
        "reader": reader,
        "reader, Basic": {"Authorization": httpx.BasicAuth("x", f"reader-{namespace}")._auth_header},
        "no token": {},
        "bad token": {"Authorization": "Bearer not-a-token"},
        "malformed Basic": {"Authorization": "Basic %%%"},
        "no rights": {"Authorization": f"Bearer nobody-{namespace}"},
    }
    paths = [
        f"/jobs/{queued}",
        f"/jobs/{running}",
        "/jobs/eval-unknown",
        f"/jobs/{queued}?namespace={namespace}",
        f"/jobs/{queued}?namespace=not-served",
        f"/jobs/{queued}?namespace=" + "n" * 64,
        f"/jobs/{queued}?namespace=",
        "/jobs/",
        f"/jobs/{queued}/",
        "/queue",
        f"/queue?namespace={namespace}",
        "/queue?namespace=not-served",
    ]
    for caller, headers in callers.items():
        for path in paths:
            for attempt in (1, 2):
                expected = answer(httpx.get(routed + path, headers=headers))
                assert answer(httpx.get(fast + path, headers=headers)) == expected, (caller, path, attempt)


def test_a_known_reader_is_answered_by_the_fast_path_and_counted_under_its_route(apis, namespace, monkeypatch) -> None:
    fast, _ = apis
    answered = []
    original = FastReads._answer
    monkeypatch.setattr(
        FastReads, "_answer", lambda self, scope: answered.append(original(self, scope)) or answered[-1]
    )
    headers = {"Authorization": f"Bearer reader-{namespace}"}
    job_id = httpx.post(f"{fast}/evaluate", json={"model": "m", "tasks": ["t"]}, headers=headers).json()["job_id"]
    httpx.get(f"{fast}/jobs/{job_id}", headers=headers).raise_for_status()  # fills the caches
    counted = REQUESTS.labels(method="GET", route="/jobs/{job_id}", status="200")
    before = counted._value.get()
    for _ in range(3):
        httpx.get(f"{fast}/jobs/{job_id}", headers=headers).raise_for_status()
    assert counted._value.get() == before + 3
    assert [found is not None for found in answered[-3:]] == [True, True, True]
