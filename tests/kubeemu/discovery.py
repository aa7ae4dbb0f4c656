"""Discovery documents (/api, /apis, /api/v1, /apis/G[/V], /version), built from the registry.

Only the legacy (unaggregated) JSON form is served: clients that ask for aggregated
discovery (apidiscovery.k8s.io/v2) via Accept fall back to it, as with older servers.
"""

from __future__ import annotations

from typing import Any

from .resources import Registry, ResourceType, version_priority

VERSION_INFO = {
    "major": "1",
    "minor": "34",
    "gitVersion": "v1.34.0-kubeemu",
    "gitCommit": "kubeemu",
    "gitTreeState": "clean",
    "buildDate": "2025-08-27T00:00:00Z",
    "goVersion": "go1.24.6",
    "compiler": "gc",
    "platform": "linux/amd64",
}


def api_versions(server_address: str) -> dict[str, Any]:
    # serverAddressByClientCIDRs is required by the python client's V1APIVersions model.
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    }


def _group(name: str, versions: set[str]) -> dict[str, Any]:
    ordered = [{"groupVersion": f"{name}/{v}", "version": v} for v in sorted(versions, key=version_priority)]
    return {"name": name, "versions": ordered, "preferredVersion": ordered[0]}


def _versions_by_group(registry: Registry) -> dict[str, set[str]]:
    groups: dict[str, set[str]] = {}
    for rt in registry.all():
        if rt.group:
            groups.setdefault(rt.group, set()).add(rt.version)
    return groups


def api_group_list(registry: Registry) -> dict[str, Any]:
    groups = _versions_by_group(registry)
    return {
        "kind": "APIGroupList",
        "apiVersion": "v1",
        "groups": [_group(name, versions) for name, versions in sorted(groups.items())],
    }


def api_group(registry: Registry, name: str) -> dict[str, Any] | None:
    versions = _versions_by_group(registry).get(name)
    return {"kind": "APIGroup", "apiVersion": "v1", **_group(name, versions)} if versions else None


def _entries(rt: ResourceType) -> list[dict[str, Any]]:
    main: dict[str, Any] = {
        "name": rt.plural,
        "singularName": rt.singular or rt.kind.lower(),
        "namespaced": rt.namespaced,
        "kind": rt.kind,
        "verbs": list(rt.verbs),
    }
    if rt.short_names:
        main["shortNames"] = list(rt.short_names)
    if rt.categories:
        main["categories"] = list(rt.categories)
    subs = [
        {
            "name": f"{rt.plural}/{sub}",
            "singularName": "",
            "namespaced": rt.namespaced,
            "kind": rt.kind,
            "verbs": ["get"] if sub == "log" else ["get", "patch", "update"],
        }
        for sub in rt.subresources
    ]
    return [main, *subs]


def api_resource_list(registry: Registry, group: str, version: str) -> dict[str, Any] | None:
    types = [rt for rt in registry.all() if rt.group == group and rt.version == version]
    if not types:
        return None
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": types[0].api_version,
        "resources": [e for rt in sorted(types, key=lambda t: t.plural) for e in _entries(rt)],
    }
