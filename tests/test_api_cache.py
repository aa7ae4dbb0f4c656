"""The API's watch-backed cache of EvalJobs: what it sees, what it costs, and how it recovers."""

from __future__ import annotations

import httpx
import kubernetes
import pytest

from evalkube import kube, resource
from evalkube.api.cache import WatchCache
from evalkube.api.evaljobs import EvalJobs
from evalkube.api.settings import ApiSettings
from evalkube.apiserver import AsyncApiserver

from harness.api_server import ApiServer, evaljob_manifest, set_status, wait_until
from kubeemu import KubeEmulator

pytestmark = pytest.mark.timeout(60)


def api_requests(emulator: KubeEmulator, verb: str, namespace: str) -> int:
    """How many `verb` requests the API (token "api") made for EvalJobs in `namespace`."""
    return sum(
        1
        for r in emulator.requests
        if r.token == "api" and r.resource == resource.PLURAL and r.namespace == namespace and r.verb == verb
    )


def test_the_cache_sees_evaljobs_created_changed_and_deleted_with_kubectl(http, kube_client, namespace) -> None:
    custom = kubernetes.client.CustomObjectsApi(kube_client)
    custom.create_namespaced_custom_object(
        resource.GROUP, resource.VERSION, namespace, resource.PLURAL, evaljob_manifest("by-kubectl", priority=3)
    )
    wait_until(lambda: http.get("/queue").json()["queued_jobs"] == ["by-kubectl"], "the new EvalJob")
    job = http.get("/jobs/by-kubectl").json()
    assert (job["status"], job["request"]["model"], job["request"]["priority"]) == ("queued", "huggingface", 3)

    set_status(kube_client, namespace, "by-kubectl", phase="Running", message="evaluating")
    wait_until(lambda: http.get("/queue").json()["running_jobs"] == ["by-kubectl"], "the running phase")
    assert http.get("/jobs/by-kubectl").json()["message"] == "evaluating"

    custom.delete_namespaced_custom_object(resource.GROUP, resource.VERSION, namespace, resource.PLURAL, "by-kubectl")
    wait_until(lambda: http.get("/queue").json()["running_jobs"] == [], "the deletion")
    assert http.get("/jobs/by-kubectl").status_code == 404


def test_reads_are_served_from_the_cache_not_by_listing(http, kube_emulator, namespace) -> None:
    job_ids = [http.post("/evaluate", json={"model": "m", "tasks": ["t"]}).json()["job_id"] for _ in range(3)]
    before = {verb: api_requests(kube_emulator, verb, namespace) for verb in ("list", "get")}

    for _ in range(10):
        assert http.get("/queue").json()["queue_size"] == 3
        for job_id in job_ids:
            assert http.get(f"/jobs/{job_id}").status_code == 200
        assert http.get("/health").status_code == 200

    assert before == {"list": 1, "get": 0}  # the first LIST of the cache; created jobs were remembered
    assert {verb: api_requests(kube_emulator, verb, namespace) for verb in ("list", "get")} == before


def test_a_name_the_cache_lacks_gets_one_direct_read(kube_emulator, kube_client, api_kubeconfig, namespace) -> None:
    """Read-your-writes across replicas: another replica's new EvalJob may not have reached this cache."""
    kubernetes.client.CustomObjectsApi(kube_client).create_namespaced_custom_object(
        resource.GROUP, resource.VERSION, namespace, resource.PLURAL, evaljob_manifest("elsewhere")
    )
    client = kube.api_client(api_kubeconfig)
    custom = kubernetes.client.CustomObjectsApi(client)
    never_started = WatchCache(lambda **kwargs: None, what="evaljobs")
    apiserver = AsyncApiserver(client.configuration, pool_size=1)  # unused: this test only reads
    evaljobs = EvalJobs(custom, apiserver, never_started, namespace, timeout=10)

    assert evaljobs.get("elsewhere")["metadata"]["name"] == "elsewhere"
    assert evaljobs.get("elsewhere")["metadata"]["name"] == "elsewhere"  # now remembered: no second read
    assert evaljobs.get("missing") is None
    assert api_requests(kube_emulator, "get", namespace) == 2
    client.close()


def test_the_watch_resumes_where_it_ended_without_listing_again(
    api_kubeconfig, kube_emulator, kube_client, namespace
) -> None:
    settings = ApiSettings(namespace=namespace, kubeconfig=api_kubeconfig, watch_timeout_seconds=1)
    with ApiServer(settings) as server, httpx.Client(base_url=server.url) as http:
        for i in range(3):
            watches = api_requests(kube_emulator, "watch", namespace)
            wait_until(lambda: api_requests(kube_emulator, "watch", namespace) > watches, "a new watch request")
            kubernetes.client.CustomObjectsApi(kube_client).create_namespaced_custom_object(
                resource.GROUP, resource.VERSION, namespace, resource.PLURAL, evaljob_manifest(f"job-{i}")
            )
        wait_until(lambda: http.get("/queue").json()["queue_size"] == 3, "all three EvalJobs")
        assert api_requests(kube_emulator, "list", namespace) == 1


def test_the_cache_recovers_from_an_outage_listing_again_when_its_version_expired(private_kube) -> None:
    emulator, kubeconfig = private_kube
    with ApiServer(ApiSettings(kubeconfig=kubeconfig)) as server, httpx.Client(base_url=server.url) as http:
        old = http.post("/evaluate", json={"model": "m", "tasks": ["t"]}).json()["job_id"]
        emulator.stop()
        health = wait_until(lambda: (r := http.get("/health")).status_code == 503 and r.json(), "a 503")
        assert health["status"] == "unhealthy"
        assert "the Kubernetes API is unreachable" in health["detail"]
        assert http.get(f"/jobs/{old}").json()["status"] == "queued"  # the last known state is served

        # While the API can't see it, more changes happen than the apiserver's history keeps.
        evaljob_type = emulator.store.registry.get(resource.GROUP, resource.VERSION, resource.PLURAL)
        emulator.store.delete(evaljob_type, "default", old, {})
        for i in range(12):
            emulator.store.create(evaljob_type, "default", evaljob_manifest(f"while-down-{i}"))
        emulator.start()

        wait_until(lambda: http.get("/health").status_code == 200, "healthy again")
        queue = wait_until(lambda: (q := http.get("/queue").json())["queue_size"] == 12 and q, "12 jobs")
        assert old not in queue["queued_jobs"]
        assert http.get(f"/jobs/{old}").status_code == 404
        lists = [
            r for r in emulator.requests if r.token == "api" and r.resource == resource.PLURAL and r.verb == "list"
        ]
        assert len(lists) == 2  # the first LIST, and one more after the watch's version had expired (410)
