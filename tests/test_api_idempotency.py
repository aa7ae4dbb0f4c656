"""One EvalJob per evaluation, even when an answer is lost on the way back.

The API names each EvalJob from a key (the client's Idempotency-Key, or one it draws) and retries
its own create with that name, so a create that went through but whose answer was lost is found
again instead of made twice. Our clients send a fresh key per `evaluate` call and retry the call
with it; lmms-eval's own client sends none, and is covered by the API's own retry.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from lmms_eval.entrypoints.client import EvalClient as UpstreamEvalClient

from evalkube import EvalClient, resource
from evalkube.api.evaljobs import ANNOTATION_IDEMPOTENCY_KEY, name_for_key
from evalkube.api.settings import ApiSettings

from harness.api_server import ApiServer
from kubeemu import FaultRule, KubeEmulator

pytestmark = pytest.mark.timeout(60)

BODY = {"model": "huggingface", "tasks": ["mme"]}


@pytest.fixture(autouse=True)
def no_faults_left(kube_emulator: KubeEmulator) -> Iterator[None]:
    yield
    kube_emulator.faults.clear()


def evaljobs(emulator: KubeEmulator, namespace: str) -> list[dict]:
    return emulator.list_objects(resource.GROUP, resource.PLURAL, namespace)


def creates(emulator: KubeEmulator, namespace: str) -> list[str]:
    """The faults of the EvalJob creates the apiserver received ('' for none)."""
    return [
        r.fault
        for r in emulator.requests
        if (r.verb, r.resource, r.namespace) == ("create", resource.PLURAL, namespace) and not r.subresource
    ]


def lose_next_create(emulator: KubeEmulator, namespace: str) -> None:
    emulator.faults.add(
        FaultRule("lost_response", verbs={"create"}, resource=resource.PLURAL, namespace=namespace, limit=1)
    )


def test_a_lost_create_answer_gives_one_evaljob_and_no_error(
    kube_emulator: KubeEmulator, namespace: str, eval_client: EvalClient
) -> None:
    lose_next_create(kube_emulator, namespace)
    answer = eval_client.evaluate(model="huggingface", tasks=["mme"])
    [evaljob] = evaljobs(kube_emulator, namespace)
    assert answer["job_id"] == evaljob["metadata"]["name"]
    assert creates(kube_emulator, namespace) == ["lost_response", ""]  # the retry found it: AlreadyExists


def test_lmms_evals_own_client_without_a_key_is_covered_by_the_apis_retry(
    kube_emulator: KubeEmulator, namespace: str, api_url: str
) -> None:
    lose_next_create(kube_emulator, namespace)
    with UpstreamEvalClient(api_url, timeout=30) as upstream:
        answer = upstream.evaluate(model="huggingface", tasks=["mme"])
    [evaljob] = evaljobs(kube_emulator, namespace)
    assert answer["job_id"] == evaljob["metadata"]["name"]
    assert len(evaljob["metadata"]["annotations"][ANNOTATION_IDEMPOTENCY_KEY]) >= 24  # a key the API drew


def test_a_repeated_key_returns_the_same_evaljob(
    kube_emulator: KubeEmulator, namespace: str, http: httpx.Client
) -> None:
    first = http.post("/evaluate", json=BODY, headers={"Idempotency-Key": "step-1000"})
    again = http.post("/evaluate", json=BODY, headers={"Idempotency-Key": "step-1000"})
    assert (first.status_code, again.status_code) == (200, 200)
    assert first.json()["job_id"] == again.json()["job_id"] == name_for_key(namespace, "step-1000")
    assert len(evaljobs(kube_emulator, namespace)) == 1


def test_a_key_reused_for_another_request_is_refused(
    kube_emulator: KubeEmulator, namespace: str, http: httpx.Client
) -> None:
    assert http.post("/evaluate", json=BODY, headers={"Idempotency-Key": "k1"}).status_code == 200
    reused = http.post("/evaluate", json={**BODY, "limit": 5}, headers={"Idempotency-Key": "k1"})
    assert reused.status_code == 422
    [detail] = reused.json()["detail"]
    assert detail["loc"] == ["header", "Idempotency-Key"]
    assert "already used for a different request" in detail["msg"]
    assert len(evaljobs(kube_emulator, namespace)) == 1


def test_a_key_whose_name_a_kubectl_user_took_is_a_conflict(
    kube_emulator: KubeEmulator, namespace: str, http: httpx.Client, cluster
) -> None:
    cluster.apply({"model": "huggingface", "tasks": ["mme"]}, name=name_for_key(namespace, "taken"))
    answer = http.post("/evaluate", json=BODY, headers={"Idempotency-Key": "taken"})
    assert answer.status_code == 409
    assert "was not created with it" in answer.json()["detail"][0]["msg"]


@pytest.mark.parametrize(
    ("key", "reason"),
    [("", "must not be empty"), ("a b", "without spaces"), ("x" * 256, "at most 255 characters")],
)
def test_a_malformed_key_is_refused_naming_the_header(http: httpx.Client, key: str, reason: str) -> None:
    answer = http.post("/evaluate", json=BODY, headers={"Idempotency-Key": key})
    assert answer.status_code == 422
    [detail] = answer.json()["detail"]
    assert detail["loc"] == ["header", "Idempotency-Key"] and reason in detail["msg"]


def test_transient_apiserver_failures_are_retried_to_one_evaljob(
    kube_emulator: KubeEmulator, namespace: str, eval_client: EvalClient
) -> None:
    """Six 500s outlast the API's own retries (503 to the client), and the client's retry with the
    same key then lands: still one EvalJob."""
    kube_emulator.faults.add(
        FaultRule("error", verbs={"create"}, resource=resource.PLURAL, namespace=namespace, code=500, limit=6)
    )
    answer = eval_client.evaluate(model="huggingface", tasks=["mme"])
    [evaljob] = evaljobs(kube_emulator, namespace)
    assert answer["job_id"] == evaljob["metadata"]["name"]
    assert creates(kube_emulator, namespace).count("error") == 6


def test_a_timed_out_create_is_retried_and_made_once(
    kube_emulator: KubeEmulator, namespace: str, api_kubeconfig: str
) -> None:
    kube_emulator.faults.add(
        FaultRule("timeout", verbs={"create"}, resource=resource.PLURAL, namespace=namespace, delay=1.0, limit=1)
    )
    settings = ApiSettings(namespace=namespace, kubeconfig=api_kubeconfig, kube_timeout_seconds=0.5)
    with ApiServer(settings) as server, EvalClient(server.url, timeout=30) as client:
        answer = client.evaluate(model="huggingface", tasks=["mme"])
    [evaljob] = evaljobs(kube_emulator, namespace)
    assert answer["job_id"] == evaljob["metadata"]["name"]


def test_the_api_restarting_under_a_submission_makes_one_evaljob(
    kube_emulator: KubeEmulator, namespace: str, api_kubeconfig: str
) -> None:
    """The answer to the client is lost (the API went away after creating): the client's retry with
    the same key reaches the next API process, which finds the EvalJob instead of making another."""
    settings = ApiSettings(namespace=namespace, kubeconfig=api_kubeconfig)
    with ApiServer(settings) as first:
        made = httpx.post(f"{first.url}/evaluate", json=BODY, headers={"Idempotency-Key": "lost"}).json()
    with ApiServer(settings) as second:
        again = httpx.post(f"{second.url}/evaluate", json=BODY, headers={"Idempotency-Key": "lost"}).json()
    assert made["job_id"] == again["job_id"]
    assert len(evaljobs(kube_emulator, namespace)) == 1
