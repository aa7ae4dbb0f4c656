"""The Job controller and the kubelet, played by the tests.

The Kubernetes API emulator stores objects but runs no controllers. This plays the two that
evalkube depends on, for the Jobs evalkube creates in one namespace, through the real API:
- the Job controller: a pod per (unsuspended) Job, owned by it; Job status from the pod's end;
- the kubelet: pod status (scheduled, running, terminated with exit code and termination
  message) and, in `run_containers` mode, really running the container's command as a local
  process with the pod's env and volumes, killing it (SIGTERM, then SIGKILL) when its pod is
  deleted — exactly what cancellation relies on. Given the in-process `emulator`, what the
  container prints is also fed, as it comes, to the emulator's pods/log (`append_pod_log`), so
  `kubectl logs` and the API's log endpoint read the real run, as from a kubelet's CRI log.
Scripted tests instead drive each transition by hand (`schedule`, `start`, `finish`, ...).
"""

from __future__ import annotations

import codecs
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import kubernetes
from kubernetes.client.exceptions import ApiException

from evalkube import resource
from evalkube.kube import or_none

if TYPE_CHECKING:
    from kubeemu import KubeEmulator

SELECTOR = f"{resource.LABEL_MANAGED_BY}={resource.MANAGED_BY}"
GRACE_SECONDS = 5.0


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class FakeKubelet:
    """Job controller + kubelet for evalkube's Jobs in `namespace`."""

    def __init__(
        self,
        api_client: kubernetes.client.ApiClient,
        namespace: str,
        *,
        run_containers: bool = False,
        container_kubeconfig: str | None = None,
        image_env: dict[str, str] | None = None,
        workdir: Path | None = None,
        node: str = "node-1",
        emulator: KubeEmulator | None = None,
    ) -> None:
        self.core = kubernetes.client.CoreV1Api(api_client)
        self.batch = kubernetes.client.BatchV1Api(api_client)
        self.namespace = namespace
        self.run_containers = run_containers
        self.container_kubeconfig = container_kubeconfig
        #: What the image's ENV lines would set (e.g. HF_HOME), under the pod's own env.
        self.image_env = image_env or {}
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="kubelet-"))
        self.node = node
        self.emulator = emulator
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        #: When each pod's container started (terminated.startedAt repeats it, as the kubelet does).
        self.started: dict[str, str] = {}
        self.logs: dict[str, Path] = {}
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> FakeKubelet:
        for target in (self._job_controller, self._pod_killer):
            thread = threading.Thread(target=target, daemon=True, name=f"kubelet-{target.__name__}")
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        self._stop.set()
        for name in list(self.processes):
            self._kill(name)
        for thread in self._threads:
            thread.join(timeout=5)

    def _watch(self, list_call: Any, handle: Any) -> None:
        """List+watch with resume, until stopped; short server timeouts so stop() is quick."""
        version = ""
        while not self._stop.is_set():
            try:
                stream = kubernetes.watch.Watch().stream(
                    list_call, self.namespace, label_selector=SELECTOR, resource_version=version, timeout_seconds=1
                )
                for event in stream:
                    obj = event["raw_object"]
                    version = obj["metadata"]["resourceVersion"]
                    handle(event["type"], obj)
                    if self._stop.is_set():
                        return
            except ApiException as error:
                if error.status == 410:
                    version = ""
                    continue
                if self._stop.is_set():
                    return
                time.sleep(0.2)
            except Exception:
                if self._stop.is_set():
                    return
                time.sleep(0.2)

    # -- Job controller -----------------------------------------------------------------------

    def _job_controller(self) -> None:
        self._watch(self.batch.list_namespaced_job, self._on_job)

    def _on_job(self, kind: str, job: dict[str, Any]) -> None:
        if kind == "DELETED" or job["spec"].get("suspend") or job["metadata"].get("deletionTimestamp"):
            return
        name = job["metadata"]["name"]
        with self._lock:
            try:
                self.core.read_namespaced_pod(name, self.namespace)
                return
            except ApiException as error:
                if error.status != 404:
                    raise
            template = job["spec"]["template"]
            pod = {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {
                    "name": name,
                    "namespace": self.namespace,
                    "labels": {**template["metadata"].get("labels", {}), "job-name": name},
                    "ownerReferences": [
                        {
                            "apiVersion": "batch/v1",
                            "kind": "Job",
                            "name": name,
                            "uid": job["metadata"]["uid"],
                            "controller": True,
                            "blockOwnerDeletion": True,
                        }
                    ],
                },
                "spec": template["spec"],
            }
            self.core.create_namespaced_pod(self.namespace, pod)
            self.batch.patch_namespaced_job_status(name, self.namespace, {"status": {"startTime": now(), "active": 1}})
        if self.run_containers:
            threading.Thread(target=self._run, args=(name,), daemon=True).start()

    # -- kubelet: scripted transitions --------------------------------------------------------

    def wait_for_pod(self, name: str, timeout: float = 20.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                return self.core.read_namespaced_pod(name, self.namespace).to_dict()
            except ApiException as error:
                if error.status != 404:
                    raise
            time.sleep(0.05)
        raise TimeoutError(f"no pod {name} after {timeout}s")

    def run_pod(self, name: str, timeout: float = 20.0) -> None:
        """Wait for the Job controller's pod, then schedule it and start its container."""
        self.wait_for_pod(name, timeout)
        self.start_container(name)

    def unschedulable(self, name: str, message: str) -> None:
        self._pod_status(
            name,
            {
                "phase": "Pending",
                "conditions": [
                    {
                        "type": "PodScheduled",
                        "status": "False",
                        "reason": "Unschedulable",
                        "message": message,
                        "lastTransitionTime": now(),
                    }
                ],
            },
        )

    def waiting(self, name: str, reason: str, message: str = "") -> None:
        self._schedule(name)
        self._pod_status(
            name,
            {
                "phase": "Pending",
                "containerStatuses": [self._container(name, {"waiting": {"reason": reason, "message": message}})],
            },
        )

    def start_container(self, name: str) -> None:
        self._schedule(name)
        self.started[name] = now()
        self._pod_status(
            name,
            {
                "phase": "Running",
                "containerStatuses": [
                    self._container(name, {"running": {"startedAt": self.started[name]}}, ready=True)
                ],
            },
        )

    def finish(
        self,
        name: str,
        exit_code: int = 0,
        *,
        message: str = "",
        reason: str | None = None,
        results: dict[str, Any] | None = None,
    ) -> None:
        """The container exits; with `results`, it first writes the results ConfigMap as the runner does."""
        if results is not None:
            self.write_results(name, results)
        self.terminate_container(name, exit_code, message=message, reason=reason)
        self.finish_job(name, exit_code == 0)

    def terminate_container(self, name: str, exit_code: int, *, message: str = "", reason: str | None = None) -> None:
        """The kubelet reports the container's exit (the Job controller has not reacted yet)."""
        terminated = {
            "exitCode": exit_code,
            "reason": reason or ("Completed" if exit_code == 0 else "Error"),
            "startedAt": self.started.get(name, now()),
            "finishedAt": now(),
        }
        if message:
            terminated["message"] = message
        self._pod_status(
            name,
            {
                "phase": "Succeeded" if exit_code == 0 else "Failed",
                "containerStatuses": [self._container(name, {"terminated": terminated})],
            },
        )

    def deadline_exceeded(self, name: str) -> None:
        self._job_status(
            name,
            {
                "active": 0,
                "failed": 1,
                "conditions": [
                    {
                        "type": "FailureTarget",
                        "status": "True",
                        "reason": "DeadlineExceeded",
                        "message": "Job was active longer than specified deadline",
                        "lastTransitionTime": now(),
                    },
                    {
                        "type": "Failed",
                        "status": "True",
                        "reason": "DeadlineExceeded",
                        "message": "Job was active longer than specified deadline",
                        "lastTransitionTime": now(),
                    },
                ],
            },
        )

    def write_results(self, name: str, document: dict[str, Any], meta: dict[str, Any] | None = None) -> None:
        pod = self.core.read_namespaced_pod(name, self.namespace)
        env = {item.name: item.value for item in pod.spec.containers[0].env}
        body = {
            "metadata": {
                "name": env["EVALKUBE_RESULT_CONFIGMAP"],
                "labels": resource.child_labels(env["EVALKUBE_EVALJOB_NAME"]),
                "ownerReferences": [
                    resource.owner_reference(
                        env["EVALKUBE_EVALJOB_NAME"], env["EVALKUBE_EVALJOB_UID"], block_owner_deletion=False
                    )
                ],
            },
            "data": {
                resource.RESULTS_KEY: json.dumps(document),
                resource.RESULTS_META_KEY: json.dumps(meta or {"dropped": []}),
            },
        }
        self.core.create_namespaced_config_map(self.namespace, body)

    # -- kubelet: really running the container ------------------------------------------------

    def _run(self, name: str) -> None:
        pod = self.core.read_namespaced_pod(name, self.namespace).to_dict()
        container = pod["spec"]["containers"][0]
        root = self.workdir / name
        mounts = self._volumes(pod, root)
        env = {key: os.environ[key] for key in ("PATH", "HOME", "LANG", "TMPDIR") if key in os.environ}
        env.update(self.image_env)
        for item in container.get("env") or []:
            value = item.get("value") or ""
            for mount_path, local in mounts.items():
                if value == mount_path or value.startswith(mount_path + "/"):
                    value = str(local) + value[len(mount_path) :]
            env[item["name"]] = value
        termination_log = root / "termination-log"
        env["EVALKUBE_TERMINATION_LOG"] = str(termination_log)
        env["TMPDIR"] = str(mounts.get("/tmp", root))
        if self.container_kubeconfig:
            env["KUBECONFIG"] = self.container_kubeconfig
        command = [*container["command"], *(container.get("args") or [])]
        command[0] = shutil.which(command[0], path=str(Path(sys.executable).parent)) or command[0]
        log_path = root / "container.log"
        self.logs[name] = log_path
        with open(log_path, "wb") as log:
            process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=root)
            assert process.stdout is not None
            copier = threading.Thread(target=self._copy_output, args=(name, process.stdout, log), daemon=True)
            copier.start()
            self.processes[name] = process
            self.start_container(name)
            code = process.wait()
            copier.join(timeout=10)  # all output is logged before the container is reported ended
        self.processes.pop(name, None)
        if self._pod_gone(name):
            return
        message = termination_log.read_text()[-4096:] if termination_log.exists() else ""
        if not message and code != 0:
            message = log_path.read_text(errors="replace")[-2048:]  # FallbackToLogsOnError
        with contextlib.suppress(ApiException):  # the pod or Job was deleted meanwhile
            self.finish(name, code if code >= 0 else 128 - code, message=message)

    def _copy_output(self, name: str, stream: IO[bytes], log: IO[bytes]) -> None:
        """The container's output, as it comes, to its log file and to the emulator's pods/log."""
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        while chunk := stream.read1(64 * 1024):  # type: ignore[attr-defined]
            log.write(chunk)
            log.flush()
            if self.emulator is not None and (text := decoder.decode(chunk)):
                self.emulator.append_pod_log(self.namespace, name, text)
        stream.close()

    def _volumes(self, pod: dict[str, Any], root: Path) -> dict[str, Path]:
        """mountPath -> local directory; ConfigMap volumes materialised as files, like the kubelet."""
        local: dict[str, Path] = {}
        by_name = {volume["name"]: volume for volume in pod["spec"].get("volumes") or []}
        for mount in pod["spec"]["containers"][0].get("volume_mounts") or []:
            volume = by_name[mount["name"]]
            path = root / "volumes" / mount["name"]
            path.mkdir(parents=True, exist_ok=True)
            if volume.get("config_map"):
                config_map = self.core.read_namespaced_config_map(volume["config_map"]["name"], self.namespace)
                _write_config_map_volume(path, config_map.data or {})
            if volume.get("persistent_volume_claim"):
                if Path(mount["mount_path"]).is_dir():
                    # A shared volume: the tests' stand-in for a PVC that training pods mount at the
                    # same path is a host folder at that path, so a path means the same everywhere.
                    path = Path(mount["mount_path"])
                else:
                    path = self.workdir / "pvc" / volume["persistent_volume_claim"]["claim_name"]
                    path.mkdir(parents=True, exist_ok=True)
            local[mount["mount_path"]] = path
        return local

    def _pod_killer(self) -> None:
        """A deleted pod's container gets SIGTERM, then SIGKILL after the grace period."""

        def handle(kind: str, pod: dict[str, Any]) -> None:
            if kind == "DELETED" or pod["metadata"].get("deletionTimestamp"):
                threading.Thread(target=self._kill, args=(pod["metadata"]["name"],), daemon=True).start()

        self._watch(self.core.list_namespaced_pod, handle)

    def _kill(self, name: str) -> None:
        process = self.processes.get(name)
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()

    # -- object plumbing ----------------------------------------------------------------------

    def _pod_gone(self, name: str) -> bool:
        pod = or_none(self.core.read_namespaced_pod, name, self.namespace)
        return pod is None or pod.metadata.deletion_timestamp is not None

    def _schedule(self, name: str) -> None:
        self.core.patch_namespaced_pod(name, self.namespace, {"spec": {"nodeName": self.node}})
        self._pod_status(
            name, {"conditions": [{"type": "PodScheduled", "status": "True", "lastTransitionTime": now()}]}
        )

    def _container(self, name: str, state: dict[str, Any], ready: bool = False) -> dict[str, Any]:
        image = self.core.read_namespaced_pod(name, self.namespace).spec.containers[0].image
        return {"name": "evaluator", "image": image, "imageID": "", "ready": ready, "restartCount": 0, "state": state}

    def _pod_status(self, name: str, status: dict[str, Any]) -> None:
        self.core.patch_namespaced_pod_status(name, self.namespace, {"status": status})

    def _job_status(self, name: str, status: dict[str, Any]) -> None:
        self.batch.patch_namespaced_job_status(name, self.namespace, {"status": status})

    def finish_job(self, name: str, succeeded: bool) -> None:
        """The Job controller marks the Job Complete or Failed (backoffLimit 0)."""
        if succeeded:
            self._job_status(
                name,
                {
                    "active": 0,
                    "succeeded": 1,
                    "completionTime": now(),
                    "conditions": [
                        {
                            "type": "SuccessCriteriaMet",
                            "status": "True",
                            "reason": "CompletionsReached",
                            "lastTransitionTime": now(),
                        },
                        {
                            "type": "Complete",
                            "status": "True",
                            "reason": "CompletionsReached",
                            "lastTransitionTime": now(),
                        },
                    ],
                },
            )
        else:
            self._job_status(
                name,
                {
                    "active": 0,
                    "failed": 1,
                    "conditions": [
                        {
                            "type": "FailureTarget",
                            "status": "True",
                            "reason": "BackoffLimitExceeded",
                            "message": "Job has reached the specified backoff limit",
                            "lastTransitionTime": now(),
                        },
                        {
                            "type": "Failed",
                            "status": "True",
                            "reason": "BackoffLimitExceeded",
                            "message": "Job has reached the specified backoff limit",
                            "lastTransitionTime": now(),
                        },
                    ],
                },
            )


def _write_config_map_volume(mount: Path, data: dict[str, str]) -> None:
    """The kubelet's atomic-writer layout: files in a timestamped folder, `..data` linking to it,
    and each key a link through `..data` (code that resolves paths must cope with the links)."""
    version = mount / f"..{time.strftime('%Y_%m_%d_%H_%M_%S', time.gmtime())}.000000001"
    version.mkdir()
    for key, text in data.items():
        (version / key).write_text(text)
        (mount / key).symlink_to(Path("..data") / key)
    (mount / "..data").symlink_to(version.name)
