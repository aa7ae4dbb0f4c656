"""Shared fixtures: the Kubernetes API emulator, fresh namespaces, the real operator, the kubelet.

Every component under test is real (kopf, the `kubernetes` client, FastAPI on uvicorn, the runner,
lmms-eval); the one stand-in is the API server itself (tests/kubeemu), and the tests play the
controllers a cluster would run (tests/harness/kubelet.py).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import kubernetes
import pytest

from evalkube import resource
from evalkube.kube import or_none

pytest.register_assert_rewrite("harness")

# The API's authentication (TokenReview + SubjectAccessReview per request) is on by default; the
# tests of everything else run their in-process APIs with it off, and tests/test_api_auth.py (and
# the recorded-RBAC test) turn it on explicitly with `auth="kubernetes"`.
os.environ.setdefault("EVALKUBE_API_AUTH", "none")

from evaluator_fixtures import make_tiny_model  # noqa: E402
from harness.api_server import wait_until  # noqa: E402
from harness.kubelet import FakeKubelet  # noqa: E402
from harness.operator_process import OperatorProcess  # noqa: E402
from kubeemu import KubeEmulator  # noqa: E402

pytest_plugins = ["harness.api_server"]


# The emulator (`kube_emulator`), the tests' client (`kube_client`) and a fresh `namespace` per
# test come from the API harness plugin, so the API tests and the operator tests share one.


@pytest.fixture(scope="session")
def kubeconfigs(kube_emulator: KubeEmulator, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """One kubeconfig per component, each with its own token, so recorded calls say who made them."""
    folder = tmp_path_factory.mktemp("kubeconfigs")
    return {who: str(kube_emulator.write_kubeconfig(folder / who, token=who)) for who in ("operator", "evaluator")}


@pytest.fixture
def start_operator(
    kubeconfigs: dict[str, str], namespace: str, tmp_path: Path
) -> Iterator[Callable[..., OperatorProcess]]:
    """Start the real operator on the test's namespace, with EVALKUBE_* settings as keywords."""
    started: list[OperatorProcess] = []

    def start(**settings: Any) -> OperatorProcess:
        operator = OperatorProcess(
            kubeconfigs["operator"],
            [namespace],
            tmp_path / f"operator-{len(started)}.log",
            {key: str(value) for key, value in settings.items()},
        ).start()
        started.append(operator)
        operator.wait_ready()
        return operator

    yield start
    for operator in started:
        operator.stop()
    problems = [line for operator in started for line in operator.problems()]
    assert not problems, "the operator logged errors:\n" + "\n".join(problems)


@pytest.fixture
def operator(start_operator: Callable[..., OperatorProcess], shared_volumes: str) -> OperatorProcess:
    from harness.api_server import TEST_POLICY

    return start_operator(
        evaluator_image="evalkube/evaluator:test",
        max_completed_jobs=200,
        shared_volumes=shared_volumes,
        policy=TEST_POLICY,
    )


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ~100k-parameter Qwen2 trained until it answers the tiny task exactly (a few seconds)."""
    return make_tiny_model(tmp_path_factory.mktemp("model"))


@pytest.fixture(scope="session")
def hf_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A private Hugging Face cache, so tests neither read nor write the user's."""
    return tmp_path_factory.mktemp("hf-home")


@pytest.fixture
def kubelet(kube_client: kubernetes.client.ApiClient, namespace: str, tmp_path: Path) -> Iterator[FakeKubelet]:
    """Job controller + kubelet, scripted by the test (containers are not really run)."""
    fake = FakeKubelet(kube_client, namespace, workdir=tmp_path / "kubelet").start()
    yield fake
    fake.stop()


class Cluster:
    """The tests' view of the cluster: typed reads and kubectl-like writes."""

    def __init__(self, api_client: kubernetes.client.ApiClient, namespace: str) -> None:
        self.namespace = namespace
        self.custom = kubernetes.client.CustomObjectsApi(api_client)
        self.core = kubernetes.client.CoreV1Api(api_client)
        self.batch = kubernetes.client.BatchV1Api(api_client)

    def apply(self, spec: dict[str, Any], name: str | None = None) -> str:
        """`kubectl apply` of an EvalJob; returns its name."""
        metadata = {"name": name} if name else {"generateName": "eval-"}
        body = {"apiVersion": resource.API_VERSION, "kind": resource.KIND, "metadata": metadata, "spec": spec}
        created = self.custom.create_namespaced_custom_object(
            resource.GROUP, resource.VERSION, self.namespace, resource.PLURAL, body
        )
        return created["metadata"]["name"]

    def evaljob(self, name: str) -> dict[str, Any] | None:
        return or_none(
            self.custom.get_namespaced_custom_object,
            resource.GROUP,
            resource.VERSION,
            self.namespace,
            resource.PLURAL,
            name,
        )

    def status(self, name: str) -> dict[str, Any]:
        return (self.evaljob(name) or {}).get("status") or {}

    def patch_spec(self, name: str, spec: dict[str, Any]) -> None:
        self.custom.patch_namespaced_custom_object(
            resource.GROUP, resource.VERSION, self.namespace, resource.PLURAL, name, {"spec": spec}
        )

    def delete(self, name: str) -> None:
        self.custom.delete_namespaced_custom_object(
            resource.GROUP, resource.VERSION, self.namespace, resource.PLURAL, name
        )

    def job(self, name: str) -> Any | None:
        return or_none(self.batch.read_namespaced_job, name, self.namespace)

    def config_map(self, name: str) -> Any | None:
        return or_none(self.core.read_namespaced_config_map, name, self.namespace)

    @staticmethod
    def wait(check: Callable[[], Any], timeout: float = 20.0, what: str = "condition") -> Any:
        """Poll until `check()` is truthy; the timeout only bounds a failing test."""
        return wait_until(check, what, timeout)

    def wait_phase(self, name: str, phase: str, timeout: float = 20.0) -> dict[str, Any]:
        return self.wait(
            lambda: self.status(name) if self.status(name).get("phase") == phase else None,
            timeout,
            f"EvalJob {name} to be {phase} (now {self.status(name)})",
        )


@pytest.fixture
def cluster(kube_client: kubernetes.client.ApiClient, namespace: str) -> Cluster:
    return Cluster(kube_client, namespace)
