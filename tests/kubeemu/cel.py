"""CEL validation rules (`x-kubernetes-validations`) of CRD schemas, evaluated with cel-python.

The apiserver evaluates each rule with `self` bound to the value at the rule's node, after the
OpenAPI checks have passed there, and reports a false (or failing) rule as a FieldValueInvalid
cause `Invalid value: "<type>": <message>` on that node's path. The same here, with cel-python's
standard CEL (Kubernetes adds library functions the project's rules don't use). Programs are
compiled once per rule text: compiling costs milliseconds, evaluating a fraction of one.
"""

from __future__ import annotations

import functools
from typing import Any

import celpy

_ENVIRONMENT = celpy.Environment()
_TYPE_NAMES = {dict: "object", list: "array", str: "string", bool: "boolean", int: "integer", float: "number"}


@functools.cache
def _program(rule: str) -> Any:
    return _ENVIRONMENT.program(_ENVIRONMENT.compile(rule))


def failures(value: Any, rules: list[dict[str, Any]]) -> list[str]:
    """The messages of the rules `value` breaks, in the apiserver's `Invalid value` form."""
    found = []
    for rule in rules:
        try:
            outcome = _program(rule["rule"]).evaluate({"self": celpy.json_to_cel(value)})
            broken = not bool(outcome) if isinstance(outcome, celpy.celtypes.BoolType) else True
        except celpy.CELEvalError:
            broken = True
        if broken:
            message = rule.get("message") or f"failed rule: {rule['rule']}"
            found.append(f'Invalid value: "{_TYPE_NAMES.get(type(value), "object")}": {message}')
    return found
