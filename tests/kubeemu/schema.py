"""Structural-schema handling for custom resources: prune, default, validate.

Order follows the apiextensions-apiserver: unknown fields are pruned (and
non-nullable nulls dropped), then `default`s applied, then the object is
validated. Messages and cause reasons mirror `kubeOpenAPIResultToFieldErrors`.
x-kubernetes-list-type map/set uniqueness is checked, and CEL rules (x-kubernetes-validations,
see cel.py). Not emulated: `format`, allOf/anyOf/oneOf/not.
"""

from __future__ import annotations

import copy
import json
import re
from typing import Any

from . import cel
from .errors import cause

Schema = dict[str, Any]
_ROOT_KEEP = ("apiVersion", "kind", "metadata")  # never pruned nor validated by the CRD schema


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def prune(obj: dict[str, Any], schema: Schema) -> list[str]:
    """Drop fields the schema does not know; returns their paths (for warnings/strict mode)."""
    pruned: list[str] = []
    _prune(obj, schema, "", pruned, root=True)
    return pruned


def _prune(value: Any, s: Schema, path: str, pruned: list[str], root: bool = False) -> None:
    if s.get("x-kubernetes-int-or-string"):
        return
    if isinstance(value, dict):
        props = s.get("properties") or {}
        extra = s.get("additionalProperties")
        keep_unknown = s.get("x-kubernetes-preserve-unknown-fields") is True or extra is True
        keep = _ROOT_KEEP if root or s.get("x-kubernetes-embedded-resource") else ()
        for key in list(value):
            sub = props.get(key) if key in props else extra if isinstance(extra, dict) else None
            if key in keep:
                continue
            if sub is None:
                if not keep_unknown:
                    pruned.append(_join(path, key))
                    del value[key]
            elif value[key] is None and not sub.get("nullable"):
                del value[key]
            else:
                _prune(value[key], sub, _join(path, key), pruned)
    elif isinstance(value, list) and isinstance(s.get("items"), dict):
        for i, item in enumerate(value):
            _prune(item, s["items"], f"{path}[{i}]", pruned)


def apply_defaults(value: Any, s: Schema, root: bool = True) -> None:
    if isinstance(value, dict):
        for key, sub in (s.get("properties") or {}).items():
            if root and key in _ROOT_KEEP:
                continue
            if key not in value and "default" in sub:
                value[key] = copy.deepcopy(sub["default"])
            if key in value:
                apply_defaults(value[key], sub, root=False)
        if isinstance(s.get("additionalProperties"), dict):
            for item in value.values():
                apply_defaults(item, s["additionalProperties"], root=False)
    elif isinstance(value, list) and isinstance(s.get("items"), dict):
        for item in value:
            apply_defaults(item, s["items"], root=False)


_JSON_TYPES = (
    (bool, "boolean"),
    (str, "string"),
    (int, "integer"),
    (float, "number"),
    (dict, "object"),
    (list, "array"),
)
_GO_TYPES = {"boolean": "bool", "string": "string", "integer": "int64", "number": "float64"}


def _json_type(value: Any) -> str:
    return next((name for t, name in _JSON_TYPES if isinstance(value, t)), "null")


def _type_ok(value: Any, wanted: str) -> bool:
    actual = _json_type(value)
    if wanted == "integer":
        return actual == "integer" or (actual == "number" and float(value).is_integer())
    return actual == wanted or (wanted == "number" and actual == "integer")


def _show(value: Any) -> str:
    return json.dumps(value)


def validate(obj: dict[str, Any], schema: Schema) -> list[dict[str, str]]:
    errs: list[dict[str, str]] = []
    _validate(obj, schema, "", errs, root=True)
    return errs


def _validate(value: Any, s: Schema, path: str, errs: list[dict[str, str]], root: bool = False) -> None:
    if value is None and s.get("nullable"):
        return
    wanted = "integer-or-string" if s.get("x-kubernetes-int-or-string") else s.get("type")
    actual = _json_type(value)
    if wanted == "integer-or-string":
        wrong_type = actual not in ("integer", "string")
    else:
        wrong_type = wanted is not None and not _type_ok(value, wanted)
    if wrong_type:
        shown = _GO_TYPES.get(actual, "")
        errs.append(
            cause(
                path,
                "FieldValueTypeInvalid",
                f'Invalid value: "{shown}": {path or "body"} in body must be of type {wanted}: "{actual}"',
            )
        )
        return

    def invalid(msg: str) -> None:
        errs.append(cause(path, "FieldValueInvalid", f"Invalid value: {_show(value)}: {path} in body {msg}"))

    if "enum" in s and value not in s["enum"]:
        allowed = ", ".join(_show(e) for e in s["enum"])
        errs.append(
            cause(path, "FieldValueNotSupported", f"Unsupported value: {_show(value)}: supported values: {allowed}")
        )
    if actual in ("integer", "number"):
        if "minimum" in s and (value <= s["minimum"] if s.get("exclusiveMinimum") else value < s["minimum"]):
            invalid(f"should be greater than {'' if s.get('exclusiveMinimum') else 'or equal to '}{s['minimum']}")
        if "maximum" in s and (value >= s["maximum"] if s.get("exclusiveMaximum") else value > s["maximum"]):
            invalid(f"should be less than {'' if s.get('exclusiveMaximum') else 'or equal to '}{s['maximum']}")
    elif actual == "string":
        if "minLength" in s and len(value) < s["minLength"]:
            invalid(f"should be at least {s['minLength']} chars long")
        if "maxLength" in s and len(value) > s["maxLength"]:
            errs.append(cause(path, "FieldValueTooLong", f"Too long: may not be more than {s['maxLength']} bytes"))
        if "pattern" in s and not re.search(s["pattern"], value):
            invalid(f"should match '{s['pattern']}'")
    elif actual == "array":
        if "minItems" in s and len(value) < s["minItems"]:
            invalid(f"should have at least {s['minItems']} items")
        if "maxItems" in s and len(value) > s["maxItems"]:
            errs.append(
                cause(path, "FieldValueTooMany", f"Too many: {len(value)}: must have at most {s['maxItems']} items")
            )
        _unique_items(value, s, path, errs)
        if isinstance(s.get("items"), dict):
            for i, item in enumerate(value):
                _validate(item, s["items"], f"{path}[{i}]", errs)
    elif actual == "object":
        for key in s.get("required") or []:
            if key not in value:
                errs.append(cause(_join(path, key), "FieldValueRequired", "Required value"))
        if "minProperties" in s and len(value) < s["minProperties"]:
            invalid(f"should have at least {s['minProperties']} properties")
        if "maxProperties" in s and len(value) > s["maxProperties"]:
            errs.append(
                cause(
                    path, "FieldValueTooMany", f"Too many: {len(value)}: must have at most {s['maxProperties']} items"
                )
            )
        props, extra = s.get("properties") or {}, s.get("additionalProperties")
        for key, item in value.items():
            if root and key in _ROOT_KEEP:
                continue
            sub = props.get(key) if key in props else extra if isinstance(extra, dict) else None
            if sub is not None:
                _validate(item, sub, _join(path, key), errs)
    if s.get("x-kubernetes-validations"):
        for message in cel.failures(value, s["x-kubernetes-validations"]):
            errs.append(cause(path, "FieldValueInvalid", message))


def _unique_items(value: list[Any], s: Schema, path: str, errs: list[dict[str, str]]) -> None:
    """x-kubernetes-list-type: set (unique items) / map (unique x-kubernetes-list-map-keys)."""
    kind = s.get("x-kubernetes-list-type")
    if kind not in ("set", "map"):
        return
    keys = s.get("x-kubernetes-list-map-keys") or []
    seen: set[str] = set()
    for i, item in enumerate(value):
        ident = item if kind == "set" or not isinstance(item, dict) else {k: item.get(k) for k in keys}
        text = json.dumps(ident, sort_keys=True)
        if text in seen:
            errs.append(cause(f"{path}[{i}]", "FieldValueDuplicate", f"Duplicate value: {text}"))
        seen.add(text)
