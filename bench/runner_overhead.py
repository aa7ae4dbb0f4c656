"""What the runner adds to an evaluation: bare lmms-eval vs `evalkube-runner run`, same model and task.

    .venv/bin/python bench/runner_overhead.py [--runs 5]

Runs the tiny model on the tiny task (tests/evaluator_fixtures.py), offline on CPU, alternating
`python -m lmms_eval ARGS` and `evalkube-runner run` (with the operator's EVALKUBE_* environment,
writing its results ConfigMap to the Kubernetes API emulator of tests/kubeemu), and prints the
median wall time of each and their ratio. ARGS are exactly the arguments the runner builds.

Bare lmms-eval 0.7.3 can't load a text model with its `huggingface` backend (see
evaluator-image/runner/hf_compat.py), so the model folder here also carries the upstream
workaround: `auto_map` sends AutoModel to the causal-LM class under trust_remote_code=True.
Both sides load the same folder with the same arguments.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import kubernetes
import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from evalkube import kube, resource  # noqa: E402
from evalkube.runner.invocation import LAUNCHER_MODULE, build_argv, child_env, parse_spec  # noqa: E402

from evaluator_fixtures import make_tiny_model, make_tiny_task  # noqa: E402
from kubeemu import KubeEmulator  # noqa: E402

NAMESPACE = "bench"


def add_auto_map_workaround(model_dir: Path) -> None:
    (model_dir / "modeling_tiny.py").write_text("from transformers import Qwen2ForCausalLM as TinyLM\n")
    config_path = model_dir / "config.json"
    config = json.loads(config_path.read_text())
    config["auto_map"] = {"AutoModel": "modeling_tiny.TinyLM"}
    config_path.write_text(json.dumps(config, indent=2))


def timed(argv: list[str], env: dict[str, str]) -> float:
    started = time.monotonic()
    done = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    elapsed = time.monotonic() - started
    if done.returncode != 0:
        sys.exit(f"{argv[:3]} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    runs = parser.parse_args().runs

    with tempfile.TemporaryDirectory(prefix="evalkube-bench-") as scratch, KubeEmulator() as emulator:
        root = Path(scratch)
        model = make_tiny_model(root)
        add_auto_map_workaround(model)
        tasks_dir = root / "tasks"
        task, _ = make_tiny_task(tasks_dir)

        kubeconfig = str(emulator.write_kubeconfig(root / "kubeconfig", token="bench"))
        emulator.apply_crd(yaml.safe_load((REPO / "crds" / "evaljob.yaml").read_text()))
        client = kube.api_client(kubeconfig)
        kubernetes.client.CoreV1Api(client).create_namespace({"metadata": {"name": NAMESPACE}})
        spec = {"model": "huggingface", "tasks": [task], "numGpus": 0, "logSamples": True,
                "modelArgs": {"pretrained": str(model), "trust_remote_code": True}}  # fmt: skip
        evaljob = kubernetes.client.CustomObjectsApi(client).create_namespaced_custom_object(
            resource.GROUP, resource.VERSION, NAMESPACE, resource.PLURAL,
            {"apiVersion": resource.API_VERSION, "kind": resource.KIND, "metadata": {"name": "bench"}, "spec": spec},
        )  # fmt: skip

        base_env = {k: v for k, v in os.environ.items() if not k.startswith(("EVALKUBE_", "KUBERNETES_"))}
        base_env["HF_HOME"] = str(root / "hf-home")
        bare_env = child_env(base_env, allow_online=False)
        runner_env = {
            **base_env,
            "KUBECONFIG": kubeconfig,
            "EVALKUBE_EVALJOB_NAME": "bench",
            "EVALKUBE_EVALJOB_UID": evaljob["metadata"]["uid"],
            "EVALKUBE_NAMESPACE": NAMESPACE,
            "EVALKUBE_SPEC": json.dumps(spec),
            "EVALKUBE_RESULT_CONFIGMAP": resource.result_configmap_name("bench"),
            "EVALKUBE_TASKS_DIR": str(tasks_dir),
            "EVALKUBE_ARTIFACTS_DIR": str(root / "artifacts"),
            "EVALKUBE_TERMINATION_LOG": str(root / "termination-log"),
        }
        runner = [str(Path(sys.executable).with_name("evalkube-runner")), "run"]

        bare_times, runner_times = [], []
        for run in range(runs):
            bare = build_argv(parse_spec(spec), root / f"bare-{run}", tasks_dir)
            bare[bare.index(LAUNCHER_MODULE)] = "lmms_eval"
            bare_times.append(timed(bare, bare_env))
            if not list((root / f"bare-{run}").glob("*/*_results.json")):
                sys.exit("bare lmms-eval wrote no results file")
            runner_times.append(timed(runner, runner_env))
            print(f"run {run + 1}/{runs}: bare {bare_times[-1]:.2f}s, runner {runner_times[-1]:.2f}s", flush=True)

    bare_median, runner_median = statistics.median(bare_times), statistics.median(runner_times)
    print(f"bare lmms-eval   median {bare_median:.2f}s")
    print(f"evalkube-runner  median {runner_median:.2f}s")
    print(f"ratio {runner_median / bare_median:.3f} (runner overhead {runner_median - bare_median:+.2f}s)")


if __name__ == "__main__":
    main()
