"""`python -m evalkube.runner.lmms_launch ARGS` is `python -m lmms_eval ARGS` with `hf_compat` applied.

The runner starts lmms-eval through this module (directly, or under `accelerate launch -m` for
multi-GPU, so every rank gets the fix) instead of patching lmms-eval's installed files. Everything
else mirrors lmms-eval's own `__main__`: the same dispatcher, the same arguments, the same exit.
"""

from __future__ import annotations

import sys

from evalkube.runner import hf_compat


def main() -> None:
    hf_compat.install()
    from lmms_eval.cli.dispatch import main as lmms_eval_main

    lmms_eval_main()
    sys.exit(0)


if __name__ == "__main__":
    main()
