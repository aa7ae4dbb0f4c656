"""Everything the API holds between requests: Kubernetes clients, the watch caches, the checks.

Built at start-up by the app's lifespan and closed at shutdown; routes reach it through
`evalkube.api.deps`. Nothing here is job state: that lives in the EvalJobs alone.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass

from kubernetes.client import (
    ApiClient,
    AuthenticationV1Api,
    AuthorizationV1Api,
    CoreV1Api,
    CustomObjectsApi,
    VersionApi,
)

from evalkube import kube, resource
from evalkube.api.auth import Auth
from evalkube.api.cache import WatchCache
from evalkube.api.catalog import CatalogSource
from evalkube.api.evaljobs import EvalJobs
from evalkube.api.merges import Merges
from evalkube.api.name_checks import NameChecks
from evalkube.api.rate_limit import RateLimit
from evalkube.api.reachability import Reachability
from evalkube.api.settings import ApiSettings

#: Routes that call Kubernetes run in anyio's thread pool (40 threads by default), plus the two
#: watches: one pooled connection each, so none is opened and thrown away under load.
_POOL_SIZE = 42


@dataclass
class ApiState:
    """The API's connection to one namespace of one cluster."""

    client: ApiClient
    jobs_cache: WatchCache
    catalog_cache: WatchCache
    evaljobs: EvalJobs
    catalog: CatalogSource
    name_checks: NameChecks
    reachability: Reachability
    mounts: list[str]
    merges: Merges
    merges_cache: WatchCache
    settings: ApiSettings
    auth: Auth
    rate_limit: RateLimit

    @classmethod
    def open(cls, settings: ApiSettings) -> ApiState:
        """Connect to Kubernetes and start watching the EvalJobs and the catalog ConfigMap."""
        client = kube.api_client(settings.kubeconfig, pool_size=_POOL_SIZE)
        custom, core = CustomObjectsApi(client), CoreV1Api(client)
        namespace = settings.namespace
        jobs_cache = WatchCache(
            functools.partial(
                custom.list_namespaced_custom_object, resource.GROUP, resource.VERSION, namespace, resource.PLURAL
            ),
            what="evaljobs",
            watch_timeout_seconds=settings.watch_timeout_seconds,
        )
        catalog_cache = WatchCache(
            functools.partial(core.list_namespaced_config_map, namespace),
            what="catalog",
            field_selector=f"metadata.name={settings.catalog_configmap}",
            watch_timeout_seconds=settings.watch_timeout_seconds,
        )
        merges_cache = WatchCache(
            functools.partial(
                custom.list_namespaced_custom_object, resource.GROUP, resource.VERSION, namespace, resource.MERGE_PLURAL
            ),
            what="checkpointmerges",
            watch_timeout_seconds=settings.watch_timeout_seconds,
        )
        jobs_cache.start()
        catalog_cache.start()
        merges_cache.start()
        catalog = CatalogSource(catalog_cache, settings.catalog_configmap, namespace)
        timeout = settings.kube_timeout_seconds
        return cls(
            client=client,
            jobs_cache=jobs_cache,
            catalog_cache=catalog_cache,
            evaljobs=EvalJobs(custom, jobs_cache, namespace, timeout),
            catalog=catalog,
            name_checks=NameChecks(catalog, core, namespace, timeout),
            reachability=Reachability(VersionApi(client), settings.health_timeout_seconds),
            mounts=settings.mount_paths(),
            merges=Merges(custom, merges_cache, namespace, timeout),
            merges_cache=merges_cache,
            settings=settings,
            auth=Auth(
                AuthenticationV1Api(client),
                AuthorizationV1Api(client),
                enabled=settings.auth == "kubernetes",
                cache_seconds=settings.auth_cache_seconds,
                timeout=timeout,
            ),
            rate_limit=RateLimit(settings.rate_limit_per_second, settings.rate_limit_burst),
        )

    def wait_synced(self, timeout: float) -> None:
        """Block until both caches hold a first LIST, or `timeout` seconds pass."""
        deadline = time.monotonic() + timeout
        for cache in (self.jobs_cache, self.catalog_cache, self.merges_cache):
            cache.wait_synced(max(0.0, deadline - time.monotonic()))

    def close(self) -> None:
        """Stop both watches and close the connections."""
        self.jobs_cache.stop()
        self.catalog_cache.stop()
        self.merges_cache.stop()
        self.client.close()
