"""The chaos soak at scale: N EvalJobs through REST and kubectl with cancels, while the operator is
SIGKILLed, the API restarts and the emulator injects every kind of apiserver fault.

Prints the figures (jobs, kills, restarts, faults per kind, lost, duplicated, stuck) and exits 1
if anything was lost, duplicated, stuck, in the wrong phase or with altered results. The same
machinery as tests/test_chaos_soak.py (tests/harness/chaos.py), larger.

    .venv/bin/python bench/chaos_soak.py --jobs 200 --kills 20 --restarts 5 --seconds 90
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from harness.chaos import Soak, SoakConfig  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--kills", type=int, default=20, help="operator SIGKILLs")
    parser.add_argument("--restarts", type=int, default=5, help="API restarts")
    parser.add_argument("--seconds", type=float, default=90.0, help="window submissions and chaos are spread over")
    parser.add_argument("--settle", type=float, default=180.0, help="how long everything may take to finish after")
    parser.add_argument("--seed", type=int, default=7, help="faults and the plan replay from it")
    args = parser.parse_args()
    config = SoakConfig(
        jobs=args.jobs,
        operator_kills=args.kills,
        api_restarts=args.restarts,
        seconds=args.seconds,
        settle_seconds=args.settle,
        seed=args.seed,
    )
    with tempfile.TemporaryDirectory(prefix="chaos-soak-") as workdir:
        report = Soak(config, Path(workdir)).run()
        print(report.lines())
        problems = report.problems()
        for problem in problems:
            print("PROBLEM", problem)
        if problems:
            print(f"operator log tail:\n{(Path(workdir) / 'operator.log').read_text(errors='replace')[-3000:]}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
