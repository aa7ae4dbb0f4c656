"""Names of the EvalJob resource and of the objects evalkube creates for it.

One place for every name the API, the operator, the runner, the chart and kubectl users share,
so that a rename can never leave two components speaking of different things.
"""

from __future__ import annotations

GROUP = "evalkube.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "EvalJob"
PLURAL = "evaljobs"
SINGULAR = "evaljob"
SHORT_NAME = "ej"

#: job_id == EvalJob metadata.name; generated names read "eval-xxxxx".
GENERATE_NAME = "eval-"

#: A checkpoint merge (POST /merge, or kubectl): its own small resource, run as a Job too.
MERGE_KIND = "CheckpointMerge"
MERGE_PLURAL = "checkpointmerges"
MERGE_SINGULAR = "checkpointmerge"
MERGE_SHORT_NAME = "ckm"
MERGE_GENERATE_NAME = "merge-"
LABEL_MERGE = "evalkube.dev/checkpointmerge"

LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGED_BY = "evalkube"
LABEL_EVALJOB = "evalkube.dev/evaljob"
#: Microsecond submission time set by the API: creationTimestamp has whole seconds only, and
#: FIFO order among jobs submitted in the same second must hold.
ANNOTATION_SUBMITTED_AT = "evalkube.dev/submitted-at"
#: Who submitted an EvalJob through the API (the TokenReview's username): JobInfo.submitted_by.
ANNOTATION_SUBMITTED_BY = "evalkube.dev/submitted-by"

#: Data keys of the results ConfigMap the evaluator pod writes.
RESULTS_KEY = "results.json"
RESULTS_META_KEY = "evalkube.json"
#: Data key of the catalog ConfigMap (tasks and models the evaluator image can run).
CATALOG_KEY = "catalog.json"


class Phase:
    """EvalJob status.phase values (the CRD's enum); JobStatus is their lowercase REST twin."""

    QUEUED = "Queued"
    RUNNING = "Running"
    COMPLETED = "Completed"
    FAILED = "Failed"
    CANCELLED = "Cancelled"

    FINISHED = frozenset({COMPLETED, FAILED, CANCELLED})


def result_configmap_name(evaljob: str) -> str:
    """The ConfigMap the evaluator pod writes its results document to."""
    return f"{evaljob}-result"


def child_labels(evaljob: str) -> dict[str, str]:
    """Labels on every child object (Job, pod template, results ConfigMap) of an EvalJob."""
    return {LABEL_MANAGED_BY: MANAGED_BY, LABEL_EVALJOB: evaljob}


def merge_child_labels(merge: str) -> dict[str, str]:
    """Labels on the Job (and its pod) of a CheckpointMerge."""
    return {LABEL_MANAGED_BY: MANAGED_BY, LABEL_MERGE: merge}


def owner_reference(name: str, uid: str, *, block_owner_deletion: bool = True, kind: str = KIND) -> dict[str, object]:
    """ownerReference to an EvalJob: deleting the EvalJob garbage-collects the child.

    blockOwnerDeletion needs `update` on evaljobs/finalizers where the OwnerReferencesPermission-
    Enforcement admission plugin runs; evaluator pods are not granted that, so they pass False.
    """
    return {
        "apiVersion": API_VERSION,
        "kind": kind,
        "name": name,
        "uid": uid,
        "controller": True,
        "blockOwnerDeletion": block_owner_deletion,
    }
