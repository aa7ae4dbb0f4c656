"""The resource types the emulator serves: built-ins plus those of installed CRDs.

A `ResourceType` carries every per-type behaviour switch the store needs, so the
store has no `if plural == "pods"` branches scattered around: status subresource,
generation tracking, allowed field selectors, delete defaults, schema.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from typing import Any

ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")
# Field selectors every type supports; the rest are per type (real apiserver: 400 otherwise).
COMMON_FIELDS = frozenset({"metadata.name", "metadata.namespace"})


@dataclass(frozen=True)
class ResourceType:
    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool = True
    singular: str = ""
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    subresources: tuple[str, ...] = ()  # "status", "log"
    field_labels: frozenset[str] = field(default=frozenset())
    generation: bool = False  # has metadata.generation (types with a spec)
    custom: bool = False  # a CR: schema, no strategic merge, PUT needs resourceVersion
    return_deleted: bool = False  # DELETE answers the object instead of a Status
    default_orphan: bool = False  # batch/v1 Job: API deletes orphan dependents by default
    schema: dict[str, Any] | None = None  # structural openAPIV3Schema (CRs only)
    crd_name: str = ""
    verbs: tuple[str, ...] = ALL_VERBS  # as listed by discovery
    stored: bool = True  # False: a review (TokenReview, SubjectAccessReview), answered, never persisted

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def store_key(self) -> tuple[str, str]:
        """Objects are stored once per group/plural and served in every version (conversion: None)."""
        return self.group, self.plural

    @property
    def has_status(self) -> bool:
        return "status" in self.subresources

    def allows_field(self, path: str) -> bool:
        return path in COMMON_FIELDS or path in self.field_labels


_POD_FIELDS = {
    "spec.nodeName",
    "spec.restartPolicy",
    "spec.schedulerName",
    "spec.serviceAccountName",
    "spec.hostNetwork",
    "status.phase",
    "status.podIP",
    "status.nominatedNodeName",
}
_EVENT_FIELDS = {
    "involvedObject.kind",
    "involvedObject.namespace",
    "involvedObject.name",
    "involvedObject.uid",
    "involvedObject.apiVersion",
    "involvedObject.resourceVersion",
    "involvedObject.fieldPath",
    "reason",
    "reportingComponent",
    "source",
    "type",
}
_EVENTS_V1_FIELDS = {
    "regarding.kind",
    "regarding.namespace",
    "regarding.name",
    "regarding.uid",
    "reason",
    "reportingController",
    "type",
}

BUILTINS: tuple[ResourceType, ...] = (
    ResourceType(
        "",
        "v1",
        "namespaces",
        "Namespace",
        namespaced=False,
        short_names=("ns",),
        subresources=("status",),
        field_labels=frozenset({"status.phase"}),
        return_deleted=True,
    ),
    ResourceType(
        "",
        "v1",
        "pods",
        "Pod",
        short_names=("po",),
        categories=("all",),
        subresources=("status", "log"),
        field_labels=frozenset(_POD_FIELDS),
        generation=True,
        return_deleted=True,
    ),
    ResourceType("", "v1", "configmaps", "ConfigMap", short_names=("cm",)),
    ResourceType("", "v1", "events", "Event", short_names=("ev",), field_labels=frozenset(_EVENT_FIELDS)),
    ResourceType("", "v1", "serviceaccounts", "ServiceAccount", short_names=("sa",)),
    ResourceType("", "v1", "secrets", "Secret", field_labels=frozenset({"type"})),
    ResourceType(
        "batch",
        "v1",
        "jobs",
        "Job",
        categories=("all",),
        subresources=("status",),
        field_labels=frozenset({"status.successful"}),
        generation=True,
        default_orphan=True,
    ),
    ResourceType(
        "apiextensions.k8s.io",
        "v1",
        "customresourcedefinitions",
        "CustomResourceDefinition",
        namespaced=False,
        short_names=("crd", "crds"),
        categories=("api-extensions",),
        subresources=("status",),
        generation=True,
    ),
    ResourceType(
        "events.k8s.io", "v1", "events", "Event", short_names=("ev",), field_labels=frozenset(_EVENTS_V1_FIELDS)
    ),
    ResourceType("coordination.k8s.io", "v1", "leases", "Lease"),
    ResourceType("rbac.authorization.k8s.io", "v1", "roles", "Role"),
    ResourceType("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding"),
    ResourceType("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", namespaced=False),
    ResourceType("rbac.authorization.k8s.io", "v1", "clusterrolebindings", "ClusterRoleBinding", namespaced=False),
    *(
        ResourceType(group, "v1", plural, kind, namespaced=namespaced, verbs=("create",), stored=False)
        for group, plural, kind, namespaced in (
            ("authentication.k8s.io", "tokenreviews", "TokenReview", False),
            ("authentication.k8s.io", "selfsubjectreviews", "SelfSubjectReview", False),
            ("authorization.k8s.io", "subjectaccessreviews", "SubjectAccessReview", False),
            ("authorization.k8s.io", "selfsubjectaccessreviews", "SelfSubjectAccessReview", False),
            ("authorization.k8s.io", "localsubjectaccessreviews", "LocalSubjectAccessReview", True),
        )
    ),
)
CRD_TYPE = next(rt for rt in BUILTINS if rt.plural == "customresourcedefinitions")
NAMESPACE_TYPE = next(rt for rt in BUILTINS if rt.plural == "namespaces")


def types_from_crd(crd: dict[str, Any]) -> list[ResourceType]:
    """One ResourceType per served version of a CRD (scale subresource is not emulated)."""
    spec, names = crd["spec"], crd["spec"]["names"]
    result = []
    for ver in spec.get("versions", []):
        if not ver.get("served", True):
            continue
        subresources = ("status",) if "status" in (ver.get("subresources") or {}) else ()
        fields = frozenset(f["jsonPath"].lstrip(".") for f in ver.get("selectableFields") or [])
        result.append(
            ResourceType(
                spec["group"],
                ver["name"],
                names["plural"],
                names["kind"],
                namespaced=spec.get("scope", "Namespaced") == "Namespaced",
                singular=names.get("singular") or names["kind"].lower(),
                short_names=tuple(names.get("shortNames") or ()),
                categories=tuple(names.get("categories") or ()),
                subresources=subresources,
                field_labels=fields,
                generation=True,
                custom=True,
                return_deleted=True,
                schema=(ver.get("schema") or {}).get("openAPIV3Schema"),
                crd_name=crd["metadata"]["name"],
            )
        )
    return result


_VERSION_RE = re.compile(r"^v(\d+)(?:(alpha|beta)(\d+))?$")


def version_priority(version: str) -> tuple[int, int, int, str]:
    """Kube-aware order used for preferredVersion: GA > beta > alpha > others, newest first."""
    m = _VERSION_RE.match(version)
    if not m:
        return 3, 0, 0, version
    stage = {None: 0, "beta": 1, "alpha": 2}[m.group(2)]
    return stage, -int(m.group(1)), -int(m.group(3) or 0), ""


class Registry:
    """Thread-safe lookup of served types by (group, version, plural)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._types: dict[tuple[str, str, str], ResourceType] = {
            (rt.group, rt.version, rt.plural): rt for rt in BUILTINS
        }

    def get(self, group: str, version: str, plural: str) -> ResourceType | None:
        with self._lock:
            return self._types.get((group, version, plural))

    def all(self) -> list[ResourceType]:
        with self._lock:
            return list(self._types.values())

    def set_crd(self, crd_name: str, types: list[ResourceType]) -> None:
        with self._lock:
            self._types = {k: v for k, v in self._types.items() if v.crd_name != crd_name}
            self._types.update({(rt.group, rt.version, rt.plural): rt for rt in types})

    def crd_types(self, crd_name: str) -> list[ResourceType]:
        with self._lock:
            return [rt for rt in self._types.values() if rt.crd_name == crd_name]
