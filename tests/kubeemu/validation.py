"""Validation that the real apiserver does in Go: object names, labels, annotations,
and the handful of built-in type rules our operator could trip over.

Kept deliberately small: only rules that a bug in evalkube could plausibly break
(a ConfigMap key with '/', a Job with restartPolicy Always, a label value with ':').
Messages mirror k8s.io/apimachinery/pkg/util/validation.
"""

from __future__ import annotations

import re
from typing import Any

from .errors import bad_request, cause
from .resources import ResourceType

_SUBDOMAIN = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
_DNS_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_QUALIFIED = r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_LABEL_VALUE = r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?"
_CONFIG_KEY = r"[-._a-zA-Z0-9]+"
_SUBDOMAIN_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.',"
    " and must start and end with an alphanumeric character (e.g. 'example.com', regex used for"
    f" validation is '{_SUBDOMAIN}')"
)
_DNS_LABEL_MSG = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must"
    " start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for"
    f" validation is '{_DNS_LABEL}')"
)
_QUALIFIED_MSG = (
    "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an"
    " alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation"
    f" is '{_QUALIFIED}')"
)
_LABEL_VALUE_MSG = (
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and"
    " must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345',"
    f" regex used for validation is '{_LABEL_VALUE}')"
)
_CONFIG_KEY_MSG = (
    "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name', "
    f" or 'KEY_NAME',  or 'key-name', regex used for validation is '{_CONFIG_KEY}')"
)

# ObjectMeta's fields: anything else is dropped on decode, like Go's struct decoding does.
META_FIELDS = {
    "name",
    "generateName",
    "namespace",
    "selfLink",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "labels",
    "annotations",
    "ownerReferences",
    "finalizers",
    "managedFields",
}
MAX_ANNOTATIONS_BYTES = 256 * 1024
MAX_CONFIGMAP_BYTES = 1024 * 1024


def _invalid(field: str, value: str, msg: str) -> dict[str, str]:
    return cause(field, "FieldValueInvalid", f'Invalid value: "{value}": {msg}')


def validate_name(name: str, rt: ResourceType) -> list[dict[str, str]]:
    as_label = rt.plural == "namespaces"
    pattern, msg, limit = (_DNS_LABEL, _DNS_LABEL_MSG, 63) if as_label else (_SUBDOMAIN, _SUBDOMAIN_MSG, 253)
    errs = []
    if len(name) > limit:
        errs.append(_invalid("metadata.name", name, f"must be no more than {limit} characters"))
    if not re.fullmatch(pattern, name):
        errs.append(_invalid("metadata.name", name, msg))
    return errs


def _qualified_name(key: str, field: str) -> list[dict[str, str]]:
    prefix, _, name = key.rpartition("/")
    errs = []
    if prefix and (len(prefix) > 253 or not re.fullmatch(_SUBDOMAIN, prefix)):
        errs.append(_invalid(field, key, "prefix part " + _SUBDOMAIN_MSG))
    if len(name) > 63:
        errs.append(_invalid(field, key, "name part must be no more than 63 characters"))
    if not re.fullmatch(_QUALIFIED, name):
        errs.append(_invalid(field, key, _QUALIFIED_MSG))
    return errs


def _string_map(meta: dict[str, Any], key: str) -> dict[str, str]:
    value = meta.get(key) or {}
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise bad_request(f"json: cannot unmarshal metadata.{key}: expected a map of strings")
    return value


def validate_meta(meta: dict[str, Any]) -> list[dict[str, str]]:
    errs = []
    for key, value in _string_map(meta, "labels").items():
        errs += _qualified_name(key, "metadata.labels")
        if len(value) > 63:
            errs.append(_invalid("metadata.labels", value, "must be no more than 63 characters"))
        if not re.fullmatch(_LABEL_VALUE, value):
            errs.append(_invalid("metadata.labels", value, _LABEL_VALUE_MSG))
    annotations = _string_map(meta, "annotations")
    for key in annotations:
        errs += _qualified_name(key.lower(), "metadata.annotations")
    if sum(len(k) + len(v) for k, v in annotations.items()) > MAX_ANNOTATIONS_BYTES:
        errs.append(
            cause(
                "metadata.annotations",
                "FieldValueTooLong",
                f"Too long: must have at most {MAX_ANNOTATIONS_BYTES} bytes",
            )
        )
    for i, ref in enumerate(meta.get("ownerReferences") or []):
        for key in ("apiVersion", "kind", "name", "uid"):
            if not (isinstance(ref, dict) and ref.get(key)):
                errs.append(cause(f"metadata.ownerReferences[{i}].{key}", "FieldValueRequired", "Required value"))
    return errs


def _containers(spec: Any, path: str) -> list[dict[str, str]]:
    containers = spec.get("containers") if isinstance(spec, dict) else None
    if not containers:
        return [cause(f"{path}.containers", "FieldValueRequired", "Required value")]
    errs = []
    for i, c in enumerate(containers):
        for key in ("name", "image"):
            if not (isinstance(c, dict) and c.get(key)):
                errs.append(cause(f"{path}.containers[{i}].{key}", "FieldValueRequired", "Required value"))
    return errs


def _pod(obj: dict[str, Any]) -> list[dict[str, str]]:
    return _containers(obj.get("spec"), "spec")


def _job(obj: dict[str, Any]) -> list[dict[str, str]]:
    pod_spec = ((obj.get("spec") or {}).get("template") or {}).get("spec")
    errs = _containers(pod_spec, "spec.template.spec")
    policy = (pod_spec or {}).get("restartPolicy") if isinstance(pod_spec, dict) else None
    if not policy:
        errs.append(
            cause(
                "spec.template.spec.restartPolicy",
                "FieldValueRequired",
                'Required value: valid values: "OnFailure", "Never"',
            )
        )
    elif policy not in ("OnFailure", "Never"):
        errs.append(
            cause(
                "spec.template.spec.restartPolicy",
                "FieldValueNotSupported",
                f'Unsupported value: "{policy}": supported values: "OnFailure", "Never"',
            )
        )
    return errs


def _configmap(obj: dict[str, Any]) -> list[dict[str, str]]:
    errs, size = [], 0
    data, binary = _string_map(obj, "data"), _string_map(obj, "binaryData")
    for key, value in [*data.items(), *binary.items()]:
        size += len(value)
        if len(key) > 253 or not re.fullmatch(_CONFIG_KEY, key):
            errs.append(_invalid(f"data[{key}]", key, _CONFIG_KEY_MSG))
    errs += [_invalid(f"data[{key}]", key, "duplicate of key present in binaryData") for key in data if key in binary]
    if size > MAX_CONFIGMAP_BYTES:
        errs.append(cause("[]", "FieldValueTooLong", f"Too long: must have at most {MAX_CONFIGMAP_BYTES} bytes"))
    return errs


def _crd(obj: dict[str, Any]) -> list[dict[str, str]]:
    spec = obj.get("spec") or {}
    names, versions = spec.get("names") or {}, spec.get("versions") or []
    errs = [
        cause(f"spec.{f}", "FieldValueRequired", "Required value")
        for f, v in (
            ("group", spec.get("group")),
            ("names.plural", names.get("plural")),
            ("names.kind", names.get("kind")),
            ("versions", versions),
        )
        if not v
    ]
    if not errs and obj["metadata"].get("name") != f"{names['plural']}.{spec['group']}":
        errs.append(
            _invalid("metadata.name", obj["metadata"].get("name", ""), 'must be spec.names.plural+"."+spec.group')
        )
    if spec.get("scope") not in ("Namespaced", "Cluster"):
        errs.append(
            cause(
                "spec.scope",
                "FieldValueNotSupported",
                f'Unsupported value: "{spec.get("scope", "")}": supported values: "Cluster", "Namespaced"',
            )
        )
    if versions and sum(bool(v.get("storage")) for v in versions) != 1:
        errs.append(
            cause(
                "spec.versions",
                "FieldValueInvalid",
                "Invalid value: must have exactly one version marked as storage version",
            )
        )
    for i, v in enumerate(versions):
        if not (v.get("schema") or {}).get("openAPIV3Schema"):
            errs.append(
                cause(
                    f"spec.versions[{i}].schema.openAPIV3Schema",
                    "FieldValueRequired",
                    "Required value: schemas are required",
                )
            )
    return errs


_BUILTIN_RULES = {
    ("", "pods"): _pod,
    ("batch", "jobs"): _job,
    ("", "configmaps"): _configmap,
    ("apiextensions.k8s.io", "customresourcedefinitions"): _crd,
}


def validate_builtin(rt: ResourceType, obj: dict[str, Any]) -> list[dict[str, str]]:
    rule = _BUILTIN_RULES.get(rt.store_key)
    return rule(obj) if rule else []
