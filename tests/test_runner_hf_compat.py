"""evalkube's fix of lmms-eval's `huggingface` backend: the model class it meant to pick."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
from transformers import (
    AutoModel,
    AutoModelForCausalLM,
    AutoModelForImageTextToText,
    CLIPVisionConfig,
    PretrainedConfig,
    Qwen2_5_VLConfig,
    Qwen2Config,
)

from evalkube.runner.hf_compat import pick_auto_class


def test_a_text_model_gets_its_lm_head() -> None:
    assert pick_auto_class(Qwen2Config()) is AutoModelForCausalLM


def test_a_vision_language_model_loads_as_image_text_to_text() -> None:
    assert pick_auto_class(Qwen2_5_VLConfig()) is AutoModelForImageTextToText


def test_anything_else_stays_automodel() -> None:
    assert pick_auto_class(CLIPVisionConfig()) is AutoModel


def test_remote_code_models_are_picked_by_their_auto_map() -> None:
    class RemoteConfig(PretrainedConfig):
        model_type = "remote-thing"

    config = RemoteConfig(auto_map={"AutoConfig": "m.C", "AutoModelForCausalLM": "m.LM"})
    assert pick_auto_class(config) is AutoModelForCausalLM
    assert pick_auto_class(RemoteConfig()) is AutoModel


@pytest.mark.heavy
def test_the_launcher_patches_the_backend_when_it_is_imported() -> None:
    """In a fresh interpreter, as `evalkube.runner.lmms_launch` runs lmms-eval (~5 s of imports)."""
    script = textwrap.dedent(
        """
        import sys
        from evalkube.runner import hf_compat
        hf_compat.install()
        assert hf_compat.BACKEND_MODULE not in sys.modules
        from lmms_eval.models import get_model
        backend = sys.modules[get_model("huggingface").__module__]
        assert backend.__name__ == hf_compat.BACKEND_MODULE
        assert backend.AutoModel is hf_compat.AutoModelPicker, backend.AutoModel
        print("patched")
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().endswith("patched")
