"""`evalkube-operator`: run the kopf operator that turns EvalJobs into Kubernetes Jobs."""

from __future__ import annotations

import argparse
import logging
import secrets
from typing import Any

import kopf

from evalkube import kube
from evalkube.operator import handlers, merge_handlers  # noqa: F401  (registers the handlers)
from evalkube.operator.cluster import Cluster
from evalkube.operator.merges import MergeReconciler
from evalkube.operator.reconcile import Reconciler
from evalkube.operator.settings import OperatorSettings


class NoDiffBase(kopf.DiffBaseStorage):
    """No essence, no diff: only on.event handlers and indexes are registered, and they read none,
    yet kopf builds one per event (a deep copy of the object) unless its storage says there is none."""

    def build(self, *, body: kopf.Body, extra_fields: Any = None) -> kopf.BodyEssence:
        return kopf.BodyEssence()

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return None

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        pass


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    """kopf's own settings, and the reconciler every handler shares through the memo."""
    settings.posting.level = logging.WARNING
    # The namespaces and CRDs to serve are given; scanning them would need cluster-wide list/watch
    # rights on namespaces and CRDs that least-privilege RBAC does not grant.
    settings.scanning.disabled = True
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.watching.connect_timeout = 10
    settings.persistence.diffbase_storage = NoDiffBase()
    # A worker per object with events outstanding; one idle this long exits (kopf's default, 5 s,
    # kept thousands alive through a burst of EvalJobs, each with the object's last event in hand).
    settings.queueing.idle_timeout = 1.0
    operator = OperatorSettings()
    # How long a silent peer counts as alive: a standby replica takes over this long after the
    # active one dies.
    settings.peering.lifetime = operator.peering_lifetime_seconds
    # The operator's own calls are asynchronous (evalkube.apiserver), on kopf's loop; this many
    # connections to the apiserver are kept open and in use at once.
    cluster = Cluster(kube.configuration(), operator.kube_connections)
    memo.reconciler = Reconciler(cluster, operator)
    memo.merge_reconciler = MergeReconciler(cluster, operator)


@kopf.on.cleanup()
async def disconnect(memo: kopf.Memo, **_: Any) -> None:
    reconciler: Reconciler | None = memo.get("reconciler")
    if reconciler is not None:  # its cluster is the merge reconciler's too
        await reconciler.cluster.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="evalkube-operator", description=__doc__)
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument(
        "--namespace",
        "-n",
        action="append",
        default=None,
        help="namespace to watch (repeatable; default: EVALKUBE_NAMESPACES, else all)",
    )
    scope.add_argument("--all-namespaces", "-A", action="store_true", help="watch the whole cluster")
    peering = parser.add_mutually_exclusive_group()
    peering.add_argument(
        "--standalone", action="store_true", default=True, help="no peering: the only operator (default)"
    )
    peering.add_argument("--peering", metavar="NAME", help="coordinate with other replicas through kopf peering NAME")
    parser.add_argument(
        "--priority",
        type=int,
        default=None,
        help="peering priority (default with --peering: random, so identical replicas elect one active)",
    )
    parser.add_argument("--liveness", metavar="URL", help="serve a liveness probe, e.g. http://0.0.0.0:8080/healthz")
    parser.add_argument("--verbose", "-v", action="store_true")
    args = parser.parse_args(argv)

    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if not args.verbose:  # one line per handled event, and per probe, drowns what evalkube says
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
        logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    namespaces = [] if args.all_namespaces else (args.namespace or OperatorSettings().namespaces)
    priority = args.priority
    if args.peering and priority is None:
        # kopf pauses EVERY operator when peers share a priority, and a Deployment's replicas are
        # identical: a random priority makes exactly one of them active, the others standby.
        priority = secrets.randbelow(2**31 - 1) + 1
    kopf.run(
        standalone=args.peering is None,
        peering_name=args.peering,
        priority=priority,
        namespaces=namespaces,
        clusterwide=not namespaces,
        liveness_endpoint=args.liveness,
    )


if __name__ == "__main__":
    main()
