"""The cluster's policy for EvalJobs: what an EvalJob may ask of the operator's rights.

The operator creates the evaluator pods with its own service account, so without a policy anyone
who may create an EvalJob (through the API or with kubectl) could run any image, on any node, with
any number of GPUs, and run arbitrary code. The admin writes the policy once (the chart's `policy`
value, rendered as the JSON setting EVALKUBE_POLICY into the operator's and the API's env); the
operator refuses a breaking EvalJob at admission (it fails at once, no Job is created) and the API
refuses the request with a 403, both with `violations`, so nothing passes one and fails the other.

Every default is the safe one: only the evaluator image, at most 8 GPUs, no nodeSelector,
tolerations or resources of the EvalJob's own (the admin's settings still apply to every pod), no
hub downloads, no `trust_remote_code`, no Python in custom tasks.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import yaml
from kubernetes.utils import parse_quantity
from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel

from evalkube.protocol import EvaluateRequest

#: model_args values lmms-eval (and transformers) read as false; anything else counts as true.
_FALSE = frozenset({"false", "0", "no", "off", ""})
_YAML_SUFFIXES = (".yaml", ".yml")


class Policy(BaseModel):
    """EVALKUBE_POLICY: a JSON object with these keys in camelCase (the chart's `policy` value)."""

    model_config = ConfigDict(extra="forbid", alias_generator=to_camel, populate_by_name=True)

    allowed_images: list[str] = Field(
        default_factory=list,
        description="Images an EvalJob may name besides the evaluator image: exact names, or prefixes "
        "ending in '*' ('registry/team/*', 'repo/evaluator:*'), ':' or '/'",
    )
    max_gpus: int = Field(default=8, ge=0, description="Most GPUs (numGpus) one EvalJob may request")
    allow_node_selector: bool = Field(default=False, description="Whether an EvalJob may add a nodeSelector")
    allow_tolerations: bool = Field(default=False, description="Whether an EvalJob may add tolerations")
    max_resources: dict[str, str] = Field(
        default_factory=dict,
        description="Resources an EvalJob may set in requests/limits, each with its largest quantity "
        "({cpu: '16', memory: 64Gi}); a name not listed is refused, so {} refuses `resources`",
    )
    allow_online: bool = Field(default=False, description="Whether an EvalJob may opt in to hub downloads")
    allow_trust_remote_code: bool = Field(
        default=False, description="Whether model_args may set trust_remote_code (runs the model repository's code)"
    )
    allow_custom_task_code: bool = Field(
        default=False,
        description="Whether custom tasks may bring Python: `!function` in task YAML, .py files, "
        "dataset_kwargs.trust_remote_code",
    )
    #: The operator's evaluator image: always allowed (filled from EVALKUBE_EVALUATOR_IMAGE by the settings).
    evaluator_image: str | None = None

    @field_validator("max_resources")
    @classmethod
    def _quantities(cls, value: dict[str, str]) -> dict[str, str]:
        for name, quantity in value.items():
            try:
                parse_quantity(quantity)
            except ValueError as error:
                raise ValueError(f"{name}: {quantity!r} is not a Kubernetes quantity") from error
        return value


def parse_policy(value: Any) -> Policy:
    """EVALKUBE_POLICY: a JSON object (or a dict); unset or empty is the default, safe policy."""
    if value in (None, ""):
        return Policy()
    if isinstance(value, Policy):
        return value
    if isinstance(value, str):
        value = json.loads(value)
    return Policy.model_validate(value)


class Violation(BaseModel):
    """One broken rule: its name (a Policy key), the request field (REST names) and why, in words."""

    rule: str
    field: tuple[str | int, ...]
    message: str

    def __str__(self) -> str:
        return f"policy rule {self.rule}: {self.message}"


def image_allowed(image: str, policy: Policy) -> bool:
    """An exact name, or a prefix: one ending in '*' matches what starts with the rest; ':' or '/' too."""
    if image == policy.evaluator_image:
        return True
    for allowed in policy.allowed_images:
        if allowed.endswith("*"):
            if image.startswith(allowed[:-1]):
                return True
        elif allowed.endswith((":", "/")):
            if image.startswith(allowed):
                return True
        elif image == allowed:
            return True
    return False


def violations(
    request: EvaluateRequest, policy: Policy, *, task_files: Mapping[str, str] | None = None
) -> list[Violation]:
    """Every rule of `policy` the request breaks (empty: it may run).

    `task_files` is the data of the request's custom-tasks ConfigMap, when it has one: the API and
    the operator each read it, and its Python is judged here.
    """
    found: list[Violation] = []

    def refuse(rule: str, field: tuple[str | int, ...], message: str) -> None:
        found.append(Violation(rule=rule, field=field, message=message))

    if request.image is not None and not image_allowed(request.image, policy):
        allowed = [image for image in (policy.evaluator_image, *policy.allowed_images) if image]
        refuse("allowedImages", ("image",), f"image {request.image!r} is not allowed (allowed: {allowed or 'none'})")
    if request.num_gpus > policy.max_gpus:
        refuse("maxGpus", ("num_gpus",), f"{request.num_gpus} GPUs asked, at most {policy.max_gpus} per EvalJob")
    if request.node_selector and not policy.allow_node_selector:
        refuse("allowNodeSelector", ("node_selector",), "an EvalJob may not choose its nodes (nodeSelector)")
    if request.tolerations and not policy.allow_tolerations:
        refuse("allowTolerations", ("tolerations",), "an EvalJob may not add tolerations")
    if request.resources is not None:
        for kind in ("requests", "limits"):
            for name, quantity in (getattr(request.resources, kind) or {}).items():
                problem = _resource_problem(name, quantity, policy)
                if problem:
                    refuse("maxResources", ("resources", kind, name), problem)
    if request.allow_online and not policy.allow_online:
        refuse("allowOnline", ("allow_online",), "hub downloads are not allowed on this cluster")
    value = (request.model_args or {}).get("trust_remote_code")
    if value is not None and str(value).strip().lower() not in _FALSE and not policy.allow_trust_remote_code:
        refuse(
            "allowTrustRemoteCode",
            ("model_args", "trust_remote_code"),
            "trust_remote_code runs the model repository's own code and is not allowed",
        )
    if task_files and not policy.allow_custom_task_code:
        for key, where in task_code(task_files):
            refuse(
                "allowCustomTaskCode",
                ("custom_tasks", "config_map"),
                f"{key}: {where}: custom tasks may not run Python on this cluster",
            )
    return found


def _resource_problem(name: str, quantity: int | str, policy: Policy) -> str | None:
    limit = policy.max_resources.get(name)
    if limit is None:
        listed = ", ".join(f"{n} <= {q}" for n, q in policy.max_resources.items()) or "none"
        return f"{name} may not be set by an EvalJob (allowed: {listed})"
    try:
        asked: Decimal = parse_quantity(quantity)
    except ValueError:
        return f"{name}: {quantity!r} is not a Kubernetes quantity"
    if asked > parse_quantity(limit):
        return f"{name} {quantity} is more than the most allowed, {limit}"
    return None


class _TagRecorder(yaml.SafeLoader):
    """SafeLoader that records every `!tag` (lmms-eval's `!function module.name`) it meets."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.tags: list[str] = []


def _record(loader: _TagRecorder, suffix: str, node: yaml.Node) -> None:
    value = node.value if isinstance(node, yaml.ScalarNode) else ""
    loader.tags.append(f"!{suffix} {value}".strip())


_TagRecorder.add_multi_constructor("!", _record)


def task_code(files: Mapping[str, str]) -> list[tuple[str, str]]:
    """(file, what) for each way a custom-tasks ConfigMap brings Python into the evaluator.

    lmms-eval imports the module a `!function` tag names from the task's folder; a .py file there is
    such a module; datasets runs a dataset's loading script under `dataset_kwargs.trust_remote_code`.
    A YAML file that does not parse is judged by lmms-eval (which fails on it) and the name checks.
    """
    found: list[tuple[str, str]] = []
    for key, text in sorted(files.items()):
        if key.endswith(".py"):
            found.append((key, "a Python module"))
            continue
        if not key.endswith(_YAML_SUFFIXES):
            continue
        loader = _TagRecorder(text)
        try:
            document = loader.get_single_data()
        except yaml.YAMLError:
            continue
        finally:
            loader.dispose()
        found += [(key, tag) for tag in loader.tags if tag.startswith("!function")]
        kwargs = document.get("dataset_kwargs") if isinstance(document, dict) else None
        if isinstance(kwargs, dict) and str(kwargs.get("trust_remote_code", "")).strip().lower() not in _FALSE:
            found.append((key, "dataset_kwargs.trust_remote_code"))
    return found
