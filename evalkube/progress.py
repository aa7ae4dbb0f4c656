"""Where an EvalJob's progress travels from the runner to the operator, and how it is judged.

The runner may not write EvalJob status (the operator is its only writer), so it publishes
lmms-eval's newest progress bar into a small ConfigMap of its own, `<evaljob>-progress` (key
`progress.json`, status-shaped camelCase JSON), owned by the EvalJob. A ConfigMap apart from the
results one: it is rewritten every few seconds, so it stays a few hundred bytes instead of
re-sending a results document, and the runner's final results write (which replaces its ConfigMap
whole) can never erase the last progress. The evaluator's RBAC already covers it (create and
update ConfigMaps); the operator reads it with the `get` it has on ConfigMaps.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from evalkube.mapping import from_spec, to_spec
from evalkube.protocol import JobProgress

#: Data key of the progress ConfigMap.
PROGRESS_KEY = "progress.json"


def progress_configmap_name(evaljob: str) -> str:
    """The ConfigMap the evaluator pod publishes its progress to."""
    return f"{evaljob}-progress"


def from_configmap(data: Mapping[str, str] | None) -> dict[str, Any] | None:
    """status.progress (camelCase) from the progress ConfigMap's data; None if absent or unusable.

    It is judged by the protocol's model, so a runner of another version (or anyone with rights on
    ConfigMaps) can never put into status what its schema would refuse.
    """
    if not data or PROGRESS_KEY not in data:
        return None
    try:
        document = json.loads(data[PROGRESS_KEY])
        if not isinstance(document, dict):
            return None
        progress = JobProgress.model_validate(from_spec(JobProgress, document))
    except (ValueError, ValidationError):
        return None
    return to_spec(progress)


def _parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def hung_for(status: Mapping[str, Any], progress: Mapping[str, Any] | None, now: datetime) -> float | None:
    """Seconds since the job last made progress (since it started, if it never did); None if unknown."""
    times = [_parse_time((progress or {}).get("updatedAt")), _parse_time(status.get("startedAt"))]
    known = [time for time in times if time is not None]
    return (now - max(known)).total_seconds() if known else None


def hung_message(seconds: float, limit: int, progress: Mapping[str, Any] | None) -> str:
    """Why a hung EvalJob failed, in words a person can act on."""
    if progress:
        where = f"{progress.get('stage') or 'progress'} at {progress.get('done')}/{progress.get('total')}"
        return (
            f"hung: no progress for {int(seconds)}s (limit {limit}s, EVALKUBE_HUNG_AFTER_SECONDS); "
            f"last seen {where} at {progress.get('updatedAt')}"
        )
    return (
        f"hung: no progress reported for {int(seconds)}s since the evaluator started "
        f"(limit {limit}s, EVALKUBE_HUNG_AFTER_SECONDS)"
    )
