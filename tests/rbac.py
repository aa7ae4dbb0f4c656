"""What a ServiceAccount may do, according to RBAC objects (rendered manifests).

`rules_from_manifests` collects the PolicyRules bound to one ServiceAccount through RoleBindings
and ClusterRoleBindings; `allows` answers an authorization question with the RBAC authorizer's
matching rules (verbs, API groups, resources with `*` and `*/subresource`, resourceNames). Used
to check the chart's Roles against the API calls the operator and the API were seen to make.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

Rule = dict[str, Any]


def _bound_to(binding: dict[str, Any], service_account: str, namespace: str | None) -> bool:
    return any(
        subject.get("kind") == "ServiceAccount"
        and subject.get("name") == service_account
        and (namespace is None or subject.get("namespace") == namespace)
        for subject in binding.get("subjects") or []
    )


def rules_from_manifests(
    docs: Iterable[dict[str, Any]], service_account: str, namespace: str | None = None
) -> list[Rule]:
    """The rules granted to ServiceAccount `service_account` (of `namespace`, if given).

    Each rule is the PolicyRule as rendered plus "namespace": where it applies, None for
    cluster-wide (bound by a ClusterRoleBinding). Non-resource URL rules are left out.
    """
    docs = [d for d in docs if d]
    roles = {
        (d["kind"], d["metadata"].get("namespace"), d["metadata"]["name"]): d
        for d in docs
        if d["kind"] in ("Role", "ClusterRole")
    }
    rules: list[Rule] = []
    for binding in docs:
        if binding["kind"] not in ("RoleBinding", "ClusterRoleBinding"):
            continue
        if not _bound_to(binding, service_account, namespace):
            continue
        scope = binding["metadata"].get("namespace") if binding["kind"] == "RoleBinding" else None
        ref = binding["roleRef"]
        role_ns = scope if ref["kind"] == "Role" else None
        role = roles.get((ref["kind"], role_ns, ref["name"]))
        if role is None:
            raise LookupError(
                f"{binding['kind']} {binding['metadata']['name']} refers to missing {ref['kind']} {ref['name']}"
            )
        rules.extend({**rule, "namespace": scope} for rule in role.get("rules") or [] if "resources" in rule)
    return rules


def _resource_matches(rule: Rule, resource: str, subresource: str) -> bool:
    combined = f"{resource}/{subresource}" if subresource else resource
    for granted in rule.get("resources") or []:
        if granted in ("*", combined):
            return True
        if subresource and granted == f"*/{subresource}":
            return True
    return False


def allows(
    rules: Iterable[Rule],
    verb: str,
    group: str,
    resource: str,
    subresource: str = "",
    namespace: str | None = None,
    name: str | None = None,
) -> bool:
    """Whether `rules` permit `verb` on group/resource[/subresource] in `namespace`.

    `namespace` None asks about a cluster-scoped request (or one across all namespaces), which
    only cluster-wide rules can grant. `name` is the object's name, for rules with resourceNames.
    """
    for rule in rules:
        if rule["namespace"] is not None and rule["namespace"] != namespace:
            continue
        if not {"*", verb} & set(rule.get("verbs") or []):
            continue
        if not {"*", group} & set(rule.get("apiGroups") or []):
            continue
        if not _resource_matches(rule, resource, subresource):
            continue
        names = rule.get("resourceNames")
        if names and name not in names:
            continue
        return True
    return False
