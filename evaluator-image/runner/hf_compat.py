"""The one fix evalkube applies to lmms-eval: the `huggingface` backend's model-class choice.

lmms-eval 0.6.1 to 0.7.3 (`lmms_eval/models/chat/huggingface.py`) picks the model class with
`config.model_type in AutoModelForCausalLM._model_mapping.keys()`, but those keys are config
*classes*, never model-type strings, so every model falls through to `AutoModel`: a text model
loads without its LM head and fails with "'Qwen2Model' object has no attribute 'generate'".

The fix replaces the module's `AutoModel` (the fall-through) with `AutoModelPicker`, which makes
the choice upstream intended, by config class. It is installed as an import hook, so it costs
nothing unless that backend is actually loaded, and it applies however the backend was named (CLI
flag, alias, `--config` file). Only `evalkube.runner.lmms_launch` installs it. Drop this module
when the pinned lmms-eval fixes the check.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
from types import ModuleType
from typing import Any

BACKEND_MODULE = "lmms_eval.models.chat.huggingface"


def pick_auto_class(config: Any) -> type:
    """The transformers auto class the backend meant to use for `config`.

    A causal LM first, then an image-text-to-text model (the backend's own order), matched by
    config class; remote-code configs (not in the mappings) by their `auto_map`; else AutoModel.
    """
    from transformers import AutoModel, AutoModelForCausalLM, AutoModelForImageTextToText

    candidates = (AutoModelForCausalLM, AutoModelForImageTextToText)
    for auto_class in candidates:
        if type(config) in auto_class._model_mapping:
            return auto_class
    auto_map = getattr(config, "auto_map", None) or {}
    for auto_class in candidates:
        if auto_class.__name__ in auto_map:
            return auto_class
    return AutoModel


class AutoModelPicker:
    """Stands in for `AutoModel` in the backend module: loads with the class `pick_auto_class` names."""

    @staticmethod
    def from_pretrained(pretrained: str, *args: Any, **kwargs: Any) -> Any:
        from transformers import AutoConfig

        config = AutoConfig.from_pretrained(pretrained, trust_remote_code=kwargs.get("trust_remote_code", False))
        return pick_auto_class(config).from_pretrained(pretrained, *args, **kwargs)


def patch(module: ModuleType) -> None:
    """Make the loaded backend module load models through `AutoModelPicker`."""
    module.AutoModel = AutoModelPicker  # type: ignore[attr-defined]


class _PatchOnImport(importlib.abc.MetaPathFinder):
    """Finds the backend module with the other finders, then patches it right after it executes."""

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        if fullname != BACKEND_MODULE:
            return None
        for finder in sys.meta_path:
            if finder is not self and hasattr(finder, "find_spec"):
                spec = finder.find_spec(fullname, path, target)
                if spec is not None and spec.loader is not None:
                    return _patched_on_exec(spec)
        return None


def _patched_on_exec(spec: importlib.machinery.ModuleSpec) -> importlib.machinery.ModuleSpec:
    exec_module = spec.loader.exec_module  # type: ignore[union-attr]

    def exec_and_patch(module: ModuleType) -> None:
        exec_module(module)
        patch(module)

    spec.loader.exec_module = exec_and_patch  # type: ignore[union-attr,method-assign]
    return spec


def install() -> None:
    """Patch the backend now if it is already imported, else as soon as it is."""
    if BACKEND_MODULE in sys.modules:
        patch(sys.modules[BACKEND_MODULE])
    elif not any(isinstance(finder, _PatchOnImport) for finder in sys.meta_path):
        sys.meta_path.insert(0, _PatchOnImport())
