"""Fitting a results document into a size budget: bulky keys go first, metrics never."""

from __future__ import annotations

import pytest

from evalkube.results import ResultsTooLarge, encoded_size, fit


def document() -> dict:
    return {
        "results": {"mme": {"exact_match,none": 0.5, "exact_match_stderr,none": "N/A"}},
        "configs": {"mme": {"prompt": "x" * 5000}},
        "config": {"model": "hf", "model_args": "y" * 3000},
        "versions": {"mme": 1},
        "n-shot": {"mme": 0},
        "custom": "z" * 1000,
    }


def test_a_small_document_is_untouched() -> None:
    doc = document()
    assert fit(doc, 10**6) == (doc, [])


def test_bulky_keys_are_dropped_in_order_until_it_fits() -> None:
    doc = document()
    fitted, dropped = fit(doc, encoded_size(doc) - 4000)
    assert dropped == ["configs"]
    assert "results" in fitted and "config" in fitted

    fitted, dropped = fit(doc, 300)
    assert dropped == ["configs", "config", "custom"]
    assert fitted["results"] == doc["results"] and fitted["versions"] == {"mme": 1}


def test_group_metrics_are_kept_like_task_metrics() -> None:
    doc = {**document(), "groups": {"mmmu": {"acc,none": 0.4}}}
    fitted, dropped = fit(doc, 300)
    assert fitted["groups"] == {"mmmu": {"acc,none": 0.4}}
    assert "groups" not in dropped


def test_metrics_alone_too_large_is_an_error() -> None:
    with pytest.raises(ResultsTooLarge, match="metrics alone"):
        fit(document(), 20)
