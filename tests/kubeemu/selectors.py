"""Label and field selectors for LIST, WATCH and DELETECOLLECTION.

Field selectors are restricted per type like the real server (metadata.name,
metadata.namespace plus each type's field labels; a CRD's selectableFields), so
code that filters on an unsupported field fails here as it would on a cluster.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from .errors import bad_request
from .resources import ResourceType

_KEY = r"[A-Za-z0-9](?:[-A-Za-z0-9_./]*[A-Za-z0-9])?"
_VAL = r"(?:[A-Za-z0-9](?:[-A-Za-z0-9_.]*[A-Za-z0-9])?)?"
_REQUIREMENT = re.compile(
    rf"""\s*(?:
    !\s*(?P<absent>{_KEY})
  | (?P<key>{_KEY})\s*(?:
        (?P<op>==|=|!=)\s*(?P<val>{_VAL})
      | \s(?P<setop>in|notin)\s*\(\s*(?P<vals>{_VAL}(?:\s*,\s*{_VAL})*)\s*\)
    )?
)\s*(?P<sep>,|$)""",
    re.X,
)

Requirement = tuple[str, str, frozenset[str]]  # key, operator, values


def parse_labels(text: str) -> list[Requirement]:
    reqs: list[Requirement] = []
    pos = 0
    while text.strip():
        m = _REQUIREMENT.match(text, pos)
        if m is None:
            raise bad_request(f"unable to parse requirement: invalid label selector: {text!r}")
        if m["absent"]:
            reqs.append((m["absent"], "!", frozenset()))
        elif m["setop"]:
            reqs.append((m["key"], m["setop"], frozenset(v.strip() for v in m["vals"].split(","))))
        elif m["op"]:
            reqs.append((m["key"], "!=" if m["op"] == "!=" else "=", frozenset({m["val"]})))
        else:
            reqs.append((m["key"], "exists", frozenset()))
        if m["sep"] != ",":
            break
        pos = m.end()
    return reqs


def _label_ok(labels: dict[str, str], req: Requirement) -> bool:
    key, op, values = req
    present, value = key in labels, labels.get(key)
    return {
        "=": present and value in values,
        "in": present and value in values,
        "!=": not present or value not in values,
        "notin": not present or value not in values,
        "exists": present,
        "!": not present,
    }[op]


def parse_fields(text: str, rt: ResourceType) -> list[tuple[str, bool, str]]:
    """Terms as (path, equal?, value)."""
    terms = []
    for term in filter(None, (t.strip() for t in text.split(","))):
        m = re.fullmatch(r"([^=!\s]+)\s*(==|=|!=)\s*(.*)", term)
        if m is None:
            raise bad_request(f"invalid selector: '{text}'; can't understand '{term}'")
        if not rt.allows_field(m[1]):
            raise bad_request(f"field label not supported: {m[1]}")
        terms.append((m[1], m[2] != "!=", m[3]))
    return terms


def _field_value(obj: dict[str, Any], path: str) -> str:
    node: Any = obj
    for part in path.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    if isinstance(node, bool):
        return "true" if node else "false"
    return "" if node is None else str(node)


@dataclass(frozen=True)
class Selector:
    labels: tuple[Requirement, ...] = ()
    fields: tuple[tuple[str, bool, str], ...] = ()

    @classmethod
    def parse(cls, rt: ResourceType, label_selector: str = "", field_selector: str = "") -> Selector:
        return cls(tuple(parse_labels(label_selector)), tuple(parse_fields(field_selector, rt)))

    def matches(self, obj: dict[str, Any]) -> bool:
        labels = obj.get("metadata", {}).get("labels") or {}
        return all(_label_ok(labels, r) for r in self.labels) and all(
            (_field_value(obj, p) == v) == eq for p, eq, v in self.fields
        )
