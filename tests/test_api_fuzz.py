"""Schemathesis over the API's OpenAPI document (the real app on uvicorn, on the emulator): no
input makes a 5xx, and every 4xx says which field was wrong and why. bench/fuzz_api.py runs the
same with thousands of cases."""

from __future__ import annotations

import json

import kubernetes
import pytest

from evalkube import resource

from harness.api_server import ApiServer
from harness.fuzz import CATALOG, explanation_problem, fuzz

pytestmark = [pytest.mark.heavy, pytest.mark.timeout(240)]


def test_no_input_makes_a_5xx_and_every_4xx_explains_itself(
    kube_client: kubernetes.client.ApiClient, namespace: str, api_server: ApiServer
) -> None:
    kubernetes.client.CoreV1Api(kube_client).create_namespaced_config_map(
        namespace, {"metadata": {"name": "evalkube-catalog"}, "data": {resource.CATALOG_KEY: json.dumps(CATALOG)}}
    )
    report = fuzz(api_server.url, cases_per_operation=15, seed=1)
    print(report.lines())
    assert report.cases >= 100 and len(report.by_operation) >= 7
    assert not report.server_errors, "\n".join(report.server_errors[:10])
    assert not report.unexplained, "\n".join(report.unexplained[:10])


@pytest.mark.parametrize(
    ("status", "body", "problem"),
    [
        (422, '{"detail": [{"loc": ["body", "tasks"], "msg": "Field required"}]}', None),
        (404, '{"detail": "Job eval-x not found"}', None),
        (422, '{"detail": "bad"}', "a bare message where fields are expected"),
        (422, '{"detail": [{"msg": "bad"}]}', "an error without its field"),
        (400, "Bad Request", "not a JSON object"),
    ],
)
def test_the_verdict_on_4xx_bodies(status: int, body: str, problem: str | None) -> None:
    found = explanation_problem(status, body)
    assert (found is None) if problem is None else (found is not None and problem in found)
