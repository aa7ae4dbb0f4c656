"""pytest plugin: the real evalkube API on real uvicorn, against the Kubernetes API emulator.

Load it with `pytest_plugins = ["harness.api_server"]`. Fixtures:

- `kube_emulator` (session): a started KubeEmulator with every CRD of crds/ applied (EvalJob, ...).
- `private_kube` (function): an emulator of the test's own (to stop and restart) and the API's
  kubeconfig for it.
- `api_kubeconfig` (session): kubeconfig path the API uses (token "api").
- `kube_client` (session): a `kubernetes` ApiClient for the tests themselves, playing kubectl
  and the operator (token "test").
- `namespace` (function): a fresh namespace, so every test starts from an empty cluster.
- `api_server` (function): the API for `namespace`, served on a free localhost port; `api_url`
  is its URL; `http` is an httpx.Client of it (base_url set); `eval_client` /
  `async_eval_client` are evalkube clients of it.

Helpers: `ApiServer` (start one with other settings), `wait_until` (poll for state that arrives
asynchronously, e.g. through the watch), and `set_status` (what the operator would write).
"""

from __future__ import annotations

import itertools
import json
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import httpx
import kubernetes
import pytest
import uvicorn
import yaml

from evalkube import AsyncEvalClient, EvalClient, kube, resource
from evalkube.api.app import create_app
from evalkube.api.server import SHUTDOWN_GRACE_SECONDS
from evalkube.api.settings import ApiSettings

from kubeemu import KubeEmulator

CRD = Path(__file__).resolve().parents[2] / "crds" / "evaljob.yaml"


def apply_crds(emulator: KubeEmulator) -> None:
    """Every CRD the project ships (crds/*.yaml), as the chart installs them."""
    for path in sorted(CRD.parent.glob("*.yaml")):
        emulator.apply_crd(yaml.safe_load(path.read_text()))


T = TypeVar("T")


def wait_until(probe: Callable[[], T], what: str, timeout: float = 15.0, interval: float = 0.02) -> T:
    """Poll `probe` until it returns something truthy and return that; fail naming `what`.

    For state that arrives asynchronously (a watch event, a thread starting): the deadline is a
    generous upper bound, never the thing under test.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


class ApiServer:
    """create_app(settings) served by uvicorn in a daemon thread on a free port of 127.0.0.1."""

    def __init__(self, settings: ApiSettings, port: int = 0) -> None:
        """`port` 0: a free one; a fixed one lets a restarted API keep its URL (chaos tests)."""
        self.settings = settings
        config = uvicorn.Config(
            create_app(settings),
            host="127.0.0.1",
            port=port,
            log_level="warning",
            lifespan="on",
            access_log=False,
            timeout_graceful_shutdown=SHUTDOWN_GRACE_SECONDS,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="api-server", daemon=True)
        self.url = ""

    def start(self) -> ApiServer:
        self._thread.start()
        wait_until(lambda: self._server.started or not self._thread.is_alive(), "the API server to start", 30)
        if not self._server.started:
            raise RuntimeError("the API server failed to start (see the log above)")
        port = self._server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(30)

    def __enter__(self) -> ApiServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def evaljob_manifest(name: str, **spec: Any) -> dict[str, Any]:
    """An EvalJob as a kubectl user would write it (spec in camelCase; model and tasks defaulted)."""
    return {
        "apiVersion": resource.API_VERSION,
        "kind": resource.KIND,
        "metadata": {"name": name},
        "spec": {"model": "huggingface", "tasks": ["mme"], **spec},
    }


def set_status(client: kubernetes.client.ApiClient, namespace: str, name: str, **status: Any) -> dict[str, Any]:
    """Merge `status` into an EvalJob's status subresource, as the operator does."""
    return kubernetes.client.CustomObjectsApi(client).patch_namespaced_custom_object_status(
        resource.GROUP, resource.VERSION, namespace, resource.PLURAL, name, {"status": status}
    )


class PrivateKube(NamedTuple):
    emulator: KubeEmulator
    kubeconfig: str  # for the API (token "api")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def kube_emulator() -> Iterator[KubeEmulator]:
    emulator = KubeEmulator()
    emulator.start()
    apply_crds(emulator)
    yield emulator
    emulator.stop()


@pytest.fixture
def private_kube(tmp_path: Path) -> Iterator[PrivateKube]:
    """An emulator of the test's own, with the CRD: it may be stopped and started again (same port).

    Its event history is short (10 events), so a watch that was away for long gets 410 Gone.
    """
    emulator = KubeEmulator(port=_free_port(), history_size=10).start()
    apply_crds(emulator)
    yield PrivateKube(emulator, str(emulator.write_kubeconfig(tmp_path / "api-kubeconfig", token="api")))
    emulator.stop()


@pytest.fixture(scope="session")
def api_kubeconfig(kube_emulator: KubeEmulator, tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("api") / "kubeconfig"
    kube_emulator.write_kubeconfig(path, token="api")
    return str(path)


@pytest.fixture(scope="session")
def kube_client(
    kube_emulator: KubeEmulator, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[kubernetes.client.ApiClient]:
    path = tmp_path_factory.mktemp("test") / "kubeconfig"
    kube_emulator.write_kubeconfig(path, token="test")
    client = kube.api_client(str(path))
    yield client
    client.close()


_namespaces = itertools.count()


@pytest.fixture
def namespace(kube_client: kubernetes.client.ApiClient) -> str:
    name = f"api-test-{next(_namespaces)}"
    kubernetes.client.CoreV1Api(kube_client).create_namespace({"metadata": {"name": name}})
    return name


def shared_volumes_json(root: Path) -> str:
    """The tests' EVALKUBE_SHARED_VOLUMES: the session's temporary folder (where tests put models,
    checkpoints and outputs) and /ckpt (paths tests only name), as a training cluster would share them."""
    return json.dumps(
        [{"claimName": "shared", "mountPath": str(root)}, {"claimName": "checkpoints", "mountPath": "/ckpt"}]
    )


#: The tests' EVALKUBE_POLICY for the API and the operator fixtures: the tests of scheduling knobs,
#: images and downloads need them allowed. The policy's own default (everything refused) is
#: tested in test_policy.py, test_operator_policy.py and test_api_policy.py.
TEST_POLICY = json.dumps(
    {
        "allowedImages": ["eval:2", "registry.invalid/*"],
        "maxGpus": 64,
        "allowNodeSelector": True,
        "allowTolerations": True,
        "maxResources": {"cpu": "64", "memory": "1Ti", "ephemeral-storage": "1Ti"},
        "allowOnline": True,
        "allowTrustRemoteCode": True,
        "allowCustomTaskCode": True,
    }
)


@pytest.fixture(scope="session")
def shared_volumes(tmp_path_factory: pytest.TempPathFactory) -> str:
    return shared_volumes_json(tmp_path_factory.getbasetemp())


@pytest.fixture
def api_server(api_kubeconfig: str, namespace: str, shared_volumes: str) -> Iterator[ApiServer]:
    settings = ApiSettings(
        namespace=namespace,
        kubeconfig=api_kubeconfig,
        shared_volumes=shared_volumes,
        model_cache_pvc="model-cache",
        merge_wait_seconds=2.0,  # POST /merge without an operator answers after this
        policy=TEST_POLICY,
    )
    server = ApiServer(settings).start()
    yield server
    server.stop()


@pytest.fixture
def api_url(api_server: ApiServer) -> str:
    return api_server.url


@pytest.fixture
def http(api_url: str) -> Iterator[httpx.Client]:
    """A plain HTTP client of the API (base_url set): for status codes and raw bodies."""
    with httpx.Client(base_url=api_url, timeout=30) as client:
        yield client


@pytest.fixture
def eval_client(api_url: str) -> Iterator[EvalClient]:
    with EvalClient(api_url, timeout=30) as client:
        yield client


@pytest.fixture
async def async_eval_client(api_url: str) -> AsyncIterator[AsyncEvalClient]:
    async with AsyncEvalClient(api_url, timeout=30) as client:
        yield client
