"""A Kubernetes Event for each EvalJob phase transition, so `kubectl describe ej` tells its story.

core/v1 Events (what kopf posts, and what `kubectl describe` and `kubectl events` list) with the
EvalJob as involvedObject: reason = the new phase (Queued, Running, Completed, Failed, Cancelled),
type Normal, or Warning for a failure; the message is the status message, or the error of a
failure (bounded: the API server refuses long ones). Posting is best effort: an Event that cannot
be written is logged and never fails or repeats the reconcile that made the transition, which has
already been recorded in status. The same call feeds the operator's transition metrics.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
from collections.abc import Mapping
from typing import Any

from evalkube import resource
from evalkube.mapping import now_rfc3339
from evalkube.operator import metrics
from evalkube.operator.cluster import Cluster
from evalkube.resource import Phase

log = logging.getLogger("evalkube.operator")

COMPONENT = "evalkube-operator"
#: core/v1 Event messages are validated to at most 1 KiB (events.k8s.io notes; 4 KiB for note).
MAX_MESSAGE = 1024
_INSTANCE = os.environ.get("HOSTNAME") or socket.gethostname()


def event_for(evaljob: Mapping[str, Any], changes: Mapping[str, Any]) -> dict[str, Any] | None:
    """The Event for a status change, or None when the phase did not change.

    The involved object's kind comes from the object itself (an EvalJob unless it says otherwise),
    so a CheckpointMerge's transitions can be told the same way.
    """
    phase = changes.get("phase")
    meta = evaljob["metadata"]
    before = (evaljob.get("status") or {}).get("phase")
    if not phase or phase == before:
        return None
    failed = phase == Phase.FAILED
    text = str((changes.get("error") if failed else None) or changes.get("message") or phase)
    if len(text) > MAX_MESSAGE:
        text = text[: MAX_MESSAGE - 3] + "..."
    now = now_rfc3339()
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": f"{meta['name']}.{secrets.token_hex(8)}", "namespace": meta["namespace"]},
        "involvedObject": {
            "apiVersion": evaljob.get("apiVersion") or resource.API_VERSION,
            "kind": evaljob.get("kind") or resource.KIND,
            "name": meta["name"],
            "namespace": meta["namespace"],
            "uid": meta.get("uid"),
        },
        "reason": phase,
        "message": text,
        "type": "Warning" if failed else "Normal",
        "source": {"component": COMPONENT},
        "reportingComponent": COMPONENT,
        "reportingInstance": _INSTANCE,
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    }


async def phase_changed(cluster: Cluster, evaljob: Mapping[str, Any], changes: Mapping[str, Any]) -> None:
    """Record a status patch that changed the phase: an Event, and the transition metrics.

    `evaljob` still holds the status from before the patch.
    """
    event = event_for(evaljob, changes)
    if event is None:
        return
    if event["involvedObject"]["kind"] == resource.KIND:
        metrics.transition(evaljob, changes)
    try:
        await cluster.create_event(event)
    except Exception as error:  # refused, unreachable: an Event is never worth failing the reconcile
        involved = event["involvedObject"]
        log.warning(
            "could not post the %s Event of %s %s: %s", event["reason"], involved["kind"], involved["name"], error
        )
