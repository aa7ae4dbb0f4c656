"""Rules for values that end up on lmms-eval's command line.

lmms-eval takes `--model_args k=v,k=v`, `--tasks a,b` and `--gen_kwargs k=v,k=v`: a comma or an
'=' inside a value would smuggle in another argument, a newline breaks logs and YAML, and a
leading '--' reads as a flag. The API rejects such values with a 422 before anything is created,
the CRD's patterns reject them for kubectl users, and the runner checks again because an EvalJob
may have been written by anything. One module, so all three agree.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

#: A token that is safe inside lmms-eval's comma/equals separated arguments.
#: (Also the CRD's `pattern` for tasks and model: keep them in sync; a test checks.)
SAFE_TOKEN_PATTERN = r"^[^,=\s-][^,=\r\n]*$"
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class UnsafeValue(ValueError):
    """A value that could change the meaning of the lmms-eval command line."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


def check_token(field: str, value: str) -> str:
    """A task or model name, a device, a model_args key: no separators, no flags, no control chars."""
    if not value:
        raise UnsafeValue(field, "must not be empty")
    if _CONTROL.search(value):
        raise UnsafeValue(field, "must not contain newlines or control characters")
    if value.startswith("-"):
        raise UnsafeValue(field, f"must not start with '-' (got {value!r})")
    if "," in value or "=" in value:
        raise UnsafeValue(field, f"must not contain ',' or '=' (got {value!r})")
    if value != value.strip():
        raise UnsafeValue(field, f"must not start or end with whitespace (got {value!r})")
    return value


def check_arg_value(field: str, value: Any) -> Any:
    """A model_args value: a scalar whose text can't break out of `k=v,k=v`."""
    if isinstance(value, bool) or value is None or isinstance(value, (int, float)):
        return value
    if not isinstance(value, str):
        raise UnsafeValue(field, f"must be a string, number or boolean (got {type(value).__name__})")
    if _CONTROL.search(value):
        raise UnsafeValue(field, "must not contain newlines or control characters")
    if "," in value or "=" in value:
        raise UnsafeValue(field, f"must not contain ',' or '=' (got {value!r})")
    if value.startswith("--"):
        raise UnsafeValue(field, f"must not start with '--' (got {value!r})")
    return value


def check_model_args(field: str, args: Mapping[str, Any]) -> dict[str, Any]:
    """Every key and value of model_args, named precisely in the error (model_args.pretrained)."""
    for key, value in args.items():
        check_token(f"{field}.{key}" if key else field, str(key))
        check_arg_value(f"{field}.{key}", value)
    return dict(args)


def check_gen_kwargs(field: str, text: str) -> str:
    """lmms-eval's gen_kwargs string: `k=v` pairs joined by commas; each key a safe token and
    each value a safe argument value (so `a=1,--b=2` and `a=--x` are refused)."""
    if _CONTROL.search(text):
        raise UnsafeValue(field, "must not contain newlines or control characters")
    for pair in text.split(","):
        key, sep, value = pair.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise UnsafeValue(field, f"must be comma-separated key=value pairs (bad part {pair!r})")
        check_token(f"{field}.{key.strip()}", key.strip())
        check_arg_value(f"{field}.{key.strip()}", value.strip())
    return text
