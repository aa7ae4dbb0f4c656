"""The EvalJob CRD's openAPIV3Schema as a JSON Schema validator (what `kubectl apply` would check).

The apiserver validates structural schemas in OpenAPI v3.0 dialect: `exclusiveMinimum` is a
boolean (draft 4) and `x-kubernetes-int-or-string` means integer or string. The translation is
small and lives here, so example manifests can be validated without a cluster.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import yaml

ROOT = Path(__file__).resolve().parent.parent
CRD_PATH = ROOT / "crds" / "evaljob.yaml"


def load_crd() -> dict[str, Any]:
    return yaml.safe_load(CRD_PATH.read_text())


def openapi_schema(crd: dict[str, Any] | None = None) -> dict[str, Any]:
    crd = crd or load_crd()
    return crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def _to_json_schema(node: Any) -> Any:
    if isinstance(node, list):
        return [_to_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: _to_json_schema(value) for key, value in node.items() if not key.startswith("x-kubernetes-")}
    if node.get("x-kubernetes-int-or-string"):
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    return out


def validator(crd: dict[str, Any] | None = None) -> jsonschema.Draft4Validator:
    return jsonschema.Draft4Validator(_to_json_schema(openapi_schema(crd)))


def errors(manifest: dict[str, Any], crd: dict[str, Any] | None = None) -> list[str]:
    """Each violation as 'path: message' (empty when the manifest is valid); default: the EvalJob CRD."""
    return [
        f"{'.'.join(str(part) for part in error.absolute_path)}: {error.message}"
        for error in validator(crd).iter_errors(manifest)
    ]


def load_merge_crd() -> dict[str, Any]:
    return yaml.safe_load((CRD_PATH.parent / "checkpointmerge.yaml").read_text())
