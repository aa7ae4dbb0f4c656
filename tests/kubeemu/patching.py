"""PATCH bodies: JSON merge patch (RFC 7386), JSON patch (RFC 6902), strategic merge patch.

All functions mutate and return `doc`: callers pass a private deep copy of the
stored object. Strategic merge uses a field-name table of patchMergeKeys instead
of the Go struct tags; that is exact for the types this emulator serves.
"""

from __future__ import annotations

import copy
from typing import Any

from .errors import ApiError, bad_request

MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"

# patchStrategy=merge lists of the served built-in types and their patchMergeKey.
MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "volumes": "name",
    "env": "name",
    "volumeMounts": "mountPath",
    "volumeDevices": "devicePath",
    "ports": "containerPort",
    "imagePullSecrets": "name",
    "hostAliases": "ip",
    "resourceClaims": "name",
    "conditions": "type",
    "ownerReferences": "uid",
}
SET_LISTS = {"finalizers"}  # primitive lists with patchStrategy=merge


def merge_patch(doc: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return patch
    if not isinstance(doc, dict):
        doc = {}
    for key, value in patch.items():
        if value is None:
            doc.pop(key, None)
        else:
            doc[key] = merge_patch(doc.get(key), value)
    return doc


def _patch_failed(why: str) -> ApiError:
    # Like the apiserver's NewGenericServerResponse(422, ...) for jsonpatch apply errors.
    return ApiError(
        422,
        "Invalid",
        "the server rejected our request due to an error in our request",
        {"causes": [{"reason": "UnexpectedServerResponse", "message": why}]},
    )


def _pointer(path: Any) -> list[str]:
    if not isinstance(path, str) or (path and not path.startswith("/")):
        raise bad_request(f"invalid JSON pointer: {path!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path.split("/")[1:]]


def _index(node: list[Any], part: str, path: list[str], allow_end: bool) -> int:
    if allow_end and part == "-":
        return len(node)
    if not part.isdigit() or int(part) > len(node) - (0 if allow_end else 1):
        raise _patch_failed(f"index {part} out of bounds in /{'/'.join(path)}")
    return int(part)


def _get(doc: Any, path: list[str]) -> Any:
    node = doc
    for i, part in enumerate(path):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list):
            node = node[_index(node, part, path[: i + 1], False)]
        else:
            raise _patch_failed(f"doc is missing path: /{'/'.join(path)}")
    return node


def _add(doc: Any, path: list[str], value: Any) -> Any:
    if not path:
        return value
    parent = _get(doc, path[:-1])
    if isinstance(parent, dict):
        parent[path[-1]] = value
    elif isinstance(parent, list):
        parent.insert(_index(parent, path[-1], path, True), value)
    else:
        raise _patch_failed(f"doc is missing path: /{'/'.join(path)}")
    return doc


def _remove(doc: Any, path: list[str]) -> Any:
    if not path:
        raise _patch_failed("cannot remove the whole document")
    parent = _get(doc, path[:-1])
    if isinstance(parent, dict) and path[-1] in parent:
        del parent[path[-1]]
    elif isinstance(parent, list):
        del parent[_index(parent, path[-1], path, False)]
    else:
        raise _patch_failed(f"remove operation does not apply: doc is missing path: /{'/'.join(path)}")
    return doc


def json_patch(doc: Any, ops: Any) -> Any:
    if not isinstance(ops, list) or not all(isinstance(op, dict) and "op" in op for op in ops):
        raise bad_request("json: cannot unmarshal into Go value of type jsonpatch.Patch")
    for op in ops:
        kind, path = op["op"], _pointer(op.get("path"))
        if kind in ("add", "replace", "test") and "value" not in op:
            raise bad_request(f"missing value for {kind} operation")
        if kind == "test":
            if _get(doc, path) != op["value"]:
                raise _patch_failed(f"testing value {op['path']} failed: test failed")
        elif kind == "add":
            doc = _add(doc, path, copy.deepcopy(op["value"]))
        elif kind == "remove":
            doc = _remove(doc, path)
        elif kind == "replace":
            doc = _add(_remove(doc, path), path, copy.deepcopy(op["value"])) if path else op["value"]
        elif kind in ("move", "copy"):
            source = _pointer(op.get("from"))
            value = copy.deepcopy(_get(doc, source))
            if kind == "move":
                doc = _remove(doc, source)
            doc = _add(doc, path, value)
        else:
            raise bad_request(f"unexpected operation: {kind!r}")
    return doc


def _strip_directives(value: Any) -> Any:
    if isinstance(value, dict):
        return strategic_merge({}, value)
    if isinstance(value, list):
        return [_strip_directives(v) for v in value if not (isinstance(v, dict) and "$patch" in v)]
    return value


def _merge_list(current: list[Any], patch: list[Any], key: str) -> list[Any]:
    if any(isinstance(item, dict) and item.get("$patch") == "replace" for item in patch):
        return _strip_directives(patch)
    out = list(current)
    for item in patch:
        if not isinstance(item, dict):
            raise bad_request(f"strategic merge patch: list items of a merging list must be maps, got {item!r}")
        found = next((i for i, old in enumerate(out) if isinstance(old, dict) and old.get(key) == item.get(key)), None)
        if item.get("$patch") == "delete":
            if found is not None:
                del out[found]
        elif found is not None:
            out[found] = strategic_merge(out[found], item)
        else:
            out.append(strategic_merge({}, item))
    return out


def strategic_merge(doc: Any, patch: Any) -> Any:
    """Merge `patch` into `doc` with patchMergeKey semantics; `$retainKeys`/`$setElementOrder` are ignored."""
    if not isinstance(patch, dict):
        raise bad_request("strategic merge patch: the patch must be a JSON object")
    if patch.get("$patch") == "replace":
        return _strip_directives({k: v for k, v in patch.items() if k != "$patch"})
    doc = doc if isinstance(doc, dict) else {}
    for key, value in patch.items():
        if key.startswith("$deleteFromPrimitiveList/"):
            field = key.split("/", 1)[1]
            doc[field] = [x for x in doc.get(field) or [] if x not in value]
        elif key.startswith("$"):
            continue
        elif value is None or (isinstance(value, dict) and value.get("$patch") == "delete"):
            doc.pop(key, None)
        elif isinstance(value, dict):
            doc[key] = strategic_merge(doc.get(key), value)
        elif isinstance(value, list) and key in MERGE_KEYS:
            doc[key] = _merge_list(doc.get(key) or [], value, MERGE_KEYS[key])
        elif isinstance(value, list) and key in SET_LISTS:
            doc[key] = list(doc.get(key) or []) + [v for v in value if v not in (doc.get(key) or [])]
        else:
            doc[key] = _strip_directives(value)
    return doc
