"""Fitting an lmms-eval results document into a size budget.

Kubernetes objects are small (a ConfigMap holds at most 1 MiB, etcd refuses objects over
~1.5 MiB), while lmms-eval's document carries bulky, rarely-read keys beside the metrics. Both the
runner (writing the results ConfigMap) and the operator (copying it into EvalJob status) fit the
document the same way: drop whole top-level keys, least useful first, never the metrics
(`results`, `groups`).
"""

from __future__ import annotations

import json
from typing import Any

#: Dropped first: bulky and rarely read (per-sample data, full task configs, environment dumps).
BULKY: tuple[str, ...] = (
    "samples",
    "configs",
    "config",
    "pretty_env_info",
    "task_hashes",
    "git_hash",
    "upper_git_hash",
    "transformers_version",
)
#: Never dropped: the metrics themselves, per task and per group.
KEPT: tuple[str, ...] = ("results", "groups")
#: Dropped last: small keys that explain the metrics.
EXPLANATORY: tuple[str, ...] = ("group_subtasks", "higher_is_better", "n-samples", "versions", "n-shot")


class ResultsTooLarge(ValueError):
    """Even the metrics alone exceed the budget."""


def encoded_size(document: Any) -> int:
    """Bytes of the compact JSON encoding, as stored."""
    return len(json.dumps(document, separators=(",", ":"), allow_nan=False).encode())


def fit(document: dict[str, Any], budget: int) -> tuple[dict[str, Any], list[str]]:
    """The document within `budget` bytes and the keys dropped to get there (in drop order).

    Order: BULKY keys, then keys named nowhere here (largest first), then EXPLANATORY keys.
    """
    fitted = dict(document)
    dropped: list[str] = []
    other = sorted(
        (key for key in fitted if key not in (*BULKY, *EXPLANATORY, *KEPT)),
        key=lambda key: -encoded_size(fitted[key]),
    )
    for key in (*BULKY, *other, *EXPLANATORY):
        if encoded_size(fitted) <= budget:
            break
        if key in fitted:
            del fitted[key]
            dropped.append(key)
    if encoded_size(fitted) > budget:
        raise ResultsTooLarge(f"the metrics alone take {encoded_size(fitted)} bytes, over the {budget}-byte limit")
    return fitted, dropped
