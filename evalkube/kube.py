"""Kubernetes client configuration shared by the API, the operator and the runner.

In a pod the service account is used; anywhere else KUBECONFIG (or ~/.kube/config), exactly as
kubectl would, so running a component on a laptop against a kind cluster needs no flags.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any, TypeVar

import kubernetes
from kubernetes.client.exceptions import ApiException

T = TypeVar("T")


def configuration(kubeconfig: str | None = None) -> kubernetes.client.Configuration:
    """Where the apiserver is and how to authenticate: the pod's ServiceAccount in a cluster,
    else the kubeconfig (`kubeconfig`, or the default one)."""
    loaded = kubernetes.client.Configuration()
    if kubeconfig is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
        kubernetes.config.load_incluster_config(client_configuration=loaded)
    else:
        kubernetes.config.load_kube_config(config_file=kubeconfig, client_configuration=loaded)
    return loaded


def api_client(kubeconfig: str | None = None, *, pool_size: int | None = None) -> kubernetes.client.ApiClient:
    """A fresh ApiClient with its own configuration and connection pool (no global state).

    `pool_size`: connections kept for reuse (the client's default is 5 per CPU); a caller with
    more threads than that would otherwise open, and discard with a warning, a connection each.
    """
    loaded = configuration(kubeconfig)
    if pool_size is not None:
        loaded.connection_pool_maxsize = pool_size
    return kubernetes.client.ApiClient(loaded)


def or_none(call: Callable[..., T], *args: Any, **kwargs: Any) -> T | None:
    """The call's result, or None when the apiserver answers 404: a missing object is an answer."""
    try:
        return call(*args, **kwargs)
    except ApiException as error:
        if error.status == 404:
            return None
        raise


def api_message(error: ApiException) -> str:
    """The apiserver's own explanation (its Status object's message), else the HTTP status and reason."""
    try:
        message = json.loads(error.body or "")["message"]
        if isinstance(message, str) and message:
            return message
    except (ValueError, KeyError, TypeError):
        pass
    return f"{error.status} {error.reason or 'no reason given'}"
