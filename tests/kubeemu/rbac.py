"""The RBAC authorizer: Roles, RoleBindings, ClusterRoles and ClusterRoleBindings, evaluated as
kube-apiserver evaluates them (plugin/pkg/auth/authorizer/rbac and pkg/apis/rbac/v1/evaluation_helpers.go).

Why its own module: the emulator answers SubjectAccessReviews with it and, when enforcement is
on, authorizes every request with it, so both must agree with a real cluster down to the reason
strings (`RBAC: allowed by ClusterRoleBinding "x" of ClusterRole "y" to User "z"`).

The RBAC objects are ordinary stored objects of rbac.authorization.k8s.io/v1 (tests create them
with the real client, like `kubectl apply`); they are read afresh on each decision, so a binding
takes effect at once (a real cluster's informer lags by milliseconds). The cost of a decision
grows with the number of bindings, never with the request history.

As on a real cluster: members of `system:masters` are allowed everything before RBAC is asked
(the privileged-group authorizer, which gives no reason); a handful of bootstrap policies exist
without being stored (system:discovery, system:basic-user, system:public-info-viewer for
authenticated users, and the cluster-admin ClusterRole for roleRefs); RBAC never denies, it only
has no opinion, so `denied` is never set. Not emulated: aggregated ClusterRoles (aggregationRule),
the escalate/bind checks that stop a user granting what they do not hold, and the Node authorizer.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from . import errors

if TYPE_CHECKING:
    from .store import Store

RBAC_GROUP = "rbac.authorization.k8s.io"
SUPERUSER_GROUP = "system:masters"
AUTHENTICATED = "system:authenticated"
UNAUTHENTICATED = "system:unauthenticated"
ANONYMOUS = "system:anonymous"
SERVICE_ACCOUNT_PREFIX = "system:serviceaccount:"

Rule = Mapping[str, Any]

#: Bootstrap ClusterRoles every cluster has (plugin/pkg/auth/authorizer/rbac/bootstrappolicy), not stored.
BOOTSTRAP_CLUSTER_ROLES: dict[str, list[Rule]] = {
    "cluster-admin": [
        {"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]},
        {"verbs": ["*"], "nonResourceURLs": ["*"]},
    ],
    "system:discovery": [
        {
            "verbs": ["get"],
            "nonResourceURLs": [
                "/api",
                "/api/*",
                "/apis",
                "/apis/*",
                "/healthz",
                "/livez",
                "/openapi",
                "/openapi/*",
                "/readyz",
                "/version",
                "/version/",
            ],
        }
    ],
    "system:basic-user": [
        {
            "verbs": ["create"],
            "apiGroups": ["authorization.k8s.io"],
            "resources": ["selfsubjectaccessreviews", "selfsubjectrulesreviews"],
        },
        {"verbs": ["create"], "apiGroups": ["authentication.k8s.io"], "resources": ["selfsubjectreviews"]},
    ],
    "system:public-info-viewer": [
        {"verbs": ["get"], "nonResourceURLs": ["/healthz", "/livez", "/readyz", "/version", "/version/"]}
    ],
}


def _bootstrap_binding(name: str, *groups: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "roleRef": {"apiGroup": RBAC_GROUP, "kind": "ClusterRole", "name": name},
        "subjects": [{"apiGroup": RBAC_GROUP, "kind": "Group", "name": g} for g in groups],
    }


BOOTSTRAP_CLUSTER_ROLE_BINDINGS = [
    _bootstrap_binding("cluster-admin", SUPERUSER_GROUP),
    _bootstrap_binding("system:discovery", AUTHENTICATED),
    _bootstrap_binding("system:basic-user", AUTHENTICATED),
    _bootstrap_binding("system:public-info-viewer", AUTHENTICATED, UNAUTHENTICATED),
]


@dataclass(frozen=True)
class UserInfo:
    """Who a request is from, as the authenticator found it (k8s.io/apiserver/pkg/authentication/user.Info)."""

    username: str
    uid: str = ""
    groups: tuple[str, ...] = ()
    extra: Mapping[str, tuple[str, ...]] = field(default_factory=dict, hash=False)

    def to_json(self) -> dict[str, Any]:
        """As in TokenReview status.user / SelfSubjectReview status.userInfo (empty fields omitted)."""
        body: dict[str, Any] = {"username": self.username}
        if self.uid:
            body["uid"] = self.uid
        if self.groups:
            body["groups"] = list(self.groups)
        if self.extra:
            body["extra"] = {k: list(v) for k, v in self.extra.items()}
        return body


@dataclass(frozen=True)
class Attributes:
    """One authorization question (k8s.io/apiserver/pkg/authorization/authorizer.Attributes)."""

    user: UserInfo
    verb: str
    resource_request: bool = True
    namespace: str = ""
    group: str = ""
    version: str = ""
    resource: str = ""
    subresource: str = ""
    name: str = ""
    path: str = ""  # non-resource requests only


# ---- rule matching (evaluation_helpers.go) ---------------------------------------------------


def _verb_matches(rule: Rule, verb: str) -> bool:
    return any(v in ("*", verb) for v in rule.get("verbs") or ())


def _group_matches(rule: Rule, group: str) -> bool:
    return any(g in ("*", group) for g in rule.get("apiGroups") or ())


def _resource_matches(rule: Rule, combined: str, subresource: str) -> bool:
    for granted in rule.get("resources") or ():
        if granted in ("*", combined):
            return True
        if subresource and granted == f"*/{subresource}":
            return True
    return False


def _name_matches(rule: Rule, name: str) -> bool:
    names = rule.get("resourceNames") or ()
    return not names or name in names


def _url_matches(rule: Rule, path: str) -> bool:
    for granted in rule.get("nonResourceURLs") or ():
        if granted in ("*", path):
            return True
        if granted.endswith("*") and path.startswith(granted.rstrip("*")):
            return True
    return False


def rule_allows(attrs: Attributes, rule: Rule) -> bool:
    """RuleAllows: one PolicyRule against one request."""
    if not _verb_matches(rule, attrs.verb):
        return False
    if not attrs.resource_request:
        return _url_matches(rule, attrs.path)
    combined = f"{attrs.resource}/{attrs.subresource}" if attrs.subresource else attrs.resource
    return (
        _group_matches(rule, attrs.group)
        and _resource_matches(rule, combined, attrs.subresource)
        and _name_matches(rule, attrs.name)
    )


# ---- subjects and bindings (rule.go) -----------------------------------------------------------


def _subject_applies(subject: Mapping[str, Any], user: UserInfo, namespace: str) -> bool:
    kind, name = subject.get("kind"), subject.get("name")
    if kind == "User":
        return user.username == name
    if kind == "Group":
        return name in user.groups
    if kind == "ServiceAccount":
        sa_namespace = subject.get("namespace") or namespace
        return bool(sa_namespace) and user.username == f"{SERVICE_ACCOUNT_PREFIX}{sa_namespace}:{name}"
    return False


def _describe_subject(subject: Mapping[str, Any], binding_namespace: str) -> str:
    if subject.get("kind") == "ServiceAccount":
        return f'ServiceAccount "{subject.get("name")}/{subject.get("namespace") or binding_namespace}"'
    return f'{subject.get("kind")} "{subject.get("name")}"'


class RBACAuthorizer:
    """Authorization decisions from the RBAC objects in a Store (plus the bootstrap policy)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def _cluster_role_rules(self, name: str) -> list[Rule] | None:
        stored = self.store.find(RBAC_GROUP, "clusterroles", None, name)
        if stored is not None:
            return list(stored.get("rules") or [])
        return BOOTSTRAP_CLUSTER_ROLES.get(name)

    def _role_rules(self, ref: Mapping[str, Any], namespace: str) -> tuple[list[Rule], str | None]:
        """The rules a roleRef points at; a missing role is an error the reason reports."""
        kind, name = ref.get("kind"), ref.get("name", "")
        if kind == "ClusterRole":
            rules = self._cluster_role_rules(name)
            return (rules, None) if rules is not None else ([], f'clusterrole.{RBAC_GROUP} "{name}" not found')
        if kind == "Role" and namespace:
            role = self.store.find(RBAC_GROUP, "roles", namespace, name)
            return (list(role.get("rules") or []), None) if role else ([], f'role.{RBAC_GROUP} "{name}" not found')
        return [], f'unsupported role reference kind: "{kind}"'

    def _cluster_bindings(self) -> Iterator[dict[str, Any]]:
        stored = {b["metadata"]["name"]: b for b in self.store.all(RBAC_GROUP, "clusterrolebindings")}
        yield from (b for b in BOOTSTRAP_CLUSTER_ROLE_BINDINGS if b["metadata"]["name"] not in stored)
        yield from sorted(stored.values(), key=lambda b: b["metadata"]["name"])

    def visit(self, user: UserInfo, namespace: str) -> Iterator[tuple[str, list[Rule], str | None]]:
        """(source description, rules, error) for every binding that applies to `user` (VisitRulesFor)."""
        scopes: list[tuple[str, str, Iterable[dict[str, Any]]]] = [("ClusterRoleBinding", "", self._cluster_bindings())]
        if namespace:
            bindings = sorted(
                self.store.all(RBAC_GROUP, "rolebindings", namespace), key=lambda b: b["metadata"]["name"]
            )
            scopes.append(("RoleBinding", namespace, bindings))
        for kind, scope, bindings in scopes:
            for binding in bindings:
                subject = next((s for s in binding.get("subjects") or [] if _subject_applies(s, user, scope)), None)
                if subject is None:
                    continue
                ref = binding.get("roleRef") or {}
                rules, error = self._role_rules(ref, scope)
                name = binding["metadata"]["name"] + (f"/{scope}" if scope else "")
                source = (
                    f'{kind} "{name}" of {ref.get("kind")} "{ref.get("name")}" to {_describe_subject(subject, scope)}'
                )
                yield source, rules, error

    def authorize(self, attrs: Attributes) -> tuple[bool, str]:
        """(allowed, reason), the reason worded as the real authorizer words it ("" when it has none)."""
        if SUPERUSER_GROUP in attrs.user.groups:
            return True, ""
        failures: list[str] = []
        for source, rules, error in self.visit(attrs.user, attrs.namespace if attrs.resource_request else ""):
            if any(rule_allows(attrs, rule) for rule in rules):
                return True, f"RBAC: allowed by {source}"
            if error:
                failures.append(error)
        if not failures:
            return False, ""
        return False, "RBAC: " + (failures[0] if len(failures) == 1 else "[" + ", ".join(failures) + "]")


# ---- what a denial looks like (responsewriters.Forbidden) ----------------------------------------


def forbidden_message(attrs: Attributes) -> str:
    who = attrs.user.username
    if not attrs.resource_request:
        return f'User "{who}" cannot {attrs.verb} path "{attrs.path}"'
    resource = f"{attrs.resource}/{attrs.subresource}" if attrs.subresource else attrs.resource
    where = f'in the namespace "{attrs.namespace}"' if attrs.namespace else "at the cluster scope"
    return f'User "{who}" cannot {attrs.verb} resource "{resource}" in API group "{attrs.group}" {where}'


def forbidden(attrs: Attributes, reason: str) -> errors.ApiError:
    """403 exactly as kube-apiserver writes it: apierrors.NewForbidden(group/resource, name, message[: reason])."""
    why = forbidden_message(attrs) + (f": {reason}" if reason else "")
    resource = attrs.resource if attrs.resource_request else ""
    qualified = errors.qualified(resource, attrs.group)
    if not resource:
        message = f"forbidden: {why}"
    elif attrs.name:
        message = f'{qualified} "{attrs.name}" is forbidden: {why}'
    else:
        message = f"{qualified} is forbidden: {why}"
    details = {k: v for k, v in (("name", attrs.name), ("group", attrs.group), ("kind", resource)) if v}
    return errors.ApiError(403, "Forbidden", message, details)


# ---- admission of the RBAC objects themselves ----------------------------------------------------


def _go_role_ref(ref: Mapping[str, Any]) -> str:
    return f'rbac.RoleRef{{APIGroup:"{ref.get("apiGroup", "")}", Kind:"{ref.get("kind", "")}", Name:"{ref.get("name", "")}"}}'


def validate(kind: str, obj: Mapping[str, Any], old: Mapping[str, Any] | None) -> list[dict[str, str]]:
    """The checks of pkg/apis/rbac/validation that a wrong manifest hits first."""
    causes: list[dict[str, str]] = []
    if kind in ("Role", "ClusterRole"):
        for i, rule in enumerate(obj.get("rules") or []):
            path = f"rules[{i}]"
            if not rule.get("verbs"):
                causes.append(
                    errors.cause(
                        f"{path}.verbs", "FieldValueRequired", "Required value: verbs must contain at least one value"
                    )
                )
            if rule.get("nonResourceURLs") and (rule.get("resources") or rule.get("apiGroups")) and kind == "Role":
                causes.append(
                    errors.cause(
                        f"{path}.nonResourceURLs",
                        "FieldValueInvalid",
                        f"Invalid value: {rule['nonResourceURLs']}: namespaced rules cannot apply to non-resource URLs",
                    )
                )
            if not rule.get("nonResourceURLs") and not rule.get("resources"):
                causes.append(
                    errors.cause(
                        f"{path}.resources",
                        "FieldValueRequired",
                        "Required value: resource rules must supply at least one resource",
                    )
                )
    if kind in ("RoleBinding", "ClusterRoleBinding"):
        ref = obj.get("roleRef") or {}
        if ref.get("apiGroup") != RBAC_GROUP:
            causes.append(
                errors.cause(
                    "roleRef.apiGroup",
                    "FieldValueNotSupported",
                    f'Unsupported value: "{ref.get("apiGroup", "")}": supported values: "{RBAC_GROUP}"',
                )
            )
        allowed = ("ClusterRole", "Role") if kind == "RoleBinding" else ("ClusterRole",)
        if ref.get("kind") not in allowed:
            supported = ", ".join(f'"{k}"' for k in allowed)
            causes.append(
                errors.cause(
                    "roleRef.kind",
                    "FieldValueNotSupported",
                    f'Unsupported value: "{ref.get("kind", "")}": supported values: {supported}',
                )
            )
        if not ref.get("name"):
            causes.append(errors.cause("roleRef.name", "FieldValueRequired", "Required value"))
        for i, subject in enumerate(obj.get("subjects") or []):
            if subject.get("kind") not in ("User", "Group", "ServiceAccount"):
                causes.append(
                    errors.cause(
                        f"subjects[{i}].kind",
                        "FieldValueNotSupported",
                        f'Unsupported value: "{subject.get("kind", "")}": supported values: "Group", "ServiceAccount", "User"',
                    )
                )
            if not subject.get("name"):
                causes.append(errors.cause(f"subjects[{i}].name", "FieldValueRequired", "Required value"))
            if (
                subject.get("kind") == "ServiceAccount"
                and kind == "ClusterRoleBinding"
                and not subject.get("namespace")
            ):
                causes.append(errors.cause(f"subjects[{i}].namespace", "FieldValueRequired", "Required value"))
        if old is not None and (old.get("roleRef") or {}) != ref:
            causes.append(
                errors.cause(
                    "roleRef", "FieldValueInvalid", f"Invalid value: {_go_role_ref(ref)}: cannot change roleRef"
                )
            )
    return causes
