"""Rules for values that end up on lmms-eval's command line, each defined once as a regular expression.

lmms-eval takes `--model_args k=v,k=v`, `--tasks a,b` and `--gen_kwargs k=v,k=v`: a comma or an
'=' inside a value would smuggle in another argument, a control character breaks logs and YAML,
and a leading '-' reads as a flag. Each rule is ONE regular expression, used as it is by all three
places that judge an EvalJob: the API (pydantic, before anything is created), the CRD (its
`pattern`s and CEL rules, generated from the protocol, for kubectl users) and the runner (which
parses the spec with the API's own model). So the three cannot disagree. The Python checks only add
a readable reason to a value the expression refused.

The expressions are written in the common subset of Go's RE2 (the apiserver), Rust's regex
(pydantic) and Python's re: no look-around, no Unicode classes such as \\s (whose meaning differs
between them), control characters named by code point.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

_CTRL = r"\x00-\x1f\x7f"
#: One character of a token: anything but the separators and control characters.
_TOKEN_CHAR = rf"[^,={_CTRL}]"
#: A token (task, model, device, model_args key): no ',' '=' or control characters, no leading '-',
#: no space at either end.
TOKEN_BODY = rf"[^-,= {_CTRL}](?:{_TOKEN_CHAR}*[^,= {_CTRL}])?"
SAFE_TOKEN_PATTERN = rf"^{TOKEN_BODY}$"
#: A model_args or gen_kwargs value: no ',' '=' or control characters, and no leading '--'.
VALUE_BODY = rf"(?:[^-,={_CTRL}]{_TOKEN_CHAR}*|-(?:[^-,={_CTRL}]{_TOKEN_CHAR}*)?)?"
ARG_VALUE_PATTERN = rf"^{VALUE_BODY}$"
#: gen_kwargs: `k=v` pairs joined by commas, each key a token and each value a non-empty value.
_PAIR = rf"{TOKEN_BODY}=(?:[^-,={_CTRL}]{_TOKEN_CHAR}*|-(?:[^-,={_CTRL}]{_TOKEN_CHAR}*)?)"
GEN_KWARGS_PATTERN = rf"^{_PAIR}(?:,{_PAIR})*$"
#: One segment of a relative path: safe characters, not '..' (lmms-eval also splits its output
#: path on ',' and '=').
_SEGMENT_CHAR = rf"[^/,={_CTRL}]"
_SEGMENT = rf"(?:[^-./,={_CTRL}]{_SEGMENT_CHAR}*|\.(?:[^./,={_CTRL}]{_SEGMENT_CHAR}*)?|\.\.{_SEGMENT_CHAR}+)"
#: A relative path of such segments (no leading '/', no empty segment, no '..').
RELATIVE_PATH_PATTERN = rf"^{_SEGMENT}(?:/{_SEGMENT})*$"
#: An absolute path of such segments (a checkpoint, or an output folder on a shared volume).
ABSOLUTE_PATH_PATTERN = rf"^(?:/{_SEGMENT})+$"
#: output_dir: relative (inside the artifacts volume) or absolute (on a shared volume).
OUTPUT_DIR_PATTERN = rf"^(?:{_SEGMENT}(?:/{_SEGMENT})*|(?:/{_SEGMENT})+)$"

_TOKEN = re.compile(SAFE_TOKEN_PATTERN)
_VALUE = re.compile(ARG_VALUE_PATTERN)
_GEN_KWARGS = re.compile(GEN_KWARGS_PATTERN)
_RELATIVE_PATH = re.compile(RELATIVE_PATH_PATTERN)
_ABSOLUTE_PATH = re.compile(ABSOLUTE_PATH_PATTERN)
_CONTROL = re.compile(rf"[{_CTRL}]")

#: The CRD's CEL rules for model_args (patterns can't reach map keys or untyped values).
MODEL_ARGS_CEL_RULES: tuple[dict[str, str], ...] = (
    {
        "rule": f"self.all(k, k.matches('{SAFE_TOKEN_PATTERN}'))",
        "message": "keys must not contain ',' '=' or control characters, start with '-' or end in a space",
    },
    {
        "rule": "self.all(k, type(self[k]) != map && type(self[k]) != list)",
        "message": "values must be strings, numbers or booleans",
    },
    {
        "rule": f"self.all(k, type(self[k]) != string || self[k].matches('{ARG_VALUE_PATTERN}'))",
        "message": "string values must not contain ',' '=' or control characters, or start with '--'",
    },
)


class UnsafeValue(ValueError):
    """A value that could change the meaning of the lmms-eval command line."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


def _why_not_token(value: str) -> str:
    if not value:
        return "must not be empty"
    if _CONTROL.search(value):
        return "must not contain newlines or control characters"
    if value.startswith("-"):
        return f"must not start with '-' (got {value!r})"
    if "," in value or "=" in value:
        return f"must not contain ',' or '=' (got {value!r})"
    return f"must not start or end with a space (got {value!r})"


def _why_not_value(value: str) -> str:
    if _CONTROL.search(value):
        return "must not contain newlines or control characters"
    if value.startswith("--"):
        return f"must not start with '--' (got {value!r})"
    return f"must not contain ',' or '=' (got {value!r})"


def check_token(field: str, value: str) -> str:
    """A task or model name, a device, a model_args key."""
    if not _TOKEN.match(value):
        raise UnsafeValue(field, _why_not_token(value))
    return value


def check_arg_value(field: str, value: Any) -> Any:
    """A model_args value: a scalar whose text can't break out of `k=v,k=v`."""
    if isinstance(value, bool) or value is None or isinstance(value, (int, float)):
        return value
    if not isinstance(value, str):
        raise UnsafeValue(field, f"must be a string, number or boolean (got {type(value).__name__})")
    if not _VALUE.match(value):
        raise UnsafeValue(field, _why_not_value(value))
    return value


def check_batch_size(field: str, value: int | str) -> int | str:
    """An integer >= 1, or a token such as "auto" or "auto:4"."""
    if isinstance(value, str):
        return check_token(field, value)
    if value < 1:
        raise UnsafeValue(field, f"must be >= 1 (got {value})")
    return value


def check_model_args(field: str, args: Mapping[str, Any]) -> dict[str, Any]:
    """Every key and value of model_args, named precisely in the error (model_args.pretrained)."""
    for key, value in args.items():
        check_token(f"{field}.{key}" if key else field, str(key))
        check_arg_value(f"{field}.{key}", value)
    return dict(args)


def check_gen_kwargs(field: str, text: str) -> str:
    """lmms-eval's gen_kwargs string: `k=v` pairs joined by commas (it splits on ',' then '=' and
    strips nothing, so a space around a key would become part of the key)."""
    if _GEN_KWARGS.match(text):
        return text
    if _CONTROL.search(text):
        raise UnsafeValue(field, "must not contain newlines or control characters")
    for pair in text.split(","):
        key, sep, value = pair.partition("=")
        if not sep or not value:
            raise UnsafeValue(field, f"must be comma-separated key=value pairs (bad part {pair!r})")
        check_token(f"{field}.{key}", key)
        check_arg_value(f"{field}.{key}", value)
    raise UnsafeValue(field, f"must be comma-separated key=value pairs (got {text!r})")


def _why_not_path(value: str) -> str:
    if ".." in value.split("/"):
        return f"must not contain '..' (got {value!r})"
    if _CONTROL.search(value):
        return "must not contain newlines or control characters"
    if "," in value or "=" in value:
        return f"must not contain ',' or '=' (got {value!r})"
    return f"must be a path of non-empty segments, none starting with '-' (got {value!r})"


def check_absolute_path(field: str, value: str) -> str:
    """A path on a volume: absolute, no '..', no empty segment, no ',' '=' or control characters."""
    if _ABSOLUTE_PATH.match(value):
        return value
    if not value.startswith("/"):
        raise UnsafeValue(field, f"must be an absolute path (got {value!r})")
    raise UnsafeValue(field, _why_not_path(value))


def check_output_dir(field: str, value: str) -> str:
    """A relative path (inside the artifacts volume) or an absolute one (on a shared volume)."""
    return check_absolute_path(field, value) if value.startswith("/") else check_relative_path(field, value)


def check_relative_path(field: str, value: str) -> str:
    """A path inside a volume: relative, no '..', no empty segment, no ',' '=' or control characters."""
    if _RELATIVE_PATH.match(value):
        return value
    if value.startswith("/"):
        raise UnsafeValue(field, f"must be a relative path (got {value!r})")
    if ".." in value.split("/"):
        raise UnsafeValue(field, f"must be a relative path without '..' (got {value!r})")
    if _CONTROL.search(value):
        raise UnsafeValue(field, "must not contain newlines or control characters")
    if "," in value or "=" in value:
        raise UnsafeValue(field, f"must not contain ',' or '=' (got {value!r})")
    raise UnsafeValue(field, f"must be a path of non-empty segments, none starting with '-' (got {value!r})")
