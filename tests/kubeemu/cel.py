"""CEL validation rules (`x-kubernetes-validations`) of CRD schemas, evaluated with the `cel` crate.

The apiserver evaluates each rule with `self` bound to the value at the rule's node, after the
OpenAPI checks have passed there, and reports a false (or failing) rule as a FieldValueInvalid
cause `Invalid value: "<type>": <message>` on that node's path. The same here, with standard CEL
from the Rust `cel` crate (the `common-expression-language` package; its regular expressions are
Rust's, and the project's rules keep to what RE2 and Rust agree on; Kubernetes adds library
functions the project's rules don't use). It replaced cel-python, whose interpreter spent about
1 ms a rule: most of the emulator's CPU for each EvalJob created. Programs are compiled once per
rule text, and an answer is kept for the same value (a status write re-validates an unchanged spec).
"""

from __future__ import annotations

import functools
import json
from typing import Any

import cel

_TYPE_NAMES = {dict: "object", list: "array", str: "string", bool: "boolean", int: "integer", float: "number"}


@functools.cache
def _program(rule: str) -> Any:
    return cel.compile(rule)


@functools.lru_cache(maxsize=16384)
def _breaks(rule: str, value_json: str) -> bool:
    """Whether the value breaks the rule: false, not a boolean, or an evaluation error."""
    try:
        outcome = _program(rule).execute(cel.Context(variables={"self": json.loads(value_json)}))
    except (TypeError, ValueError, RuntimeError):
        return True
    return outcome is not True


def failures(value: Any, rules: list[dict[str, Any]]) -> list[str]:
    """The messages of the rules `value` breaks, in the apiserver's `Invalid value` form."""
    found = []
    value_json = json.dumps(value, sort_keys=True, separators=(",", ":"))
    for rule in rules:
        if _breaks(rule["rule"], value_json):
            message = rule.get("message") or f"failed rule: {rule['rule']}"
            found.append(f'Invalid value: "{_TYPE_NAMES.get(type(value), "object")}": {message}')
    return found
