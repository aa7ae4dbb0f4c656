"""What this evaluator image can run: lmms-eval's task and model names, for the API to serve.

The API runs no lmms-eval (it lives in the evaluator image, with torch and the task YAML), so the
image publishes its own catalog (`evalkube-runner catalog`, run by the chart as a hook) and the
API reads it. Names only: listing tasks parses task YAML (~7 s) without loading any dataset, and
models are listed from lmms-eval's registry without importing a model class (about half of them
need packages a given image doesn't carry).
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from importlib.metadata import version
from typing import Any


def lmms_eval_version() -> str:
    """The installed lmms-eval's version (without importing it)."""
    return version("lmms_eval")


def build_catalog() -> dict[str, Any]:
    """{"tasks", "groups", "models", "lmmsEvalVersion", "generatedAt"}.

    `tasks` is every name `--tasks` accepts (tasks, groups and tags, as lmms-eval's own server
    lists them); `groups` names the groups among them; `models` every name `--model` accepts,
    aliases included.
    """
    from loguru import logger

    logger.remove()  # lmms-eval logs at DEBUG to stderr while indexing task YAML
    logger.add(sys.stderr, level="WARNING")

    from lmms_eval.models import list_available_models
    from lmms_eval.tasks import TaskManager

    tasks = TaskManager(verbosity="WARNING")
    return {
        "tasks": sorted(tasks.all_tasks),
        "groups": sorted(tasks.all_groups),
        "models": sorted(list_available_models(include_aliases=True)),
        "lmmsEvalVersion": lmms_eval_version(),
        "generatedAt": datetime.now(UTC).isoformat(timespec="seconds"),
    }
