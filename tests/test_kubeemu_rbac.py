"""The emulator's authentication and RBAC, judged through the real `kubernetes` client.

TokenReview, SubjectAccessReview, SelfSubjectAccessReview and SelfSubjectReview answer as
kube-apiserver does; Roles and bindings created with the client (as `kubectl apply` would) are
evaluated as the RBAC authorizer evaluates them, for a table of rules; with enforcement on, every
request is authenticated (401) and authorized (403) with the apiserver's own messages.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import kubernetes
import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from kubeemu import KubeEmulator

RBAC = "rbac.authorization.k8s.io"


@pytest.fixture(scope="module")
def emu() -> Iterator[KubeEmulator]:
    emulator = KubeEmulator().start()
    yield emulator
    emulator.stop()


def client_for(emu: KubeEmulator, folder: Path, token: str | None) -> client.ApiClient:
    path = emu.write_kubeconfig(folder / f"config-{uuid.uuid4().hex[:6]}", token=token)
    return kubernetes.config.new_client_from_config(config_file=str(path))


@pytest.fixture(scope="module")
def admin(emu: KubeEmulator, tmp_path_factory: pytest.TempPathFactory) -> client.ApiClient:
    return client_for(emu, tmp_path_factory.mktemp("kube"), "admin")


@pytest.fixture
def ns(admin: client.ApiClient) -> str:
    name = f"t-{uuid.uuid4().hex[:8]}"
    client.CoreV1Api(admin).create_namespace({"metadata": {"name": name}})
    return name


def failure(call: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[int, dict[str, Any]]:
    with pytest.raises(ApiException) as info:
        call(*args, **kwargs)
    return info.value.status, json.loads(info.value.body)


def role(name: str, *rules: dict[str, Any], cluster: bool = False) -> dict[str, Any]:
    return {
        "apiVersion": f"{RBAC}/v1",
        "kind": "ClusterRole" if cluster else "Role",
        "metadata": {"name": name},
        "rules": list(rules),
    }


def binding(
    name: str, ref_kind: str, ref_name: str, *subjects: dict[str, str], cluster: bool = False
) -> dict[str, Any]:
    return {
        "apiVersion": f"{RBAC}/v1",
        "kind": "ClusterRoleBinding" if cluster else "RoleBinding",
        "metadata": {"name": name},
        "roleRef": {"apiGroup": RBAC, "kind": ref_kind, "name": ref_name},
        "subjects": list(subjects),
    }


def user(name: str) -> dict[str, str]:
    return {"kind": "User", "name": name, "apiGroup": RBAC}


def group(name: str) -> dict[str, str]:
    return {"kind": "Group", "name": name, "apiGroup": RBAC}


def sa(name: str, namespace: str | None = None) -> dict[str, str]:
    return {"kind": "ServiceAccount", "name": name, **({"namespace": namespace} if namespace else {})}


def sar(
    api: client.ApiClient, verb: str, resource: str = "", *, who: str = "", groups: tuple[str, ...] = (), **attrs: str
) -> dict[str, Any]:
    """The status of a SubjectAccessReview; `resource` "pods/log" splits into resource and subresource."""
    spec: dict[str, Any] = {"user": who, "groups": list(groups)}
    if "path" in attrs:
        spec["nonResourceAttributes"] = {"verb": verb, "path": attrs["path"]}
    else:
        plural, _, sub = resource.partition("/")
        spec["resourceAttributes"] = {"verb": verb, "resource": plural, "subresource": sub, **attrs}
    body = client.AuthorizationV1Api(api).create_subject_access_review({"spec": spec})
    return body.status.to_dict()


# ---- authentication ---------------------------------------------------------------------------


def test_token_review_of_users_service_accounts_and_unknown_tokens(emu: KubeEmulator, admin: client.ApiClient) -> None:
    authn = client.AuthenticationV1Api(admin)
    emu.add_token("alice-token", "alice", groups=["dev"], uid="u-1", extra={"scopes": ["a", "b"]})
    review = authn.create_token_review({"spec": {"token": "alice-token"}})
    assert review.status.authenticated is True and review.status.error is None
    assert review.status.user.to_dict() == {
        "username": "alice",
        "uid": "u-1",
        "groups": ["dev", "system:authenticated"],
        "extra": {"scopes": ["a", "b"]},
    }
    assert review.status.audiences == ["https://kubernetes.default.svc.cluster.local"]
    assert authn.create_token_review(
        {"spec": {"token": "alice-token", "audiences": ["evalkube"]}}
    ).status.audiences == ["evalkube"]

    client.CoreV1Api(admin).create_namespaced_service_account("default", {"metadata": {"name": "trainer"}})
    emu.add_service_account_token("trainer-token", "default", "trainer")
    status = authn.create_token_review({"spec": {"token": "trainer-token"}}).status
    stored_uid = client.CoreV1Api(admin).read_namespaced_service_account("trainer", "default").metadata.uid
    assert (status.authenticated, status.user.username, status.user.uid) == (
        True,
        "system:serviceaccount:default:trainer",
        stored_uid,
    )
    assert status.user.groups == ["system:serviceaccounts", "system:serviceaccounts:default", "system:authenticated"]

    unknown = authn.create_token_review({"spec": {"token": "nobody-knows-me"}}).status
    assert (unknown.authenticated, unknown.error, unknown.user.to_dict()) == (
        None,
        "invalid bearer token",
        {"username": None, "uid": None, "groups": None, "extra": None},
    )
    code, body = failure(authn.create_token_review, {"spec": {"token": ""}})
    assert (code, body["reason"], body["message"]) == (
        400,
        "BadRequest",
        "token is required for TokenReview in authentication",
    )


def test_kubeconfig_tokens_are_superusers_until_registered(emu: KubeEmulator, tmp_path: Path) -> None:
    api = client_for(emu, tmp_path, "issued")
    me = client.AuthenticationV1Api(api).create_self_subject_review({}).status.user_info
    assert (me.username, me.groups) == ("kubernetes-admin", ["system:masters", "system:authenticated"])
    emu.add_token("issued", "carol")
    assert client.AuthenticationV1Api(api).create_self_subject_review({}).status.user_info.username == "carol"


def test_discovery_lists_the_review_and_rbac_groups(emu: KubeEmulator, admin: client.ApiClient) -> None:
    served = {g.name for g in client.ApisApi(admin).get_api_versions().groups}
    assert {"authentication.k8s.io", "authorization.k8s.io", RBAC} <= served
    reviews = {r.name: r for r in client.AuthorizationV1Api(admin).get_api_resources().resources}
    assert set(reviews) >= {"subjectaccessreviews", "selfsubjectaccessreviews", "localsubjectaccessreviews"}
    assert reviews["subjectaccessreviews"].verbs == ["create"] and not reviews["subjectaccessreviews"].namespaced
    assert reviews["localsubjectaccessreviews"].namespaced
    rbac = {r.name for r in client.RbacAuthorizationV1Api(admin).get_api_resources().resources}
    assert rbac == {"roles", "rolebindings", "clusterroles", "clusterrolebindings"}
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(f"{emu.url}/apis/authorization.k8s.io/v1/subjectaccessreviews")
    code, body = info.value.code, json.loads(info.value.read())
    assert (code, body["reason"]) == (405, "MethodNotAllowed")


# ---- RBAC decisions ---------------------------------------------------------------------------

# Each case: the RBAC objects (Role/RoleBinding land in the test's namespace "NS"), then questions
# (who, groups, verb, "plural.group/subresource", namespace, name) -> allowed. "NS" and "OTHER"
# become the test's two namespaces, "CASE" a tag that keeps cluster-scoped names apart.
PODS_READER = role("reader", {"verbs": ["get", "list", "watch"], "apiGroups": [""], "resources": ["pods"]})
CASES: dict[str, tuple[list[dict[str, Any]], list[tuple[str, tuple[str, ...], str, str, str, str, bool]]]] = {
    "verbs and the core group": (
        [PODS_READER, binding("rb", "Role", "reader", user("alice"))],
        [
            ("alice", (), "get", "pods", "NS", "p", True),
            ("alice", (), "list", "pods", "NS", "", True),
            ("alice", (), "delete", "pods", "NS", "p", False),
            ("alice", (), "get", "configmaps", "NS", "c", False),
            ("bob", (), "get", "pods", "NS", "p", False),
        ],
    ),
    "a Role grants nothing in another namespace or at the cluster scope": (
        [PODS_READER, binding("rb", "Role", "reader", user("alice"))],
        [("alice", (), "get", "pods", "OTHER", "p", False), ("alice", (), "list", "pods", "", "", False)],
    ),
    "API groups are matched exactly": (
        [
            role("jobs", {"verbs": ["create"], "apiGroups": ["batch"], "resources": ["jobs"]}),
            binding("rb", "Role", "jobs", user("alice")),
        ],
        [("alice", (), "create", "jobs.batch", "NS", "", True), ("alice", (), "create", "jobs", "NS", "", False)],
    ),
    "subresources are resources of their own, */sub matches any": (
        [
            role(
                "sub",
                {"verbs": ["get"], "apiGroups": [""], "resources": ["pods/log"]},
                {"verbs": ["patch"], "apiGroups": ["evalkube.dev"], "resources": ["*/status"]},
                {"verbs": ["update"], "apiGroups": ["evalkube.dev"], "resources": ["evaljobs"]},
            ),
            binding("rb", "Role", "sub", user("alice")),
        ],
        [
            ("alice", (), "get", "pods/log", "NS", "p", True),
            ("alice", (), "get", "pods", "NS", "p", False),
            ("alice", (), "patch", "evaljobs.evalkube.dev/status", "NS", "e", True),
            ("alice", (), "update", "evaljobs.evalkube.dev/status", "NS", "e", False),
            ("alice", (), "update", "evaljobs.evalkube.dev", "NS", "e", True),
        ],
    ),
    "wildcards": (
        [
            role("all", {"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}),
            binding("rb", "Role", "all", user("alice")),
        ],
        [
            ("alice", (), "deletecollection", "jobs.batch", "NS", "", True),
            ("alice", (), "get", "pods/log", "NS", "p", True),
            ("alice", (), "get", "pods", "OTHER", "p", False),
        ],
    ),
    "resourceNames restrict to those names, so never a list": (
        [
            role(
                "one",
                {"verbs": ["get", "list"], "apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["a"]},
            ),
            binding("rb", "Role", "one", user("alice")),
        ],
        [
            ("alice", (), "get", "configmaps", "NS", "a", True),
            ("alice", (), "get", "configmaps", "NS", "b", False),
            ("alice", (), "list", "configmaps", "NS", "", False),
        ],
    ),
    "a RoleBinding to a ClusterRole grants it in its namespace only": (
        [
            role("cr-CASE", {"verbs": ["get"], "apiGroups": [""], "resources": ["secrets"]}, cluster=True),
            binding("rb", "ClusterRole", "cr-CASE", user("alice")),
        ],
        [
            ("alice", (), "get", "secrets", "NS", "s", True),
            ("alice", (), "get", "secrets", "OTHER", "s", False),
            ("alice", (), "list", "secrets", "", "", False),
        ],
    ),
    "a ClusterRoleBinding grants everywhere and cluster-scoped": (
        [
            role("cr-CASE", {"verbs": ["list"], "apiGroups": [""], "resources": ["namespaces", "pods"]}, cluster=True),
            binding("crb-CASE", "ClusterRole", "cr-CASE", user("carl-CASE"), cluster=True),
        ],
        [
            ("carl-CASE", (), "list", "namespaces", "", "", True),
            ("carl-CASE", (), "list", "pods", "", "", True),
            ("carl-CASE", (), "list", "pods", "OTHER", "", True),
            ("carl-CASE", (), "get", "pods", "NS", "p", False),
        ],
    ),
    "Group and ServiceAccount subjects": (
        [
            PODS_READER,
            binding("rb", "Role", "reader", group("team-CASE"), sa("runner"), sa("remote", "OTHER")),
        ],
        [
            ("dave", ("team-CASE",), "get", "pods", "NS", "p", True),
            ("dave", (), "get", "pods", "NS", "p", False),
            ("system:serviceaccount:NS:runner", (), "get", "pods", "NS", "p", True),
            ("system:serviceaccount:OTHER:runner", (), "get", "pods", "NS", "p", False),
            ("system:serviceaccount:OTHER:remote", (), "get", "pods", "NS", "p", True),
        ],
    ),
    "system:masters is everything, without RBAC": (
        [],
        [("root", ("system:masters",), "delete", "namespaces", "", "x", True)],
    ),
}


def _fill(value: Any, namespace: str, other: str, case: str) -> Any:
    text = json.dumps(value).replace("OTHER", other).replace('"NS"', f'"{namespace}"').replace(":NS:", f":{namespace}:")
    return json.loads(text.replace("CASE", case))


@pytest.mark.parametrize("case", sorted(CASES))
def test_rbac_decisions(case: str, admin: client.ApiClient, ns: str) -> None:
    other = f"{ns}-b"
    client.CoreV1Api(admin).create_namespace({"metadata": {"name": other}})
    tag = uuid.uuid4().hex[:6]
    objects, questions = _fill(CASES[case], ns, other, tag)
    rbac = client.RbacAuthorizationV1Api(admin)
    create = {
        "Role": lambda o: rbac.create_namespaced_role(ns, o),
        "RoleBinding": lambda o: rbac.create_namespaced_role_binding(ns, o),
        "ClusterRole": rbac.create_cluster_role,
        "ClusterRoleBinding": rbac.create_cluster_role_binding,
    }
    for obj in objects:
        create[obj["kind"]](obj)
    for who, groups, verb, resource, namespace, name, expected in questions:
        head, _, sub = resource.partition("/")  # "plural.group/subresource", like kubectl's resource names
        plural, _, group = head.partition(".")
        target = f"{plural}/{sub}" if sub else plural
        status = sar(admin, verb, target, who=who, groups=tuple(groups), group=group, namespace=namespace, name=name)
        assert status["allowed"] is expected, (who, groups, verb, resource, namespace, name, status)
        assert status["denied"] is None  # RBAC has no opinion; it never denies


def test_allowed_reasons_name_the_binding(admin: client.ApiClient, ns: str) -> None:
    rbac = client.RbacAuthorizationV1Api(admin)
    rbac.create_namespaced_role(ns, PODS_READER)
    rbac.create_namespaced_role_binding(ns, binding("readers", "Role", "reader", user("alice"), sa("runner")))
    assert sar(admin, "get", "pods", who="alice", namespace=ns)["reason"] == (
        f'RBAC: allowed by RoleBinding "readers/{ns}" of Role "reader" to User "alice"'
    )
    assert sar(admin, "get", "pods", who=f"system:serviceaccount:{ns}:runner", namespace=ns)["reason"] == (
        f'RBAC: allowed by RoleBinding "readers/{ns}" of Role "reader" to ServiceAccount "runner/{ns}"'
    )
    assert sar(admin, "delete", "pods", who="alice", namespace=ns) == {
        "allowed": False,
        "denied": None,
        "evaluation_error": None,
        "reason": None,
    }
    rbac.create_namespaced_role_binding(ns, binding("dangling", "Role", "missing", user("erin")))
    assert sar(admin, "get", "pods", who="erin", namespace=ns)["reason"] == (f'RBAC: role.{RBAC} "missing" not found')
    assert sar(admin, "get", "", who="root", groups=("system:masters",), path="/metrics")["reason"] is None


def test_non_resource_urls_and_the_bootstrap_discovery_role(admin: client.ApiClient) -> None:
    tag = uuid.uuid4().hex[:6]
    rbac = client.RbacAuthorizationV1Api(admin)
    rbac.create_cluster_role(
        role(f"metrics-{tag}", {"verbs": ["get"], "nonResourceURLs": ["/metrics", "/logs/*"]}, cluster=True)
    )
    rbac.create_cluster_role_binding(
        binding(f"metrics-{tag}", "ClusterRole", f"metrics-{tag}", user("prom"), cluster=True)
    )
    assert sar(admin, "get", who="prom", path="/metrics")["allowed"] is True
    assert sar(admin, "get", who="prom", path="/logs/kubelet.log")["allowed"] is True
    assert sar(admin, "post", who="prom", path="/metrics")["allowed"] is False
    assert sar(admin, "get", who="prom", path="/metricsz")["allowed"] is False
    authenticated = ("system:authenticated",)
    assert sar(admin, "get", who="x", groups=authenticated, path="/apis/batch/v1")["allowed"] is True
    assert sar(admin, "get", who="x", path="/apis/batch/v1")["allowed"] is False  # a SAR adds no groups
    assert sar(
        admin, "create", "selfsubjectaccessreviews", who="x", groups=authenticated, group="authorization.k8s.io"
    )["allowed"]


def test_review_validation(admin: client.ApiClient, ns: str) -> None:
    authz = client.AuthorizationV1Api(admin)
    code, body = failure(authz.create_subject_access_review, {"spec": {"resourceAttributes": {"verb": "get"}}})
    assert (code, body["reason"]) == (422, "Invalid")
    assert body["message"] == (
        'SubjectAccessReview.authorization.k8s.io "" is invalid: '
        'spec.user: Invalid value: "": at least one of user or group must be specified'
    )
    code, body = failure(authz.create_subject_access_review, {"spec": {"user": "alice"}})
    assert code == 422 and "exactly one of nonResourceAttributes or resourceAttributes" in body["message"]
    local = authz.create_namespaced_local_subject_access_review(
        ns, {"spec": {"user": "alice", "resourceAttributes": {"verb": "get", "resource": "pods", "namespace": ns}}}
    )
    assert local.metadata.namespace == ns and local.status.allowed is False
    code, body = failure(
        authz.create_namespaced_local_subject_access_review,
        ns,
        {"spec": {"user": "alice", "resourceAttributes": {"verb": "get", "resource": "pods", "namespace": "other"}}},
    )
    assert code == 422 and "must match metadata.namespace" in body["message"]


def test_rbac_objects_are_validated_like_the_apiserver(admin: client.ApiClient, ns: str) -> None:
    rbac = client.RbacAuthorizationV1Api(admin)
    rbac.create_namespaced_role_binding(ns, binding("rb", "Role", "reader", user("alice")))
    code, body = failure(
        rbac.patch_namespaced_role_binding, "rb", ns, {"roleRef": {"apiGroup": RBAC, "kind": "Role", "name": "other"}}
    )
    assert code == 422 and body["message"].endswith(
        'roleRef: Invalid value: rbac.RoleRef{APIGroup:"rbac.authorization.k8s.io", Kind:"Role", Name:"other"}: '
        "cannot change roleRef"
    )
    code, body = failure(rbac.create_cluster_role_binding, binding("x", "Role", "r", sa("runner"), cluster=True))
    assert code == 422 and {c["field"] for c in body["details"]["causes"]} == {"roleRef.kind", "subjects[0].namespace"}


# ---- self reviews and enforcement -------------------------------------------------------------


def test_self_subject_access_review_answers_for_the_caller(
    emu: KubeEmulator, admin: client.ApiClient, ns: str, tmp_path: Path
) -> None:
    client.RbacAuthorizationV1Api(admin).create_namespaced_role(ns, PODS_READER)
    client.RbacAuthorizationV1Api(admin).create_namespaced_role_binding(
        ns, binding("rb", "Role", "reader", user("frank"))
    )
    frank = client_for(emu, tmp_path, "frank-token")
    emu.add_token("frank-token", "frank")
    authz = client.AuthorizationV1Api(frank)

    def can(verb: str) -> bool:
        spec = {"resourceAttributes": {"verb": verb, "resource": "pods", "namespace": ns}}
        return authz.create_self_subject_access_review({"spec": spec}).status.allowed

    assert can("list") and not can("delete")


@pytest.fixture
def enforcing(emu: KubeEmulator) -> Iterator[KubeEmulator]:
    emu.enforce_rbac = True
    yield emu
    emu.enforce_rbac = False


def test_enforcement_authenticates_every_request(
    enforcing: KubeEmulator, admin: client.ApiClient, tmp_path: Path
) -> None:
    for token in (None, "bad-token"):
        api = client_for(enforcing, tmp_path, None)
        if token:
            api.configuration.api_key = {"authorization": f"Bearer {token}"}
        code, body = failure(client.CoreV1Api(api).list_namespaced_pod, "default")
        assert (code, body) == (
            401,
            {
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Failure",
                "message": "Unauthorized",
                "reason": "Unauthorized",
                "code": 401,
            },
        )
    assert client.CoreV1Api(admin).list_namespaced_pod("default").items is not None  # the issued kubeconfig token
    record = enforcing.requests[-2]
    assert (record.verb, record.resource, record.token) == ("list", "pods", "bad-token")


def test_enforcement_denies_with_the_apiserver_messages(
    enforcing: KubeEmulator, admin: client.ApiClient, ns: str, tmp_path: Path
) -> None:
    enforcing.add_token("ursula-token", "ursula", groups=["dev"])
    ursula = client_for(enforcing, tmp_path, "ursula-token")
    job = {
        "metadata": {"name": "j"},
        "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}},
    }
    code, body = failure(client.BatchV1Api(ursula).create_namespaced_job, ns, job)
    assert (code, body["reason"], body["details"]) == (403, "Forbidden", {"group": "batch", "kind": "jobs"})
    assert body["message"] == (
        f'jobs.batch is forbidden: User "ursula" cannot create resource "jobs" in API group "batch" in the namespace "{ns}"'
    )
    code, body = failure(client.CoreV1Api(ursula).read_namespaced_pod_log, "p", ns)
    assert body["message"] == (
        f'pods "p" is forbidden: User "ursula" cannot get resource "pods/log" in API group "" in the namespace "{ns}"'
    )
    code, body = failure(client.CoreV1Api(ursula).list_namespace)
    assert body["message"] == (
        'namespaces is forbidden: User "ursula" cannot list resource "namespaces" in API group "" at the cluster scope'
    )
    assert client.VersionApi(ursula).get_code().major == "1"  # system:discovery binds every authenticated user

    rbac = client.RbacAuthorizationV1Api(admin)
    rbac.create_namespaced_role(
        ns, role("jobs", {"verbs": ["create", "get"], "apiGroups": ["batch"], "resources": ["jobs"]})
    )
    rbac.create_namespaced_role_binding(ns, binding("rb", "Role", "jobs", group("dev")))
    assert client.BatchV1Api(ursula).create_namespaced_job(ns, job).metadata.name == "j"
    assert client.BatchV1Api(ursula).read_namespaced_job("j", ns).metadata.name == "j"
    code, body = failure(client.BatchV1Api(ursula).delete_namespaced_job, "j", ns)
    assert code == 403 and 'User "ursula" cannot delete resource "jobs"' in body["message"]


def test_enforcement_for_service_accounts_and_watches(
    enforcing: KubeEmulator, admin: client.ApiClient, ns: str, tmp_path: Path
) -> None:
    enforcing.add_service_account_token("sa-token", ns, "operator")
    operator = client_for(enforcing, tmp_path, "sa-token")
    _, body = failure(client.CoreV1Api(operator).list_namespaced_config_map, ns)
    assert f'User "system:serviceaccount:{ns}:operator" cannot list resource "configmaps"' in body["message"]
    rbac = client.RbacAuthorizationV1Api(admin)
    rbac.create_namespaced_role(
        ns, role("cm", {"verbs": ["list", "watch"], "apiGroups": [""], "resources": ["configmaps"]})
    )
    rbac.create_namespaced_role_binding(ns, binding("rb", "Role", "cm", sa("operator")))
    assert client.CoreV1Api(operator).list_namespaced_config_map(ns).items == []
    events = kubernetes.watch.Watch().stream(
        client.CoreV1Api(operator).list_namespaced_config_map, ns, timeout_seconds=1
    )
    assert list(events) == []


# ---- the real kopf under enforcement -----------------------------------------------------------


def test_kopf_runs_on_exactly_the_rules_it_is_granted(
    emu: KubeEmulator, admin: client.ApiClient, ns: str, tmp_path: Path
) -> None:
    """A kopf operator with a service-account token works on a namespaced Role; without the
    configmaps grant its handler's create is refused with the apiserver's 403, and it retries."""
    from test_kubeemu_faults import CRD, GROUP, OPERATOR, PLURAL, VERSION

    emu.apply_crd(CRD)
    rbac = client.RbacAuthorizationV1Api(admin)
    rules = [
        {"verbs": ["list", "watch", "patch"], "apiGroups": [GROUP], "resources": [PLURAL, f"{PLURAL}/status"]},
        {"verbs": ["create"], "apiGroups": ["", "events.k8s.io"], "resources": ["events"]},
    ]
    rbac.create_namespaced_role(ns, role("operator", *rules))
    rbac.create_namespaced_role_binding(ns, binding("operator", "Role", "operator", sa("operator")))
    emu.add_service_account_token(f"op-{ns}", ns, "operator")
    operator = tmp_path / "operator.py"
    operator.write_text(OPERATOR)
    log = (tmp_path / "kopf.log").open("w+")
    env = {**os.environ, "KUBECONFIG": str(emu.write_kubeconfig(tmp_path / "op", token=f"op-{ns}"))}
    emu.enforce_rbac = True
    proc = subprocess.Popen(
        [sys.executable, "-m", "kopf", "run", "--standalone", "--namespace", ns, "--verbose", str(operator)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    try:
        custom = client.CustomObjectsApi(admin)
        body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "EvalJob", "metadata": {"name": "j"}, "spec": {}}
        custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, body)
        denied = f'configmaps is forbidden: User \\"system:serviceaccount:{ns}:operator\\" cannot create resource'
        wait(lambda: denied in (tmp_path / "kopf.log").read_text(), tmp_path)  # the body, JSON-quoted in kopf's log
        rules.append({"verbs": ["create"], "apiGroups": [""], "resources": ["configmaps"]})
        rbac.patch_namespaced_role("operator", ns, {"rules": rules})
        wait(lambda: (emu.get_object(GROUP, PLURAL, "j", ns) or {}).get("status", {}).get("phase") == "Done", tmp_path)
    finally:
        emu.enforce_rbac = False
        proc.send_signal(signal.SIGINT)
        proc.wait(20)
        log.close()
    assert emu.get_object("", "configmaps", "j-results", ns) is not None


def wait(predicate: Callable[[], bool], tmp_path: Path, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError((tmp_path / "kopf.log").read_text()[-3000:])
        time.sleep(0.1)
