"""What publishing progress to the Kubernetes API costs the runner: a real tiny lmms-eval run with
no progress reporting against the same run publishing every update to its `<name>-progress`
ConfigMap, as in an evaluator pod (`evalkube.runner.progress_publish`, the default 5 s interval).

    .venv/bin/python bench/progress_publish_overhead.py [--runs 5] [--interval 5]

The apiserver is the project's emulator (tests/kubeemu) in this process, reached over real HTTP by
the real `kubernetes` client; runs alternate (without, with), medians of --runs each. bench/
progress_overhead.py measures the reading alone (the parser and the publisher thread).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

import kubernetes  # noqa: E402
import yaml  # noqa: E402

from evalkube import kube, resource  # noqa: E402
from evalkube.runner.invocation import build_argv, child_env, parse_spec  # noqa: E402
from evalkube.runner.process import ProcessGroupRunner  # noqa: E402
from evalkube.runner.progress_publish import publisher  # noqa: E402

from evaluator_fixtures import make_tiny_model, make_tiny_task  # noqa: E402
from kubeemu import KubeEmulator  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--interval", type=float, default=5.0, help="seconds between published updates")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="evalkube-bench-") as scratch, KubeEmulator() as emulator:
        root = Path(scratch)
        emulator.apply_crd(yaml.safe_load((REPO / "crds" / "evaljob.yaml").read_text()))
        client = kube.api_client(str(emulator.write_kubeconfig(root / "kubeconfig", token="evaluator")))
        evaljob = kubernetes.client.CustomObjectsApi(client).create_namespaced_custom_object(
            resource.GROUP, resource.VERSION, "default", resource.PLURAL,
            {"apiVersion": resource.API_VERSION, "kind": resource.KIND, "metadata": {"name": "bench"},
             "spec": {"model": "huggingface", "tasks": ["t"], "numGpus": 0}},
        )  # fmt: skip
        writes: list[object] = []
        publish = publisher("default", "bench", evaljob["metadata"]["uid"], kubernetes.client.CoreV1Api(client))

        def counted(progress: object) -> None:
            publish(progress)  # type: ignore[arg-type]
            writes.append(progress)

        task, _ = make_tiny_task(root / "tasks")
        spec = parse_spec({"model": "huggingface", "tasks": [task], "numGpus": 0,
                           "modelArgs": {"pretrained": str(make_tiny_model(root))}})  # fmt: skip
        argv = build_argv(spec, root / "output", root / "tasks")
        env = child_env({**os.environ, "HF_HOME": str(root / "hf")}, False)
        times: dict[str, list[float]] = {"without": [], "with": []}
        with open(os.devnull, "wb") as sink:
            for _ in range(options.runs):
                for name, callback in (("without", None), ("with", counted)):
                    runner = ProcessGroupRunner(output=sink, on_progress=callback, progress_interval=options.interval)
                    started = time.perf_counter()
                    outcome = runner.run(argv, env)
                    times[name].append(time.perf_counter() - started)
                    if outcome.returncode != 0:
                        sys.exit(f"lmms-eval failed:\n{outcome.tail[-3000:]}")
        without, with_ = statistics.median(times["without"]), statistics.median(times["with"])
        print(f"tiny lmms-eval, median of {options.runs}: without reporting {without:.3f} s, publishing to the "
              f"apiserver {with_:.3f} s, ratio {with_ / without:.3f} ({len(writes) / options.runs:.1f} ConfigMap "
              f"writes a run, interval {options.interval:g} s)")  # fmt: skip
        print("runs without:", " ".join(f"{t:.2f}" for t in times["without"]))
        print("runs with:   ", " ".join(f"{t:.2f}" for t in times["with"]))


if __name__ == "__main__":
    main()
