"""Several operator replicas (the chart's replicas > 1): kopf peering makes exactly one active,
and a standby takes over when the active one dies."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes
import pytest
import yaml
from test_chart import NAMESPACE as RELEASE_NAMESPACE
from test_chart import render, service_account
from test_rbac_recorded import forbidden, recorded

import rbac
from harness.operator_process import OperatorProcess
from kubeemu import KubeEmulator

PEERING_CRDS = Path(__file__).resolve().parent.parent / "charts" / "evalkube" / "crds" / "kopf-peering.yaml"
SPEC = {"model": "huggingface", "tasks": ["mme"], "numGpus": 1}


@pytest.fixture
def replicas(kube_emulator: KubeEmulator, kube_client: kubernetes.client.ApiClient, kubeconfigs: dict[str, str],
             namespace: str, tmp_path: Path) -> Iterator[list[OperatorProcess]]:  # fmt: skip
    """Two replicas of the operator with peering; their API calls are recorded from here on."""
    kube_emulator.clear_requests()
    for crd in yaml.safe_load_all(PEERING_CRDS.read_text()):
        kube_emulator.apply_crd(crd)
    # What the chart renders for replicas > 1: the peering object kopf keeps alive.
    kubernetes.client.CustomObjectsApi(kube_client).create_namespaced_custom_object(
        "kopf.dev",
        "v1",
        namespace,
        "kopfpeerings",
        {"apiVersion": "kopf.dev/v1", "kind": "KopfPeering", "metadata": {"name": "evalkube"}},
    )
    operators = [
        OperatorProcess(
            kubeconfigs["operator"],
            [namespace],
            tmp_path / f"replica-{i}.log",
            {"PEERING_LIFETIME_SECONDS": "10"},
            peering="evalkube",
        )
        for i in range(2)
    ]
    for operator in operators:
        operator.start().wait_ready()
    yield operators
    for operator in operators:
        operator.stop()


def test_one_replica_is_active_and_a_standby_takes_over(replicas: list[OperatorProcess], cluster: Any,
                                                         kube_emulator: KubeEmulator) -> None:  # fmt: skip
    first = cluster.apply(SPEC)
    created = f"created Job {cluster.namespace}/{first}"
    # the Job exists and the replica that made it has said so (its log line follows the create)
    cluster.wait(lambda: cluster.job(first) and any(created in op.log() for op in replicas), what="the active replica")
    [active] = [op for op in replicas if created in op.log()]  # exactly one replica acted
    [standby] = [op for op in replicas if op is not active]

    active.stop(kill=True)  # the active replica dies without a word
    second = cluster.apply(SPEC)
    cluster.wait(
        lambda: f"created Job {cluster.namespace}/{second}" in standby.log(),
        timeout=60,
        what="the standby to take over",
    )
    assert cluster.job(second)
    assert created not in standby.log()
    assert len(cluster.batch.list_namespaced_job(cluster.namespace).items) == 2

    # The chart's RBAC for replicas > 1 allows everything the replicas did, peering included.
    docs = render(
        "--set",
        "operator.replicas=2",
        "--set",
        f"watchNamespaces={{{cluster.namespace}}}",
        "--set",
        f"api.namespace={cluster.namespace}",
    )
    rules = rbac.rules_from_manifests(docs, service_account(docs, "operator"), RELEASE_NAMESPACE)
    calls = recorded(kube_emulator.requests, "operator")
    peering = {call for call in calls if call[2] == "kopfpeerings"}
    assert {verb for verb, *_ in peering} >= {"list", "watch", "patch"}
    assert not forbidden(rules, calls)
