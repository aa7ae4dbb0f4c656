"""The clients' `evaluate` is pinned: to the protocol's fields, and to lmms-eval's own clients.

A field added to the protocol without a client argument, an argument the protocol doesn't know,
or a default that differs from the API's, fails here instead of being dropped without a word.
"""

from __future__ import annotations

import inspect

import pytest
from lmms_eval.entrypoints.client import AsyncEvalClient as UpstreamAsyncEvalClient
from lmms_eval.entrypoints.client import EvalClient as UpstreamEvalClient

from evalkube.client import AsyncEvalClient, EvalClient
from evalkube.protocol import EvaluateRequest

CLIENTS = [(EvalClient, UpstreamEvalClient), (AsyncEvalClient, UpstreamAsyncEvalClient)]


def parameters(function: object) -> dict[str, inspect.Parameter]:
    return {
        name: p
        for name, p in inspect.signature(function).parameters.items()
        if name != "self" and p.kind is not inspect.Parameter.VAR_KEYWORD
    }


@pytest.mark.parametrize(("ours", "upstream"), CLIENTS)
def test_evaluate_takes_every_protocol_field(ours: type, upstream: type) -> None:
    assert set(parameters(ours.evaluate)) == set(EvaluateRequest.model_fields)


@pytest.mark.parametrize(("ours", "upstream"), CLIENTS)
def test_lmms_evals_arguments_come_first_in_its_order_with_its_defaults(ours: type, upstream: type) -> None:
    # lmms-eval's async evaluate takes **kwargs; its sync one spells the contract out for both.
    theirs, mine = parameters(UpstreamEvalClient.evaluate), parameters(ours.evaluate)
    assert list(mine)[: len(theirs)] == list(theirs)
    for name, parameter in theirs.items():
        assert mine[name].default == parameter.default, name
        assert mine[name].kind == parameter.kind, name


@pytest.mark.parametrize(("ours", "upstream"), CLIENTS)
def test_evalkubes_additions_are_keyword_only(ours: type, upstream: type) -> None:
    theirs = parameters(UpstreamEvalClient.evaluate)
    for name, parameter in parameters(ours.evaluate).items():
        if name not in theirs:
            assert parameter.kind is inspect.Parameter.KEYWORD_ONLY, name


@pytest.mark.parametrize(("ours", "upstream"), CLIENTS)
def test_defaults_are_the_apis(ours: type, upstream: type) -> None:
    for name, parameter in parameters(ours.evaluate).items():
        field = EvaluateRequest.model_fields[name]
        if not field.is_required():
            # None means "leave it to the server": the API's own default then applies.
            assert parameter.default in (None, field.default), name


@pytest.mark.parametrize(("ours", "upstream"), CLIENTS)
def test_every_upstream_method_exists_with_its_parameters(ours: type, upstream: type) -> None:
    for name, method in inspect.getmembers(upstream, inspect.isfunction):
        if name.startswith("_"):
            continue
        assert hasattr(ours, name), name
        assert list(parameters(method)) == list(parameters(getattr(ours, name)))[: len(parameters(method))], name
