"""tests/pss.py: the restricted Pod Security Standard checker, rule by rule.

A compliant pod spec passes; each row below breaks exactly one rule and must be reported.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from pss import violations


def compliant() -> dict[str, Any]:
    return {
        "securityContext": {"runAsNonRoot": True, "runAsUser": 65532, "seccompProfile": {"type": "RuntimeDefault"}},
        "initContainers": [
            {
                "name": "init",
                "image": "x",
                "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
            }
        ],
        "containers": [
            {
                "name": "main",
                "image": "x",
                "ports": [{"containerPort": 80}],
                "securityContext": {
                    "allowPrivilegeEscalation": False,
                    "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]},
                    "appArmorProfile": {"type": "RuntimeDefault"},
                    "seLinuxOptions": {"type": "container_t"},
                },
            }
        ],
        "volumes": [
            {"name": "tmp", "emptyDir": {}},
            {"name": "cfg", "configMap": {"name": "c"}},
            {"name": "data", "persistentVolumeClaim": {"claimName": "d"}},
        ],
    }


def main(spec: dict[str, Any]) -> dict[str, Any]:
    return spec["containers"][0]["securityContext"]


def set_in(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(spec: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node = spec
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node.setdefault(key, {})
        node[last] = value

    return mutate


BREAKS: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "host network": (set_in("hostNetwork", True), "hostNetwork"),
    "host PID": (set_in("hostPID", True), "hostPID"),
    "host IPC": (set_in("hostIPC", True), "hostIPC"),
    "privileged": (set_in("containers.0.securityContext.privileged", True), "privileged"),
    "extra capability": (set_in("containers.0.securityContext.capabilities.add", ["SYS_ADMIN"]), "SYS_ADMIN"),
    "ALL not dropped": (set_in("initContainers.0.securityContext.capabilities.drop", ["NET_RAW"]), "drop"),
    "hostPath volume": (lambda s: s["volumes"].append({"name": "h", "hostPath": {"path": "/"}}), "hostPath"),
    "other volume type": (lambda s: s["volumes"].append({"name": "n", "nfs": {"server": "x", "path": "/"}}), "nfs"),
    "host port": (set_in("containers.0.ports.0.hostPort", 80), "hostPort"),
    "AppArmor unconfined": (set_in("containers.0.securityContext.appArmorProfile.type", "Unconfined"), "appArmor"),
    "SELinux type": (set_in("containers.0.securityContext.seLinuxOptions.type", "spc_t"), "seLinuxOptions.type"),
    "SELinux user": (set_in("securityContext.seLinuxOptions.user", "root"), "seLinuxOptions.user"),
    "proc mount": (set_in("containers.0.securityContext.procMount", "Unmasked"), "procMount"),
    "seccomp unconfined in a container": (
        set_in("containers.0.securityContext.seccompProfile.type", "Unconfined"),
        "seccompProfile",
    ),
    "no seccomp anywhere": (lambda s: s["securityContext"].pop("seccompProfile"), "seccompProfile"),
    "unsafe sysctl": (set_in("securityContext.sysctls", [{"name": "kernel.msgmax", "value": "1"}]), "kernel.msgmax"),
    "host process": (set_in("securityContext.windowsOptions.hostProcess", True), "hostProcess"),
    "escalation allowed": (
        set_in("containers.0.securityContext.allowPrivilegeEscalation", True),
        "allowPrivilegeEscalation",
    ),
    "escalation unset": (lambda s: main(s).pop("allowPrivilegeEscalation"), "allowPrivilegeEscalation"),
    "root allowed in a container": (set_in("containers.0.securityContext.runAsNonRoot", False), "runAsNonRoot"),
    "runAsNonRoot nowhere": (lambda s: s["securityContext"].pop("runAsNonRoot"), "runAsNonRoot"),
    "UID 0": (set_in("initContainers.0.securityContext.runAsUser", 0), "runAsUser"),
    "ephemeral container too": (
        lambda s: s.setdefault("ephemeralContainers", []).append({"name": "debug", "image": "x"}),
        "ephemeralContainers[debug]",
    ),
}


def test_a_compliant_pod_has_no_violations() -> None:
    assert violations(compliant()) == []


def test_container_level_settings_satisfy_the_pod_level_rules() -> None:
    spec = compliant()
    del spec["securityContext"]
    for ctr in spec["initContainers"] + spec["containers"]:
        ctr["securityContext"].update(
            runAsNonRoot=True, seccompProfile={"type": "Localhost", "localhostProfile": "p.json"}
        )
    assert violations(spec) == []


@pytest.mark.parametrize("case", BREAKS)
def test_each_broken_rule_is_reported(case: str) -> None:
    mutate, field = BREAKS[case]
    spec = copy.deepcopy(compliant())
    mutate(spec)
    found = violations(spec)
    assert found and all(field in line for line in found), found
