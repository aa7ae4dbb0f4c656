"""Everything the API holds between requests: Kubernetes clients, the watch caches, the checks.

Built at start-up by the app's lifespan and closed at shutdown; routes reach it through
`evalkube.api.deps`. Nothing here is job state: that lives in the EvalJobs alone.
"""

from __future__ import annotations

import functools
import threading
import time
from dataclasses import dataclass, field

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
from evalkube.api.policy_checks import PolicyCheck
from evalkube.api.rate_limit import RateLimit
from evalkube.api.reachability import Reachability
from evalkube.api.renderings import Renderings
from evalkube.api.settings import ApiSettings
from evalkube.apiserver import AsyncApiserver
from evalkube.kube import or_none
from evalkube.ordering import QueueIndex

#: Routes that call Kubernetes run in anyio's thread pool (40 threads by default), plus the two
#: watches: one pooled connection each, so none is opened and thrown away under load.
_POOL_SIZE = 42


@dataclass
class Tenant:
    """One namespace the API serves: its EvalJobs and CheckpointMerges, each with a watch cache."""

    namespace: str
    jobs_cache: WatchCache
    merges_cache: WatchCache
    evaljobs: EvalJobs
    merges: Merges
    name_checks: NameChecks
    renderings: Renderings
    policy: PolicyCheck

    @classmethod
    def open(
        cls,
        custom: CustomObjectsApi,
        apiserver: AsyncApiserver,
        core: CoreV1Api,
        catalog: CatalogSource,
        namespace: str,
        settings: ApiSettings,
    ) -> Tenant:
        def cache(plural: str, indexer: QueueIndex | None = None) -> WatchCache:
            started = WatchCache(
                functools.partial(
                    custom.list_namespaced_custom_object, resource.GROUP, resource.VERSION, namespace, plural
                ),
                what=f"{plural} in {namespace}",
                watch_timeout_seconds=settings.watch_timeout_seconds,
                indexer=indexer,
            )
            started.start()
            return started

        jobs_cache, merges_cache = cache(resource.PLURAL, QueueIndex()), cache(resource.MERGE_PLURAL)
        timeout = settings.kube_timeout_seconds
        return cls(
            namespace=namespace,
            jobs_cache=jobs_cache,
            merges_cache=merges_cache,
            evaljobs=EvalJobs(custom, apiserver, jobs_cache, namespace, timeout),
            merges=Merges(custom, merges_cache, namespace, timeout),
            name_checks=NameChecks(catalog, core, namespace, timeout),
            renderings=Renderings(jobs_cache),
            policy=PolicyCheck(settings.admission_policy(), core, namespace, timeout),
        )


@dataclass
class ApiState:
    """The API's connection to the namespaces it serves in one cluster."""

    client: ApiClient
    catalog_cache: WatchCache
    catalog: CatalogSource
    reachability: Reachability
    mounts: list[str]
    settings: ApiSettings
    auth: Auth
    rate_limit: RateLimit
    #: Every namespace served so far, the API's own (`settings.namespace`, the default) first.
    tenants: dict[str, Tenant]
    custom: CustomObjectsApi
    core: CoreV1Api
    #: The one write made on the event loop: POST /evaluate's create (see `apiserver`).
    apiserver: AsyncApiserver
    _adding: threading.Lock = field(default_factory=threading.Lock)

    @property
    def default(self) -> Tenant:
        return self.tenants[self.settings.namespace]

    # The default namespace's pieces, under the names single-namespace code uses.
    @property
    def jobs_cache(self) -> WatchCache:
        return self.default.jobs_cache

    @property
    def evaljobs(self) -> EvalJobs:
        return self.default.evaljobs

    @property
    def merges(self) -> Merges:
        return self.default.merges

    @property
    def name_checks(self) -> NameChecks:
        return self.default.name_checks

    @classmethod
    def open(cls, settings: ApiSettings) -> ApiState:
        """Connect to Kubernetes and start watching the catalog and each served namespace."""
        client = kube.api_client(settings.kubeconfig, pool_size=_POOL_SIZE)
        custom, core = CustomObjectsApi(client), CoreV1Api(client)
        apiserver = AsyncApiserver(client.configuration, _POOL_SIZE, agent="evalkube-api")
        catalog_cache = WatchCache(
            functools.partial(core.list_namespaced_config_map, settings.namespace),
            what="catalog",
            field_selector=f"metadata.name={settings.catalog_configmap}",
            watch_timeout_seconds=settings.watch_timeout_seconds,
        )
        catalog_cache.start()
        catalog = CatalogSource(catalog_cache, settings.catalog_configmap, settings.namespace)
        tenants = {
            ns: Tenant.open(custom, apiserver, core, catalog, ns, settings) for ns in settings.served_namespaces()
        }
        timeout = settings.kube_timeout_seconds
        return cls(
            client=client,
            catalog_cache=catalog_cache,
            catalog=catalog,
            reachability=Reachability(VersionApi(client), settings.health_timeout_seconds),
            mounts=settings.mount_paths(),
            settings=settings,
            auth=Auth(
                AuthenticationV1Api(client),
                AuthorizationV1Api(client),
                enabled=settings.auth == "kubernetes",
                cache_seconds=settings.auth_cache_seconds,
                timeout=timeout,
            ),
            rate_limit=RateLimit(settings.rate_limit_per_second, settings.rate_limit_burst),
            tenants=tenants,
            custom=custom,
            core=core,
            apiserver=apiserver,
        )

    def serves(self, namespace: str | None) -> bool:
        """Whether the API answers for `namespace` (every existing one, when it serves all)."""
        return namespace is not None and (namespace in self.tenants or self.settings.serves_all())

    def tenant(self, namespace: str) -> Tenant | None:
        """The namespace's Tenant; serving all namespaces, one is started on first use, for a
        namespace that exists (so a caller cannot make the API watch made-up names)."""
        found = self.tenants.get(namespace)
        if found is not None or not self.settings.serves_all():
            return found
        with self._adding:
            found = self.tenants.get(namespace)
            if found is None:
                if (
                    or_none(self.core.read_namespace, namespace, _request_timeout=self.settings.kube_timeout_seconds)
                    is None
                ):
                    return None
                found = Tenant.open(self.custom, self.apiserver, self.core, self.catalog, namespace, self.settings)
                for cache in (found.jobs_cache, found.merges_cache):
                    cache.wait_synced(self.settings.startup_sync_seconds)
                self.tenants = {**self.tenants, namespace: found}  # readers see the old dict or the new one
        return found

    def caches(self) -> list[WatchCache]:
        tenants = list(self.tenants.values())
        return [self.catalog_cache, *(c for t in tenants for c in (t.jobs_cache, t.merges_cache))]

    def wait_synced(self, timeout: float) -> None:
        """Block until both caches hold a first LIST, or `timeout` seconds pass."""
        deadline = time.monotonic() + timeout
        for cache in self.caches():
            cache.wait_synced(max(0.0, deadline - time.monotonic()))

    def close(self) -> None:
        """Stop both watches and close the connections."""
        for cache in self.caches():
            cache.stop()
        self.client.close()
