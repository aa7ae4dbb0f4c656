"""`evalkube-runner`: the evaluator image's entry point.

- `run`: evaluate the EvalJob the EVALKUBE_* environment describes (the pod's default command).
- `catalog`: publish the tasks and models this image can run, to a file, a ConfigMap or stdout.
- `merge`: merge a sharded training checkpoint into a Hugging Face model folder (a merge pod's
  command). Exit codes carry the class of error for the operator: 0 merged, 3 not found (HTTP 404),
  4 invalid checkpoint or request (400), 1 anything else (500). On success the one JSON line
  `{"merged_path", "format", "world_size", "seconds"}` goes to stdout and the termination log; on
  failure the termination log holds the message.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
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


def _merge(args: argparse.Namespace) -> int:
    from evalkube.runner import failure
    from evalkube.runner.merge import EXIT_FAILED, EXIT_OK, MergeError, merge_checkpoint

    try:
        outcome = merge_checkpoint(args.checkpoint_path, args.output_path, args.checkpoint_type)
    except MergeError as error:
        message, code = str(error), error.exit_code
    except Exception as error:  # a bug or the environment (disk full, out of memory): still say what happened
        traceback.print_exc()
        message, code = f"merge failed: {type(error).__name__}: {error}", EXIT_FAILED
    else:
        line = json.dumps(outcome.summary())
        print(line, flush=True)
        failure.write_termination_log(args.termination_log, line)
        return EXIT_OK
    print(f"evalkube-runner merge: {message}", file=sys.stderr, flush=True)
    failure.write_termination_log(args.termination_log, message)
    return code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="evalkube-runner", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("run", help="evaluate the EvalJob described by the EVALKUBE_* environment")
    catalog = commands.add_parser("catalog", help="list the tasks and models this image can run (JSON)")
    catalog.add_argument("--output", type=Path, help="write the catalog to this file")
    catalog.add_argument("--configmap", help=f"write it to this ConfigMap, key {resource.CATALOG_KEY}")
    catalog.add_argument("--namespace", help="the ConfigMap's namespace (required with --configmap)")
    merge = commands.add_parser("merge", help="merge a sharded (FSDP2 or DCP) checkpoint into a Hugging Face folder")
    merge.add_argument("--checkpoint-path", required=True, help="a checkpoint folder, or a parent of checkpoint-<N>")
    merge.add_argument("--output-path", help="where to write the merged model (default: the checkpoint path)")
    # Not argparse choices: a wrong type is the user's mistake, exit 4 (400), not a usage error (2).
    merge.add_argument("--checkpoint-type", default="regular", help="regular or ema (default: regular)")
    merge.add_argument(
        "--termination-log",
        type=Path,
        default=Path(os.environ.get("EVALKUBE_TERMINATION_LOG", "/dev/termination-log")),
        help="where the outcome goes (default: $EVALKUBE_TERMINATION_LOG or /dev/termination-log)",
    )
    args = parser.parse_args(argv)

    if args.command == "run":
        from evalkube.runner import job

        return job.run()
    if args.command == "merge":
        return _merge(args)
    if args.configmap and not args.namespace:
        parser.error("--configmap needs --namespace")
    return _catalog(args)
