"""The emulator's pods/log endpoint behaves like the apiserver's (and the kubelet's behind it).

Driven through the real `kubernetes` client; the tests play the kubelet by writing the pod's
containerStatuses and feeding the log with `KubeEmulator.append_pod_log`.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import re
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import kubernetes
import pytest
import urllib3
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from kubeemu import KubeEmulator


@pytest.fixture(scope="module")
def emu() -> Iterator[KubeEmulator]:
    emulator = KubeEmulator().start()
    yield emulator
    emulator.stop()


@pytest.fixture(scope="module")
def core(emu: KubeEmulator, tmp_path_factory: pytest.TempPathFactory) -> client.CoreV1Api:
    path = emu.write_kubeconfig(tmp_path_factory.mktemp("kube") / "config", token="tests")
    return client.CoreV1Api(kubernetes.config.new_client_from_config(config_file=str(path)))


@pytest.fixture
def ns(core: client.CoreV1Api) -> str:
    name = f"t-{uuid.uuid4().hex[:8]}"
    core.create_namespace({"metadata": {"name": name}})
    return name


def pod(core: client.CoreV1Api, ns: str, name: str = "p", *containers: str, node: str | None = "node-1") -> None:
    spec: dict[str, Any] = {"containers": [{"name": c, "image": "busybox"} for c in containers or ("main",)]}
    if node:
        spec["nodeName"] = node
    core.create_namespaced_pod(ns, {"metadata": {"name": name}, "spec": spec})


def report(
    core: client.CoreV1Api,
    ns: str,
    state: dict[str, Any],
    *,
    name: str = "p",
    container: str = "main",
    restarts: int = 0,
    last: dict[str, Any] | None = None,
) -> None:
    """What the kubelet writes: the container's state, restart count and last state."""
    status = {"name": container, "image": "busybox", "imageID": "", "ready": "running" in state, "state": state}
    status.update(restartCount=restarts, lastState=last or {})
    core.patch_namespaced_pod_status(name, ns, [{"op": "add", "path": "/status/containerStatuses", "value": [status]}])


RUNNING = {"running": {"startedAt": "2025-01-01T00:00:00Z"}}
TERMINATED = {"terminated": {"exitCode": 0, "reason": "Completed"}}


def failure(call: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[int, str]:
    with pytest.raises(ApiException) as info:
        call(*args, **kwargs)
    return info.value.status, json.loads(info.value.body)["message"]


def test_before_the_container_runs(emu: KubeEmulator, core: client.CoreV1Api, ns: str) -> None:
    assert failure(core.read_namespaced_pod_log, "ghost", ns) == (404, 'pods "ghost" not found')
    pod(core, ns, "unscheduled", node=None)
    response = core.read_namespaced_pod_log("unscheduled", ns, _preload_content=False)
    assert (response.status, response.data) == (204, b"")  # no node yet: the apiserver's null stream
    pod(core, ns)
    assert failure(core.read_namespaced_pod_log, "p", ns) == (
        400,
        'container "main" in pod "p" is waiting to start: ContainerCreating',
    )
    report(core, ns, {"waiting": {"reason": "ImagePullBackOff"}})
    assert failure(core.read_namespaced_pod_log, "p", ns)[1] == (
        'container "main" in pod "p" is waiting to start: trying and failing to pull image'
    )
    report(core, ns, RUNNING)
    assert core.read_namespaced_pod_log("p", ns) == ""
    assert emu.append_pod_log(ns, "ghost", "lost\n") is False


def test_container_choice(emu: KubeEmulator, core: client.CoreV1Api, ns: str) -> None:
    pod(core, ns, "two", "runner", "sidecar")
    assert failure(core.read_namespaced_pod_log, "two", ns) == (
        400,
        "a container name must be specified for pod two, choose one of: [runner sidecar]",
    )
    assert failure(core.read_namespaced_pod_log, "two", ns, container="nope") == (
        400,
        "container nope is not valid for pod two",
    )
    report(core, ns, RUNNING, name="two", container="sidecar")
    emu.append_pod_log(ns, "two", "from the sidecar\n", container="sidecar")
    assert core.read_namespaced_pod_log("two", ns, container="sidecar") == "from the sidecar\n"
    with pytest.raises(ValueError, match="say which one"):
        emu.append_pod_log(ns, "two", "whose?\n")


def test_tail_limit_and_timestamps(emu: KubeEmulator, core: client.CoreV1Api, ns: str) -> None:
    pod(core, ns)
    report(core, ns, RUNNING)
    emu.append_pod_log(ns, "p", "one\ntwo\n")
    emu.append_pod_log(ns, "p", "three\n")
    read = core.read_namespaced_pod_log
    assert read("p", ns) == "one\ntwo\nthree\n"
    assert read("p", ns, tail_lines=2) == "two\nthree\n"
    assert read("p", ns, tail_lines=0) == ""
    assert read("p", ns, limit_bytes=6) == "one\ntw"
    stamped = read("p", ns, timestamps=True, tail_lines=1)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z three\n", stamped), stamped


def test_since_seconds_and_since_time(emu: KubeEmulator, core: client.CoreV1Api, ns: str) -> None:
    pod(core, ns)
    report(core, ns, RUNNING)
    now = datetime.datetime.now(datetime.UTC)
    emu.append_pod_log(ns, "p", "an hour ago\n", at=now - datetime.timedelta(hours=1))
    emu.append_pod_log(ns, "p", "a minute ago\n", at=now - datetime.timedelta(minutes=1))
    emu.append_pod_log(ns, "p", "just now\n")
    read = core.read_namespaced_pod_log
    assert read("p", ns, since_seconds=10) == "just now\n"
    assert read("p", ns, since_seconds=600) == "a minute ago\njust now\n"
    since = (now - datetime.timedelta(minutes=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
    with urllib.request.urlopen(f"{emu.url}/api/v1/namespaces/{ns}/pods/p/log?sinceTime={since}") as answer:
        assert answer.read() == b"a minute ago\njust now\n"  # the client has no since_time: plain HTTP
    assert read("p", ns, tail_lines=2, since_seconds=10) == "just now\n"  # tail first, then since


def test_invalid_options_are_422(core: client.CoreV1Api, ns: str) -> None:
    pod(core, ns)
    assert failure(core.read_namespaced_pod_log, "p", ns, tail_lines=-1) == (
        422,
        'PodLogOptions "p" is invalid: tailLines: Invalid value: -1: must be greater than or equal to 0',
    )
    assert failure(core.read_namespaced_pod_log, "p", ns, limit_bytes=0)[1].endswith(
        "limitBytes: Invalid value: 0: must be greater than 0"
    )
    assert failure(core.read_namespaced_pod_log, "p", ns, since_seconds=0)[1].endswith(
        "sinceSeconds: Invalid value: 0: must be greater than 0"
    )


def test_previous_serves_the_run_before_a_restart(emu: KubeEmulator, core: client.CoreV1Api, ns: str) -> None:
    pod(core, ns)
    report(core, ns, RUNNING)
    emu.append_pod_log(ns, "p", "first run\n")
    assert failure(core.read_namespaced_pod_log, "p", ns, previous=True) == (
        400,
        'previous terminated container "main" in pod "p" not found',
    )
    report(core, ns, RUNNING, restarts=1, last={"terminated": {"exitCode": 1, "reason": "Error"}})
    emu.append_pod_log(ns, "p", "second run\n")
    assert core.read_namespaced_pod_log("p", ns) == "second run\n"
    assert core.read_namespaced_pod_log("p", ns, previous=True) == "first run\n"


def test_lines_show_once_complete_or_once_the_container_ends(
    emu: KubeEmulator, core: client.CoreV1Api, ns: str
) -> None:
    pod(core, ns)
    report(core, ns, RUNNING)
    emu.append_pod_log(ns, "p", "done\n 50%|#####     |\r")
    assert core.read_namespaced_pod_log("p", ns) == "done\n"  # containerd buffers a line until its newline
    emu.append_pod_log(ns, "p", "100%|##########|\n")
    assert core.read_namespaced_pod_log("p", ns) == "done\n 50%|#####     |\r100%|##########|\n"
    emu.append_pod_log(ns, "p", "no newline at exit")
    report(core, ns, TERMINATED)
    assert core.read_namespaced_pod_log("p", ns, tail_lines=1) == "no newline at exit"


class Follower:
    """A `kubectl logs -f`: the real client's streaming response, read on a thread."""

    def __init__(self, core: client.CoreV1Api, ns: str, **options: Any) -> None:
        self.response = core.read_namespaced_pod_log("p", ns, follow=True, _preload_content=False, **options)
        self.text = ""
        self.done = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        with contextlib.suppress(urllib3.exceptions.HTTPError):  # the test itself hung up
            for chunk in self.response.stream(1024, decode_content=True):
                self.text += chunk.decode()
        self.done.set()

    def wait_for(self, text: str, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while self.text != text and time.monotonic() < deadline:
            time.sleep(0.01)
        assert self.text == text


def test_follow_streams_until_the_container_terminates(emu: KubeEmulator, core: client.CoreV1Api, ns: str) -> None:
    pod(core, ns)
    report(core, ns, RUNNING)
    emu.append_pod_log(ns, "p", "old\nbefore\n")
    follower = Follower(core, ns, tail_lines=1)
    assert follower.response.headers["Content-Type"] == "text/plain"
    follower.wait_for("before\n")
    started = time.monotonic()
    emu.append_pod_log(ns, "p", "live\n")
    follower.wait_for("before\nlive\n")
    assert time.monotonic() - started < 0.3  # woken by the append, not by polling
    assert not follower.done.is_set()
    emu.append_pod_log(ns, "p", "last words")
    report(core, ns, TERMINATED)
    assert follower.done.wait(5)
    assert follower.text == "before\nlive\nlast words"
    assert core.read_namespaced_pod_log("p", ns, follow=True) == "old\nbefore\nlive\nlast words"  # ended: no wait


def test_follow_ends_when_the_pod_goes_or_the_limit_is_reached(
    emu: KubeEmulator, core: client.CoreV1Api, ns: str
) -> None:
    pod(core, ns)
    report(core, ns, RUNNING)
    limited = Follower(core, ns, limit_bytes=8)
    follower = Follower(core, ns)
    emu.append_pod_log(ns, "p", "12345\n67890\n")
    assert limited.done.wait(5) and limited.text == "12345\n67"
    follower.wait_for("12345\n67890\n")
    core.delete_namespaced_pod("p", ns)
    assert follower.done.wait(5)


def test_a_follower_that_leaves_frees_its_server_thread(emu: KubeEmulator, core: client.CoreV1Api, ns: str) -> None:
    pod(core, ns)
    report(core, ns, RUNNING)

    def serving() -> int:
        return sum("process_request_thread" in t.name for t in threading.enumerate())

    before = serving()
    own = client.CoreV1Api(kubernetes.client.ApiClient(core.api_client.configuration))  # its own connection
    follower = Follower(own, ns)
    emu.append_pod_log(ns, "p", "hello\n")
    follower.wait_for("hello\n")
    assert serving() == before + 1
    follower.response.shutdown()
    deadline = time.monotonic() + 5
    while serving() > before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert serving() == before
