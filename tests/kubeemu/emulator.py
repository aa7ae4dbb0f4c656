"""`KubeEmulator`: the object tests start, stop and point clients at."""

from __future__ import annotations

import datetime
import os
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from .auth import Authenticator
from .faults import Faults
from .kubeconfig import write_kubeconfig
from .rbac import RBACAuthorizer
from .resources import CRD_TYPE
from .server import EmulatorServer, Policy, Recorder, RequestRecord
from .store import Store, clone


class KubeEmulator:
    """An in-process Kubernetes API server on 127.0.0.1, served from a background thread."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        history_size: int = 5000,
        bookmark_interval: float = 1.0,
        enforce_rbac: bool = False,
        fault_seed: int = 0,
    ):
        self.store = Store(history_size=history_size)
        self.auth = Authenticator()
        #: Fault injection (see kubeemu.faults): `emu.faults.add(FaultRule(...))`, `.clear()`, `.counts()`.
        self.faults = Faults(seed=fault_seed)
        self.authorizer = RBACAuthorizer(self.store)
        self._policy = Policy(self.auth, self.authorizer, self.faults, enforce_rbac)
        self._address = (host, port)
        self._bookmark_interval = bookmark_interval
        self._recorder = Recorder()
        self._server: EmulatorServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> KubeEmulator:
        if self._server is None:
            self._server = EmulatorServer(
                self._address, self.store, self._recorder, self._bookmark_interval, self._policy
            )
            self._thread = threading.Thread(
                target=self._server.serve_forever, name="kubeemu", kwargs={"poll_interval": 0.1}, daemon=True
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self.store.close()
        self._server.shutdown()
        self._server.close_connections()
        self._server.server_close()
        assert self._thread is not None
        self._thread.join()
        self._server = self._thread = None

    def __enter__(self) -> KubeEmulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the emulator is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def write_kubeconfig(
        self, path: str | os.PathLike[str], token: str | None = None, namespace: str = "default"
    ) -> Path:
        """A kubeconfig with this bearer token; unless registered with add_token, the token is a superuser."""
        if token:
            self.auth.issue(token)
        return write_kubeconfig(path, self.url, token=token, namespace=namespace)

    # ---- authentication and authorization -------------------------------------------------

    @property
    def enforce_rbac(self) -> bool:
        """When on, every request is authenticated (401) and authorized by RBAC (403); off by default."""
        return self._policy.enforce_rbac

    @enforce_rbac.setter
    def enforce_rbac(self, on: bool) -> None:
        self._policy.enforce_rbac = on

    def add_token(
        self,
        token: str,
        username: str,
        groups: Iterable[str] = (),
        uid: str | None = None,
        extra: Mapping[str, Iterable[str]] | None = None,
    ) -> None:
        """Make `token` authenticate as this user (plus group system:authenticated)."""
        self.auth.add_token(token, username, groups, uid, extra)

    def add_service_account_token(self, token: str, namespace: str, name: str) -> None:
        """Make `token` authenticate as ServiceAccount NAMESPACE/NAME (system:serviceaccount:NS:NAME)."""
        self.auth.add_service_account_token(token, namespace, name)

    def apply_crd(self, crd: dict[str, Any]) -> dict[str, Any]:
        """Create the CRD, or replace its spec if it exists; served at once (Established=True)."""
        existing = self.store.find(CRD_TYPE.group, CRD_TYPE.plural, None, crd["metadata"]["name"])
        if existing is None:
            body, _ = self.store.create(CRD_TYPE, None, clone(crd))
        else:
            update = clone(crd)
            update["metadata"]["resourceVersion"] = existing["metadata"]["resourceVersion"]
            body, _ = self.store.update(CRD_TYPE, None, crd["metadata"]["name"], update)
        return body

    def set_pod_log(self, namespace: str, name: str, text: str, container: str | None = None) -> None:
        """Replace the log served by GET .../pods/NAME/log (container=None: whatever container is asked for)."""
        self.store.set_pod_log(namespace, name, text, container)

    def append_pod_log(
        self,
        namespace: str,
        pod: str,
        text: str,
        container: str | None = None,
        at: datetime.datetime | None = None,
    ) -> bool:
        """What the container printed: appended to its current run's log, each line stamped `at` (default: now).

        container=None: the pod's only container (ValueError if it has several). Wakes followers at
        once. Returns False, storing nothing, if the pod does not exist (its logs went with it).
        """
        at_ns = None if at is None else int(at.timestamp() * 1_000_000) * 1000
        return self.store.append_pod_log(namespace, pod, text, container, at_ns)

    @property
    def requests(self) -> list[RequestRecord]:
        """A snapshot of the requests received so far, oldest first."""
        return self._recorder.snapshot()

    def clear_requests(self) -> None:
        self._recorder.clear()

    def get_object(self, group: str, plural: str, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        """The stored object (no HTTP, not recorded); None if absent. Do not mutate it."""
        return self.store.find(group, plural, namespace, name)

    def list_objects(self, group: str, plural: str, namespace: str | None = None) -> list[dict[str, Any]]:
        return self.store.all(group, plural, namespace)
