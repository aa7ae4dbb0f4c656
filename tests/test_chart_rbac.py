"""tests/rbac.py: collecting a ServiceAccount's RBAC rules and answering "may it?" like the
Kubernetes RBAC authorizer."""

from __future__ import annotations

from typing import Any

import pytest

from rbac import allows, rules_from_manifests


def role(kind: str, name: str, rules: list[dict[str, Any]], namespace: str | None = None) -> dict[str, Any]:
    meta = {"name": name, **({"namespace": namespace} if namespace else {})}
    return {"kind": kind, "metadata": meta, "rules": rules}


def binding(
    kind: str, role_kind: str, role_name: str, sa: str, sa_ns: str, namespace: str | None = None
) -> dict[str, Any]:
    meta = {"name": f"bind-{role_name}", **({"namespace": namespace} if namespace else {})}
    return {
        "kind": kind,
        "metadata": meta,
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": role_name},
        "subjects": [{"kind": "ServiceAccount", "name": sa, "namespace": sa_ns}],
    }


DOCS = [
    role(
        "Role",
        "jobs",
        [
            {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["create", "get"]},
            {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]},
        ],
        "team-a",
    ),
    binding("RoleBinding", "Role", "jobs", "op", "system", "team-a"),
    role(
        "ClusterRole",
        "reader",
        [{"apiGroups": ["evalkube.dev"], "resources": ["evaljobs", "*/status"], "verbs": ["get", "list"]}],
    ),
    binding("ClusterRoleBinding", "ClusterRole", "reader", "op", "system"),
    role(
        "ClusterRole",
        "cm-writer",
        [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["*"], "resourceNames": ["catalog"]}],
    ),
    binding("RoleBinding", "ClusterRole", "cm-writer", "op", "system", "team-b"),
    role("ClusterRole", "everything", [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]),
    binding("ClusterRoleBinding", "ClusterRole", "everything", "op", "other-namespace"),
    binding("ClusterRoleBinding", "ClusterRole", "everything", "someone-else", "system"),
]
RULES = rules_from_manifests(DOCS, "op", "system")


@pytest.mark.parametrize(
    ("verb", "group", "resource", "subresource", "namespace", "name", "allowed"),
    [
        ("create", "batch", "jobs", "", "team-a", None, True),
        ("create", "batch", "jobs", "", "team-b", None, False),  # a Role grants only in its namespace
        ("delete", "batch", "jobs", "", "team-a", None, False),  # verb not granted
        ("get", "", "pods", "log", "team-a", None, True),
        ("get", "", "pods", "", "team-a", None, False),  # pods/log does not grant pods
        ("list", "evalkube.dev", "evaljobs", "", "anywhere", None, True),  # ClusterRoleBinding
        ("list", "evalkube.dev", "evaljobs", "", None, None, True),  # across all namespaces
        ("get", "evalkube.dev", "evaljobs", "status", "x", None, True),  # */status
        ("get", "evalkube.dev", "evaljobs", "scale", "x", None, False),
        ("list", "", "evaljobs", "", "x", None, False),  # wrong API group
        ("update", "", "configmaps", "", "team-b", "catalog", True),  # RoleBinding to a ClusterRole
        ("update", "", "configmaps", "", "team-b", "other", False),  # resourceNames
        ("list", "", "configmaps", "", "team-b", None, False),
        ("update", "", "configmaps", "", None, "catalog", False),  # a RoleBinding never grants cluster-wide
        ("get", "", "secrets", "", "team-a", None, False),  # bindings of other SAs don't count
    ],
)
def test_allows(
    verb: str, group: str, resource: str, subresource: str, namespace: str | None, name: str | None, allowed: bool
) -> None:
    assert allows(RULES, verb, group, resource, subresource, namespace, name) is allowed


def test_rules_carry_the_namespace_they_apply_in() -> None:
    assert sorted((r["namespace"] or "", r["resources"][0]) for r in RULES) == [
        ("", "evaljobs"),
        ("team-a", "jobs"),
        ("team-a", "pods/log"),
        ("team-b", "configmaps"),
    ]


def test_a_binding_to_a_missing_role_is_an_error() -> None:
    with pytest.raises(LookupError):
        rules_from_manifests([binding("RoleBinding", "Role", "gone", "op", "system", "team-a")], "op")
