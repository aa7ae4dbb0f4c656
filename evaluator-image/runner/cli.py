"""`evalkube-runner`: the evaluator image's entry point.

- `run`: evaluate the EvalJob the EVALKUBE_* environment describes (the pod's default command).
- `catalog`: publish the tasks and models this image can run, to a file, a ConfigMap or stdout.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from evalkube import resource


def _catalog(args: argparse.Namespace) -> int:
    from evalkube.runner import kube
    from evalkube.runner.catalog import build_catalog

    text = json.dumps(build_catalog(), indent=1)
    if args.output:
        args.output.write_text(text + "\n")
    if args.configmap:
        kube.put_configmap(
            kube.core_api(), args.namespace, args.configmap, {resource.CATALOG_KEY: text},
            {resource.LABEL_MANAGED_BY: resource.MANAGED_BY},
        )  # fmt: skip
    if not (args.output or args.configmap):
        print(text)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="evalkube-runner", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("run", help="evaluate the EvalJob described by the EVALKUBE_* environment")
    catalog = commands.add_parser("catalog", help="list the tasks and models this image can run (JSON)")
    catalog.add_argument("--output", type=Path, help="write the catalog to this file")
    catalog.add_argument("--configmap", help=f"write it to this ConfigMap, key {resource.CATALOG_KEY}")
    catalog.add_argument("--namespace", help="the ConfigMap's namespace (required with --configmap)")
    args = parser.parse_args(argv)

    if args.command == "run":
        from evalkube.runner import job

        return job.run()
    if args.configmap and not args.namespace:
        parser.error("--configmap needs --namespace")
    return _catalog(args)
