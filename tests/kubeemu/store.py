"""The object store: every write, the resourceVersion counter, the event history,
finalizers, garbage collection and CRD registration.

One re-entrant lock guards all state; every write happens under it and offers its
event to watchers before releasing it, so watchers see writes in resourceVersion
order. Stored objects are never mutated after commit (each write builds a fresh
dict), which lets readers serialise them outside the lock.

Deliberate simplifications (the real server does these asynchronously in
controllers; here they happen synchronously inside the triggering request):
garbage collection, namespace and CRD cleanup, CRD establishment. Dependents with
ownerReferences to a uid that never existed are not collected.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import json
import random
import threading
import uuid
from collections import Counter, defaultdict, deque
from typing import Any

from . import errors, rbac
from .logs import PodLogs, current_run
from .patching import JSON_PATCH, MERGE_PATCH, STRATEGIC_PATCH, json_patch, merge_patch, strategic_merge
from .resources import CRD_TYPE, NAMESPACE_TYPE, Registry, ResourceType, types_from_crd
from .schema import apply_defaults, prune, validate
from .selectors import Selector
from .validation import META_FIELDS, validate_builtin, validate_meta, validate_name
from .watch import Event, Obj, Watcher

StoreKey = tuple[str, str]  # (group, plural)
Key = tuple[StoreKey, str, str]  # (store key, namespace or "", name)

FOREGROUND, BACKGROUND, ORPHAN = "Foreground", "Background", "Orphan"
FOREGROUND_FINALIZER = "foregroundDeletion"
CRD_CLEANUP_FINALIZER = "customresourcecleanup.apiextensions.k8s.io"
JOB_ORPHAN_WARNING = (
    "child pods are preserved by default when jobs are deleted; set propagationPolicy=Background to remove them"
)
_NAME_CHARS = "bcdfghjklmnpqrstvwxz2456789"  # k8s.io/apimachinery/pkg/util/rand alphabet
_SYSTEM_META = (
    "uid",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "generation",
    "namespace",
    "name",
)
_JOB_DEFAULTS = {
    "backoffLimit": 6,
    "completions": 1,
    "parallelism": 1,
    "completionMode": "NonIndexed",
    "suspend": False,
}
_PATCH_TYPES = {MERGE_PATCH: merge_patch, JSON_PATCH: json_patch, STRATEGIC_PATCH: strategic_merge}
Result = tuple[Obj, list[str]]  # response body, Warning headers
_PODS = ("", "pods")


def now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def clone(obj: Any) -> Any:
    return json.loads(json.dumps(obj))


def present(rt: ResourceType, obj: Obj) -> Obj:
    """The object as served in the requested version (stored once; conversion strategy None)."""
    return {**obj, "apiVersion": rt.api_version}


def _owner_uids(obj: Obj | None) -> set[str]:
    return {ref.get("uid") for ref in (obj or {}).get("metadata", {}).get("ownerReferences") or []} - {None}


def _spec_of(rt: ResourceType, obj: Obj) -> Obj:
    """What bumps metadata.generation: everything but metadata (and status, if a subresource)."""
    skip = {"metadata", "apiVersion", "kind"} | ({"status"} if rt.has_status else set())
    return {k: v for k, v in obj.items() if k not in skip}


class Store:
    def __init__(self, registry: Registry | None = None, history_size: int = 5000):
        self.registry = registry or Registry()
        self._lock = threading.RLock()
        self._rv = 0
        self._objects: dict[StoreKey, dict[tuple[str, str], Obj]] = defaultdict(dict)
        self._by_uid: dict[str, Key] = {}
        self._dependents: dict[str, set[Key]] = defaultdict(set)
        self._ns_count: Counter[str] = Counter()
        self._crd_of: dict[StoreKey, str] = {}
        self._history: deque[Event] = deque()
        self._history_size = history_size
        self._floor = 0  # every event with rv > floor is in the history
        self._watchers: dict[StoreKey, set[Watcher]] = defaultdict(set)
        self.logs = PodLogs()
        for ns in ("default", "kube-system", "kube-public", "kube-node-lease"):
            self.create(NAMESPACE_TYPE, None, {"metadata": {"name": ns}})

    # ---- low-level commits (lock held) -------------------------------------------------

    def _put(self, key: Key, obj: Obj, event_type: str, old: Obj | None) -> Obj:
        self._rv += 1
        obj["metadata"]["resourceVersion"] = str(self._rv)
        sk, ns, name = key
        self._objects[sk][(ns, name)] = obj
        if old is None:
            self._by_uid[obj["metadata"]["uid"]] = key
            self._ns_count[ns] += 1
        self._reindex_owners(key, old, obj)
        self._emit(Event(self._rv, event_type, sk, obj, old))
        if sk == _PODS:
            self.logs.poke()
        return obj

    def _reindex_owners(self, key: Key, old: Obj | None, new: Obj | None) -> None:
        for uid in _owner_uids(old):
            dependents = self._dependents.get(uid)
            if dependents is not None:
                dependents.discard(key)
                if not dependents:
                    del self._dependents[uid]
        for uid in _owner_uids(new):
            self._dependents[uid].add(key)

    def _emit(self, ev: Event) -> None:
        self._history.append(ev)
        if len(self._history) > self._history_size:
            self._floor = self._history.popleft().rv
        for watcher in self._watchers.get(ev.store_key, ()):
            watcher.offer(ev)

    def _remove(self, key: Key, last: Obj | None = None) -> Obj:
        """Really delete; then collect dependents and finish waiting owners/containers."""
        sk, ns, name = key
        stored = self._objects[sk].pop((ns, name))
        self._rv += 1
        final = last or stored
        final = {**final, "metadata": {**final["metadata"], "resourceVersion": str(self._rv)}}
        uid = stored["metadata"]["uid"]
        del self._by_uid[uid]
        self._ns_count[ns] -= 1
        self._reindex_owners(key, stored, None)
        self._emit(Event(self._rv, "DELETED", sk, final, final))
        if sk == _PODS:
            self.logs.drop(ns, name)
        for dep in list(self._dependents.pop(uid, ())):
            dep_obj = self._find(dep)
            if dep_obj is not None and (dep[1] == ns or not ns) and "deletionTimestamp" not in dep_obj["metadata"]:
                self._delete_obj(dep, BACKGROUND)
        for owner in _owner_uids(stored):
            self._maybe_finish(self._by_uid.get(owner))
        if ns:
            self._maybe_finish((NAMESPACE_TYPE.store_key, "", ns))
        if sk in self._crd_of:
            self._maybe_finish((CRD_TYPE.store_key, "", self._crd_of[sk]))
        if sk == CRD_TYPE.store_key:
            self._unregister_crd(stored)
        return final

    def _find(self, key: Key | None) -> Obj | None:
        return None if key is None else self._objects[key[0]].get((key[1], key[2]))

    def _contents(self, key: Key, obj: Obj) -> list[Key]:
        """What must go before `obj` can: foreground dependents, namespace content, a CRD's objects."""
        sk, _, name = key
        found: list[Key] = []
        if FOREGROUND_FINALIZER in (obj["metadata"].get("finalizers") or []):
            found += self._dependents.get(obj["metadata"]["uid"], ())
        if sk == NAMESPACE_TYPE.store_key and self._ns_count[name]:
            found += [(s, ns, n) for s, objs in self._objects.items() for ns, n in objs if ns == name]
        if sk == CRD_TYPE.store_key:
            crd_sk = (obj["spec"]["group"], obj["spec"]["names"]["plural"])
            found += [(crd_sk, ns, n) for ns, n in self._objects.get(crd_sk, {})]
        return found

    def _maybe_finish(self, key: Key | None) -> None:
        """Drop system finalizers of a terminating owner/container once it is empty; remove it if done."""
        obj = self._find(key)
        if obj is None or "deletionTimestamp" not in obj["metadata"] or self._contents(key, obj):
            return
        fins = obj["metadata"].get("finalizers") or []
        left = [f for f in fins if f not in (FOREGROUND_FINALIZER, CRD_CLEANUP_FINALIZER)]
        if left == fins and left:
            return
        new = clone(obj)
        if left:
            new["metadata"]["finalizers"] = left
            self._put(key, new, "MODIFIED", obj)
        else:
            new["metadata"].pop("finalizers", None)
            self._remove(key, last=new)

    def _delete_obj(self, key: Key, policy: str) -> Obj:
        """Delete honouring finalizers and the propagation policy; returns the latest state."""
        obj = self._find(key)
        assert obj is not None
        uid = obj["metadata"]["uid"]
        if policy == ORPHAN:
            for dep in list(self._dependents.get(uid, ())):
                dep_obj = self._find(dep)
                if dep_obj is not None:
                    new = clone(dep_obj)
                    refs = [r for r in new["metadata"]["ownerReferences"] if r.get("uid") != uid]
                    new["metadata"]["ownerReferences"] = refs
                    if not refs:
                        del new["metadata"]["ownerReferences"]
                    self._put(dep, new, "MODIFIED", dep_obj)
        fins = list(obj["metadata"].get("finalizers") or [])
        if policy == FOREGROUND and self._dependents.get(uid) and FOREGROUND_FINALIZER not in fins:
            fins.append(FOREGROUND_FINALIZER)
        if key[0] == CRD_TYPE.store_key and self._contents(key, obj) and CRD_CLEANUP_FINALIZER not in fins:
            fins.append(CRD_CLEANUP_FINALIZER)
        contents = self._contents(key, {**obj, "metadata": {**obj["metadata"], "finalizers": fins}})
        if not fins and not contents:
            return self._remove(key)
        latest = obj
        if "deletionTimestamp" not in obj["metadata"] or fins != obj["metadata"].get("finalizers"):
            new = latest = clone(obj)
            new["metadata"].update(
                deletionTimestamp=obj["metadata"].get("deletionTimestamp") or now(), deletionGracePeriodSeconds=0
            )
            if fins:
                new["metadata"]["finalizers"] = fins
            if key[0] == NAMESPACE_TYPE.store_key:
                new["status"] = {"phase": "Terminating"}
            if key[0] == CRD_TYPE.store_key:
                new.setdefault("status", {}).setdefault("conditions", []).append(
                    {
                        "type": "Terminating",
                        "status": "True",
                        "lastTransitionTime": now(),
                        "reason": "InstanceDeletionInProgress",
                        "message": "CustomResource deletion is in progress",
                    }
                )
            self._put(key, new, "MODIFIED", obj)
        cascade = FOREGROUND if policy == FOREGROUND else BACKGROUND
        for content in contents:
            content_obj = self._find(content)
            if content_obj is not None and "deletionTimestamp" not in content_obj["metadata"]:
                self._delete_obj(content, cascade)
        self._maybe_finish(key)
        return self._find(key) or latest

    # ---- CRDs ----------------------------------------------------------------------------

    def _establish_crd(self, key: Key) -> None:
        crd = self._find(key)
        assert crd is not None
        new = clone(crd)
        names = new["spec"]["names"]
        stamp = now()
        new["status"] = {
            "conditions": [
                {
                    "type": "NamesAccepted",
                    "status": "True",
                    "lastTransitionTime": stamp,
                    "reason": "NoConflicts",
                    "message": "no conflicts found",
                },
                {
                    "type": "Established",
                    "status": "True",
                    "lastTransitionTime": stamp,
                    "reason": "InitialNamesAccepted",
                    "message": "the initial names have been accepted",
                },
            ],
            "acceptedNames": names,
            "storedVersions": [v["name"] for v in new["spec"]["versions"] if v.get("storage")],
        }
        self._put(key, new, "MODIFIED", crd)
        self._crd_of[(new["spec"]["group"], names["plural"])] = key[2]
        self.registry.set_crd(key[2], types_from_crd(new))

    def _unregister_crd(self, crd: Obj) -> None:
        sk = (crd["spec"]["group"], crd["spec"]["names"]["plural"])
        self.registry.set_crd(crd["metadata"]["name"], [])
        self._crd_of.pop(sk, None)
        self._objects.pop(sk, None)
        for watcher in self._watchers.pop(sk, set()):
            watcher.close()

    # ---- admission -----------------------------------------------------------------------

    @staticmethod
    def _decode(rt: ResourceType, body: Any) -> Obj:
        if not isinstance(body, dict) or not isinstance(body.get("metadata", {}), dict):
            raise errors.bad_request(f"the body of the request must be a {rt.kind} object")
        for field, expected in (("apiVersion", rt.api_version), ("kind", rt.kind)):
            if body.get(field) and body[field] != expected:
                raise errors.bad_request(
                    f"the {field} in the data ({body[field]}) does not match the expected {field} ({expected})"
                )
        meta = {k: v for k, v in (body.get("metadata") or {}).items() if k in META_FIELDS and v is not None}
        rest = {k: v for k, v in body.items() if k not in ("apiVersion", "kind", "metadata")}
        return {"apiVersion": rt.api_version, "kind": rt.kind, "metadata": meta, **rest}

    @staticmethod
    def _admit(rt: ResourceType, obj: Obj, strict: bool, old: Obj | None = None) -> list[str]:
        """Prune/default/validate; returns the Warning headers for pruned fields."""
        name = obj["metadata"].get("name", "")
        errs = validate_meta(obj["metadata"])
        warnings = []
        if rt.schema:
            pruned = prune(obj, rt.schema)
            if pruned and strict:
                raise errors.bad_request("strict decoding error: " + ", ".join(f'unknown field "{p}"' for p in pruned))
            warnings = [f'unknown field "{p}"' for p in pruned]
            apply_defaults(obj, rt.schema)
            errs += validate(obj, rt.schema)
        errs += validate_builtin(rt, obj)
        if rt.group == rbac.RBAC_GROUP:
            errs += rbac.validate(rt.kind, obj, old)
        if errs:
            raise errors.invalid(rt.kind, rt.group, name, errs)
        return warnings

    def _check_creatable(self, rt: ResourceType, ns: str) -> None:
        if rt.namespaced:
            namespace = self._find((NAMESPACE_TYPE.store_key, "", ns))
            if namespace is None:
                raise errors.not_found("namespaces", "", ns)
            if "deletionTimestamp" in namespace["metadata"]:
                raise errors.forbidden(
                    rt.plural,
                    rt.group,
                    "",
                    f"unable to create new content in namespace {ns} because it is being terminated",
                )
        crd = self._find((CRD_TYPE.store_key, "", rt.crd_name)) if rt.crd_name else None
        if crd is not None and "deletionTimestamp" in crd["metadata"]:
            raise errors.method_not_allowed("create not allowed while custom resource definition is terminating")

    @staticmethod
    def _initialise(rt: ResourceType, obj: Obj) -> None:
        """What the create strategies of the served types set."""
        meta = obj["metadata"]
        if rt.has_status:
            obj.pop("status", None)
        if rt.store_key == NAMESPACE_TYPE.store_key:
            meta["labels"] = {**(meta.get("labels") or {}), "kubernetes.io/metadata.name": meta["name"]}
            obj["spec"] = {"finalizers": ["kubernetes"]}
            obj["status"] = {"phase": "Active"}
        elif rt is CRD_TYPE and isinstance((obj.get("spec") or {}).get("names"), dict):
            names = obj["spec"]["names"]
            names.setdefault("singular", str(names.get("kind", "")).lower())
            names.setdefault("listKind", f"{names.get('kind', '')}List")
        elif rt.store_key == ("", "pods"):
            obj["status"] = {"phase": "Pending"}
        elif rt.store_key == ("batch", "jobs") and isinstance(obj.get("spec"), dict):
            spec, uid, name = obj["spec"], meta["uid"], meta["name"]
            for field, value in _JOB_DEFAULTS.items():
                spec.setdefault(field, value)
            template = spec.get("template")
            if isinstance(template, dict) and not spec.get("manualSelector"):
                spec["selector"] = {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}
                tmeta = template.setdefault("metadata", {})
                tmeta["labels"] = {
                    **(tmeta.get("labels") or {}),
                    "batch.kubernetes.io/controller-uid": uid,
                    "batch.kubernetes.io/job-name": name,
                    "controller-uid": uid,
                    "job-name": name,
                }

    # ---- the verbs -----------------------------------------------------------------------

    def get(self, rt: ResourceType, ns: str | None, name: str) -> Obj:
        with self._lock:
            obj = self._find((rt.store_key, ns or "", name))
        if obj is None:
            raise errors.not_found(rt.plural, rt.group, name)
        return present(rt, obj)

    def list(
        self, rt: ResourceType, ns: str | None, selector: Selector, limit: int = 0, continue_token: str = ""
    ) -> Obj:
        with self._lock:
            rv = self._rv
            items = [
                o
                for (ons, _), o in self._objects.get(rt.store_key, {}).items()
                if (ns is None or ons == ns) and selector.matches(o)
            ]
        items.sort(key=lambda o: (o["metadata"].get("namespace", ""), o["metadata"]["name"]))
        if continue_token:
            try:
                token = json.loads(base64.urlsafe_b64decode(continue_token.encode()))
                rv, start = token["rv"], tuple(token["start"])
            except (ValueError, KeyError, TypeError, binascii.Error):
                raise errors.bad_request(f"continue key is not valid: {continue_token}") from None
            items = [o for o in items if (o["metadata"].get("namespace", ""), o["metadata"]["name"]) > start]
        meta: Obj = {"resourceVersion": str(rv)}
        if 0 < limit < len(items):
            last = items[limit - 1]["metadata"]
            token = {"rv": rv, "start": [last.get("namespace", ""), last["name"]]}
            meta["continue"] = base64.urlsafe_b64encode(json.dumps(token).encode()).decode()
            if not selector.labels and not selector.fields:
                meta["remainingItemCount"] = len(items) - limit
            items = items[:limit]
        # Typed (built-in) lists omit each item's kind/apiVersion on a real server; CR lists keep them.
        shown = [
            present(rt, o) if rt.custom else {k: v for k, v in o.items() if k not in ("kind", "apiVersion")}
            for o in items
        ]
        return {"kind": rt.kind + "List", "apiVersion": rt.api_version, "metadata": meta, "items": shown}

    def create(
        self, rt: ResourceType, ns: str | None, body: Any, dry_run: bool = False, strict: bool = False
    ) -> Result:
        obj = self._decode(rt, body)
        meta = obj["metadata"]
        if rt.namespaced:
            if meta.get("namespace") and meta["namespace"] != ns:
                raise errors.bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request"
                )
            meta["namespace"] = ns
        else:
            meta.pop("namespace", None)
        with self._lock:
            self._check_creatable(rt, ns or "")
            name = meta.get("name")
            if not name and meta.get("generateName"):
                base = meta["generateName"][:58]
                for _ in range(8):
                    name = base + "".join(random.choices(_NAME_CHARS, k=5))
                    if self._find((rt.store_key, ns or "", name)) is None:
                        break
            if not name:
                raise errors.invalid(
                    rt.kind,
                    rt.group,
                    "",
                    [
                        errors.cause(
                            "metadata.name", "FieldValueRequired", "Required value: name or generateName is required"
                        )
                    ],
                )
            name_errors = validate_name(name, rt)
            if name_errors:
                raise errors.invalid(rt.kind, rt.group, name, name_errors)
            for field in (
                "resourceVersion",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "managedFields",
                "selfLink",
            ):
                meta.pop(field, None)
            meta.update(name=name, uid=str(uuid.uuid4()), creationTimestamp=now())
            if rt.generation:
                meta["generation"] = 1
            self._initialise(rt, obj)
            warnings = self._admit(rt, obj, strict)
            key = (rt.store_key, ns or "", name)
            if self._find(key) is not None:
                raise errors.already_exists(rt.plural, rt.group, name)
            if dry_run:
                return present(rt, obj), warnings
            self._put(key, obj, "ADDED", None)
            if rt is CRD_TYPE:
                self._establish_crd(key)
            return present(rt, obj), warnings

    def update(
        self,
        rt: ResourceType,
        ns: str | None,
        name: str,
        body: Any,
        subresource: str | None = None,
        dry_run: bool = False,
        strict: bool = False,
    ) -> Result:
        obj = self._decode(rt, body)
        if obj["metadata"].get("name", name) != name:
            raise errors.bad_request(
                f"the name of the object ({obj['metadata']['name']}) does not match the name on the URL ({name})"
            )
        if rt.custom and not obj["metadata"].get("resourceVersion"):
            raise errors.invalid(
                rt.kind,
                rt.group,
                name,
                [
                    errors.cause(
                        "metadata.resourceVersion",
                        "FieldValueInvalid",
                        "Invalid value: 0x0: must be specified for an update",
                    )
                ],
            )
        with self._lock:
            return self._write(rt, (rt.store_key, ns or "", name), obj, subresource, dry_run, strict)

    def patch(
        self,
        rt: ResourceType,
        ns: str | None,
        name: str,
        content_type: str,
        patch: Any,
        subresource: str | None = None,
        dry_run: bool = False,
        strict: bool = False,
    ) -> Result:
        accepted = [JSON_PATCH, MERGE_PATCH] + ([] if rt.custom else [STRATEGIC_PATCH])
        if content_type not in accepted:
            raise errors.unsupported_media_type(accepted)
        with self._lock:
            key = (rt.store_key, ns or "", name)
            old = self._find(key)
            if old is None:
                raise errors.not_found(rt.plural, rt.group, name)
            patched = _PATCH_TYPES[content_type](clone(old), patch)
            return self._write(rt, key, self._decode(rt, patched), subresource, dry_run, strict)

    def _write(
        self, rt: ResourceType, key: Key, new: Obj, subresource: str | None, dry_run: bool, strict: bool
    ) -> Result:
        old = self._find(key)
        name = key[2]
        if old is None:
            raise errors.not_found(rt.plural, rt.group, name)
        old_meta = old["metadata"]
        wanted_rv = new["metadata"].get("resourceVersion")
        if wanted_rv and wanted_rv != old_meta["resourceVersion"]:
            raise errors.conflict(rt.plural, rt.group, name, errors.STALE)
        if subresource == "status":
            result = clone(old)
            if "status" in new:
                result["status"] = new["status"]
            else:
                result.pop("status", None)
        else:
            result = new
            for field in _SYSTEM_META:
                if field in old_meta:
                    result["metadata"][field] = old_meta[field]
                else:
                    result["metadata"].pop(field, None)
            if rt.has_status:
                result.pop("status", None)
                if "status" in old:
                    result["status"] = clone(old["status"])
        meta = result["metadata"]
        meta["resourceVersion"] = old_meta["resourceVersion"]
        added = set(meta.get("finalizers") or []) - set(old_meta.get("finalizers") or [])
        if "deletionTimestamp" in old_meta and added:
            raise errors.invalid(
                rt.kind,
                rt.group,
                name,
                [
                    errors.cause(
                        "metadata.finalizers",
                        "FieldValueForbidden",
                        "Forbidden: no new finalizers can be added if the object is being deleted",
                    )
                ],
            )
        warnings = self._admit(rt, result, strict, old)
        if rt.generation and _spec_of(rt, result) != _spec_of(rt, old):
            meta["generation"] = old_meta.get("generation", 0) + 1
        if result == old or dry_run:  # a no-op write keeps the resourceVersion and sends no event
            return present(rt, result), warnings
        if "deletionTimestamp" in meta and not meta.get("finalizers") and not self._contents(key, result):
            return present(rt, self._remove(key, last=result)), warnings
        self._put(key, result, "MODIFIED", old)
        if rt is CRD_TYPE:
            self.registry.set_crd(name, types_from_crd(result))
        return present(rt, result), warnings

    def delete(self, rt: ResourceType, ns: str | None, name: str, options: Obj, dry_run: bool = False) -> Result:
        key = (rt.store_key, ns or "", name)
        with self._lock:
            obj = self._find(key)
            if obj is None:
                raise errors.not_found(rt.plural, rt.group, name)
            meta = obj["metadata"]
            pre = options.get("preconditions") or {}
            if pre.get("uid") and pre["uid"] != meta["uid"]:
                raise errors.conflict(
                    rt.plural,
                    rt.group,
                    name,
                    f"Precondition failed: UID in precondition: {pre['uid']}, UID in object meta: {meta['uid']}",
                )
            if pre.get("resourceVersion") and pre["resourceVersion"] != meta["resourceVersion"]:
                raise errors.conflict(
                    rt.plural,
                    rt.group,
                    name,
                    f"Precondition failed: ResourceVersion in "
                    f"precondition: {pre['resourceVersion']}, ResourceVersion in meta: "
                    f"{meta['resourceVersion']}",
                )
            policy, warnings = self._policy(rt, options)
            result = obj if dry_run else self._delete_obj(key, policy)
            gone = dry_run or self._find(key) is None
        if gone and not rt.return_deleted:
            return {
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Success",
                "details": {"name": name, "group": rt.group, "kind": rt.plural, "uid": meta["uid"]},
            }, warnings
        return present(rt, result), warnings

    @staticmethod
    def _policy(rt: ResourceType, options: Obj) -> tuple[str, list[str]]:
        policy = options.get("propagationPolicy")
        if policy is None and options.get("orphanDependents") is not None:
            policy = ORPHAN if options["orphanDependents"] else BACKGROUND
        if policy is None:
            return (ORPHAN, [JOB_ORPHAN_WARNING]) if rt.default_orphan else (BACKGROUND, [])
        if policy not in (FOREGROUND, BACKGROUND, ORPHAN):
            raise errors.bad_request(
                f'propagationPolicy: Unsupported value: "{policy}": supported values: '
                '"Foreground", "Background", "Orphan"'
            )
        return policy, []

    def delete_collection(
        self, rt: ResourceType, ns: str | None, selector: Selector, options: Obj, dry_run: bool = False
    ) -> Result:
        policy, warnings = self._policy(rt, options)
        with self._lock:
            keys = [
                (rt.store_key, ons, n)
                for (ons, n), o in self._objects.get(rt.store_key, {}).items()
                if (ns is None or ons == ns) and selector.matches(o)
            ]
            deleted = []
            for key in keys:
                obj = self._find(key)  # an earlier deletion may have collected it already
                if obj is not None:
                    deleted.append(present(rt, obj if dry_run else self._delete_obj(key, policy)))
            rv = self._rv
        return {
            "kind": rt.kind + "List",
            "apiVersion": rt.api_version,
            "metadata": {"resourceVersion": str(rv)},
            "items": deleted,
        }, warnings

    # ---- watching ------------------------------------------------------------------------

    def watch(
        self, rt: ResourceType, ns: str | None, selector: Selector, since: str | None, send_initial: bool = False
    ) -> Watcher:
        """Subscribe; replays history after `since`, or starts with the current state as ADDED events."""
        watcher = Watcher(rt, ns, selector)
        with self._lock:
            if since in (None, "", "0") or send_initial:
                for (ons, _), obj in sorted(self._objects.get(rt.store_key, {}).items()):
                    if (ns is None or ons == ns) and selector.matches(obj):
                        watcher.push("ADDED", obj)
                if send_initial:
                    watcher.push("BOOKMARK", self._bookmark(rt, initial_end=True))
            else:
                try:
                    start = int(since)
                except ValueError:
                    raise errors.bad_request(f'resourceVersion: Invalid value: "{since}": must be an integer') from None
                if start < self._floor:
                    raise errors.expired(f"too old resource version: {start} ({self._floor + 1})")
                for ev in self._history:
                    if ev.rv > start and ev.store_key == rt.store_key:
                        watcher.offer(ev)
            self._watchers[rt.store_key].add(watcher)
        return watcher

    def unwatch(self, watcher: Watcher) -> None:
        with self._lock:
            self._watchers.get(watcher.rt.store_key, set()).discard(watcher)

    def _bookmark(self, rt: ResourceType, initial_end: bool = False) -> Obj:
        meta: Obj = {"resourceVersion": str(self._rv)}
        if initial_end:
            meta["annotations"] = {"k8s.io/initial-events-end": "true"}
        return {"kind": rt.kind, "apiVersion": rt.api_version, "metadata": meta}

    def bookmark(self, watcher: Watcher) -> Obj | None:
        """A BOOKMARK at the current resourceVersion, only if the watcher has nothing pending (else it would lie)."""
        with self._lock:
            return self._bookmark(watcher.rt) if watcher.idle() else None

    def close(self) -> None:
        with self._lock:
            for watchers in self._watchers.values():
                for watcher in watchers:
                    watcher.close()
            self._watchers.clear()

    # ---- pod logs ------------------------------------------------------------------------

    def _log_key(self, ns: str, name: str, container: str | None) -> tuple[str, str, str | None, int] | None:
        pod = self._find((_PODS, ns, name))
        if pod is None:
            return None
        if container is None:
            containers = (pod.get("spec") or {}).get("containers") or []
            return ns, name, None, 0 if len(containers) != 1 else current_run(pod, containers[0].get("name"))
        return ns, name, container, current_run(pod, container)

    def set_pod_log(self, ns: str, name: str, text: str, container: str | None = None) -> None:
        """Replace the current run's log (container None: served for any container without its own)."""
        with self._lock:
            key = self._log_key(ns, name, container) or (ns, name, container, 0)
            self.logs.replace(key, text)

    def append_pod_log(
        self, ns: str, name: str, text: str, container: str | None = None, at_ns: int | None = None
    ) -> bool:
        """Append to the container's current run (per its restartCount); False if the pod does not exist."""
        with self._lock:
            pod = self._find((_PODS, ns, name))
            if pod is None:
                return False
            if container is None:
                names = [c.get("name") for c in (pod.get("spec") or {}).get("containers") or []]
                if len(names) != 1:
                    raise ValueError(f"pod {ns}/{name} has containers {names}: say which one the text is from")
                container = names[0]
            self.logs.append((ns, name, container, current_run(pod, container)), text, at_ns)
            return True

    def find_pod(self, ns: str, name: str) -> Obj | None:
        with self._lock:
            return self._find((_PODS, ns, name))

    @property
    def resource_version(self) -> int:
        return self._rv

    # ---- direct access for tests -----------------------------------------------------------

    def find(self, group: str, plural: str, namespace: str | None, name: str) -> Obj | None:
        with self._lock:
            return self._find(((group, plural), namespace or "", name))

    def all(self, group: str, plural: str, namespace: str | None = None) -> list[Obj]:
        with self._lock:
            return [
                o
                for (ns, _), o in self._objects.get((group, plural), {}).items()
                if namespace is None or ns == namespace
            ]
