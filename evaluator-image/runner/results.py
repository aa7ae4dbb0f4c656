"""lmms-eval's results document -> the data of the results ConfigMap.

lmms-eval writes `<output_path>/<model_name_sanitized>/<timestamp>_results.json`, the document
`simple_evaluate` returns minus `samples`. Its exit code is unreliable (it logs fatal errors and
exits 0), so that file appearing, with a result for every requested task, is what success means.

The ConfigMap carries plain JSON: numpy numbers become plain numbers, and NaN and +-Infinity
(which JSON has no words for; lmms-eval writes them as bare `NaN` tokens) become null. It must
stay under Kubernetes' 1 MiB per object, so the document is fitted into BUDGET_BYTES by
`evalkube.results.fit`, the rule the operator applies too (bulky keys go first, `results` never).
"""

from __future__ import annotations

import fnmatch
import json
import math
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

from evalkube import resource
from evalkube.results import encoded_size, fit

#: Bytes the ConfigMap's data may take: etcd's limit is 1 MiB per object; the rest is headroom
#: for metadata.
BUDGET_BYTES = 900 * 1024


def to_plain(value: Any) -> Any:
    """`value` as plain JSON data: numpy scalars/arrays to numbers/lists, NaN/Infinity to None.

    Anything else JSON can't hold becomes its str(), as lmms-eval's own writer does.
    """
    if isinstance(value, Mapping):
        return {str(key): to_plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [to_plain(item) for item in value]
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, (str, int)):
        return value
    if hasattr(value, "tolist"):  # numpy scalar or array, without importing numpy
        return to_plain(value.tolist())
    return str(value)


def dumps(value: Any) -> str:
    """Compact JSON of plain data, encoded as `evalkube.results.encoded_size` measures it."""
    return json.dumps(value, separators=(",", ":"), allow_nan=False)


def find_results_file(output_path: Path, ignore: Collection[Path] = ()) -> Path | None:
    """The newest `*_results.json` lmms-eval wrote under `output_path`, other than `ignore`
    (files an earlier attempt left in a reused artifacts directory)."""
    found = [path for path in output_path.glob("*/*_results.json") if path not in ignore]
    return max(found, key=lambda path: (path.name, path.stat().st_mtime), default=None)


def lmms_eval_result(results_file: Path) -> dict[str, Any]:
    """lmms-eval's own `result` for a results file, as its server builds it from the output folder:
    `{<model_dir>: {"results": <path>, "samples": [<paths of the same run>]}}`."""
    stamp = results_file.name.removesuffix("_results.json")
    samples = sorted(str(path) for path in results_file.parent.glob(f"{stamp}_samples_*.jsonl"))
    return {results_file.parent.name: {"results": str(results_file), "samples": samples}}


def load_results(path: Path) -> dict[str, Any]:
    """The results document, plain."""
    document = to_plain(json.loads(path.read_text()))
    if not isinstance(document, dict) or not isinstance(document.get("results"), dict):
        raise ValueError(f"{path} holds no 'results' object")
    return document


def missing_tasks(document: Mapping[str, Any], tasks: Collection[str]) -> list[str]:
    """Requested task names the document has no results for.

    A task or group appears under `results`, `groups` or `group_subtasks`; a tag (which lmms-eval
    expands to its tasks) only in its tasks' `configs[...]["tag"]`; a wildcard must match one.
    """
    names = set(document.get("results") or {}) | set(document.get("groups") or {})
    names |= set(document.get("group_subtasks") or {})
    for config in (document.get("configs") or {}).values():
        tags = config.get("tag") if isinstance(config, Mapping) else None
        names |= {tags} if isinstance(tags, str) else set(tags or ())
    return [task for task in tasks if not (task in names or ("*" in task and fnmatch.filter(names, task)))]


def configmap_data(
    document: Mapping[str, Any],
    result: Mapping[str, Any] | None,
    lmms_eval_version: str,
    budget: int = BUDGET_BYTES,
) -> dict[str, str]:
    """The ConfigMap's `results.json` and `evalkube.json`, together within `budget` bytes.

    `evalkube.json` says which top-level keys were dropped, lmms-eval's `result` (where the results
    and per-sample files are, when they are on a volume that outlives the pod), and which lmms-eval
    produced the document (its own `lmms_eval_version` is often "main@unknown").
    Raises `evalkube.results.ResultsTooLarge` if the metrics alone don't fit.
    """

    def meta(dropped: list[str]) -> dict[str, Any]:
        return {"dropped": dropped, "result": result, "lmmsEvalVersion": lmms_eval_version}

    # Room for evalkube.json even if every key had to be dropped.
    fitted, dropped = fit(dict(document), budget - encoded_size(meta(list(document))))
    return {resource.RESULTS_KEY: dumps(fitted), resource.RESULTS_META_KEY: dumps(meta(dropped))}
