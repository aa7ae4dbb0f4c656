"""The Kubernetes "restricted" Pod Security Standard, as a checker of pod specs.

Implements every control of the restricted profile (which includes the baseline profile) as the
Kubernetes documentation lists them for v1.30 and later: host namespaces, privileged containers,
capabilities, hostPath volumes, host ports, AppArmor, SELinux, /proc mount type, seccomp, sysctls,
HostProcess, volume types, privilege escalation, running as non-root (and non-zero UID). Only the
pod spec is checked: the AppArmor pod annotations (deprecated in favour of appArmorProfile) are not.

`violations(pod_spec)` returns one line per violated rule, naming the field; [] means compliant.
Used by the chart tests and by the tests of the evaluator Job the operator builds.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

ALLOWED_VOLUME_TYPES = frozenset(
    {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected", "secret"}
)
SAFE_SYSCTLS = frozenset(
    {
        "kernel.shm_rmid_forced",
        "net.ipv4.ip_local_port_range",
        "net.ipv4.ip_unprivileged_port_start",
        "net.ipv4.tcp_syncookies",
        "net.ipv4.ping_group_range",
        "net.ipv4.ip_local_reserved_ports",
        "net.ipv4.tcp_keepalive_time",
        "net.ipv4.tcp_fin_timeout",
        "net.ipv4.tcp_keepalive_intvl",
        "net.ipv4.tcp_keepalive_probes",
    }
)
ALLOWED_SELINUX_TYPES = frozenset({"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"})
ALLOWED_PROFILE_TYPES = frozenset({"RuntimeDefault", "Localhost"})  # seccomp and AppArmor


def _containers(spec: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for kind in ("initContainers", "containers", "ephemeralContainers"):
        for container in spec.get(kind) or []:
            yield f"{kind}[{container.get('name', '?')}]", container


def _security_context_rules(where: str, sc: dict[str, Any]) -> Iterator[str]:
    """Rules that apply alike to the pod's and to each container's securityContext."""
    if (sc.get("windowsOptions") or {}).get("hostProcess"):
        yield f"{where}.windowsOptions.hostProcess must not be true"
    selinux = sc.get("seLinuxOptions") or {}
    if selinux.get("type", "") not in ALLOWED_SELINUX_TYPES:
        yield f"{where}.seLinuxOptions.type {selinux['type']!r} is not allowed"
    for key in ("user", "role"):
        if selinux.get(key):
            yield f"{where}.seLinuxOptions.{key} must not be set"
    apparmor = (sc.get("appArmorProfile") or {}).get("type")
    if apparmor is not None and apparmor not in ALLOWED_PROFILE_TYPES:
        yield f"{where}.appArmorProfile.type {apparmor!r} is not allowed"
    seccomp = (sc.get("seccompProfile") or {}).get("type")
    if seccomp is not None and seccomp not in ALLOWED_PROFILE_TYPES:
        yield f"{where}.seccompProfile.type {seccomp!r} is not allowed"
    if sc.get("runAsNonRoot") is False:
        yield f"{where}.runAsNonRoot must not be false"
    if sc.get("runAsUser") == 0:
        yield f"{where}.runAsUser must not be 0"


def violations(pod_spec: dict[str, Any]) -> list[str]:
    """Every way in which `pod_spec` (a core/v1 PodSpec as a dict) breaks the restricted profile."""
    found: list[str] = []
    pod_sc = pod_spec.get("securityContext") or {}

    for field in ("hostNetwork", "hostPID", "hostIPC"):
        if pod_spec.get(field):
            found.append(f"spec.{field} must not be true")
    found.extend(_security_context_rules("spec.securityContext", pod_sc))
    for sysctl in pod_sc.get("sysctls") or []:
        if sysctl.get("name") not in SAFE_SYSCTLS:
            found.append(f"spec.securityContext.sysctls: {sysctl.get('name')!r} is not a safe sysctl")

    for volume in pod_spec.get("volumes") or []:
        types = set(volume) - {"name"}
        if not types <= ALLOWED_VOLUME_TYPES:
            found.append(f"spec.volumes[{volume.get('name')}]: type {sorted(types)} is not allowed")

    pod_non_root = pod_sc.get("runAsNonRoot") is True
    pod_seccomp = (pod_sc.get("seccompProfile") or {}).get("type") in ALLOWED_PROFILE_TYPES
    for where, container in _containers(pod_spec):
        sc = container.get("securityContext") or {}
        found.extend(_security_context_rules(f"{where}.securityContext", sc))
        if sc.get("privileged"):
            found.append(f"{where}.securityContext.privileged must not be true")
        if sc.get("allowPrivilegeEscalation") is not False:
            found.append(f"{where}.securityContext.allowPrivilegeEscalation must be false")
        if sc.get("procMount", "Default") != "Default":
            found.append(f"{where}.securityContext.procMount must be Default")
        if not (pod_non_root or sc.get("runAsNonRoot") is True):
            found.append(f"{where}: runAsNonRoot must be true (on the pod or the container)")
        if not (pod_seccomp or (sc.get("seccompProfile") or {}).get("type") in ALLOWED_PROFILE_TYPES):
            found.append(
                f"{where}: seccompProfile.type must be RuntimeDefault or Localhost (on the pod or the container)"
            )
        caps = sc.get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or []):
            found.append(f"{where}.securityContext.capabilities.drop must contain ALL")
        extra = set(caps.get("add") or []) - {"NET_BIND_SERVICE"}
        if extra:
            found.append(f"{where}.securityContext.capabilities.add {sorted(extra)} is not allowed")
        for port in container.get("ports") or []:
            if port.get("hostPort"):
                found.append(f"{where}.ports: hostPort {port['hostPort']} is not allowed")
    return found
