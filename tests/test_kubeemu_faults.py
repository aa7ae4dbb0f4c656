"""Fault injection: each kind is seen by the real clients as the real failure, only where a rule
matches, and the same seed replays the same faults.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import kubernetes
import pytest
import urllib3
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from kubeemu import KubeEmulator
from kubeemu.faults import FaultRule, Faults

GROUP, VERSION, PLURAL = "kubeemu.test", "v1", "evaljobs"
CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": f"{PLURAL}.{GROUP}"},
    "spec": {
        "group": GROUP,
        "scope": "Namespaced",
        "names": {"plural": PLURAL, "singular": "evaljob", "kind": "EvalJob"},
        "versions": [
            {
                "name": VERSION,
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}},
            }
        ],
    },
}


@pytest.fixture(scope="module")
def emu() -> Iterator[KubeEmulator]:
    emulator = KubeEmulator().start()
    emulator.apply_crd(CRD)
    yield emulator
    emulator.stop()


@pytest.fixture(autouse=True)
def no_rules_left(emu: KubeEmulator) -> Iterator[None]:
    yield
    emu.faults.clear()
    emu.faults.reset_counts()


@pytest.fixture(scope="module")
def api(emu: KubeEmulator, tmp_path_factory: pytest.TempPathFactory) -> client.ApiClient:
    path = emu.write_kubeconfig(tmp_path_factory.mktemp("kube") / "config", token="tests")
    return kubernetes.config.new_client_from_config(config_file=str(path))


@pytest.fixture
def custom(api: client.ApiClient) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(api)


@pytest.fixture
def core(api: client.ApiClient) -> client.CoreV1Api:
    return client.CoreV1Api(api)


@pytest.fixture
def ns(core: client.CoreV1Api) -> str:
    name = f"t-{uuid.uuid4().hex[:8]}"
    core.create_namespace({"metadata": {"name": name}})
    return name


def evaljob(name: str) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "EvalJob", "metadata": {"name": name}, "spec": {"n": 1}}


def create(custom: client.CustomObjectsApi, ns: str, name: str, **kwargs: Any) -> Any:
    return custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, evaljob(name), **kwargs)


def exists(emu: KubeEmulator, ns: str, name: str) -> bool:
    return emu.get_object(GROUP, PLURAL, name, ns) is not None


def api_error(call: Callable[..., Any], *args: Any, **kwargs: Any) -> ApiException:
    with pytest.raises(ApiException) as info:
        call(*args, **kwargs)
    return info.value


@pytest.mark.parametrize(
    ("code", "reason", "message"),
    [
        (500, "InternalError", "Internal error occurred: etcdserver: leader changed"),
        (503, "ServiceUnavailable", "the server is currently unable to handle the request"),
        (504, "Timeout", "Timeout: request did not complete within requested timeout - context deadline exceeded"),
    ],
)
def test_server_errors(
    emu: KubeEmulator, custom: client.CustomObjectsApi, ns: str, code: int, reason: str, message: str
) -> None:
    emu.faults.add(FaultRule("error", verbs={"create"}, resource=PLURAL, code=code))
    error = api_error(create, custom, ns, "e")
    body = json.loads(error.body)
    assert (error.status, body["kind"], body["reason"], body["message"], body["code"]) == (
        code,
        "Status",
        reason,
        message,
        code,
    )
    assert not exists(emu, ns, "e")
    assert [r.fault for r in emu.requests if r.name == "e" or r.path.endswith(f"/{ns}/{PLURAL}")][-1] == "error"


def test_throttle_is_429_with_retry_after(emu: KubeEmulator, custom: client.CustomObjectsApi, ns: str) -> None:
    emu.faults.add(FaultRule("throttle", verbs={"create"}, resource=PLURAL, retry_after=3))
    error = api_error(create, custom, ns, "t")
    assert (error.status, error.headers["Retry-After"], error.body) == (
        429,
        "3",
        "Too many requests, please try again later.\n",  # APF's plain text, not a Status
    )
    assert not exists(emu, ns, "t") and emu.faults.counts() == {"throttle": 1}


def test_a_throttled_get_is_retried_by_urllib3_after_retry_after(
    emu: KubeEmulator, custom: client.CustomObjectsApi, ns: str
) -> None:
    create(custom, ns, "t")
    emu.clear_requests()
    emu.faults.add(FaultRule("throttle", verbs={"get"}, resource=PLURAL, retry_after=1, limit=1))
    started = time.monotonic()
    assert custom.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "t")["metadata"]["name"] == "t"
    assert time.monotonic() - started >= 1.0
    assert [(r.verb, r.fault) for r in emu.requests] == [("get", "throttle"), ("get", "")]


def test_timeout_holds_then_drops_and_nothing_is_applied(
    emu: KubeEmulator, custom: client.CustomObjectsApi, ns: str
) -> None:
    emu.faults.add(FaultRule("timeout", verbs={"create"}, resource=PLURAL, delay=1.0))
    started = time.monotonic()
    with pytest.raises(urllib3.exceptions.ReadTimeoutError):
        create(custom, ns, "slowpoke", _request_timeout=0.3)
    assert time.monotonic() - started < 1.0
    time.sleep(1.0)  # the server has dropped it by now
    assert not exists(emu, ns, "slowpoke")
    emu.faults.clear()
    assert create(custom, ns, "slowpoke")["metadata"]["name"] == "slowpoke"


def test_slow_responses_still_answer(emu: KubeEmulator, custom: client.CustomObjectsApi, ns: str) -> None:
    create(custom, ns, "s")
    emu.faults.add(FaultRule("slow", verbs={"get"}, resource=PLURAL, delay=0.3))
    started = time.monotonic()
    assert custom.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "s")["metadata"]["name"] == "s"
    assert time.monotonic() - started >= 0.3


def test_lost_response_applies_the_write_but_the_client_sees_an_error(
    emu: KubeEmulator, custom: client.CustomObjectsApi, ns: str
) -> None:
    emu.faults.add(FaultRule("lost_response", verbs={"create"}, resource=PLURAL))
    with pytest.raises(urllib3.exceptions.ProtocolError) as info:
        create(custom, ns, "ghostwrite")
    assert isinstance(info.value.args[1], http.client.RemoteDisconnected)
    assert exists(emu, ns, "ghostwrite")
    emu.faults.clear()
    assert api_error(create, custom, ns, "ghostwrite").status == 409  # the retry a client makes: AlreadyExists


def test_conflict_on_status_writes_only(emu: KubeEmulator, custom: client.CustomObjectsApi, ns: str) -> None:
    create(custom, ns, "c")
    emu.faults.add(FaultRule("conflict", resource=f"{PLURAL}/status"))
    error = api_error(
        custom.patch_namespaced_custom_object_status, GROUP, VERSION, ns, PLURAL, "c", {"status": {"phase": "x"}}
    )
    assert (error.status, json.loads(error.body)["message"]) == (
        409,
        f'Operation cannot be fulfilled on {PLURAL}.{GROUP} "c": the object has been modified; '
        "please apply your changes to the latest version and try again",
    )
    assert "status" not in emu.get_object(GROUP, PLURAL, "c", ns)
    custom.patch_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "c", {"spec": {"n": 2}})  # not status
    assert custom.get_namespaced_custom_object_status(GROUP, VERSION, ns, PLURAL, "c")["spec"] == {"n": 2}


def test_watch_cut_mid_stream(emu: KubeEmulator, custom: client.CustomObjectsApi, ns: str) -> None:
    create(custom, ns, "a")
    create(custom, ns, "b")
    emu.faults.add(FaultRule("watch_cut", resource=PLURAL, after_events=1, delay=5))
    seen = []
    with pytest.raises(urllib3.exceptions.ProtocolError):
        for event in kubernetes.watch.Watch().stream(
            custom.list_namespaced_custom_object, GROUP, VERSION, ns, PLURAL, timeout_seconds=5
        ):
            seen.append(event["object"]["metadata"]["name"])
    assert seen == ["a"]


def test_watch_expired_on_resume_only(emu: KubeEmulator, custom: client.CustomObjectsApi, ns: str) -> None:
    listed = custom.list_namespaced_custom_object(GROUP, VERSION, ns, PLURAL)
    version = listed["metadata"]["resourceVersion"]
    emu.faults.add(FaultRule("watch_expired", resource=PLURAL))
    watch = kubernetes.watch.Watch()
    fresh = watch.stream(custom.list_namespaced_custom_object, GROUP, VERSION, ns, PLURAL, timeout_seconds=1)
    assert list(fresh) == []  # no resourceVersion: not a resume, not hit
    resumed = kubernetes.watch.Watch().stream(
        custom.list_namespaced_custom_object, GROUP, VERSION, ns, PLURAL, resource_version=version, timeout_seconds=1
    )
    with pytest.raises(ApiException) as info:
        list(resumed)
    assert info.value.status == 410 and "too old resource version" in info.value.reason
    assert emu.faults.counts() == {"watch_expired": 1}


def test_rules_never_touch_what_they_do_not_match(
    emu: KubeEmulator, custom: client.CustomObjectsApi, core: client.CoreV1Api, ns: str
) -> None:
    emu.faults.add(
        FaultRule("error", verbs={"create"}, resource=PLURAL, namespace=ns, token="tests"),
        FaultRule("error", resource="configmaps", token="someone-else"),
    )
    for i in range(5):
        core.create_namespaced_config_map(ns, {"metadata": {"name": f"cm-{i}"}})
    other = f"{ns}-o"
    core.create_namespace({"metadata": {"name": other}})
    create(custom, other, "elsewhere")
    custom.get_namespaced_custom_object(GROUP, VERSION, other, PLURAL, "elsewhere")
    assert emu.faults.counts() == {}
    assert api_error(create, custom, ns, "hit").status == 500
    assert emu.faults.counts() == {"error": 1}


def test_limit_caps_a_rule(emu: KubeEmulator, core: client.CoreV1Api, ns: str) -> None:
    emu.faults.add(FaultRule("error", verbs={"create"}, resource="configmaps", limit=2))
    outcomes = []
    for i in range(4):
        try:
            core.create_namespaced_config_map(ns, {"metadata": {"name": f"cm-{i}"}})
            outcomes.append("ok")
        except ApiException as error:
            outcomes.append(str(error.status))
    assert outcomes == ["500", "500", "ok", "ok"]


def hits(emu: KubeEmulator, core: client.CoreV1Api, ns: str, seed: int) -> list[int]:
    emu.faults.clear()
    emu.faults.seed = seed
    emu.faults.add(FaultRule("error", verbs={"create"}, resource="configmaps", rate=0.3))
    failed = []
    for i in range(40):
        try:
            core.create_namespaced_config_map(ns, {"metadata": {"name": f"cm-{i}"}})
        except ApiException:
            failed.append(i)
        else:
            core.delete_namespaced_config_map(f"cm-{i}", ns)
    return failed


def test_the_same_seed_replays_the_same_faults(emu: KubeEmulator, core: client.CoreV1Api, ns: str) -> None:
    first = hits(emu, core, ns, seed=11)
    assert 4 <= len(first) <= 20  # about 30% of 40
    assert hits(emu, core, ns, seed=11) == first
    assert hits(emu, core, ns, seed=12) != first


def test_decisions_do_not_depend_on_how_requests_interleave() -> None:
    def run(order: list[tuple[str, int]]) -> set[tuple[str, int]]:
        faults = Faults(seed=3)
        faults.add(FaultRule("error", verbs={"update"}, resource="evaljobs", rate=0.5))
        return {(name, n) for name, n in order if faults.decide("update", GROUP, PLURAL, "ns", name, None)}

    interleaved = [(name, n) for n in range(20) for name in ("a", "b", "c")]
    grouped = [(name, n) for name in ("c", "a", "b") for n in range(20)]
    assert run(interleaved) == run(grouped) and run(interleaved)


def test_no_rules_cost_nothing_measurable(emu: KubeEmulator, core: client.CoreV1Api, ns: str) -> None:
    core.create_namespaced_config_map(ns, {"metadata": {"name": "hot"}})

    def median_get() -> float:
        times = []
        for _ in range(60):
            started = time.perf_counter()
            core.read_namespaced_config_map("hot", ns)
            times.append(time.perf_counter() - started)
        return sorted(times)[len(times) // 2]

    baseline = median_get()
    emu.faults.add(FaultRule("error", verbs={"create"}, resource="nothing-like-this"))
    with_rules = median_get()
    assert with_rules < baseline * 1.5 + 0.001, (baseline, with_rules)


# ---- the real kopf under faults ---------------------------------------------------------------

OPERATOR = """
import kopf
import kubernetes


@kopf.on.startup()
def configure(settings, **_):
    settings.networking.error_backoffs = [0.1, 0.2, 0.3, 0.5, 1.0]
    settings.watching.reconnect_backoff = 0.1


@kopf.on.create("kubeemu.test", "v1", "evaljobs", backoff=0.2)
def created(body, name, namespace, patch, **_):
    child = {"metadata": {"name": f"{name}-results"}, "data": {"n": "1"}}
    kopf.adopt(child, owner=body)
    try:
        kubernetes.client.CoreV1Api().create_namespaced_config_map(namespace, child)
    except kubernetes.client.exceptions.ApiException as error:
        if error.status != 409:   # a retried handler whose first create went through
            raise
    patch.status["phase"] = "Done"
"""


def test_kopf_converges_through_every_kind_of_fault(emu: KubeEmulator, ns: str, tmp_path: Path) -> None:
    """kopf retries 5xx and 429 (honouring Retry-After), reconnects cut watches, relists after 410."""
    emu.faults.seed = 5
    emu.faults.add(
        FaultRule("watch_cut", resource=PLURAL, token="operator", after_events=1, delay=0.5, limit=3),
        FaultRule("watch_expired", resource=PLURAL, token="operator", limit=1),
        FaultRule("throttle", verbs={"patch"}, resource=PLURAL, token="operator", limit=2),
        FaultRule("error", verbs={"patch"}, resource=f"{PLURAL}*", token="operator", code=503, limit=2),
        FaultRule("error", verbs={"create"}, resource="configmaps", token="operator", limit=1),
        FaultRule("lost_response", verbs={"create"}, resource="configmaps", token="operator", limit=1),
    )
    operator = tmp_path / "operator.py"
    operator.write_text(OPERATOR)
    kubeconfig = emu.write_kubeconfig(tmp_path / "operator", token="operator")
    log = (tmp_path / "kopf.log").open("w+")
    proc = subprocess.Popen(
        [sys.executable, "-m", "kopf", "run", "--standalone", "--namespace", ns, "--verbose", str(operator)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "KUBECONFIG": str(kubeconfig)},
    )
    try:
        api = client.CustomObjectsApi(
            kubernetes.config.new_client_from_config(str(emu.write_kubeconfig(tmp_path / "t", token="tests")))
        )
        for i in range(3):
            create(api, ns, f"job-{i}")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            done = [emu.get_object(GROUP, PLURAL, f"job-{i}", ns) for i in range(3)]
            if all(o and (o.get("status") or {}).get("phase") == "Done" for o in done):
                break
            time.sleep(0.1)
        else:
            raise AssertionError((tmp_path / "kopf.log").read_text()[-4000:])
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(20)
        log.close()
    children = [c["metadata"]["name"] for c in emu.list_objects("", "configmaps", ns)]
    assert sorted(c for c in children if c.endswith("-results")) == [f"job-{i}-results" for i in range(3)]
    counts = emu.faults.counts()
    assert set(counts) == {"watch_cut", "watch_expired", "throttle", "error", "lost_response"}, counts
    marked = {r.fault for r in emu.requests if r.token == "operator"} - {""}
    assert marked == set(counts)
