"""A Python started in the repository root still gets the standard library's own modules."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_operator_folder_does_not_shadow_the_standard_library() -> None:
    # tomllib imports `operator`; a package named operator/ in the root would shadow it.
    result = subprocess.run(
        [sys.executable, "-c", "import operator, tomllib; print(operator.__file__)"],
        cwd=ROOT, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert not Path(result.stdout.strip()).is_relative_to(ROOT)


def test_the_operator_still_imports_as_evalkube_operator() -> None:
    result = subprocess.run(
        [sys.executable, "-c", "import evalkube.operator.main"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
