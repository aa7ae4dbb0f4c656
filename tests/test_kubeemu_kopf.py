"""End to end: a tiny real kopf operator (own process) against the emulator.

kopf runs as `python -m kopf run --standalone` in a subprocess with KUBECONFIG set,
so it has its own event loop and stdout (KopfRunner would swap sys.stdout for the
whole pytest process), and exercises discovery, list+watch with bookmarks, merge and
JSON patches, the status subresource, finalizers, events and GC of adopted children.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import kubernetes
import pytest
from kubernetes import client

from kubeemu import KubeEmulator

GROUP, VERSION, PLURAL = "kubeemu.test", "v1", "kopfthings"
CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": f"{PLURAL}.{GROUP}"},
    "spec": {
        "group": GROUP,
        "scope": "Namespaced",
        "names": {"plural": PLURAL, "singular": "kopfthing", "kind": "KopfThing"},
        "versions": [
            {
                "name": VERSION,
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {"type": "object", "properties": {"size": {"type": "integer"}}},
                            "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                        },
                    }
                },
            }
        ],
    },
}
OPERATOR = """
import kopf
import kubernetes


@kopf.on.startup()
def configure(settings, **_):
    settings.watching.server_timeout = 1     # exercise timeoutSeconds + resumption from resourceVersion


@kopf.on.create("kubeemu.test", "v1", "kopfthings")
def created(body, spec, name, namespace, patch, **_):
    child = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"{name}-results"},
             "data": {"size": str(spec["size"])}}
    kopf.adopt(child, owner=body)
    kubernetes.client.CoreV1Api().create_namespaced_config_map(namespace, child)
    patch.status["phase"] = "Done"
    kopf.info(body, reason="Created", message="results configmap created")   # posts a core/v1 Event
    return {"child": child["metadata"]["name"]}


@kopf.on.delete("kubeemu.test", "v1", "kopfthings")
def deleted(name, namespace, **_):
    kubernetes.client.CoreV1Api().create_namespaced_config_map(namespace, {"metadata": {"name": f"{name}-gone"}})
"""


def start_emulator(**kwargs: Any) -> KubeEmulator:
    emulator = KubeEmulator(**kwargs).start()
    emulator.apply_crd(CRD)
    return emulator


@pytest.fixture
def emu() -> Iterator[KubeEmulator]:
    emulator = start_emulator(bookmark_interval=0.3)
    yield emulator
    emulator.stop()


def wait_for(predicate: Any, timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := predicate():
            return result
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


@contextlib.contextmanager
def kopf_running(emu: KubeEmulator, tmp_path: Path) -> Iterator[Callable[[], str]]:
    """Run the operator until the block ends; then SIGINT it and require a clean, error-free exit."""
    operator = tmp_path / "operator.py"
    operator.write_text(OPERATOR)
    kubeconfig = emu.write_kubeconfig(tmp_path / "kubeconfig", token="operator")
    log = (tmp_path / "kopf.log").open("w+")
    proc = subprocess.Popen(
        [sys.executable, "-m", "kopf", "run", "--standalone", "--namespace", "default", "--verbose", str(operator)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "KUBECONFIG": str(kubeconfig)},
    )

    def output() -> str:
        return (tmp_path / "kopf.log").read_text()

    try:
        wait_for(
            lambda: any(r.token == "operator" and r.verb == "watch" and r.resource == PLURAL for r in emu.requests)
        )
        yield output
    finally:
        proc.send_signal(signal.SIGINT)
        code = proc.wait(20)
        log.close()
    text = output()
    assert code == 0, text
    assert "Traceback" not in text and "ERROR" not in text and "WARNING" not in text, text


def create_thing(emu: KubeEmulator, name: str) -> None:
    rt = emu.store.registry.get(GROUP, VERSION, PLURAL)
    assert rt is not None
    emu.store.create(rt, "default", {"metadata": {"name": name}, "spec": {"size": 3}})


def handled(emu: KubeEmulator, name: str) -> dict[str, Any] | None:
    obj = emu.get_object(GROUP, PLURAL, name, "default")
    return obj if obj and obj.get("status", {}).get("phase") == "Done" else None


def test_kopf_operator_end_to_end(emu: KubeEmulator, tmp_path: Path) -> None:
    api = kubernetes.config.new_client_from_config(str(emu.write_kubeconfig(tmp_path / "tests", token="tests")))
    custom, core = client.CustomObjectsApi(api), client.CoreV1Api(api)
    with kopf_running(emu, tmp_path) as output:
        custom.create_namespaced_custom_object(
            GROUP,
            VERSION,
            "default",
            PLURAL,
            {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "KopfThing",
                "metadata": {"name": "thing"},
                "spec": {"size": 3},
            },
        )
        obj = wait_for(lambda: handled(emu, "thing"))
        assert obj["status"]["created"] == {"child": "thing-results"}
        assert "kopf.zalando.org/KopfFinalizerMarker" in obj["metadata"]["finalizers"]
        results = core.read_namespaced_config_map("thing-results", "default")
        assert results.data == {"size": "3"} and results.metadata.owner_references[0].uid == obj["metadata"]["uid"]
        wait_for(
            lambda: any(
                e["involvedObject"]["name"] == "thing" and e["reason"] == "Created"
                for e in emu.list_objects("", "events", "default")
            )
        )

        custom.delete_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "thing")
        wait_for(lambda: emu.get_object(GROUP, PLURAL, "thing", "default") is None)
        assert emu.get_object("", "configmaps", "thing-gone", "default") is not None  # delete handler ran
        assert emu.get_object("", "configmaps", "thing-results", "default") is None  # collected by GC
        time.sleep(1.5)  # let bookmarks and timeoutSeconds reconnections pass through kopf
    assert "Handler 'created' succeeded" in output() and "Handler 'deleted' succeeded" in output()


def test_kopf_recovers_from_410_gone(tmp_path: Path) -> None:
    """No bookmarks and a tiny history: kopf's resumed watch gets 410 Expired, relists, and carries on."""
    emu = start_emulator(history_size=20, bookmark_interval=3600)
    try:
        with kopf_running(emu, tmp_path) as output:
            create_thing(emu, "before")
            wait_for(lambda: handled(emu, "before"))
            configmaps = emu.store.registry.get("", "v1", "configmaps")
            assert configmaps is not None
            for i in range(40):  # push kopf's last seen resourceVersion out of the history
                emu.store.create(configmaps, "kube-system", {"metadata": {"name": f"noise-{i}"}})
            wait_for(lambda: "Restarting the watch-stream for kopfthings" in output())
            create_thing(emu, "after")
            wait_for(lambda: handled(emu, "after"))
    finally:
        emu.stop()


def test_kopf_own_kubeconfig_login(emu: KubeEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """kopf's fallback parser (used without the kubernetes client) reads server and token too."""
    from kopf._cogs.configs.configuration import OperatorSettings
    from kopf._core.intents.piggybacking import login_with_kubeconfig

    monkeypatch.setenv("KUBECONFIG", str(emu.write_kubeconfig(tmp_path / "kc", token="operator")))
    info = login_with_kubeconfig(settings=OperatorSettings())
    assert info is not None and (info.server, info.token) == (emu.url, "operator")
