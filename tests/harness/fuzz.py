"""Schemathesis over the API's own OpenAPI document, served by the real app: every operation,
valid (positive) and invalid (negative) inputs, and a verdict on each answer.

The verdict: no 5xx (a 501 the operation itself documents, an endpoint not offered yet, is its
contract), and every 4xx body says what was wrong - FastAPI's list of
`{loc, msg}` with a field and a reason for 413/422, a non-empty explanation otherwise (404 "Job X
not found", 400 "already finished"). Used by tests/test_api_fuzz.py (few cases) and
bench/fuzz_api.py (thousands).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx
import hypothesis
import hypothesis.errors
import schemathesis
from hypothesis import HealthCheck
from schemathesis.generation import GenerationMode

#: Tasks and models of the catalog the fuzzed API is given, so /tasks and /models answer 200.
CATALOG = {"tasks": ["mme", "mmmu_val", "tinyqa"], "models": ["huggingface", "vllm", "qwen2_5_vl"]}


@dataclass
class FuzzReport:
    cases: int = 0
    by_operation: Counter[str] = field(default_factory=Counter)
    statuses: Counter[int] = field(default_factory=Counter)
    server_errors: list[str] = field(default_factory=list)
    unexplained: list[str] = field(default_factory=list)

    def record(self, label: str, case: Any, status: int, text: str, documented: frozenset[int] = frozenset()) -> None:
        self.cases += 1
        self.by_operation[label] += 1
        self.statuses[status] += 1
        where = f"{label} body={str(case.body)[:300]!s} query={case.query} headers={case.headers}"
        if status == 501 and status in documented:
            return  # an operation the API documents as not offered yet: its contract, not a failure
        if status >= 500:
            self.server_errors.append(f"{status} {where}: {text[:500]}")
        elif status >= 400:
            problem = explanation_problem(status, text)
            if problem:
                self.unexplained.append(f"{status} {where}: {problem}: {text[:300]}")

    def lines(self) -> str:
        operations = ", ".join(f"{label} {n}" for label, n in sorted(self.by_operation.items()))
        return (
            f"cases {self.cases} over {len(self.by_operation)} operations ({operations})\n"
            f"statuses {dict(sorted(self.statuses.items()))}; 5xx {len(self.server_errors)}, "
            f"4xx without field and reason {len(self.unexplained)}"
        )


def explanation_problem(status: int, text: str) -> str | None:
    """Why a 4xx body does not say what was wrong, or None when it does."""
    try:
        detail = json.loads(text)["detail"]
    except (ValueError, KeyError, TypeError):
        return "not a JSON object with 'detail'"
    if isinstance(detail, str):
        return None if detail.strip() and status not in (413, 422) else "a bare message where fields are expected"
    if not isinstance(detail, list) or not detail:
        return "'detail' is neither a message nor a list of errors"
    for item in detail:
        if not (isinstance(item, dict) and item.get("loc") and str(item.get("msg") or "").strip()):
            return f"an error without its field (loc) or reason (msg): {item}"
    return None


def fuzz(base_url: str, cases_per_operation: int, seed: int = 0) -> FuzzReport:
    """Up to `cases_per_operation` positive and as many negative cases for every operation."""
    report = FuzzReport()
    document = httpx.get(f"{base_url}/openapi.json", timeout=30).json()
    schema = schemathesis.openapi.from_dict(document)
    operations = [result.ok() for result in schema.get_all_operations()]
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @hypothesis.seed(seed)
            @hypothesis.settings(
                max_examples=cases_per_operation,
                deadline=None,
                database=None,
                suppress_health_check=list(HealthCheck),
                phases=[hypothesis.Phase.generate],
            )
            @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
            def run(case: Any) -> None:
                response = case.call(base_url=base_url, timeout=30)
                responses = document["paths"][case.operation.path][case.method.lower()].get("responses", {})
                documented = frozenset(int(code) for code in responses if code.isdigit())
                report.record(case.operation.label, case, response.status_code, response.text, documented)

            try:
                run()
            except hypothesis.errors.Unsatisfiable:  # nothing to make invalid (GET /health has no inputs)
                assert mode is GenerationMode.NEGATIVE, f"no valid case for {operation.label}"
    return report
