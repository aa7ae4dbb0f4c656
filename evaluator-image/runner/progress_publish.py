"""Publishing the runner's progress where the operator reads it: the `<evaljob>-progress` ConfigMap.

`ProcessGroupRunner(on_progress=publisher(namespace, evaljob, uid))` calls the returned function
from its publisher thread, at most once every few seconds and once more with the final state, so
a slow or failing apiserver never slows lmms-eval (see `progress.ProgressPublisher`). Each call
writes the whole ConfigMap (one small key), owned by the EvalJob so it goes when the EvalJob does.
Transient API errors are retried as for results (`kube.put_configmap`); if they persist the update
is dropped, logged once by the publisher, and the next one tries again.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import kubernetes

from evalkube import resource
from evalkube.progress import PROGRESS_KEY, progress_configmap_name
from evalkube.runner import kube
from evalkube.runner.progress import Progress


def publisher(
    namespace: str, evaljob: str, uid: str, api: kubernetes.client.CoreV1Api | None = None
) -> Callable[[Progress], None]:
    """A callback writing each Progress to EvalJob `evaljob`'s progress ConfigMap."""
    core = api or kube.core_api()
    name = progress_configmap_name(evaljob)
    labels = resource.child_labels(evaljob)
    owners = [resource.owner_reference(evaljob, uid, block_owner_deletion=False)]

    def publish(progress: Progress) -> None:
        data = {PROGRESS_KEY: json.dumps(progress.to_json(), separators=(",", ":"))}
        kube.put_configmap(core, namespace, name, data, labels, owners)

    return publish
