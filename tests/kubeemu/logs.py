"""Container logs, served by GET /api/v1/namespaces/NS/pods/NAME/log as the apiserver and kubelet do.

Why: evalkube's API streams an evaluator pod's log (pods/log), so the emulator plays the part the
kubelet plays on a cluster. The tests (the test kubelet) feed the log with
`KubeEmulator.append_pod_log`; each line is stamped when it arrives, which is what `sinceSeconds`,
`sinceTime` and `timestamps` work from, as with the CRI log files.

Semantics, from pkg/registry/core/pod (LogLocation, ValidatePodLogOptions) and the kubelet
(validateContainerLogStatus, the CRI log reader):
- options are validated first: 422 `PodLogOptions "NAME" is invalid`;
- a missing pod is 404, a wrong or missing container name 400;
- a pod with no node yet answers 204 No Content (the apiserver has no kubelet to ask);
- the container's state comes from the pod's status.containerStatuses (what the kubelet reports):
  waiting -> 400 `container "C" in pod "P" is waiting to start: REASON`; running or terminated ->
  its log; a container whose status was never written but whose log was fed counts as running;
- one log per container run: a line is filed under the run given by the container's restartCount
  when it arrives, so `previous=true` serves the run before (400 if there was none);
- `tailLines` picks the last lines, then `sinceSeconds`/`sinceTime` drop older lines; `limitBytes`
  cuts the output (even a follow) after that many bytes; `timestamps` prefixes each line with its
  RFC3339Nano time;
- text is line-buffered like containerd's: a line shows once its newline arrives (or once it
  reaches 16 KiB, or its container has terminated);
- `follow` streams until the run ends (terminated, restarted), the pod goes, or the client leaves.
"""

from __future__ import annotations

import datetime
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from . import errors

MAX_LINE = 16 * 1024  # containerd's max_container_log_line_size: longer lines are split
_TRUE = ("1", "t", "T", "true", "True", "TRUE")
Entry = tuple[int, str]  # (unix time in ns, text ending in a newline unless split or flushed)


def rfc3339nano(ns: int) -> str:
    """Go's time.RFC3339Nano: trailing zeros of the fraction dropped."""
    seconds, fraction = divmod(ns, 10**9)
    digits = f"{fraction:09d}".rstrip("0")
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    return f"{stamp}.{digits}Z" if digits else f"{stamp}Z"


@dataclass
class _Run:
    entries: list[Entry] = field(default_factory=list)
    partial: str = ""
    partial_ns: int = 0

    def append(self, text: str, at_ns: int) -> None:
        text = self.partial + text
        stamp = self.partial_ns if self.partial else at_ns
        lines = text.split("\n")
        for line in lines[:-1]:
            self._add(line + "\n", stamp)
            stamp = at_ns
        self.partial, self.partial_ns = lines[-1], stamp
        while len(self.partial) >= MAX_LINE:
            self._add(self.partial[:MAX_LINE], stamp)
            self.partial = self.partial[MAX_LINE:]
        if not self.partial:
            self.partial_ns = 0

    def _add(self, text: str, stamp: int) -> None:
        self.entries.append((stamp, text))

    def view(self, flushed: bool) -> list[Entry]:
        return [*self.entries, (self.partial_ns, self.partial)] if flushed and self.partial else list(self.entries)


LogKey = tuple[str, str, str | None, int]  # namespace, pod, container (None: any), run


class PodLogs:
    """Every container run's log, and a version counter that followers wait on."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._runs: dict[LogKey, _Run] = {}
        self._version = 0

    def append(self, key: LogKey, text: str, at_ns: int | None = None) -> None:
        with self._cond:
            self._runs.setdefault(key, _Run()).append(text, at_ns if at_ns is not None else time.time_ns())
            self._bump()

    def replace(self, key: LogKey, text: str) -> None:
        with self._cond:
            run = self._runs[key] = _Run()
            run.append(text, time.time_ns())
            run.entries += [(run.partial_ns, run.partial)] if run.partial else []
            run.partial = ""
            self._bump()

    def drop(self, namespace: str, pod: str) -> None:
        with self._cond:
            for key in [k for k in self._runs if k[:2] == (namespace, pod)]:
                del self._runs[key]
            self._bump()

    def poke(self) -> None:
        """Wake followers: the pod changed (status, deletion)."""
        with self._cond:
            self._bump()

    def _bump(self) -> None:
        self._version += 1
        self._cond.notify_all()

    @property
    def version(self) -> int:
        return self._version

    def wait(self, version: int, timeout: float) -> None:
        with self._cond:
            self._cond.wait_for(lambda: self._version != version, timeout)

    def has(self, namespace: str, pod: str, container: str, run: int) -> bool:
        with self._cond:
            return (namespace, pod, container, run) in self._runs or (namespace, pod, None, run) in self._runs

    def view(self, namespace: str, pod: str, container: str, run: int, flushed: bool) -> list[Entry]:
        with self._cond:
            found = self._runs.get((namespace, pod, container, run)) or self._runs.get((namespace, pod, None, run))
            return found.view(flushed) if found else []


# ---- options -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LogOptions:
    container: str | None = None
    follow: bool = False
    previous: bool = False
    timestamps: bool = False
    tail_lines: int | None = None
    limit_bytes: int | None = None
    since_seconds: int | None = None
    since_ns: int | None = None  # sinceTime

    @classmethod
    def parse(cls, pod: str, query: Mapping[str, str]) -> LogOptions:
        def number(key: str) -> int | None:
            if key not in query:
                return None
            try:
                return int(query[key])
            except ValueError:
                raise errors.bad_request(f'strconv.ParseInt: parsing "{query[key]}": invalid syntax') from None

        since_ns = None
        if query.get("sinceTime"):
            try:
                moment = datetime.datetime.fromisoformat(query["sinceTime"].replace("Z", "+00:00"))
            except ValueError:
                raise errors.bad_request(
                    f'parsing time "{query["sinceTime"]}" as "2006-01-02T15:04:05Z07:00": cannot parse'
                ) from None
            since_ns = int(moment.timestamp()) * 10**9  # RFC3339: whole seconds, as the client sends
        opts = cls(
            query.get("container") or None,
            query.get("follow") in _TRUE,
            query.get("previous") in _TRUE,
            query.get("timestamps") in _TRUE,
            number("tailLines"),
            number("limitBytes"),
            number("sinceSeconds"),
            since_ns,
        )
        causes = []
        if opts.tail_lines is not None and opts.tail_lines < 0:
            causes.append(
                errors.cause(
                    "tailLines",
                    "FieldValueInvalid",
                    f"Invalid value: {opts.tail_lines}: must be greater than or equal to 0",
                )
            )
        if opts.limit_bytes is not None and opts.limit_bytes < 1:
            causes.append(
                errors.cause(
                    "limitBytes", "FieldValueInvalid", f"Invalid value: {opts.limit_bytes}: must be greater than 0"
                )
            )
        if opts.since_seconds is not None and opts.since_ns is not None:
            causes.append(
                errors.cause(
                    "",
                    "FieldValueForbidden",
                    "Forbidden: at most one of `sinceTime` or `sinceSeconds` may be specified",
                )
            )
        elif opts.since_seconds is not None and opts.since_seconds < 1:
            causes.append(
                errors.cause(
                    "sinceSeconds", "FieldValueInvalid", f"Invalid value: {opts.since_seconds}: must be greater than 0"
                )
            )
        if causes:
            raise errors.invalid("PodLogOptions", "", pod, causes)
        return opts

    def since(self, now_ns: int) -> int | None:
        if self.since_seconds is not None:
            return now_ns - self.since_seconds * 10**9
        return self.since_ns

    def render(self, entries: list[Entry], since_ns: int | None) -> str:
        return "".join(
            (f"{rfc3339nano(ts)} {text}" if self.timestamps else text)
            for ts, text in entries
            if since_ns is None or ts >= since_ns
        )


# ---- which container, which run ----------------------------------------------------------------


def pick_container(pod: Mapping[str, Any], wanted: str | None) -> str:
    """validateContainer of pkg/registry/core/pod/strategy.go."""
    name = pod["metadata"]["name"]
    spec = pod.get("spec") or {}
    containers = [c.get("name", "") for c in spec.get("containers") or []]
    init = [c.get("name", "") for c in spec.get("initContainers") or []]
    if wanted is None:
        if len(containers) == 1:
            return containers[0]
        if not containers:
            raise errors.bad_request(f"a container name must be specified for pod {name}")
        message = f"a container name must be specified for pod {name}, choose one of: [{' '.join(containers)}]"
        if init:
            message += f" or one of the init containers: [{' '.join(init)}]"
        raise errors.bad_request(message)
    if wanted not in containers + init:
        raise errors.bad_request(f"container {wanted} is not valid for pod {name}")
    return wanted


def container_status(pod: Mapping[str, Any], container: str) -> Mapping[str, Any] | None:
    status = pod.get("status") or {}
    for cs in (status.get("containerStatuses") or []) + (status.get("initContainerStatuses") or []):
        if cs.get("name") == container:
            return cs
    return None


def current_run(pod: Mapping[str, Any], container: str) -> int:
    cs = container_status(pod, container)
    return int((cs or {}).get("restartCount") or 0)


def run_to_serve(pod: Mapping[str, Any], container: str, previous: bool, has_log: bool) -> int:
    """validateContainerLogStatus of the kubelet: which run's log, or the 400 it answers."""
    name = pod["metadata"]["name"]
    cs = container_status(pod, container)
    restarts = int((cs or {}).get("restartCount") or 0)
    state, last = (cs or {}).get("state") or {}, (cs or {}).get("lastState") or {}
    if previous:
        if not last.get("terminated"):
            raise errors.bad_request(f'previous terminated container "{container}" in pod "{name}" not found')
        return restarts - 1
    if cs is None:
        if has_log:
            return 0
        raise errors.bad_request(f'container "{container}" in pod "{name}" is waiting to start: ContainerCreating')
    if state.get("running") is not None or state.get("terminated") is not None:
        return restarts
    if last.get("terminated"):
        return restarts - 1
    waiting = state.get("waiting")
    if waiting is None:
        raise errors.bad_request(f'container "{container}" in pod "{name}" is waiting to start - no logs yet')
    reason = waiting.get("reason", "")
    why = {"ErrImagePull": "image can't be pulled", "ImagePullBackOff": "trying and failing to pull image"}
    raise errors.bad_request(f'container "{container}" in pod "{name}" is waiting to start: {why.get(reason, reason)}')


def run_is_live(pod: Mapping[str, Any] | None, uid: str, container: str, run: int) -> bool:
    """Whether a follow of this run must keep waiting for more."""
    if pod is None or pod["metadata"]["uid"] != uid:
        return False
    cs = container_status(pod, container)
    if cs is None:
        return (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed")
    state = cs.get("state") or {}
    return int(cs.get("restartCount") or 0) == run and state.get("terminated") is None
