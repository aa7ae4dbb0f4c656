"""EvalJob spec -> the lmms-eval command line and its environment. Pure: no I/O, no clock.

The spec may have been written by anything that can create an EvalJob, so it is parsed again here
with the API's own model and rules (`evalkube.mapping.parse_spec`): a ',' or '=' would smuggle
another `k=v` into model_args or gen_kwargs, a newline breaks logs, a leading '-' reads as a flag. The command is an argv list (never a shell)
and every option is passed as one `--name=value` element, so no value can become an option.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from evalkube import mapping
from evalkube.protocol import EvalJobSpec

#: Backends that split a model over GPUs themselves (tensor parallelism in one process).
VLLM_BACKENDS = frozenset({"vllm", "vllm_generate"})
#: The module that runs lmms-eval's CLI with evalkube's one fix (see hf_compat).
LAUNCHER_MODULE = "evalkube.runner.lmms_launch"
#: accelerate's rendezvous port; each pod has its own network namespace.
MAIN_PROCESS_PORT = 29500

#: Distributed-launcher variables a parent may leak (lmms-eval's own server scrubs them too):
#: Accelerate would take the child for one rank of a distributed job and wait for the others.
SCRUBBED_ENV = frozenset(
    {"RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "GROUP_RANK", "ROLE_RANK"}
)
SCRUBBED_ENV_PREFIXES = ("TORCHELASTIC_", "SLURM_", "OMPI_", "PMI_", "PMIX_")
#: Set to "1" unless the job may reach the hub: models and datasets come from the cache volume.
OFFLINE_ENV = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE")


class InvalidSpec(ValueError):
    """The EvalJob spec can't be turned into a safe lmms-eval invocation (runner exit code 2)."""


#: The spec as the runner uses it: the API's own model, so both judge a spec alike.
EvalSpec = EvalJobSpec


def parse_spec(spec: Any) -> EvalSpec:
    """Check an EvalJob spec (camelCase, as stored) with the API's rules; InvalidSpec names the field."""
    if not isinstance(spec, Mapping):
        raise InvalidSpec(f"spec: must be an object (got {type(spec).__name__})")
    try:
        return mapping.parse_spec(spec)
    except ValidationError as error:
        raise InvalidSpec(mapping.describe_errors(error)) from None


def _arg_text(value: Any) -> str:
    """One model_args value as lmms-eval parses it back (True/False, numbers, strings)."""
    if isinstance(value, bool):
        return "True" if value else "False"
    return str(value)


def format_model_args(model_args: Mapping[str, Any]) -> str:
    """`k=v,k=v` in the spec's order; keys set to null are left out (lmms-eval's default applies)."""
    return ",".join(f"{key}={_arg_text(value)}" for key, value in model_args.items() if value is not None)


def effective_model_args(spec: EvalSpec) -> dict[str, Any]:
    """model_args with the defaults num_gpus implies; anything the spec sets wins."""
    args = dict(spec.model_args or {})
    if spec.num_gpus == 0 and spec.model == "huggingface":
        args.setdefault("device_map", "cpu")  # its default "auto" sends inputs to cuda
    if spec.num_gpus > 1 and spec.model in VLLM_BACKENDS:
        args.setdefault("tensor_parallel_size", spec.num_gpus)
    return args


def build_argv(
    spec: EvalSpec, output_path: Path, include_path: Path | None = None, python: str = sys.executable
) -> list[str]:
    """The command that runs the evaluation.

    One process (`python -m evalkube.runner.lmms_launch`) unless an HF-style backend gets several
    GPUs: then `accelerate launch` starts one data-parallel rank per GPU. vLLM uses its GPUs
    through tensor_parallel_size in one process (`effective_model_args`).
    """
    if spec.num_gpus > 1 and spec.model not in VLLM_BACKENDS:
        argv = [
            python, "-m", "accelerate.commands.launch",
            "--multi_gpu", f"--num_processes={spec.num_gpus}", "--num_machines=1",
            f"--main_process_port={MAIN_PROCESS_PORT}",
            "-m", LAUNCHER_MODULE,
        ]  # fmt: skip
    else:
        argv = [python, "-m", LAUNCHER_MODULE]

    argv += [f"--model={spec.model}", f"--tasks={','.join(spec.tasks)}", f"--output_path={output_path}"]
    model_args = format_model_args(effective_model_args(spec))
    if model_args:
        argv.append(f"--model_args={model_args}")
    if include_path is not None:
        argv.append(f"--include_path={include_path}")
    device = spec.device or ("cpu" if spec.num_gpus == 0 else None)
    options = {
        "device": device,
        "num_fewshot": spec.num_fewshot,
        "batch_size": spec.batch_size,
        "limit": spec.limit,
        "gen_kwargs": spec.gen_kwargs,
    }
    argv += [f"--{name}={value}" for name, value in options.items() if value is not None]
    if spec.log_samples:
        argv.append("--log_samples")
    if spec.predict_only:
        argv.append("--predict_only")
    return argv


def child_env(environ: Mapping[str, str], allow_online: bool) -> dict[str, str]:
    """The environment lmms-eval runs with.

    Offline unless the job may go online: then HF_HUB_OFFLINE & co. are forced to "1" whatever
    the pod's environment says, because the operator's policy is what allows or forbids the
    hub. Allowing online changes nothing, so an offline setting in the image still wins.
    Python output is unbuffered so `kubectl logs` follows the evaluation live.
    """
    env = {
        name: value
        for name, value in environ.items()
        if name not in SCRUBBED_ENV and not name.startswith(SCRUBBED_ENV_PREFIXES)
    }
    if not allow_online:
        env.update(dict.fromkeys(OFFLINE_ENV, "1"))
    env["PYTHONUNBUFFERED"] = "1"
    return env
