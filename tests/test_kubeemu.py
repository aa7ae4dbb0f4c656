"""Tests of the Kubernetes API emulator, driven through the real `kubernetes` client.

Each behaviour is checked the way evalkube's components will exercise it:
typed CoreV1Api/BatchV1Api, CustomObjectsApi, ApiextensionsV1Api and Watch.
"""

from __future__ import annotations

import json
import os
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import kubernetes
import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from kubeemu import KubeEmulator

GROUP, VERSION, PLURAL = "kubeemu.test", "v1", "widgets"
REPO = Path(__file__).resolve().parent.parent

WIDGET_CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": f"{PLURAL}.{GROUP}"},
    "spec": {
        "group": GROUP,
        "scope": "Namespaced",
        "names": {
            "plural": PLURAL,
            "singular": "widget",
            "kind": "Widget",
            "shortNames": ["wd"],
            "categories": ["all"],
        },
        "versions": [
            {
                "name": VERSION,
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {
                                "type": "object",
                                "required": ["size"],
                                "properties": {
                                    "size": {"type": "integer", "minimum": 1, "maximum": 10},
                                    "ratio": {"type": "number", "minimum": 0, "exclusiveMinimum": True},
                                    "name": {"type": "string", "minLength": 2, "maxLength": 8, "pattern": "^[a-z]+$"},
                                    "mode": {"type": "string", "enum": ["fast", "slow"], "default": "fast"},
                                    "tags": {
                                        "type": "array",
                                        "minItems": 1,
                                        "maxItems": 3,
                                        "items": {"type": "string"},
                                    },
                                    "port": {"x-kubernetes-int-or-string": True},
                                    "enabled": {"type": "boolean"},
                                    "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                                    "limits": {"type": "object", "additionalProperties": {"type": "integer"}},
                                    "nested": {
                                        "type": "object",
                                        "default": {},
                                        "properties": {"depth": {"type": "integer", "default": 3}},
                                    },
                                },
                            },
                            "status": {
                                "type": "object",
                                "properties": {
                                    "phase": {"type": "string", "enum": ["Pending", "Done"]},
                                    "count": {"type": "integer"},
                                },
                            },
                        },
                    }
                },
            }
        ],
    },
}


# ---- fixtures ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def emu() -> Iterator[KubeEmulator]:
    emulator = KubeEmulator(bookmark_interval=0.2).start()
    emulator.apply_crd(WIDGET_CRD)
    yield emulator
    emulator.stop()


@pytest.fixture(scope="module")
def api(emu: KubeEmulator, tmp_path_factory: pytest.TempPathFactory) -> client.ApiClient:
    path = emu.write_kubeconfig(tmp_path_factory.mktemp("kube") / "config", token="tests")
    return kubernetes.config.new_client_from_config(config_file=str(path))


@pytest.fixture
def core(api: client.ApiClient) -> client.CoreV1Api:
    return client.CoreV1Api(api)


@pytest.fixture
def batch(api: client.ApiClient) -> client.BatchV1Api:
    return client.BatchV1Api(api)


@pytest.fixture
def custom(api: client.ApiClient) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(api)


@pytest.fixture
def ns(core: client.CoreV1Api) -> str:
    """A fresh namespace per test, so tests never see each other's objects."""
    name = f"t-{uuid.uuid4().hex[:8]}"
    core.create_namespace({"metadata": {"name": name}})
    return name


# ---- helpers -------------------------------------------------------------------------------


def wait_for(predicate: Callable[[], Any], timeout: float = 5.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(0.02)
    raise AssertionError("condition not met in time")


def status_of(exc: ApiException) -> dict[str, Any]:
    body = json.loads(exc.body)
    assert body["kind"] == "Status" and body["apiVersion"] == "v1" and body["status"] == "Failure"
    assert body["code"] == exc.status
    return body


def raises(status: int, call: Callable[..., Any], *args: Any, **kwargs: Any) -> dict[str, Any]:
    with pytest.raises(ApiException) as info:
        call(*args, **kwargs)
    assert info.value.status == status, info.value.body
    return status_of(info.value)


def widget(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Widget",
        "metadata": {"name": name},
        "spec": {"size": 1, **spec},
    }


def owner_ref(obj: dict[str, Any] | Any, block: bool = False) -> dict[str, Any]:
    o = obj if isinstance(obj, dict) else obj.to_dict(serialize=True)
    return {
        "apiVersion": o["apiVersion"],
        "kind": o["kind"],
        "name": o["metadata"]["name"],
        "uid": o["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": block,
    }


def job_body(name: str, owners: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "ownerReferences": owners or []},
        "spec": {
            "template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "main", "image": "busybox"}]}}
        },
    }


def pod_body(name: str, owners: list[dict[str, Any]] | None = None, **meta: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "ownerReferences": owners or [], **meta},
        "spec": {"containers": [{"name": "main", "image": "busybox"}]},
    }


def http_get(emu: KubeEmulator, path: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(emu.url + path) as rsp:
            return rsp.status, json.loads(rsp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def rv(obj: dict[str, Any]) -> int:
    return int(obj["metadata"]["resourceVersion"])


# ---- discovery -----------------------------------------------------------------------------


def test_discovery_with_and_without_trailing_slashes(emu: KubeEmulator) -> None:
    for path in (
        "/api",
        "/api/",
        "/apis",
        "/apis/",
        "/api/v1",
        "/api/v1/",
        "/apis/batch/v1",
        "/apis/batch/v1/",
        "/apis/batch",
        "/version",
        "/version/",
    ):
        code, _ = http_get(emu, path)
        assert code == 200, path
    assert http_get(emu, "/apis/nope.example/v1")[0] == 404
    _, core_v1 = http_get(emu, "/api/v1")
    names = {r["name"] for r in core_v1["resources"]}
    assert {
        "namespaces",
        "pods",
        "pods/log",
        "pods/status",
        "configmaps",
        "events",
        "serviceaccounts",
        "secrets",
    } <= names
    _, groups = http_get(emu, "/apis")
    served = {g["name"] for g in groups["groups"]}
    assert {"batch", "apiextensions.k8s.io", "events.k8s.io", "coordination.k8s.io", GROUP} <= served


def test_discovery_through_the_client_models(api: client.ApiClient) -> None:
    versions = client.CoreApi(api).get_api_versions()  # needs serverAddressByClientCIDRs
    assert versions.versions == ["v1"] and versions.server_address_by_client_cidrs
    assert client.VersionApi(api).get_code().major == "1"
    jobs = {r.name: r for r in client.BatchV1Api(api).get_api_resources().resources}
    assert set(jobs) == {"jobs", "jobs/status"} and jobs["jobs"].namespaced
    assert client.CoordinationV1Api(api).get_api_resources().resources[0].name == "leases"
    widgets = {r.name: r for r in client.CustomObjectsApi(api).get_api_resources(GROUP, VERSION).resources}
    assert set(widgets) == {"widgets", "widgets/status"}
    main = widgets["widgets"]
    assert (main.kind, main.singular_name, main.namespaced) == ("Widget", "widget", True)
    assert main.short_names == ["wd"] and main.categories == ["all"] and "watch" in main.verbs
    assert sorted(widgets["widgets/status"].verbs) == ["get", "patch", "update"]


# ---- create, names, metadata ---------------------------------------------------------------


def test_create_sets_metadata_and_answers_201(custom: client.CustomObjectsApi, ns: str) -> None:
    data, code, _ = custom.create_namespaced_custom_object_with_http_info(GROUP, VERSION, ns, PLURAL, widget("w1"))
    assert code == 201
    meta = data["metadata"]
    assert meta["namespace"] == ns and meta["generation"] == 1 and meta["creationTimestamp"].endswith("Z")
    assert uuid.UUID(meta["uid"]) and int(meta["resourceVersion"]) > 0
    assert custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, widget("w2")) is not None
    assert (
        raises(409, custom.create_namespaced_custom_object, GROUP, VERSION, ns, PLURAL, widget("w1"))["message"]
        == 'widgets.kubeemu.test "w1" already exists'
    )


def test_generate_name(core: client.CoreV1Api, ns: str) -> None:
    names = {
        core.create_namespaced_config_map(ns, {"metadata": {"generateName": "cm-"}}).metadata.name for _ in range(20)
    }
    assert len(names) == 20
    alphabet = set("bcdfghjklmnpqrstvwxz2456789")  # Kubernetes' own: no vowels, no look-alikes
    assert all(len(n) == 8 and n.startswith("cm-") and set(n[3:]) <= alphabet for n in names)


def test_name_validation(core: client.CoreV1Api, custom: client.CustomObjectsApi, ns: str) -> None:
    body = raises(422, core.create_namespaced_config_map, ns, {"metadata": {"name": "Bad_Name"}})
    assert body["reason"] == "Invalid" and body["details"]["causes"][0]["field"] == "metadata.name"
    assert "RFC 1123 subdomain" in body["message"]
    body = raises(
        422,
        custom.create_namespaced_custom_object,
        GROUP,
        VERSION,
        ns,
        PLURAL,
        {"apiVersion": f"{GROUP}/{VERSION}", "kind": "Widget", "metadata": {}, "spec": {"size": 1}},
    )
    assert "name or generateName is required" in body["message"]
    assert raises(422, core.create_namespace, {"metadata": {"name": "has.dot"}})["details"]["kind"] == "Namespace"
    bad_label = {"metadata": {"name": "x", "labels": {"model": "org/name:v1"}}}
    assert (
        raises(422, core.create_namespaced_config_map, ns, bad_label)["details"]["causes"][0]["field"]
        == "metadata.labels"
    )


def test_builtin_validation_catches_real_cluster_errors(
    core: client.CoreV1Api, batch: client.BatchV1Api, ns: str
) -> None:
    causes = raises(
        422, core.create_namespaced_config_map, ns, {"metadata": {"name": "r"}, "data": {"results/a.json": "{}"}}
    )["details"]["causes"]
    assert causes[0]["field"] == "data[results/a.json]"
    job = job_body("j")
    job["spec"]["template"]["spec"]["restartPolicy"] = "Always"
    assert "Unsupported value" in raises(422, batch.create_namespaced_job, ns, job)["message"]
    assert (
        raises(422, core.create_namespaced_pod, ns, {"metadata": {"name": "p"}, "spec": {"containers": []}})["details"][
            "causes"
        ][0]["field"]
        == "spec.containers"
    )


def test_job_gets_selector_and_template_labels(batch: client.BatchV1Api, ns: str) -> None:
    job = batch.create_namespaced_job(ns, job_body("labelled"))
    uid = job.metadata.uid
    assert job.spec.selector.match_labels == {"batch.kubernetes.io/controller-uid": uid}
    assert job.spec.template.metadata.labels["job-name"] == "labelled"
    assert job.spec.backoff_limit == 6 and job.status is None


# ---- namespaces ----------------------------------------------------------------------------


def test_namespaces_are_objects(core: client.CoreV1Api, ns: str) -> None:
    default = core.read_namespace("default")
    assert default.kind == "Namespace" and default.status.phase == "Active"
    assert default.metadata.labels["kubernetes.io/metadata.name"] == "default"
    core.patch_namespace(ns, {"metadata": {"labels": {"team": "eval"}}})
    assert core.read_namespace(ns).metadata.labels["team"] == "eval"
    body = raises(404, core.create_namespaced_config_map, "missing-ns", {"metadata": {"name": "x"}})
    assert body["message"] == 'namespaces "missing-ns" not found' and body["details"]["kind"] == "namespaces"
    assert raises(404, core.read_namespaced_config_map, "nope", ns)["message"] == 'configmaps "nope" not found'


def test_namespace_deletion_removes_its_content(core: client.CoreV1Api, ns: str) -> None:
    core.create_namespaced_config_map(ns, {"metadata": {"name": "a"}})
    core.create_namespaced_config_map(ns, {"metadata": {"name": "held", "finalizers": ["x.io/hold"]}})
    core.delete_namespace(ns)
    assert core.read_namespace(ns).status.phase == "Terminating"
    assert raises(403, core.create_namespaced_config_map, ns, {"metadata": {"name": "b"}})["reason"] == "Forbidden"
    assert [c.metadata.name for c in core.list_namespaced_config_map(ns).items] == ["held"]
    core.patch_namespaced_config_map("held", ns, {"metadata": {"finalizers": None}})
    raises(404, core.read_namespace, ns)


# ---- optimistic concurrency, generation, status subresource --------------------------------


def test_stale_resource_version_conflicts(custom: client.CustomObjectsApi, ns: str) -> None:
    obj = custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, widget("c"))
    custom.patch_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "c", {"spec": {"size": 2}})
    obj["spec"]["size"] = 3
    body = raises(409, custom.replace_namespaced_custom_object, GROUP, VERSION, ns, PLURAL, "c", obj)
    assert body["reason"] == "Conflict"
    assert body["message"] == (
        'Operation cannot be fulfilled on widgets.kubeemu.test "c": the object has been '
        "modified; please apply your changes to the latest version and try again"
    )
    assert body["details"] == {"name": "c", "group": GROUP, "kind": "widgets"}
    stale = {"metadata": {"resourceVersion": obj["metadata"]["resourceVersion"]}, "spec": {"size": 4}}
    raises(409, custom.patch_namespaced_custom_object, GROUP, VERSION, ns, PLURAL, "c", stale)
    del obj["metadata"]["resourceVersion"]  # a CR PUT must carry a resourceVersion
    assert (
        "must be specified for an update"
        in raises(422, custom.replace_namespaced_custom_object, GROUP, VERSION, ns, PLURAL, "c", obj)["message"]
    )


def test_generation_and_resource_version_rules(custom: client.CustomObjectsApi, ns: str) -> None:
    args = (GROUP, VERSION, ns, PLURAL, "g")
    obj = custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, widget("g"))
    assert obj["metadata"]["generation"] == 1
    meta_only = custom.patch_namespaced_custom_object(*args, {"metadata": {"labels": {"a": "b"}}})
    assert meta_only["metadata"]["generation"] == 1 and rv(meta_only) > rv(obj)
    status = custom.patch_namespaced_custom_object_status(*args, {"status": {"phase": "Pending"}})
    assert status["metadata"]["generation"] == 1 and rv(status) > rv(meta_only)
    spec = custom.patch_namespaced_custom_object(*args, {"spec": {"size": 5}})
    assert spec["metadata"]["generation"] == 2
    noop = custom.patch_namespaced_custom_object(*args, {"spec": {"size": 5}})
    assert noop["metadata"]["resourceVersion"] == spec["metadata"]["resourceVersion"]


def test_status_subresource_isolation(custom: client.CustomObjectsApi, ns: str) -> None:
    args = (GROUP, VERSION, ns, PLURAL, "s")
    created = custom.create_namespaced_custom_object(
        GROUP, VERSION, ns, PLURAL, {**widget("s"), "status": {"phase": "Done"}}
    )
    assert "status" not in created  # create ignores .status
    custom.patch_namespaced_custom_object_status(*args, {"status": {"phase": "Pending", "count": 1}})
    main = custom.patch_namespaced_custom_object(*args, {"spec": {"size": 2}, "status": {"phase": "Done"}})
    assert main["status"] == {"phase": "Pending", "count": 1} and main["spec"]["size"] == 2
    via_status = custom.patch_namespaced_custom_object_status(
        *args, {"spec": {"size": 9}, "metadata": {"labels": {"x": "y"}}, "status": {"count": 2}}
    )
    assert via_status["spec"]["size"] == 2 and "labels" not in via_status["metadata"]
    assert via_status["status"] == {"phase": "Pending", "count": 2}
    current = custom.get_namespaced_custom_object_status(*args)
    current["status"] = {"phase": "Done"}
    replaced = custom.replace_namespaced_custom_object_status(*args, current)
    assert replaced["status"] == {"phase": "Done"}
    bad = raises(422, custom.patch_namespaced_custom_object_status, *args, {"status": {"phase": "Lost"}})
    assert bad["details"]["causes"][0]["field"] == "status.phase"


def test_builtin_status_subresources(core: client.CoreV1Api, batch: client.BatchV1Api, ns: str) -> None:
    pod = core.create_namespaced_pod(ns, {**pod_body("p"), "status": {"phase": "Running"}})
    assert pod.status.phase == "Pending"
    core.patch_namespaced_pod("p", ns, {"status": {"phase": "Failed"}})
    assert core.read_namespaced_pod("p", ns).status.phase == "Pending"
    core.patch_namespaced_pod_status("p", ns, {"status": {"phase": "Running"}})
    assert core.read_namespaced_pod_status("p", ns).status.phase == "Running"
    batch.create_namespaced_job(ns, job_body("j"))
    batch.patch_namespaced_job_status("j", ns, {"status": {"active": 1}})
    assert batch.read_namespaced_job("j", ns).status.active == 1


# ---- patch flavours ------------------------------------------------------------------------


def test_json_patch(custom: client.CustomObjectsApi, ns: str) -> None:
    args = (GROUP, VERSION, ns, PLURAL, "jp")
    obj = custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, widget("jp", tags=["a", "b"]))
    ops = [
        {"op": "test", "path": "/metadata/resourceVersion", "value": obj["metadata"]["resourceVersion"]},
        {"op": "add", "path": "/metadata/annotations", "value": {}},
        {"op": "add", "path": "/metadata/annotations/evalkube.dev~1owner", "value": "x~y"},
        {"op": "add", "path": "/spec/tags/-", "value": "c"},
        {"op": "remove", "path": "/spec/tags/0"},
        {"op": "replace", "path": "/spec/size", "value": 3},
        {"op": "copy", "from": "/spec/tags/0", "path": "/spec/name"},
        {"op": "move", "from": "/spec/name", "path": "/metadata/annotations/moved"},
    ]
    patched = custom.patch_namespaced_custom_object(*args, ops, _content_type="application/json-patch+json")
    assert patched["metadata"]["annotations"] == {"evalkube.dev/owner": "x~y", "moved": "b"}
    assert patched["spec"]["tags"] == ["b", "c"] and patched["spec"]["size"] == 3 and "name" not in patched["spec"]
    stale = [
        {"op": "test", "path": "/metadata/resourceVersion", "value": obj["metadata"]["resourceVersion"]},
        {"op": "replace", "path": "/spec/size", "value": 4},
    ]
    body = raises(422, custom.patch_namespaced_custom_object, *args, stale, _content_type="application/json-patch+json")
    assert body["reason"] == "Invalid" and "test failed" in body["details"]["causes"][0]["message"]
    raises(
        422,
        custom.patch_namespaced_custom_object,
        *args,
        [{"op": "remove", "path": "/spec/nothing"}],
        _content_type="application/json-patch+json",
    )


def test_merge_patch_null_deletes(custom: client.CustomObjectsApi, ns: str) -> None:
    args = (GROUP, VERSION, ns, PLURAL, "mp")
    custom.create_namespaced_custom_object(
        GROUP, VERSION, ns, PLURAL, widget("mp", tags=["a"], limits={"cpu": 1, "mem": 2})
    )
    patched = custom.patch_namespaced_custom_object(*args, {"spec": {"tags": ["z"], "limits": {"cpu": None}}})
    assert patched["spec"]["tags"] == ["z"] and patched["spec"]["limits"] == {"mem": 2}


def test_strategic_merge_vs_merge_on_conditions(core: client.CoreV1Api, batch: client.BatchV1Api, ns: str) -> None:
    core.create_namespaced_pod(ns, pod_body("p", finalizers=["a.io/x"]))
    ready = {"type": "Ready", "status": "False"}
    sched = {"type": "PodScheduled", "status": "True"}
    core.patch_namespaced_pod_status("p", ns, {"status": {"conditions": [ready]}})  # strategic (dict body)
    core.patch_namespaced_pod_status("p", ns, {"status": {"conditions": [sched]}})
    pod = core.read_namespaced_pod("p", ns)
    assert [c.type for c in pod.status.conditions] == ["Ready", "PodScheduled"]
    core.patch_namespaced_pod_status("p", ns, {"status": {"conditions": [{"type": "Ready", "status": "True"}]}})
    pod = core.read_namespaced_pod("p", ns)
    assert {c.type: c.status for c in pod.status.conditions} == {"Ready": "True", "PodScheduled": "True"}
    core.patch_namespaced_pod_status(
        "p", ns, {"status": {"conditions": [sched]}}, _content_type="application/merge-patch+json"
    )
    assert [c.type for c in core.read_namespaced_pod("p", ns).status.conditions] == ["PodScheduled"]
    # containers merge by name; finalizers merge as a set; `[]` removes nothing
    core.patch_namespaced_pod(
        "p",
        ns,
        {
            "metadata": {"finalizers": []},
            "spec": {"containers": [{"name": "main", "image": "alpine"}, {"name": "side", "image": "nginx"}]},
        },
    )
    pod = core.read_namespaced_pod("p", ns)
    assert [(c.name, c.image) for c in pod.spec.containers] == [("main", "alpine"), ("side", "nginx")]
    assert pod.metadata.finalizers == ["a.io/x"]
    core.patch_namespaced_pod("p", ns, {"spec": {"containers": [{"name": "side", "$patch": "delete"}]}})
    assert [c.name for c in core.read_namespaced_pod("p", ns).spec.containers] == ["main"]
    refs = [{"apiVersion": "v1", "kind": "ConfigMap", "name": n, "uid": n} for n in ("u1", "u2")]
    core.patch_namespaced_pod("p", ns, {"metadata": {"ownerReferences": refs[:1]}})
    core.patch_namespaced_pod("p", ns, {"metadata": {"ownerReferences": refs[1:]}})  # merged by uid
    assert [r.uid for r in core.read_namespaced_pod("p", ns).metadata.owner_references] == ["u1", "u2"]
    batch.create_namespaced_job(ns, job_body("j"))
    for cond in ({"type": "Complete", "status": "False"}, {"type": "Failed", "status": "True"}):
        batch.patch_namespaced_job_status("j", ns, {"status": {"conditions": [cond]}})
    assert [c.type for c in batch.read_namespaced_job_status("j", ns).status.conditions] == ["Complete", "Failed"]


def test_unsupported_patch_types(custom: client.CustomObjectsApi, core: client.CoreV1Api, ns: str) -> None:
    custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, widget("smp"))
    body = raises(
        415,
        custom.patch_namespaced_custom_object,
        GROUP,
        VERSION,
        ns,
        PLURAL,
        "smp",
        {"spec": {"size": 2}},
        _content_type="application/strategic-merge-patch+json",
    )
    assert body["reason"] == "UnsupportedMediaType"
    core.create_namespaced_config_map(ns, {"metadata": {"name": "cm"}})
    raises(
        415,
        core.patch_namespaced_config_map,
        "cm",
        ns,
        {"data": {"a": "b"}},
        _content_type="application/apply-patch+yaml",
    )


# ---- delete, finalizers, garbage collection ------------------------------------------------


def test_finalizers_delay_deletion(custom: client.CustomObjectsApi, ns: str) -> None:
    args = (GROUP, VERSION, ns, PLURAL, "f")
    obj = custom.create_namespaced_custom_object(
        GROUP, VERSION, ns, PLURAL, {**widget("f"), "metadata": {"name": "f", "finalizers": ["evalkube.dev/x"]}}
    )
    events = watch_events(
        custom.list_namespaced_custom_object,
        GROUP,
        VERSION,
        ns,
        PLURAL,
        resource_version=obj["metadata"]["resourceVersion"],
        expect=2,
    )
    deleted = custom.delete_namespaced_custom_object(*args)
    assert deleted["metadata"]["deletionTimestamp"] and deleted["metadata"]["deletionGracePeriodSeconds"] == 0
    assert custom.get_namespaced_custom_object(*args)["metadata"]["deletionTimestamp"]
    assert (
        "no new finalizers"
        in raises(
            422,
            custom.patch_namespaced_custom_object,
            *args,
            {"metadata": {"finalizers": ["evalkube.dev/x", "y.io/z"]}},
        )["message"]
    )
    custom.patch_namespaced_custom_object(*args, {"metadata": {"finalizers": None}})
    raises(404, custom.get_namespaced_custom_object, *args)
    assert [t for t, _ in events()] == ["MODIFIED", "DELETED"]


def test_delete_without_finalizers_and_answers(
    core: client.CoreV1Api, batch: client.BatchV1Api, custom: client.CustomObjectsApi, ns: str
) -> None:
    core.create_namespaced_config_map(ns, {"metadata": {"name": "cm"}})
    status = core.delete_namespaced_config_map("cm", ns)
    assert status["status"] == "Success" and status["details"]["name"] == "cm"
    core.create_namespaced_pod(ns, pod_body("p"))
    assert core.delete_namespaced_pod("p", ns).metadata.name == "p"  # pods answer the object
    custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, widget("w"))
    assert custom.delete_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "w")["kind"] == "Widget"
    raises(404, custom.delete_namespaced_custom_object, GROUP, VERSION, ns, PLURAL, "w")


def test_delete_preconditions(core: client.CoreV1Api, ns: str) -> None:
    cm = core.create_namespaced_config_map(ns, {"metadata": {"name": "pre"}})
    body = raises(
        409,
        core.delete_namespaced_config_map,
        "pre",
        ns,
        body={"preconditions": {"uid": "00000000-0000-0000-0000-000000000000"}},
    )
    assert "Precondition failed: UID" in body["message"]
    raises(409, core.delete_namespaced_config_map, "pre", ns, body={"preconditions": {"resourceVersion": "1"}})
    core.delete_namespaced_config_map("pre", ns, body={"preconditions": {"uid": cm.metadata.uid}})


def test_gc_cascades_through_owner_references(
    custom: client.CustomObjectsApi, batch: client.BatchV1Api, core: client.CoreV1Api, ns: str
) -> None:
    owner = custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, widget("eval"))
    job = batch.create_namespaced_job(ns, job_body("eval-job", [owner_ref(owner, block=True)]))
    core.create_namespaced_pod(ns, pod_body("eval-pod", [owner_ref(job)]))
    core.create_namespaced_config_map(ns, {"metadata": {"name": "eval-results", "ownerReferences": [owner_ref(owner)]}})
    core.create_namespaced_config_map(
        ns, {"metadata": {"name": "held", "finalizers": ["x.io/keep"], "ownerReferences": [owner_ref(owner)]}}
    )
    core.create_namespaced_config_map(ns, {"metadata": {"name": "bystander"}})
    custom.delete_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "eval")
    wait_for(lambda: not batch.list_namespaced_job(ns).items and not core.list_namespaced_pod(ns).items)
    remaining = {c.metadata.name: c for c in core.list_namespaced_config_map(ns).items}
    assert set(remaining) == {"held", "bystander"}
    assert remaining["held"].metadata.deletion_timestamp is not None  # dependents' finalizers are honoured


def test_job_deletion_propagation(batch: client.BatchV1Api, core: client.CoreV1Api, ns: str) -> None:
    for name in ("orphaning", "cascading"):
        job = batch.create_namespaced_job(ns, job_body(name))
        core.create_namespaced_pod(ns, pod_body(f"{name}-pod", [owner_ref(job)]))
    # batch/v1 Jobs deleted through the API orphan their pods unless told otherwise (real default + Warning).
    _, _, headers = batch.delete_namespaced_job_with_http_info("orphaning", ns)
    assert "child pods are preserved" in headers["Warning"]
    assert core.read_namespaced_pod("orphaning-pod", ns).metadata.owner_references is None
    batch.delete_namespaced_job("cascading", ns, propagation_policy="Background")
    wait_for(lambda: [p.metadata.name for p in core.list_namespaced_pod(ns).items] == ["orphaning-pod"])


def test_foreground_deletion_waits_for_dependents(
    custom: client.CustomObjectsApi, core: client.CoreV1Api, ns: str
) -> None:
    owner = custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, widget("fg"))
    core.create_namespaced_config_map(
        ns,
        {"metadata": {"name": "dep", "finalizers": ["x.io/keep"], "ownerReferences": [owner_ref(owner, block=True)]}},
    )
    custom.delete_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "fg", propagation_policy="Foreground")
    waiting = custom.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "fg")
    assert waiting["metadata"]["finalizers"] == ["foregroundDeletion"]
    core.patch_namespaced_config_map("dep", ns, {"metadata": {"finalizers": None}})
    raises(404, custom.get_namespaced_custom_object, GROUP, VERSION, ns, PLURAL, "fg")


def test_orphan_propagation_drops_owner_references(
    custom: client.CustomObjectsApi, core: client.CoreV1Api, ns: str
) -> None:
    owner = custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, widget("or"))
    core.create_namespaced_config_map(ns, {"metadata": {"name": "kept", "ownerReferences": [owner_ref(owner)]}})
    custom.delete_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "or", propagation_policy="Orphan")
    assert core.read_namespaced_config_map("kept", ns).metadata.owner_references is None


def test_delete_collection(core: client.CoreV1Api, ns: str) -> None:
    for i in range(4):
        core.create_namespaced_config_map(ns, {"metadata": {"name": f"c{i}", "labels": {"even": str(i % 2 == 0)}}})
    core.delete_collection_namespaced_config_map(ns, label_selector="even=True")
    assert sorted(c.metadata.name for c in core.list_namespaced_config_map(ns).items) == ["c1", "c3"]


# ---- dry run -------------------------------------------------------------------------------


def test_dry_run_persists_nothing(emu: KubeEmulator, custom: client.CustomObjectsApi, ns: str) -> None:
    args = (GROUP, VERSION, ns, PLURAL)
    created = custom.create_namespaced_custom_object(*args, widget("real"))
    before = emu.store.find(GROUP, PLURAL, ns, "real")
    start = rv(custom.list_namespaced_custom_object(*args))
    events = watch_events(custom.list_namespaced_custom_object, *args, resource_version=str(start), timeout_seconds=1)
    dry = custom.create_namespaced_custom_object(*args, widget("ghost"), dry_run="All")
    assert dry["metadata"]["name"] == "ghost" and "resourceVersion" not in dry["metadata"]
    patched = custom.patch_namespaced_custom_object(*args, "real", {"spec": {"size": 7}}, dry_run="All")
    assert patched["spec"]["size"] == 7 and patched["metadata"]["generation"] == 2
    custom.delete_namespaced_custom_object(*args, "real", dry_run="All")
    raises(422, custom.create_namespaced_custom_object, *args, widget("bad", size=0), dry_run="All")
    assert emu.store.find(GROUP, PLURAL, ns, "real") is before and emu.store.find(GROUP, PLURAL, ns, "ghost") is None
    assert rv(custom.list_namespaced_custom_object(*args)) == start and events() == []
    assert created["metadata"]["uid"] == before["metadata"]["uid"]


# ---- list, selectors, pagination -----------------------------------------------------------


def test_label_and_field_selectors(core: client.CoreV1Api, ns: str) -> None:
    for name, labels, phase in (
        ("a", {"app": "eval", "tier": "gpu"}, "Running"),
        ("b", {"app": "eval"}, "Succeeded"),
        ("c", {"app": "api"}, "Running"),
    ):
        core.create_namespaced_pod(ns, pod_body(name, labels=labels))
        core.patch_namespaced_pod_status(name, ns, {"status": {"phase": phase}})

    def names(**kw: str) -> list[str]:
        return sorted(p.metadata.name for p in core.list_namespaced_pod(ns, **kw).items)

    assert names(label_selector="app=eval") == ["a", "b"]
    assert names(label_selector="app==eval,tier") == ["a"]
    assert names(label_selector="app!=eval") == ["c"]
    assert names(label_selector="app in (api, other)") == ["c"]
    assert names(label_selector="app notin (api),!tier") == ["b"]
    assert names(field_selector="status.phase=Running") == ["a", "c"]
    assert names(field_selector="status.phase!=Running,metadata.name!=x") == ["b"]
    assert names(field_selector="metadata.name=b", label_selector="app") == ["b"]
    assert raises(400, core.list_namespaced_pod, ns, label_selector="app in (x")["reason"] == "BadRequest"
    assert (
        "field label not supported"
        in raises(400, core.list_namespaced_pod, ns, field_selector="spec.containers=x")["message"]
    )


def test_list_shape_pagination_and_cluster_wide(
    custom: client.CustomObjectsApi, core: client.CoreV1Api, ns: str
) -> None:
    for i in range(7):
        custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, widget(f"p{i}"))
    first = custom.list_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, limit=3)
    assert first["kind"] == "WidgetList" and first["apiVersion"] == f"{GROUP}/{VERSION}"
    assert all(i["kind"] == "Widget" for i in first["items"])
    assert first["metadata"]["remainingItemCount"] == 4
    seen, token = [i["metadata"]["name"] for i in first["items"]], first["metadata"]["continue"]
    while token:
        page = custom.list_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, limit=3, _continue=token)
        assert page["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]
        seen += [i["metadata"]["name"] for i in page["items"]]
        token = page["metadata"].get("continue")
    assert seen == [f"p{i}" for i in range(7)]
    everywhere = custom.list_cluster_custom_object(GROUP, VERSION, PLURAL)
    assert {i["metadata"]["name"] for i in everywhere["items"] if i["metadata"]["namespace"] == ns} == set(seen)
    pods = core.list_pod_for_all_namespaces()
    assert pods.kind == "PodList" and int(pods.metadata.resource_version) >= rv(first)


# ---- watch ---------------------------------------------------------------------------------


def watch_events(
    func: Callable[..., Any], *args: Any, expect: int | None = None, **kwargs: Any
) -> Callable[[], list[tuple[str, str]]]:
    """Watch in a thread until `expect` events (or the stream's timeout); the callable joins it -> [(type, name)]."""
    events: list[tuple[str, str]] = []
    kwargs.setdefault("timeout_seconds", 5 if expect else 1)

    def run() -> None:
        for ev in kubernetes.watch.Watch().stream(func, *args, **kwargs):
            events.append((ev["type"], ev["raw_object"]["metadata"].get("name", "")))
            if len(events) == expect:
                break  # closes the connection mid-stream, like a client that is done

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    time.sleep(0.1)  # let the request reach the server before the caller writes

    def result() -> list[tuple[str, str]]:
        thread.join(10)
        assert not thread.is_alive()
        return events

    return result


def test_watch_initial_state_then_live_events(custom: client.CustomObjectsApi, ns: str) -> None:
    args = (GROUP, VERSION, ns, PLURAL)
    custom.create_namespaced_custom_object(*args, widget("old"))
    events = watch_events(custom.list_namespaced_custom_object, *args, expect=4)
    custom.create_namespaced_custom_object(*args, widget("new"))
    custom.patch_namespaced_custom_object(*args, "new", {"spec": {"size": 2}})
    custom.delete_namespaced_custom_object(*args, "old")
    assert events() == [("ADDED", "old"), ("ADDED", "new"), ("MODIFIED", "new"), ("DELETED", "old")]


def test_watch_replays_from_resource_version(custom: client.CustomObjectsApi, ns: str) -> None:
    args = (GROUP, VERSION, ns, PLURAL)
    first = custom.create_namespaced_custom_object(*args, widget("r1"))
    custom.create_namespaced_custom_object(*args, widget("r2"))
    custom.delete_namespaced_custom_object(*args, "r1")
    events = watch_events(
        custom.list_namespaced_custom_object, *args, resource_version=first["metadata"]["resourceVersion"], expect=2
    )
    assert events() == [("ADDED", "r2"), ("DELETED", "r1")]


def test_watch_too_old_resource_version_is_410(core: client.CoreV1Api, ns: str) -> None:
    small = KubeEmulator(history_size=5).start()
    try:
        api = client.ApiClient(client.Configuration(host=small.url))
        v1 = client.CoreV1Api(api)
        for i in range(10):
            v1.create_namespaced_config_map("default", {"metadata": {"name": f"c{i}"}})
        with pytest.raises(ApiException) as info:
            for _ in kubernetes.watch.Watch().stream(
                v1.list_namespaced_config_map, "default", resource_version="2", timeout_seconds=1
            ):
                pass
        assert info.value.status == 410 and "too old resource version" in info.value.reason
        raw = urllib.request.urlopen(f"{small.url}/api/v1/namespaces/default/configmaps?watch=1&resourceVersion=2")
        event = json.loads(raw.readline())
        assert event["type"] == "ERROR" and event["object"]["reason"] == "Expired" and raw.readline() == b""
    finally:
        small.stop()


def test_watch_bookmarks_and_timeout(emu: KubeEmulator, ns: str) -> None:
    started = time.monotonic()
    url = f"{emu.url}/api/v1/namespaces/{ns}/configmaps?watch=true&allowWatchBookmarks=true&timeoutSeconds=1"
    with urllib.request.urlopen(url) as rsp:
        lines = [json.loads(line) for line in rsp]  # ends cleanly after timeoutSeconds
    assert 0.9 < time.monotonic() - started < 3
    assert lines and all(e["type"] == "BOOKMARK" for e in lines)
    assert set(lines[0]["object"]) == {"kind", "apiVersion", "metadata"}
    assert lines[0]["object"]["kind"] == "ConfigMap" and lines[0]["object"]["metadata"]["resourceVersion"]


def test_watch_send_initial_events(emu: KubeEmulator, core: client.CoreV1Api, ns: str) -> None:
    core.create_namespaced_config_map(ns, {"metadata": {"name": "x"}})
    url = (
        f"{emu.url}/api/v1/namespaces/{ns}/configmaps?watch=1&sendInitialEvents=true&allowWatchBookmarks=true"
        "&resourceVersionMatch=NotOlderThan&timeoutSeconds=1"
    )
    with urllib.request.urlopen(url) as rsp:
        first, second = json.loads(rsp.readline()), json.loads(rsp.readline())
    assert first["type"] == "ADDED" and second["type"] == "BOOKMARK"
    assert second["object"]["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}


def test_watch_one_object_by_name(emu: KubeEmulator, core: client.CoreV1Api, ns: str) -> None:
    for name in ("one", "other"):
        core.create_namespaced_config_map(ns, {"metadata": {"name": name}})
    with urllib.request.urlopen(f"{emu.url}/api/v1/namespaces/{ns}/configmaps/one?watch=1&timeoutSeconds=1") as rsp:
        assert [(e["type"], e["object"]["metadata"]["name"]) for e in map(json.loads, rsp)] == [("ADDED", "one")]


def test_watch_selector_transitions(core: client.CoreV1Api, ns: str) -> None:
    core.create_namespaced_config_map(ns, {"metadata": {"name": "m", "labels": {"watched": "no"}}})
    events = watch_events(core.list_namespaced_config_map, ns, label_selector="watched=yes", expect=3)
    core.patch_namespaced_config_map("m", ns, {"metadata": {"labels": {"watched": "yes"}}})
    core.patch_namespaced_config_map("m", ns, {"data": {"k": "v"}})
    core.patch_namespaced_config_map("m", ns, {"metadata": {"labels": {"watched": "no"}}})
    core.delete_namespaced_config_map("m", ns)
    assert events() == [("ADDED", "m"), ("MODIFIED", "m"), ("DELETED", "m")]


def test_watch_cluster_wide_and_many_watchers(emu: KubeEmulator, core: client.CoreV1Api, ns: str) -> None:
    streams = [
        watch_events(core.list_config_map_for_all_namespaces, field_selector=f"metadata.namespace={ns}", expect=1)
        for _ in range(8)
    ]
    core.create_namespaced_config_map(ns, {"metadata": {"name": "everyone"}})
    assert all(s() == [("ADDED", "everyone")] for s in streams)


def test_closing_a_watch_frees_the_watcher(emu: KubeEmulator, ns: str) -> None:
    def watchers() -> int:
        return sum(len(ws) for ws in emu.store._watchers.values())

    wait_for(lambda: watchers() == 0)  # earlier tests' clients broke off their watches too
    responses = [urllib.request.urlopen(f"{emu.url}/api/v1/namespaces/{ns}/configmaps?watch=1") for _ in range(3)]
    wait_for(lambda: watchers() == 3)
    threads = threading.active_count()
    for rsp in responses:
        rsp.close()
    wait_for(lambda: watchers() == 0 and threading.active_count() <= threads - 3, timeout=3)


# ---- custom resource schemas ---------------------------------------------------------------


def test_schema_pruning_defaults_and_warnings(custom: client.CustomObjectsApi, ns: str) -> None:
    body = widget("pr", extra={"free": {"form": 1}}, unknown=1, port="http", limits={"gpu": 2})
    body["status"] = {"phase": "Done"}
    body["metadata"]["labels"] = {"kept": "yes"}
    body["junk"] = True
    data, _, headers = custom.create_namespaced_custom_object_with_http_info(GROUP, VERSION, ns, PLURAL, body)
    assert data["spec"] == {
        "size": 1,
        "extra": {"free": {"form": 1}},
        "port": "http",
        "limits": {"gpu": 2},
        "mode": "fast",
        "nested": {"depth": 3},
    }
    assert "junk" not in data and data["metadata"]["labels"] == {"kept": "yes"}
    assert 'unknown field \\"spec.unknown\\"' in headers["Warning"]
    strict = raises(
        400,
        custom.create_namespaced_custom_object,
        GROUP,
        VERSION,
        ns,
        PLURAL,
        widget("st", unknown=1),
        field_validation="Strict",
    )
    assert 'unknown field "spec.unknown"' in strict["message"]


@pytest.mark.parametrize(
    "spec, field, reason, fragment",
    [
        ({}, "spec.size", "FieldValueRequired", "Required value"),
        ({"size": "3"}, "spec.size", "FieldValueTypeInvalid", "must be of type integer"),
        ({"size": 2.5}, "spec.size", "FieldValueTypeInvalid", "must be of type integer"),
        ({"size": 0}, "spec.size", "FieldValueInvalid", "should be greater than or equal to 1"),
        ({"size": 11}, "spec.size", "FieldValueInvalid", "should be less than or equal to 10"),
        ({"size": 1, "ratio": 0}, "spec.ratio", "FieldValueInvalid", "should be greater than 0"),
        ({"size": 1, "name": "a"}, "spec.name", "FieldValueInvalid", "should be at least 2 chars long"),
        ({"size": 1, "name": "abcdefghi"}, "spec.name", "FieldValueTooLong", "may not be more than 8"),
        ({"size": 1, "name": "ab1"}, "spec.name", "FieldValueInvalid", "should match '^[a-z]+$'"),
        ({"size": 1, "mode": "warp"}, "spec.mode", "FieldValueNotSupported", 'supported values: "fast", "slow"'),
        ({"size": 1, "tags": []}, "spec.tags", "FieldValueInvalid", "should have at least 1 items"),
        ({"size": 1, "tags": ["a", "b", "c", "d"]}, "spec.tags", "FieldValueTooMany", "must have at most 3 items"),
        ({"size": 1, "tags": [1]}, "spec.tags[0]", "FieldValueTypeInvalid", "must be of type string"),
        ({"size": 1, "enabled": "yes"}, "spec.enabled", "FieldValueTypeInvalid", "must be of type boolean"),
        ({"size": 1, "port": 1.5}, "spec.port", "FieldValueTypeInvalid", "integer-or-string"),
        ({"size": 1, "limits": {"cpu": "x"}}, "spec.limits.cpu", "FieldValueTypeInvalid", "must be of type integer"),
    ],
)
def test_schema_validation_errors(
    custom: client.CustomObjectsApi, ns: str, spec: dict[str, Any], field: str, reason: str, fragment: str
) -> None:
    body = {**widget("v"), "spec": spec}
    status = raises(422, custom.create_namespaced_custom_object, GROUP, VERSION, ns, PLURAL, body)
    assert status["reason"] == "Invalid" and status["message"].startswith('Widget.kubeemu.test "v" is invalid: ')
    assert status["details"]["kind"] == "Widget" and status["details"]["group"] == GROUP
    (cause,) = status["details"]["causes"]
    assert (cause["field"], cause["reason"]) == (field, reason) and fragment in cause["message"]


# ---- CRD lifecycle -------------------------------------------------------------------------


def test_crd_registration_and_removal(api: client.ApiClient, emu: KubeEmulator, ns: str) -> None:
    ext, custom = client.ApiextensionsV1Api(api), client.CustomObjectsApi(api)
    crd = json.loads(
        json.dumps(WIDGET_CRD).replace("widget", "gadget").replace("Widget", "Gadget").replace('"wd"', '"gd"')
    )
    crd["spec"]["scope"] = "Cluster"
    created = ext.create_custom_resource_definition(crd)
    assert created.metadata.name == f"gadgets.{GROUP}"
    conditions = {c.type: c.status for c in ext.read_custom_resource_definition(f"gadgets.{GROUP}").status.conditions}
    assert conditions == {"NamesAccepted": "True", "Established": "True"}
    gadget = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "Gadget", "metadata": {"name": "g1"}, "spec": {"size": 1}}
    custom.create_cluster_custom_object(GROUP, VERSION, "gadgets", gadget)
    assert custom.get_cluster_custom_object(GROUP, VERSION, "gadgets", "g1")["metadata"].get("namespace") is None
    assert http_get(emu, f"/apis/{GROUP}/{VERSION}/namespaces/{ns}/gadgets")[0] == 404
    raises(422, ext.create_custom_resource_definition, {**crd, "metadata": {"name": "wrong.name"}})
    ext.delete_custom_resource_definition(f"gadgets.{GROUP}")
    raises(404, ext.read_custom_resource_definition, f"gadgets.{GROUP}")
    assert http_get(emu, f"/apis/{GROUP}/{VERSION}/gadgets")[0] == 404
    assert "gadgets" not in {r["name"] for r in http_get(emu, f"/apis/{GROUP}/{VERSION}")[1]["resources"]}
    ext.create_custom_resource_definition(crd)  # re-created: empty, the old objects are gone
    assert custom.list_cluster_custom_object(GROUP, VERSION, "gadgets")["items"] == []
    ext.delete_custom_resource_definition(f"gadgets.{GROUP}")


def test_errors_are_status_objects(emu: KubeEmulator, core: client.CoreV1Api, ns: str) -> None:
    code, body = http_get(emu, "/api/v1/nothings")
    assert code == 404 and body["reason"] == "NotFound"
    req = urllib.request.Request(f"{emu.url}/api/v1/namespaces/{ns}/configmaps/x", data=b"{}", method="POST")
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(req)
    assert info.value.code == 405 and json.loads(info.value.read())["reason"] == "MethodNotAllowed"
    req = urllib.request.Request(f"{emu.url}/api/v1/namespaces/{ns}/configmaps", data=b"{nope", method="POST")
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(req)
    assert info.value.code == 400 and json.loads(info.value.read())["reason"] == "BadRequest"


# ---- pod logs, events, leases --------------------------------------------------------------


def test_pod_log(emu: KubeEmulator, core: client.CoreV1Api, ns: str) -> None:
    core.create_namespaced_pod(ns, {**pod_body("runner"), "spec": {**pod_body("runner")["spec"], "nodeName": "n1"}})
    assert "waiting to start" in raises(400, core.read_namespaced_pod_log, "runner", ns)["message"]
    emu.set_pod_log(ns, "runner", "line1\nline2\nline3\n")
    assert core.read_namespaced_pod_log("runner", ns) == "line1\nline2\nline3\n"
    assert core.read_namespaced_pod_log("runner", ns, tail_lines=2, container="main") == "line2\nline3\n"
    raises(400, core.read_namespaced_pod_log, "runner", ns, container="other")
    raises(404, core.read_namespaced_pod_log, "ghost", ns)


def test_events_and_leases(api: client.ApiClient, core: client.CoreV1Api, ns: str) -> None:
    core.create_namespaced_event(
        ns,
        {
            "metadata": {"generateName": "kopf-event-"},
            "reason": "Logging",
            "message": "hi",
            "type": "Normal",
            "involvedObject": {"kind": "Widget", "name": "w", "namespace": ns},
        },
    )
    assert core.list_namespaced_event(ns, field_selector="involvedObject.kind=Widget").items[0].message == "hi"
    events_v1 = client.EventsV1Api(api)
    events_v1.create_namespaced_event(
        ns,
        {
            "metadata": {"name": "e1"},
            "eventTime": "2024-01-01T00:00:00.000000Z",
            "reason": "Started",
            "action": "Run",
            "reportingController": "x",
            "reportingInstance": "y",
            "type": "Normal",
        },
    )
    assert [e.metadata.name for e in events_v1.list_namespaced_event(ns).items] == ["e1"]
    leases = client.CoordinationV1Api(api)
    leases.create_namespaced_lease(ns, {"metadata": {"name": "leader"}, "spec": {"holderIdentity": "a"}})
    leases.patch_namespaced_lease("leader", ns, {"spec": {"holderIdentity": "b"}})
    assert leases.read_namespaced_lease("leader", ns).spec.holder_identity == "b"


# ---- clients, kubeconfig, request recording ------------------------------------------------


def test_load_kube_config_and_request_recording(emu: KubeEmulator, tmp_path: Path, ns: str) -> None:
    saved = client.Configuration.get_default_copy()
    try:
        kubernetes.config.load_kube_config(config_file=str(emu.write_kubeconfig(tmp_path / "op", token="operator")))
        operator = client.CustomObjectsApi()
        emu.clear_requests()
        operator.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, widget("rec"))
        operator.patch_namespaced_custom_object_status(GROUP, VERSION, ns, PLURAL, "rec", {"status": {"count": 1}})
    finally:
        client.Configuration.set_default(saved)
    api = kubernetes.config.new_client_from_config(str(emu.write_kubeconfig(tmp_path / "api", token="api")))
    client.CoreV1Api(api).list_namespaced_pod(ns, watch=False)
    client.CustomObjectsApi(api).delete_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "rec")
    records = [(r.verb, r.api_group, r.resource, r.subresource, r.namespace, r.token) for r in emu.requests]
    assert records == [
        ("create", GROUP, PLURAL, "", ns, "operator"),
        ("patch", GROUP, PLURAL, "status", ns, "operator"),
        ("list", "", "pods", "", ns, "api"),
        ("delete", GROUP, PLURAL, "", ns, "api"),
    ]
    assert emu.requests[0][:5] == ("create", GROUP, PLURAL, "", ns) and "OpenAPI" in emu.requests[0].user_agent
    urllib.request.urlopen(f"{emu.url}/api/v1/watch/namespaces/{ns}/pods?timeoutSeconds=1").read()
    assert emu.requests[-1][:5] == ("watch", "", "pods", "", ns)


# ---- the project's CRD, performance, standalone --------------------------------------------


def test_project_evaljob_crd(emu: KubeEmulator, custom: client.CustomObjectsApi, ns: str) -> None:
    path, example = REPO / "crds" / "evaljob.yaml", REPO / "examples" / "evaljob-cpu.yaml"
    if not path.exists() or not example.exists():
        pytest.skip("the project's CRD or example is not there")
    crd = yaml.safe_load(path.read_text())
    emu.apply_crd(crd)
    group, version = crd["spec"]["group"], next(v["name"] for v in crd["spec"]["versions"] if v.get("storage"))
    plural = crd["spec"]["names"]["plural"]
    valid = next(d for d in yaml.safe_load_all(example.read_text()) if d and d["kind"] == "EvalJob")
    created = custom.create_namespaced_custom_object(group, version, ns, plural, valid)
    assert created["metadata"]["name"].startswith(valid["metadata"]["generateName"])
    assert created["spec"]["logSamples"] is True and created["spec"]["priority"] == 0  # schema defaults
    invalid = {**valid, "spec": {"tasks": [], "numGpus": 65}}
    causes = raises(422, custom.create_namespaced_custom_object, group, version, ns, plural, invalid)["details"][
        "causes"
    ]
    assert {c["field"] for c in causes} == {"spec.model", "spec.tasks", "spec.numGpus"}
    name = created["metadata"]["name"]
    conditions = {"status": {"conditions": [{"type": "Ready", "status": "True"}, {"type": "Ready", "status": "False"}]}}
    causes = raises(422, custom.patch_namespaced_custom_object_status, group, version, ns, plural, name, conditions)[
        "details"
    ]["causes"]
    assert [(c["field"], c["reason"]) for c in causes] == [("status.conditions[1]", "FieldValueDuplicate")]


def test_many_objects_perform(custom: client.CustomObjectsApi, ns: str) -> None:
    started = time.perf_counter()
    for i in range(500):
        custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, widget(f"perf-{i}"))
    items = custom.list_namespaced_custom_object(GROUP, VERSION, ns, PLURAL)["items"]
    elapsed = time.perf_counter() - started
    assert len(items) == 500 and elapsed < 10, elapsed


def test_stop_and_start_again_keeps_the_store() -> None:
    emu = KubeEmulator().start()
    port = int(emu.url.rsplit(":", 1)[1])
    emu.stop()
    emu = KubeEmulator(port=port).start()
    try:
        v1 = client.CoreV1Api(client.ApiClient(client.Configuration(host=emu.url)))
        v1.create_namespaced_config_map("default", {"metadata": {"name": "before"}})
        emu.stop()
        with pytest.raises(urllib.error.URLError):
            urllib.request.urlopen(f"http://127.0.0.1:{port}/version")
        configmaps = emu.store.registry.get("", "v1", "configmaps")
        assert configmaps is not None
        emu.store.create(configmaps, "default", {"metadata": {"name": "while-down"}})
        emu.start()
        assert emu.url == f"http://127.0.0.1:{port}"
        assert [c.metadata.name for c in v1.list_namespaced_config_map("default").items] == ["before", "while-down"]
    finally:
        emu.stop()


def test_standalone_module(tmp_path: Path) -> None:
    import subprocess
    import sys

    crd_file = tmp_path / "crd.yaml"
    crd_file.write_text(yaml.safe_dump(WIDGET_CRD))
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent)}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "kubeemu",
            "--port",
            "0",
            "--kubeconfig",
            str(tmp_path / "kc"),
            "--crd",
            str(crd_file),
            "--token",
            "bench",
        ],
        stdout=subprocess.PIPE,
        env=env,
        text=True,
    )
    try:
        url = proc.stdout.readline().strip()  # type: ignore[union-attr]
        api = kubernetes.config.new_client_from_config(str(tmp_path / "kc"))
        assert api.configuration.host == url
        listed = client.CustomObjectsApi(api).list_namespaced_custom_object(GROUP, VERSION, "default", PLURAL)
        assert listed["items"] == []
    finally:
        proc.terminate()
        assert proc.wait(5) == 0
