"""kubeemu: an in-process Kubernetes API server emulator for evalkube's tests.

Why it exists: no cluster can run where the tests run, yet the tests drive the
*real* kopf operator, the *real* `kubernetes` client and the real API over real
HTTP. So this package speaks the apiserver's wire protocol faithfully for the
resources evalkube touches, and is strict where a real cluster is strict, so
that a bug caught here is a bug on a cluster too.

Why this construction: a stdlib `ThreadingHTTPServer` (HTTP/1.1 keep-alive, one
thread per connection, chunked JSON lines for watches) in a background thread.
It owns no event loop, so it cannot collide with pytest-asyncio's or kopf's; a
blocking watch is just a thread waiting on a queue; and it needs nothing beyond
PyYAML, which `kubernetes` already requires.

Usage::

    emu = KubeEmulator().start()          # emu.url == "http://127.0.0.1:PORT"
    kubeconfig = emu.write_kubeconfig(tmp_path / "kubeconfig", token="tests")
    emu.apply_crd(crd_dict)               # served at once, Established=True
    emu.append_pod_log("default", "pod-x", "line\\n")   # what the container printed (follow wakes at once)
    [r for r in emu.requests if r.token == "operator"]     # RBAC-style records (r.fault: injected kind)
    emu.add_token("t", "alice", groups=["dev"]); emu.add_service_account_token("s", "ns", "runner")
    emu.enforce_rbac = True                                # 401/403 from stored Roles and bindings
    emu.faults.add(FaultRule("lost_response", verbs={"create"}, resource="evaljobs", rate=0.1))
    emu.stop()                            # start() again: same store (same port if one was given)

    python -m kubeemu --port 0 --kubeconfig PATH [--token T] [--crd FILE ...]   (from tests/)

Emulated: discovery (/api, /apis, group/version lists, /version); core v1
namespaces, pods (+status, +log), configmaps, events, serviceaccounts, secrets;
batch/v1 jobs (+status); apiextensions.k8s.io/v1 CRDs (+status); events.k8s.io/v1
events; coordination.k8s.io/v1 leases; rbac.authorization.k8s.io/v1 Roles, RoleBindings,
ClusterRoles, ClusterRoleBindings (kubeemu.rbac evaluates them); TokenReview, SelfSubjectReview,
SubjectAccessReview, SelfSubjectAccessReview, LocalSubjectAccessReview (kubeemu.auth); pods/log
with follow (kubeemu.logs); fault injection (kubeemu.faults); every served version of installed CRDs.
GET/LIST (limit/continue, label and field selectors)/WATCH (replay from a
resourceVersion, 410 Expired, bookmarks, sendInitialEvents, timeoutSeconds)/
CREATE (generateName, 201)/UPDATE/PATCH (merge, JSON, strategic for built-ins)/
DELETE (finalizers, preconditions, Foreground/Background/Orphan, GC of
ownerReferences, namespace and CRD cleanup)/DELETECOLLECTION; dryRun=All;
fieldValidation (Warn headers, Strict); CRD structural schemas (pruning,
defaults, validation); name/label/annotation validation; Status errors.

Deliberately different from a cluster (see each module's docstring):
controllers run synchronously inside the request that triggers them (GC,
namespace/CRD cleanup, CRD establishment); there is no kubelet, scheduler or Job
controller (tests play them); authn/authz only when enforce_rbac is on (off by default: tokens are only recorded; on: static
tokens, no anonymous access, RBAC without aggregation or escalation checks);
server-side apply answers 415; no managedFields; built-in types are not pruned
or fully validated; pods are deleted at once (no grace period); resourceVersion
on GET/LIST is ignored (always the latest); later LIST pages see live data, not
a snapshot; a dangling ownerReference (owner never existed) is not collected.
"""

from .emulator import KubeEmulator
from .faults import FaultRule
from .server import RequestRecord

__all__ = ["FaultRule", "KubeEmulator", "RequestRecord"]
