"""The API does nothing its caller could not do with kubectl: every endpoint, every kind of caller.

The emulator answers TokenReviews from the tokens the test registers and SubjectAccessReviews
from the Roles and RoleBindings the test creates with the real client, as a cluster's RBAC
authorizer does; the API runs with `auth="kubernetes"` (its default).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import kubernetes
import pytest
from lmms_eval.entrypoints.client import EvalClient as UpstreamEvalClient

from evalkube import EvalClient, EvalServerError
from evalkube.api.settings import ApiSettings

from harness.api_server import ApiServer
from kubeemu import KubeEmulator

pytestmark = pytest.mark.timeout(120)

#: What a submitter may do, as the chart README's example tenant Role grants it.
SUBMITTER_RULES = [
    {"apiGroups": ["evalkube.dev"], "resources": ["evaljobs"], "verbs": ["create", "get", "list", "patch"]},
    {"apiGroups": ["evalkube.dev"], "resources": ["checkpointmerges"], "verbs": ["create", "get"]},
    {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]},
]


@pytest.fixture
def tenant(kube_emulator: KubeEmulator, kube_client: kubernetes.client.ApiClient, namespace: str) -> dict[str, str]:
    """alice may submit in the namespace; bob is a valid user with no rights there."""
    alice, bob = f"alice-{namespace}", f"bob-{namespace}"
    kube_emulator.add_token(f"{alice}-token", alice, groups=("researchers",))
    kube_emulator.add_token(f"{bob}-token", bob)
    rbac = kubernetes.client.RbacAuthorizationV1Api(kube_client)
    rbac.create_namespaced_role(namespace, {"metadata": {"name": "submitter"}, "rules": SUBMITTER_RULES})
    rbac.create_namespaced_role_binding(
        namespace,
        {
            "metadata": {"name": "alice-submits"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "submitter"},
            "subjects": [{"kind": "User", "name": alice, "apiGroup": "rbac.authorization.k8s.io"}],
        },
    )
    return {"alice": alice, "alice_token": f"{alice}-token", "bob_token": f"{bob}-token"}


def api_settings(api_kubeconfig: str, namespace: str, shared_volumes: str, **extra: Any) -> ApiSettings:
    return ApiSettings(
        namespace=namespace,
        kubeconfig=api_kubeconfig,
        shared_volumes=shared_volumes,
        auth="kubernetes",
        merge_wait_seconds=0.5,
        **extra,
    )


@pytest.fixture
def api(api_kubeconfig: str, namespace: str, shared_volumes: str) -> Iterator[str]:
    with ApiServer(api_settings(api_kubeconfig, namespace, shared_volumes, auth_cache_seconds=1.0)) as server:
        yield server.url


def endpoints(job_id: str, merge_id: str) -> list[tuple[str, str, dict[str, Any] | None]]:
    return [
        ("POST", "/evaluate", {"model": "huggingface", "tasks": ["mme"], "num_gpus": 0}),
        ("GET", f"/jobs/{job_id}", None),
        ("GET", f"/jobs/{job_id}/logs", None),
        ("GET", "/queue", None),
        ("GET", "/tasks", None),
        ("GET", "/models", None),
        ("POST", "/merge", {"checkpoint_path": "/ckpt/run/checkpoint-1"}),
        ("GET", f"/merges/{merge_id}", None),
        ("GET", "/metrics", None),
        ("DELETE", f"/jobs/{job_id}", None),
    ]


def call(url: str, method: str, path: str, body: dict[str, Any] | None, headers: dict[str, str]) -> httpx.Response:
    return httpx.request(method, f"{url}{path}", json=body, headers=headers, timeout=30)


def test_every_endpoint_answers_401_401_403_then_serves_the_permitted(api: str, tenant: dict[str, str]) -> None:
    alice = {"Authorization": f"Bearer {tenant['alice_token']}"}
    job_id = call(api, "POST", "/evaluate", {"model": "huggingface", "tasks": ["mme"]}, alice).json()["job_id"]
    merge_id = call(api, "POST", "/merge", {"checkpoint_path": "/ckpt/run/checkpoint-1"}, alice).json()["merge_id"]
    credentials = {
        "none": ({}, 401),
        "bad": ({"Authorization": "Bearer not-a-token"}, 401),
        "valid, no permission": ({"Authorization": f"Bearer {tenant['bob_token']}"}, 403),
    }
    for method, path, body in endpoints(job_id, merge_id):
        for case, (headers, expected) in credentials.items():
            response = call(api, method, path, body, headers)
            assert response.status_code == expected, (method, path, case, response.text)
            if expected == 401:
                assert response.headers["WWW-Authenticate"].startswith("Bearer")
        response = call(api, method, path, body, alice)
        # 409: no log before the pod runs; 503: no catalog in this namespace. Neither is a refusal.
        assert response.status_code in (200, 409, 503), (method, path, response.text)
    assert httpx.get(f"{api}/health").status_code == 200  # open: probes carry no token


def test_a_403_names_the_missing_permission(api: str, tenant: dict[str, str], namespace: str) -> None:
    response = httpx.get(f"{api}/queue", headers={"Authorization": f"Bearer {tenant['bob_token']}"})
    assert response.status_code == 403
    assert response.json()["detail"] == (
        f"user 'bob-{namespace}' may not list evaljobs.evalkube.dev in namespace '{namespace}'"
    )


def test_the_submitter_is_recorded_and_shown(api: str, tenant: dict[str, str]) -> None:
    with EvalClient(api, timeout=30, token=tenant["alice_token"]) as client:
        job_id = client.evaluate("huggingface", ["mme"], num_gpus=0)["job_id"]
        assert client.get_job(job_id)["submitted_by"] == tenant["alice"]


def test_lmms_evals_own_client_authenticates_with_url_credentials(api: str, tenant: dict[str, str]) -> None:
    url = api.replace("http://", f"http://token:{tenant['alice_token']}@")
    with UpstreamEvalClient(url, timeout=30) as upstream:  # httpx turns the URL's userinfo into Basic auth
        job_id = upstream.evaluate(model="huggingface", tasks=["mme"], num_gpus=0)["job_id"]
        assert upstream.get_job(job_id)["status"] == "queued"
    with UpstreamEvalClient(api, timeout=30) as anonymous, pytest.raises(httpx.HTTPStatusError) as refused:
        anonymous.get_queue_status()
    assert refused.value.response.status_code == 401


def test_our_client_without_a_token_is_refused_with_the_reason(api: str) -> None:
    with EvalClient(api, timeout=30) as client, pytest.raises(EvalServerError) as refused:
        client.get_queue_status()
    assert refused.value.response.status_code == 401 and "bearer token is required" in str(refused.value)


def test_reviews_are_cached_briefly_then_a_revoked_binding_takes_effect(
    api: str, tenant: dict[str, str], kube_emulator: KubeEmulator, kube_client: kubernetes.client.ApiClient,
    namespace: str,
) -> None:  # fmt: skip
    alice = {"Authorization": f"Bearer {tenant['alice_token']}"}

    def reviews() -> int:
        return sum(1 for r in kube_emulator.requests if r.resource in ("tokenreviews", "subjectaccessreviews"))

    assert httpx.get(f"{api}/queue", headers=alice).status_code == 200
    before = reviews()
    for _ in range(5):
        assert httpx.get(f"{api}/queue", headers=alice).status_code == 200
    assert reviews() == before  # answered from the caches

    kubernetes.client.RbacAuthorizationV1Api(kube_client).delete_namespaced_role_binding("alice-submits", namespace)
    assert httpx.get(f"{api}/queue", headers=alice).status_code == 200  # still cached (1 s here)
    time.sleep(1.2)
    assert httpx.get(f"{api}/queue", headers=alice).status_code == 403
    assert reviews() > before


def test_each_identity_is_rate_limited_with_retry_after(
    api_kubeconfig: str, namespace: str, shared_volumes: str, tenant: dict[str, str]
) -> None:
    settings = api_settings(api_kubeconfig, namespace, shared_volumes, rate_limit_per_second=0.5, rate_limit_burst=2)
    with ApiServer(settings) as server:
        alice = {"Authorization": f"Bearer {tenant['alice_token']}"}
        bob = {"Authorization": f"Bearer {tenant['bob_token']}"}
        answers = [httpx.get(f"{server.url}/queue", headers=alice) for _ in range(3)]
        assert [a.status_code for a in answers] == [200, 200, 429]
        assert answers[2].headers["Retry-After"] == "2"
        assert httpx.get(f"{server.url}/queue", headers=bob).status_code == 403  # bob's bucket is his own


def test_auth_none_on_a_public_address_says_so_at_start(
    api_kubeconfig: str, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    for host, warned in (("127.0.0.1", False), ("0.0.0.0", True)):
        caplog.clear()
        with ApiServer(ApiSettings(namespace=namespace, kubeconfig=api_kubeconfig, auth="none", host=host)) as server:
            assert httpx.get(f"{server.url}/queue").status_code == 200  # no token needed: the opt-in
        assert any("EVALKUBE_API_AUTH=none" in r.getMessage() for r in caplog.records) is warned, host


@pytest.fixture
def two_tenants(
    kube_emulator: KubeEmulator, kube_client: kubernetes.client.ApiClient, namespace: str
) -> dict[str, str]:
    """Team B's namespace beside the test's (team A's), each with a submitter ServiceAccount."""
    other = f"{namespace}-b"
    kubernetes.client.CoreV1Api(kube_client).create_namespace({"metadata": {"name": other}})
    rbac = kubernetes.client.RbacAuthorizationV1Api(kube_client)
    for ns in (namespace, other):
        kube_emulator.add_service_account_token(f"{ns}-trainer", ns, "trainer")
        rbac.create_namespaced_role(ns, {"metadata": {"name": "submitter"}, "rules": SUBMITTER_RULES})
        rbac.create_namespaced_role_binding(
            ns,
            {
                "metadata": {"name": "trainer-submits"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "submitter"},
                "subjects": [{"kind": "ServiceAccount", "name": "trainer", "namespace": ns}],
            },
        )
    return {"a": namespace, "b": other, "a_token": f"{namespace}-trainer", "b_token": f"{other}-trainer"}


def test_tenants_see_count_and_cancel_only_their_own_jobs(
    api_kubeconfig: str, namespace: str, shared_volumes: str, two_tenants: dict[str, str]
) -> None:
    settings = api_settings(api_kubeconfig, namespace, shared_volumes, namespaces=[two_tenants["b"]])
    with (
        ApiServer(settings) as server,
        EvalClient(server.url, timeout=30, token=two_tenants["a_token"]) as team_a,
        EvalClient(server.url, timeout=30, token=two_tenants["b_token"]) as team_b,
    ):
        # Each ServiceAccount's own namespace is its default: no namespace named.
        a_job = team_a.evaluate("huggingface", ["mme"], num_gpus=0)["job_id"]
        b_job = team_b.evaluate("huggingface", ["mme"], num_gpus=0)["job_id"]
        assert team_a.get_queue_status()["queued_jobs"] == [a_job]
        assert team_b.get_queue_status()["queued_jobs"] == [b_job]
        for foreign in [b_job]:
            with pytest.raises(EvalServerError) as unseen:
                team_a.get_job(foreign)  # not in A's namespace: it does not exist there
            assert unseen.value.response.status_code == 404
            with pytest.raises(EvalServerError) as uncancelled:
                team_a.cancel_job(foreign)
            assert uncancelled.value.response.status_code == 404
        assert team_b.get_job(b_job)["status"] == "queued"  # untouched by A
        metrics_a = httpx.get(
            f"{server.url}/metrics", headers={"Authorization": f"Bearer {two_tenants['a_token']}"}
        ).text
        assert 'evalkube_evaljobs{status="queued"} 1.0' in metrics_a  # A's count, not both teams'

    # Naming B's namespace is not enough without B's rights: a 403 naming it.
    with (
        ApiServer(settings) as server,
        EvalClient(server.url, timeout=30, token=two_tenants["a_token"], namespace=two_tenants["b"]) as intruder,
        pytest.raises(EvalServerError) as refused,
    ):
        intruder.get_queue_status()
    assert refused.value.response.status_code == 403 and two_tenants["b"] in str(refused.value.detail)


def test_a_namespace_the_api_does_not_serve_is_a_404_naming_the_served_ones(api: str, tenant: dict[str, str]) -> None:
    response = httpx.get(
        f"{api}/queue", params={"namespace": "elsewhere"}, headers={"Authorization": f"Bearer {tenant['alice_token']}"}
    )
    assert response.status_code == 404 and "not served by this API" in response.json()["detail"]


def test_serving_every_namespace_starts_a_tenant_on_first_use_of_an_existing_one(
    api_kubeconfig: str, namespace: str, shared_volumes: str, two_tenants: dict[str, str]
) -> None:
    settings = api_settings(api_kubeconfig, namespace, shared_volumes, namespaces=["*"])
    with (
        ApiServer(settings) as server,
        EvalClient(server.url, timeout=30, token=two_tenants["b_token"]) as team_b,
    ):
        b_job = team_b.evaluate("huggingface", ["mme"], num_gpus=0)["job_id"]  # B's namespace, never listed
        assert team_b.get_queue_status()["queued_jobs"] == [b_job]
        missing = httpx.get(
            f"{server.url}/queue",
            params={"namespace": "no-such-namespace"},
            headers={"Authorization": f"Bearer {two_tenants['b_token']}"},
        )
        # A name that is no namespace of the cluster starts no watch.
        assert missing.status_code == 404 and "every namespace of the cluster" in missing.json()["detail"]
