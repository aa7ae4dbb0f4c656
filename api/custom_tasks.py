"""The task names a custom-tasks ConfigMap defines (lmms-eval task YAML, one file per key).

A request may name tasks that exist only in its own custom_tasks ConfigMap; those are accepted
even though the catalog lacks them. lmms-eval task YAML uses tags the safe loader doesn't know
(`!function utils.process_results`), so any `!tag` loads as None: only the names matter here.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import PurePosixPath
from typing import Any

import yaml
from kubernetes.client import CoreV1Api

from evalkube.kube import or_none

_YAML_SUFFIXES = (".yaml", ".yml")


class _TaskYamlLoader(yaml.SafeLoader):
    """SafeLoader that reads lmms-eval's custom tags (!function ...) as None."""


_TaskYamlLoader.add_multi_constructor("!", lambda loader, suffix, node: None)


def read_defined_names(core: CoreV1Api, namespace: str, configmap: str, timeout: float) -> set[str] | None:
    """The names the ConfigMap `configmap` defines; None when it does not exist."""
    found = or_none(core.read_namespaced_config_map, configmap, namespace, _request_timeout=timeout)
    return None if found is None else defined_names(found.data or {})


def defined_names(data: Mapping[str, str]) -> set[str]:
    """Names defined by the YAML files of a ConfigMap's data: `task`, `group` and `tag` names.

    ValueError names the file that is not YAML: lmms-eval would fail on it too.
    """
    names: set[str] = set()
    for key, text in data.items():
        if not key.endswith(_YAML_SUFFIXES):
            continue
        try:
            document: Any = yaml.load(text, Loader=_TaskYamlLoader)
        except yaml.YAMLError as exc:
            raise ValueError(f"{key!r} is not valid YAML: {exc}") from exc
        if not isinstance(document, dict):
            continue
        escaping = _escaping_paths(document)
        if escaping:
            raise ValueError(f"{key!r}: {escaping} leaves the tasks folder ('..' and absolute includes are refused)")
        for field in ("task", "group", "tag"):
            value = document.get(field)
            # a group's `task:` is a list of its members (defined elsewhere); tags may be lists
            if isinstance(value, str):
                names.add(value)
            elif field == "tag" and isinstance(value, list):
                names.update(v for v in value if isinstance(v, str))
    return names


def _escaping_paths(document: dict[str, Any]) -> str | None:
    """The first file reference of a task YAML that points outside its ConfigMap's folder, if any.

    lmms-eval opens `include:` files relative to the YAML and data files relative to where it
    runs: a `..` component (or an absolute include) would reach files the ConfigMap does not hold.
    """
    references: list[tuple[str, Any]] = [("include", document.get("include"))]
    kwargs = document.get("dataset_kwargs")
    if isinstance(kwargs, dict):
        files = kwargs.get("data_files")
        values = files.values() if isinstance(files, dict) else [files]
        references += [("dataset_kwargs.data_files", value) for value in values]
    references.append(("dataset_path", document.get("dataset_path")))
    for field, value in references:
        for path in value if isinstance(value, list) else [value]:
            if not isinstance(path, str):
                continue
            if ".." in PurePosixPath(path).parts or (field == "include" and path.startswith("/")):
                return f"{field} {path!r}"
    return None
